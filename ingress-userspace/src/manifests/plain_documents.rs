//! The common shape of a manifest file, found without parsing YAML: every
//! document names, at the top level (`apiVersion:` and `kind:` at the start
//! of a line), its kind as a plain name. The general path parses every
//! document to a YAML value first, to find its kind and to report what is
//! wrong and where; for a large directory that doubled the cost of reading
//! it. A file of this shape can be deserialized straight into its types.

/// One non-blank document of the common shape.
#[derive(Debug, PartialEq)]
pub(super) struct PlainDocument<'a> {
    /// Its number in the stream, from 1, as libyaml counts.
    pub number: usize,
    pub api_version: &'a str,
    pub kind: &'a str,
    pub text: &'a str,
}

/// `text`'s non-blank documents, or `None` if any is not of the common
/// shape (or the stream uses what [`documents`] does not handle).
pub(super) fn split(text: &str) -> Option<Vec<PlainDocument<'_>>> {
    let mut plain = Vec::new();
    for (index, text) in documents(text)?.into_iter().enumerate() {
        if is_blank(text) {
            // A null document: counted, not read (as the general path does).
            continue;
        }
        let (api_version, kind) = (top_level(text, "apiVersion")?, top_level(text, "kind")?);
        plain.push(PlainDocument { number: index + 1, api_version, kind, text });
    }
    Some(plain)
}

/// The documents of a stream, numbered as libyaml numbers them: text before
/// the first `---` is a document unless it is blank, and every `---` starts
/// one. `None` for what this split does not handle (`...` ends, directives,
/// content on the `---` line).
fn documents(text: &str) -> Option<Vec<&str>> {
    let mut documents = Vec::new();
    let mut start = 0;
    let mut explicit = false;
    let mut offset = 0;
    for line in text.split_inclusive('\n') {
        let content = line.trim_end();
        if content.starts_with("---") || content.starts_with("...") || content.starts_with('%') {
            if content != "---" {
                return None;
            }
            let document = &text[start..offset];
            if explicit || !is_blank(document) {
                documents.push(document);
            }
            explicit = true;
            start = offset + line.len();
        }
        offset += line.len();
    }
    let last = &text[start..];
    if explicit || !is_blank(last) {
        documents.push(last);
    }
    Some(documents)
}

/// Only blank lines and comments.
fn is_blank(document: &str) -> bool {
    document.lines().map(str::trim_start).all(|line| line.is_empty() || line.starts_with('#'))
}

/// The plain value of the one top-level `key:` line, quotes and a comment
/// stripped; `None` if there is not exactly one, or its value is not a
/// plain name.
fn top_level<'a>(document: &'a str, key: &str) -> Option<&'a str> {
    let mut values = document.lines().filter_map(|line| line.strip_prefix(key)?.strip_prefix(':'));
    let value = values.next()?;
    if values.next().is_some() {
        return None;
    }
    let value = value.split(" #").next()?.trim();
    let value = value.strip_prefix('"').and_then(|v| v.strip_suffix('"')).unwrap_or(value);
    let value = value.strip_prefix('\'').and_then(|v| v.strip_suffix('\'')).unwrap_or(value);
    let plain = |c: char| c.is_ascii_alphanumeric() || matches!(c, '.' | '/' | '-');
    (!value.is_empty() && value.chars().all(plain)).then_some(value)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn documents_are_split_and_numbered_as_libyaml_does() {
        let cases: &[(&str, Option<&[&str]>)] = &[
            ("a: 1\n", Some(&["a: 1\n"])),
            ("---\na: 1\n", Some(&["a: 1\n"])),
            ("# head\n---\na: 1\n---\nb: 2\n", Some(&["a: 1\n", "b: 2\n"])),
            ("a: 1\n---\n---\nb: 2", Some(&["a: 1\n", "", "b: 2"])),
            ("a: 1\n---\n", Some(&["a: 1\n", ""])),
            ("a: 1\r\n---\r\nb: 2\r\n", Some(&["a: 1\r\n", "b: 2\r\n"])),
            ("", Some(&[])),
            ("--- {a: 1}\n", None),
            ("a: 1\n...\n", None),
            ("%YAML 1.2\n---\na: 1\n", None),
        ];
        for (text, expected) in cases {
            assert_eq!(documents(text).as_deref(), *expected, "{text:?}");
        }
    }

    #[test]
    fn only_one_plain_top_level_value_is_a_kind() {
        let cases: &[(&str, Option<&str>)] = &[
            ("kind: Service\n", Some("Service")),
            ("kind: \"Service\"  # why\n", Some("Service")),
            ("kind: 'EndpointSlice'\n", Some("EndpointSlice")),
            ("metadata:\n  kind: Secret\nkind: Pod\n", Some("Pod")),
            ("kind: Service\nkind: Pod\n", None),
            ("kinds: Service\n", None),
            ("kind: {a: b}\n", None),
            ("kind:\n", None),
            ("{kind: Service}\n", None),
        ];
        for (document, expected) in cases {
            assert_eq!(top_level(document, "kind"), *expected, "{document:?}");
        }
    }

    #[test]
    fn a_document_without_a_plain_kind_makes_the_file_not_plain() {
        /// A document's number, apiVersion and kind.
        type Found<'a> = (usize, &'a str, &'a str);
        let cases: &[(&str, Option<&[Found]>)] = &[
            ("# head\n---\napiVersion: v1\nkind: Service\n---\n---\napiVersion: v1\nkind: Pod\n", Some(&[(1, "v1", "Service"), (3, "v1", "Pod")])),
            ("apiVersion: v1\nkind: Service\n---\nkind: Pod\n", None),
            ("apiVersion: v1\nkind: [Service]\n", None),
            ("", Some(&[])),
        ];
        for (text, expected) in cases {
            let found = split(text).map(|docs| docs.iter().map(|d| (d.number, d.api_version, d.kind)).collect::<Vec<_>>());
            assert_eq!(found.as_deref(), *expected, "{text:?}");
        }
    }
}
