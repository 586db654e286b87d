//! The common shape of a JSON manifest file: one object, or a `List` of
//! them as `kubectl get -o json` prints, each naming its `apiVersion` and
//! `kind` as plain strings. JSON needs none of YAML's work, and each object
//! is deserialized straight into its type in the one pass over the file:
//! the members before its `apiVersion` and `kind` (none when they come
//! first, as the API server writes them) are kept as raw text and read
//! again, the rest are read once. A large directory of JSON is mostly this
//! pass, and finding each object's kind in a pass of its own, then its type
//! in another, read every byte three times. An object's member given twice
//! sends the file the general way; inside a member's value, as on the YAML
//! plain path, the type reads a repeated key as its last value.

use serde::de::value::{BorrowedStrDeserializer, MapAccessDeserializer};
use serde::de::{self, DeserializeSeed, Deserializer, IgnoredAny, MapAccess, SeqAccess, Visitor};
use serde_json::value::RawValue;

/// Reads one object of the kind its `apiVersion` and `kind` name.
pub(super) trait ReadObject {
    type Object;
    /// `None` if the object is not one of the plain shape: then neither is
    /// its file.
    fn read<'de, D: Deserializer<'de>>(&self, api_version: &str, kind: &str, object: D) -> Option<Self::Object>;
}

/// `text`'s objects read by `reader`, or `None` if the text is not one JSON
/// object of this shape (a syntax error, a string with escapes where a kind
/// is, anything after the object) or `reader` refused one of them: the
/// general path then reads the file and reports what is wrong.
pub(super) fn read<R: ReadObject>(text: &str, reader: &R) -> Option<Vec<R::Object>> {
    let mut json = serde_json::Deserializer::from_str(text);
    let objects = ObjectSeed { reader, in_list: false }.deserialize(&mut json).ok()?;
    json.end().ok()?;
    Some(objects)
}

/// One JSON object: the file's own (which may be a `List`), or a `List`'s
/// item (`in_list`).
struct ObjectSeed<'r, R> {
    reader: &'r R,
    in_list: bool,
}

impl<'de, R: ReadObject> DeserializeSeed<'de> for ObjectSeed<'_, R> {
    type Value = Vec<R::Object>;

    fn deserialize<D: Deserializer<'de>>(self, deserializer: D) -> Result<Self::Value, D::Error> {
        deserializer.deserialize_map(self)
    }
}

impl<'de, R: ReadObject> Visitor<'de> for ObjectSeed<'_, R> {
    type Value = Vec<R::Object>;

    fn expecting(&self, formatter: &mut std::fmt::Formatter) -> std::fmt::Result {
        formatter.write_str("a Kubernetes object")
    }

    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Self::Value, A::Error> {
        let mut ahead = Vec::new();
        let (mut api_version, mut kind) = (None, None);
        // A List's `items` may come before its `kind` (kubectl sorts the
        // members of what it prints): read as items on sight.
        let mut items = None;
        let mut seen = Vec::new();
        let (api_version, kind) = loop {
            let key = next_new_key(&mut map, &mut seen)?.ok_or_else(not_plain)?;
            if key == "items" && !self.in_list {
                items = Some(map.next_value_seed(Items { reader: self.reader })?);
            } else {
                let value: &'de RawValue = map.next_value()?;
                match key {
                    "apiVersion" => api_version = Some(plain_str(value)?),
                    "kind" => kind = Some(plain_str(value)?),
                    _ => {}
                }
                ahead.push((key, value));
            }
            if let Some(found) = api_version.zip(kind) {
                break found;
            }
        };
        if (api_version, kind) == ("v1", "List") {
            if self.in_list {
                return Err(not_plain());
            }
            while let Some(key) = next_new_key(&mut map, &mut seen)? {
                match key {
                    "items" => items = Some(map.next_value_seed(Items { reader: self.reader })?),
                    _ => drop(map.next_value::<IgnoredAny>()?),
                }
            }
            return items.ok_or_else(not_plain);
        }
        if items.is_some() {
            return Err(not_plain());
        }
        let members = Members { ahead: ahead.into_iter(), ahead_value: None, rest: map, seen };
        let object = self.reader.read(api_version, kind, MapAccessDeserializer::new(members)).ok_or_else(not_plain)?;
        Ok(vec![object])
    }
}

/// A `List`'s `items`.
struct Items<'r, R> {
    reader: &'r R,
}

impl<'de, R: ReadObject> DeserializeSeed<'de> for Items<'_, R> {
    type Value = Vec<R::Object>;

    fn deserialize<D: Deserializer<'de>>(self, deserializer: D) -> Result<Self::Value, D::Error> {
        deserializer.deserialize_seq(self)
    }
}

impl<'de, R: ReadObject> Visitor<'de> for Items<'_, R> {
    type Value = Vec<R::Object>;

    fn expecting(&self, formatter: &mut std::fmt::Formatter) -> std::fmt::Result {
        formatter.write_str("a List's items")
    }

    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<Self::Value, A::Error> {
        let mut objects = Vec::with_capacity(seq.size_hint().unwrap_or(0));
        while let Some(object) = seq.next_element_seed(ObjectSeed { reader: self.reader, in_list: true })? {
            objects.extend(object);
        }
        Ok(objects)
    }
}

/// An object's members as its type reads them: those read ahead to find
/// its kind, from their raw text, then the rest straight from the file.
struct Members<'de, A> {
    ahead: std::vec::IntoIter<(&'de str, &'de RawValue)>,
    /// The value of the member read ahead whose key was given last.
    ahead_value: Option<&'de RawValue>,
    rest: A,
    /// Every key given so far.
    seen: Vec<&'de str>,
}

impl<'de, A: MapAccess<'de>> MapAccess<'de> for Members<'de, A> {
    type Error = A::Error;

    fn next_key_seed<K: DeserializeSeed<'de>>(&mut self, seed: K) -> Result<Option<K::Value>, A::Error> {
        match self.ahead.next() {
            Some((key, value)) => {
                self.ahead_value = Some(value);
                seed.deserialize(BorrowedStrDeserializer::new(key)).map(Some)
            }
            None => match next_new_key(&mut self.rest, &mut self.seen)? {
                Some(key) => seed.deserialize(BorrowedStrDeserializer::new(key)).map(Some),
                None => Ok(None),
            },
        }
    }

    fn next_value_seed<V: DeserializeSeed<'de>>(&mut self, seed: V) -> Result<V::Value, A::Error> {
        match self.ahead_value.take() {
            Some(raw) => seed.deserialize(&mut serde_json::Deserializer::from_str(raw.get())).map_err(de::Error::custom),
            None => self.rest.next_value_seed(seed),
        }
    }
}

/// The next key of `map`, one not in `seen` (then added to it). A member
/// given twice is read by the general path as an error, and by a type's
/// `Deserialize` as its last value: it sends the file the general way.
fn next_new_key<'de, A: MapAccess<'de>>(map: &mut A, seen: &mut Vec<&'de str>) -> Result<Option<&'de str>, A::Error> {
    let Some(key) = map.next_key::<&'de str>()? else { return Ok(None) };
    if seen.contains(&key) {
        return Err(not_plain());
    }
    seen.push(key);
    Ok(Some(key))
}

/// A string without escapes.
fn plain_str<E: de::Error>(value: &RawValue) -> Result<&str, E> {
    serde_json::from_str(value.get()).map_err(E::custom)
}

/// The error that sends the file the general way; what it says is not shown.
fn not_plain<E: de::Error>() -> E {
    E::custom("not of the plain shape")
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde::Deserialize;
    use serde_json::Value;

    /// Reads every object as a JSON value; refuses kind `Refused`.
    struct AsValues;

    impl ReadObject for AsValues {
        type Object = (String, String, Value);
        fn read<'de, D: Deserializer<'de>>(&self, api_version: &str, kind: &str, object: D) -> Option<Self::Object> {
            let value = Value::deserialize(object).ok()?;
            (kind != "Refused").then(|| (api_version.to_owned(), kind.to_owned(), value))
        }
    }

    #[test]
    fn objects_and_list_items_are_read_whole_or_the_file_is_not_plain() {
        let service = r#"{"apiVersion":"v1","kind":"Service","metadata":{"name":"a"}}"#;
        // As kubectl prints it: members sorted, `kind` after a nested one.
        let slice = r#"{"addressType":"IPv4","apiVersion":"discovery.k8s.io/v1","endpoints":[{"addresses":["10.0.0.1"]}],"kind":"EndpointSlice","metadata":{"name":"b"}}"#;
        let list = format!(r#"{{"apiVersion":"v1","kind":"List","items":[{service}, {slice}],"metadata":{{}}}}"#);
        let sorted_list = format!(r#"{{"apiVersion":"v1","items":[{slice}],"kind":"List","metadata":{{"resourceVersion":""}}}}"#);
        let nested = format!(r#"{{"apiVersion":"v1","kind":"List","items":[{list}]}}"#);
        let escaped = r#"{"apiVersion":"v1","kind":"Serv\u0069ce"}"#;
        let refused = r#"{"apiVersion":"v1","kind":"Refused","metadata":{"name":"c"}}"#;
        /// apiVersion, kind and text of each object read.
        type Read<'a> = Vec<(&'a str, &'a str, &'a str)>;
        let cases: Vec<(&str, String, Option<Read>)> = vec![
            ("one object", service.to_owned(), Some(vec![("v1", "Service", service)])),
            ("one object, kind last", slice.to_owned(), Some(vec![("discovery.k8s.io/v1", "EndpointSlice", slice)])),
            ("a List", list.clone(), Some(vec![("v1", "Service", service), ("discovery.k8s.io/v1", "EndpointSlice", slice)])),
            ("a List, items before its kind", sorted_list, Some(vec![("discovery.k8s.io/v1", "EndpointSlice", slice)])),
            ("an empty List", r#"{"apiVersion":"v1","kind":"List","items":[]}"#.to_owned(), Some(vec![])),
            ("a List inside a List", nested, None),
            ("a List without items", r#"{"apiVersion":"v1","kind":"List"}"#.to_owned(), None),
            ("a List with items twice", r#"{"apiVersion":"v1","kind":"List","items":[],"items":[]}"#.to_owned(), None),
            ("a List with items twice, before its kind", r#"{"apiVersion":"v1","items":[],"items":[],"kind":"List"}"#.to_owned(), None),
            ("a member twice", r#"{"apiVersion":"v1","kind":"Service","metadata":{},"metadata":{"name":"a"}}"#.to_owned(), None),
            ("items in an object not a List", format!(r#"{{"items":[{service}],"apiVersion":"v1","kind":"Service"}}"#), None),
            ("an item the reader refuses", format!(r#"{{"apiVersion":"v1","kind":"List","items":[{service},{refused}]}}"#), None),
            ("an item not an object", format!(r#"{{"apiVersion":"v1","kind":"List","items":[{service},3]}}"#), None),
            ("no kind", r#"{"apiVersion":"v1","metadata":{}}"#.to_owned(), None),
            ("a kind with an escape", escaped.to_owned(), None),
            ("a kind not a string", r#"{"apiVersion":"v1","kind":3}"#.to_owned(), None),
            ("two objects", format!("{service}\n{service}"), None),
            ("a syntax error", service.replace('}', ""), None),
            ("YAML", "apiVersion: v1\nkind: Service\n".to_owned(), None),
        ];
        for (name, text, expected) in cases {
            let expected = expected.map(|objects| {
                let value = |text| serde_json::from_str::<Value>(text).unwrap();
                objects.into_iter().map(|(api_version, kind, text)| (api_version.to_owned(), kind.to_owned(), value(text))).collect::<Vec<_>>()
            });
            assert_eq!(read(&text, &AsValues), expected, "{name}");
        }
    }
}
