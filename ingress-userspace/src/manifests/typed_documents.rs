//! The common case read straight into the agent's types: a file whose
//! documents each name, at the top level (`apiVersion:` and `kind:` at the
//! start of a line), a kind the agent reads, and read without any problem.
//! The general path parses every document to a YAML value first, to find
//! its kind and to report what is wrong and where; for a large directory
//! that doubled the cost of reading it. Anything else here gives `None`,
//! and the general path reads the whole file, reporting exactly as it does.

use k8s_openapi::Metadata;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;
use serde::de::DeserializeOwned;

use super::{Doc, Object, ParsedFile, ReadAs, read_kind, read_object};
use crate::problem::Location;

/// `text`'s documents as [`super::parse_file`] would read them, if every one
/// is the common case.
pub(super) fn parse(file: &str, text: &str) -> Option<ParsedFile> {
    let mut parsed = ParsedFile::default();
    for (index, document) in documents(text)?.into_iter().enumerate() {
        if is_blank(document) {
            // A null document: counted, not read (as the general path does).
            continue;
        }
        let (api_version, kind) = (top_level(document, "apiVersion")?, top_level(document, "kind")?);
        let at = Location { file: Some(file.to_owned()), document: Some(index + 1), object: None };
        parsed.docs.push(read_kind(api_version, kind, FromText { at, text: document })??);
    }
    Some(parsed)
}

/// One document's text.
struct FromText<'a> {
    at: Location,
    text: &'a str,
}

impl ReadAs for FromText<'_> {
    type Read = Option<Doc>;
    fn read_as<T>(self, wrap: fn(T) -> Object) -> Option<Doc>
    where
        T: DeserializeOwned + Metadata<Ty = ObjectMeta>,
    {
        let mut unknown_fields = false;
        let deserializer = serde_yaml::Deserializer::from_str(self.text);
        let object: T = serde_ignored::deserialize(deserializer, |_| unknown_fields = true).ok()?;
        let named = !object.metadata().name.as_deref().unwrap_or("").is_empty();
        (named && !unknown_fields).then(|| read_object(self.at, object, Vec::new(), wrap))
    }
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

    /// The fast path must give what the general path gives, or nothing.
    #[test]
    fn a_file_reads_the_same_as_through_yaml_values_or_falls_back() {
        let service = "apiVersion: v1\nkind: Service\nmetadata:\n  name: web\nspec:\n  clusterIP: 10.96.0.1\n  ports: [{port: 80, targetPort: 8080}]\n";
        let slice = "apiVersion: discovery.k8s.io/v1\nkind: EndpointSlice\nmetadata: {name: web-1, namespace: shop}\naddressType: IPv4\nendpoints:\n  - {addresses: [10.0.0.1], conditions: {ready: true}}\n";
        let cases: &[(&str, String, bool)] = &[
            ("two kinds, a head comment", format!("# shop\n---\n{service}---\n{slice}"), true),
            ("an empty document between", format!("{service}---\n---\n{slice}"), true),
            ("an unknown field", format!("{service}  nodeport: 3\n"), false),
            ("a kind the agent does not read", "apiVersion: apps/v1\nkind: Deployment\nmetadata: {name: d}\n".to_owned(), false),
            ("no name", "apiVersion: v1\nkind: Service\nmetadata: {namespace: x}\n".to_owned(), false),
            ("a field of the wrong type", "apiVersion: v1\nkind: Service\nmetadata: {name: w}\nspec: {ports: 3}\n".to_owned(), false),
            ("a syntax error", format!("{service}---\nkind: Service\napiVersion: v1\nmetadata: {{name: [\n"), false),
        ];
        for (name, text, fast) in cases {
            let typed = parse("f.yaml", text);
            assert_eq!(typed.is_some(), *fast, "{name}");
            let general = super::super::parse_through_values("f.yaml", text);
            assert_eq!(super::super::parse_file("f.yaml", text), general, "{name}");
            if let Some(typed) = typed {
                assert_eq!(typed.docs.len(), 2, "{name}");
            }
        }
    }
}
