//! The common shape of a JSON manifest file: one object, or a `List` of
//! them as `kubectl get -o json` prints, each naming its `apiVersion` and
//! `kind` as plain strings. Each object's text is cut out of the file as it
//! is, to be deserialized straight into its type: JSON needs none of YAML's
//! work, and a JSON dump of a large cluster reads several times faster.

use serde::Deserialize;
use serde_json::value::RawValue;

use super::plain_documents::PlainDocument;

/// The fields that tell an object's kind (and a `List`'s items); serde_json
/// skips the rest without building anything.
#[derive(Deserialize)]
struct Head<'a> {
    #[serde(rename = "apiVersion", borrow)]
    api_version: &'a str,
    #[serde(borrow)]
    kind: &'a str,
    #[serde(borrow, default)]
    items: Option<Vec<&'a RawValue>>,
}

/// `text`'s objects, all numbered as the file's one document, or `None` if
/// the text is not one JSON object of this shape (a syntax error, a string
/// with escapes where a kind is, anything after the object): the general
/// path then reads the file and reports what is wrong.
pub(super) fn split(text: &str) -> Option<Vec<PlainDocument<'_>>> {
    let head: Head = serde_json::from_str(text).ok()?;
    if (head.api_version, head.kind) != ("v1", "List") {
        return Some(vec![document(head, text)]);
    }
    let items = head.items?;
    let mut documents = Vec::with_capacity(items.len());
    for item in items {
        let head: Head = serde_json::from_str(item.get()).ok()?;
        if head.kind == "List" {
            return None;
        }
        documents.push(document(head, item.get()));
    }
    Some(documents)
}

fn document<'a>(head: Head<'a>, text: &'a str) -> PlainDocument<'a> {
    PlainDocument { number: 1, api_version: head.api_version, kind: head.kind, text }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn objects_and_list_items_are_found_or_the_file_is_not_plain() {
        /// apiVersion, kind and text of each object found.
        type Found<'a> = Vec<(&'a str, &'a str, &'a str)>;
        let service = r#"{"apiVersion":"v1","kind":"Service","metadata":{"name":"a"}}"#;
        let slice = r#"{"kind":"EndpointSlice","apiVersion":"discovery.k8s.io/v1","endpoints":[]}"#;
        let list = format!(r#"{{"apiVersion":"v1","kind":"List","items":[{service}, {slice}],"metadata":{{}}}}"#);
        let nested = format!(r#"{{"apiVersion":"v1","kind":"List","items":[{list}]}}"#);
        let escaped = r#"{"apiVersion":"v1","kind":"Serv\u0069ce"}"#;
        let cases: Vec<(&str, String, Option<Found>)> = vec![
            ("one object", service.to_owned(), Some(vec![("v1", "Service", service)])),
            ("a List", list.clone(), Some(vec![("v1", "Service", service), ("discovery.k8s.io/v1", "EndpointSlice", slice)])),
            ("an empty List", r#"{"apiVersion":"v1","kind":"List","items":[]}"#.to_owned(), Some(vec![])),
            ("a List inside a List", nested, None),
            ("a List without items", r#"{"apiVersion":"v1","kind":"List"}"#.to_owned(), None),
            ("no kind", r#"{"apiVersion":"v1"}"#.to_owned(), None),
            ("a kind with an escape", escaped.to_owned(), None),
            ("two objects", format!("{service}\n{service}"), None),
            ("a syntax error", service.replace('}', ""), None),
            ("YAML", "apiVersion: v1\nkind: Service\n".to_owned(), None),
        ];
        for (name, text, expected) in cases {
            let found = split(&text).map(|documents| {
                assert!(documents.iter().all(|document| document.number == 1), "{name}");
                documents.iter().map(|d| (d.api_version, d.kind, d.text)).collect::<Vec<_>>()
            });
            assert_eq!(found, expected, "{name}");
        }
    }
}
