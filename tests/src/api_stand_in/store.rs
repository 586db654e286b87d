//! What the API stand-in holds: objects by resource, one resourceVersion
//! counter for all of them (as etcd's revision), and the history of changes
//! that watches replay. Pure: the server around it does the I/O.

use std::collections::{BTreeMap, VecDeque};

use serde_json::{Value, json};

/// A resource the stand-in serves, as its URL names it.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Resource {
    /// `api/v1` or `apis/<group>/<version>`.
    pub prefix: &'static str,
    pub plural: &'static str,
    pub kind: &'static str,
    pub namespaced: bool,
}

impl Resource {
    pub fn api_version(&self) -> &'static str {
        self.prefix.strip_prefix("apis/").or_else(|| self.prefix.strip_prefix("api/")).unwrap_or(self.prefix)
    }
}

/// Every resource the agent lists, watches or writes.
pub const RESOURCES: &[Resource] = &[
    Resource { prefix: "api/v1", plural: "services", kind: "Service", namespaced: true },
    Resource { prefix: "apis/discovery.k8s.io/v1", plural: "endpointslices", kind: "EndpointSlice", namespaced: true },
    Resource { prefix: "api/v1", plural: "nodes", kind: "Node", namespaced: false },
    Resource { prefix: "api/v1", plural: "pods", kind: "Pod", namespaced: true },
    Resource { prefix: "apis/networking.k8s.io/v1", plural: "ingresses", kind: "Ingress", namespaced: true },
    Resource { prefix: "apis/networking.k8s.io/v1", plural: "ingressclasses", kind: "IngressClass", namespaced: false },
    Resource { prefix: "api/v1", plural: "secrets", kind: "Secret", namespaced: true },
    Resource { prefix: "apis/events.k8s.io/v1", plural: "events", kind: "Event", namespaced: true },
    Resource { prefix: "api/v1", plural: "namespaces", kind: "Namespace", namespaced: false },
];

/// The Gateway API's CRDs: served only by a stand-in that has them
/// installed (`Store::with_gateway_api`).
pub const GATEWAY_API: &[Resource] = &[
    Resource { prefix: "apis/gateway.networking.k8s.io/v1", plural: "gatewayclasses", kind: "GatewayClass", namespaced: false },
    Resource { prefix: "apis/gateway.networking.k8s.io/v1", plural: "gateways", kind: "Gateway", namespaced: true },
    Resource { prefix: "apis/gateway.networking.k8s.io/v1", plural: "httproutes", kind: "HTTPRoute", namespaced: true },
    Resource { prefix: "apis/gateway.networking.k8s.io/v1beta1", plural: "referencegrants", kind: "ReferenceGrant", namespaced: true },
];

fn all_resources() -> impl Iterator<Item = Resource> {
    RESOURCES.iter().chain(GATEWAY_API).copied()
}

pub fn resource_of_kind(kind: &str) -> Option<Resource> {
    all_resources().find(|r| r.kind == kind)
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum EventType {
    Added,
    Modified,
    Deleted,
}

impl EventType {
    fn name(self) -> &'static str {
        match self {
            EventType::Added => "ADDED",
            EventType::Modified => "MODIFIED",
            EventType::Deleted => "DELETED",
        }
    }
}

#[derive(Clone, Debug)]
pub struct Change {
    pub resource: Resource,
    pub revision: u64,
    pub event: EventType,
    pub object: Value,
}

impl Change {
    /// One line of a watch response.
    pub fn watch_line(&self) -> String {
        json!({ "type": self.event.name(), "object": self.object }).to_string()
    }
}

/// `labelSelector` / `fieldSelector` terms of the form `key=value`, the only
/// form the agent uses.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct Selectors {
    pub labels: Vec<(String, String)>,
    pub fields: Vec<(String, String)>,
}

impl Selectors {
    pub fn parse(label_selector: Option<&str>, field_selector: Option<&str>) -> Selectors {
        let terms = |text: Option<&str>| -> Vec<(String, String)> {
            text.unwrap_or("")
                .split(',')
                .filter_map(|term| term.split_once('='))
                .map(|(k, v)| (k.trim().to_string(), v.trim().to_string()))
                .collect()
        };
        Selectors { labels: terms(label_selector), fields: terms(field_selector) }
    }

    pub fn matches(&self, object: &Value) -> bool {
        let label_ok = |(key, value): &(String, String)| object["metadata"]["labels"][key.as_str()].as_str() == Some(value);
        let field_ok = |(path, value): &(String, String)| {
            path.split('.').fold(object, |node, part| &node[part]).as_str() == Some(value.as_str())
        };
        self.labels.iter().all(label_ok) && self.fields.iter().all(field_ok)
    }
}

/// A watch asked for changes the history no longer holds: the API server's
/// `410 Gone`, after which a client re-lists.
#[derive(Debug, PartialEq)]
pub struct Expired {
    pub oldest_available: u64,
}

/// The stand-in's state. Changes older than `floor` are compacted away.
#[derive(Default)]
pub struct Store {
    /// Whether the Gateway API CRDs are installed.
    gateway_api: bool,
    revision: u64,
    floor: u64,
    objects: BTreeMap<Resource, BTreeMap<(String, String), Value>>,
    history: VecDeque<Change>,
}

/// How many changes the history keeps (the API server's watch cache keeps a
/// window too); watches from before it get 410.
const HISTORY: usize = 100_000;

impl Store {
    pub fn with_gateway_api() -> Store {
        Store { gateway_api: true, ..Store::default() }
    }

    /// The resource a URL's prefix and plural name, if this store serves it.
    pub fn served(&self, prefix: &str, plural: &str) -> Option<Resource> {
        let installed = |resource: &Resource| self.gateway_api || !GATEWAY_API.contains(resource);
        all_resources().filter(installed).find(|r| r.prefix == prefix && r.plural == plural)
    }

    pub fn revision(&self) -> u64 {
        self.revision
    }

    /// Applies a JSON merge patch (RFC 7386) to a stored object; on the
    /// `status` subresource only the patch's `status` counts, as the API
    /// server ignores the rest there.
    pub fn patch(&mut self, resource: Resource, namespace: &str, name: &str, patch: &Value, subresource: Option<&str>) -> Result<Change, PatchError> {
        let mut object = self.get(resource, namespace, name).ok_or(PatchError::NotFound)?.clone();
        match subresource {
            None => merge_patch(&mut object, patch),
            Some("status") => merge_patch(&mut object["status"], &patch["status"]),
            Some(other) => return Err(PatchError::Invalid(format!("subresource {other} is not served"))),
        }
        // The identity of the object is not the patch's to change.
        object["kind"] = json!(resource.kind);
        object["metadata"]["name"] = json!(name);
        if resource.namespaced {
            object["metadata"]["namespace"] = json!(namespace);
        }
        self.apply(object).map_err(PatchError::Invalid)
    }

    /// Creates or replaces the object `object["kind"]` names and returns the
    /// change, stamped with the next resourceVersion.
    pub fn apply(&mut self, mut object: Value) -> Result<Change, String> {
        let kind = object["kind"].as_str().ok_or("object without kind")?.to_string();
        let resource = resource_of_kind(&kind).ok_or_else(|| format!("kind {kind} is not served"))?;
        let key = object_key(&object)?;
        self.revision += 1;
        object["metadata"]["resourceVersion"] = json!(self.revision.to_string());
        let objects = self.objects.entry(resource).or_default();
        let event = if objects.insert(key, object.clone()).is_some() { EventType::Modified } else { EventType::Added };
        Ok(self.record(Change { resource, revision: self.revision, event, object }))
    }

    pub fn delete(&mut self, resource: Resource, namespace: &str, name: &str) -> Option<Change> {
        let mut object = self.objects.get_mut(&resource)?.remove(&(namespace.to_string(), name.to_string()))?;
        self.revision += 1;
        object["metadata"]["resourceVersion"] = json!(self.revision.to_string());
        Some(self.record(Change { resource, revision: self.revision, event: EventType::Deleted, object }))
    }

    fn record(&mut self, change: Change) -> Change {
        self.history.push_back(change.clone());
        while self.history.len() > HISTORY {
            if let Some(old) = self.history.pop_front() {
                self.floor = old.revision;
            }
        }
        change
    }

    /// Forgets every change so far: a watch resuming from any earlier
    /// resourceVersion gets 410 (what a compaction does).
    pub fn compact(&mut self) {
        self.history.clear();
        self.floor = self.revision;
    }

    pub fn get(&self, resource: Resource, namespace: &str, name: &str) -> Option<&Value> {
        self.objects.get(&resource)?.get(&(namespace.to_string(), name.to_string()))
    }

    /// A list response: items in key order from `offset`, at most `limit`,
    /// with a `continue` token when more remain.
    pub fn list(&self, resource: Resource, namespace: Option<&str>, selectors: &Selectors, limit: Option<usize>, offset: usize) -> Value {
        let matching: Vec<&Value> = self
            .objects
            .get(&resource)
            .into_iter()
            .flat_map(|objects| objects.iter())
            .filter(|((ns, _), _)| namespace.is_none_or(|wanted| wanted == ns))
            .map(|(_, object)| object)
            .filter(|object| selectors.matches(object))
            .collect();
        let end = limit.map_or(matching.len(), |limit| (offset + limit).min(matching.len()));
        let mut metadata = json!({ "resourceVersion": self.revision.to_string() });
        if end < matching.len() {
            metadata["continue"] = json!(end.to_string());
        }
        json!({
            "apiVersion": resource.api_version(),
            "kind": format!("{}List", resource.kind),
            "metadata": metadata,
            "items": matching.get(offset.min(end)..end).unwrap_or_default(),
        })
    }

    /// The changes of `resource` after `since` that `selectors` match, or
    /// [`Expired`] when the history no longer reaches back to `since`.
    pub fn changes_since(&self, resource: Resource, since: u64, selectors: &Selectors) -> Result<Vec<Change>, Expired> {
        if since < self.floor {
            return Err(Expired { oldest_available: self.floor });
        }
        Ok(self
            .history
            .iter()
            .filter(|change| change.revision > since && change.resource == resource && selectors.matches(&change.object))
            .cloned()
            .collect())
    }
}

#[derive(Debug, PartialEq)]
pub enum PatchError {
    NotFound,
    Invalid(String),
}

/// RFC 7386: an object patch merges key by key, `null` removes a key, any
/// other value replaces what was there (arrays whole).
pub fn merge_patch(target: &mut Value, patch: &Value) {
    let Value::Object(patch) = patch else {
        *target = patch.clone();
        return;
    };
    if !target.is_object() {
        *target = json!({});
    }
    let Value::Object(target) = target else { return };
    for (key, value) in patch {
        if value.is_null() {
            target.remove(key);
        } else {
            merge_patch(target.entry(key.clone()).or_insert(Value::Null), value);
        }
    }
}

fn object_key(object: &Value) -> Result<(String, String), String> {
    let metadata = &object["metadata"];
    let name = metadata["name"].as_str().ok_or("object without metadata.name")?;
    Ok((metadata["namespace"].as_str().unwrap_or("").to_string(), name.to_string()))
}

/// The watch event a client gets instead of changes it can no longer have.
pub fn expired_line(expired: &Expired) -> String {
    json!({
        "type": "ERROR",
        "object": {
            "kind": "Status",
            "apiVersion": "v1",
            "status": "Failure",
            "reason": "Expired",
            "code": 410,
            "message": format!("too old resource version (oldest available {})", expired.oldest_available),
        }
    })
    .to_string()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn service(name: &str, labels: Value) -> Value {
        json!({ "apiVersion": "v1", "kind": "Service", "metadata": { "name": name, "namespace": "default", "labels": labels } })
    }

    const SERVICES: Resource = RESOURCES[0];

    #[test]
    fn applies_stamp_revisions_and_tell_added_from_modified() {
        let mut store = Store::default();
        let first = store.apply(service("a", json!({}))).unwrap();
        let second = store.apply(service("a", json!({ "x": "1" }))).unwrap();
        assert_eq!((first.event, first.revision), (EventType::Added, 1));
        assert_eq!((second.event, second.revision), (EventType::Modified, 2));
        assert_eq!(store.get(SERVICES, "default", "a").unwrap()["metadata"]["resourceVersion"], "2");
        let deleted = store.delete(SERVICES, "default", "a").unwrap();
        assert_eq!((deleted.event, deleted.revision), (EventType::Deleted, 3));
        assert!(store.delete(SERVICES, "default", "a").is_none());
        assert!(store.apply(json!({ "kind": "Widget", "metadata": { "name": "w" } })).is_err());
    }

    #[test]
    fn lists_page_with_continue_tokens_and_filter_by_selectors() {
        let mut store = Store::default();
        for name in ["a", "b", "c"] {
            store.apply(service(name, json!({ "microservice": if name == "b" { "false" } else { "true" } }))).unwrap();
        }
        let all = Selectors::default();
        let page = store.list(SERVICES, None, &all, Some(2), 0);
        assert_eq!(page["items"].as_array().unwrap().len(), 2);
        assert_eq!(page["metadata"]["continue"], "2");
        assert_eq!(page["metadata"]["resourceVersion"], "3");
        let rest = store.list(SERVICES, None, &all, Some(2), 2);
        assert_eq!(rest["items"][0]["metadata"]["name"], "c");
        assert!(rest["metadata"].get("continue").is_none());
        let labelled = Selectors::parse(Some("microservice=true"), None);
        let listed = store.list(SERVICES, None, &labelled, None, 0);
        let names: Vec<&str> = listed["items"].as_array().unwrap().iter().map(|o| o["metadata"]["name"].as_str().unwrap()).collect();
        assert_eq!(names, ["a", "c"]);
        let by_name = Selectors::parse(None, Some("metadata.name=b"));
        assert_eq!(store.list(SERVICES, Some("default"), &by_name, None, 0)["items"].as_array().unwrap().len(), 1);
        assert_eq!(store.list(SERVICES, Some("other"), &by_name, None, 0)["items"].as_array().unwrap().len(), 0);
    }

    #[test]
    fn merge_patches_follow_rfc_7386() {
        // The RFC's appendix A examples.
        let cases = [
            (json!({"a": "b"}), json!({"a": "c"}), json!({"a": "c"})),
            (json!({"a": "b"}), json!({"b": "c"}), json!({"a": "b", "b": "c"})),
            (json!({"a": "b"}), json!({"a": null}), json!({})),
            (json!({"a": "b", "b": "c"}), json!({"a": null}), json!({"b": "c"})),
            (json!({"a": ["b"]}), json!({"a": "c"}), json!({"a": "c"})),
            (json!({"a": "c"}), json!({"a": ["b"]}), json!({"a": ["b"]})),
            (json!({"a": {"b": "c"}}), json!({"a": {"b": "d", "c": null}}), json!({"a": {"b": "d"}})),
            (json!({"a": [{"b": "c"}]}), json!({"a": [1]}), json!({"a": [1]})),
            (json!(["a", "b"]), json!(["c", "d"]), json!(["c", "d"])),
            (json!({"a": "b"}), json!(["c"]), json!(["c"])),
            (json!({"a": "foo"}), json!(null), json!(null)),
            (json!({"a": "foo"}), json!("bar"), json!("bar")),
            (json!({"e": null}), json!({"a": 1}), json!({"e": null, "a": 1})),
            (json!([1, 2]), json!({"a": "b", "c": null}), json!({"a": "b"})),
            (json!({}), json!({"a": {"bb": {"ccc": null}}}), json!({"a": {"bb": {}}})),
        ];
        for (target, patch, expected) in cases {
            let mut patched = target.clone();
            merge_patch(&mut patched, &patch);
            assert_eq!(patched, expected, "{target} patched with {patch}");
        }
    }

    #[test]
    fn patches_of_the_status_subresource_change_only_the_status() {
        let mut store = Store::default();
        store.apply(service("a", json!({ "x": "1" }))).unwrap();
        let patch = json!({ "metadata": { "labels": { "x": "2" } }, "status": { "loadBalancer": { "ingress": [{ "ip": "192.0.2.1" }] } } });
        let change = store.patch(SERVICES, "default", "a", &patch, Some("status")).unwrap();
        assert_eq!((change.event, change.revision), (EventType::Modified, 2));
        let stored = store.get(SERVICES, "default", "a").unwrap();
        assert_eq!(stored["metadata"]["labels"]["x"], "1");
        assert_eq!(stored["status"]["loadBalancer"]["ingress"][0]["ip"], "192.0.2.1");
        store.patch(SERVICES, "default", "a", &json!({ "metadata": { "labels": { "x": null, "y": "3" } } }), None).unwrap();
        let stored = store.get(SERVICES, "default", "a").unwrap();
        assert_eq!(stored["metadata"]["labels"], json!({ "y": "3" }));
        assert_eq!(stored["status"]["loadBalancer"]["ingress"][0]["ip"], "192.0.2.1");
        assert_eq!(store.patch(SERVICES, "default", "b", &json!({}), None).unwrap_err(), PatchError::NotFound);
        assert!(matches!(store.patch(SERVICES, "default", "a", &json!({}), Some("scale")), Err(PatchError::Invalid(_))));
    }

    #[test]
    fn the_gateway_api_is_served_only_where_installed() {
        let gateways = ("apis/gateway.networking.k8s.io/v1", "gateways");
        assert_eq!(Store::default().served(gateways.0, gateways.1), None);
        assert_eq!(Store::with_gateway_api().served(gateways.0, gateways.1).map(|r| r.kind), Some("Gateway"));
        assert_eq!(Store::default().served("api/v1", "services"), Some(SERVICES));
    }

    #[test]
    fn watches_replay_what_came_after_and_expire_after_a_compaction() {
        let mut store = Store::default();
        store.apply(service("a", json!({}))).unwrap();
        store.apply(service("b", json!({}))).unwrap();
        let all = Selectors::default();
        let revisions: Vec<u64> = store.changes_since(SERVICES, 1, &all).unwrap().iter().map(|c| c.revision).collect();
        assert_eq!(revisions, [2]);
        store.compact();
        assert_eq!(store.changes_since(SERVICES, 1, &all).unwrap_err(), Expired { oldest_available: 2 });
        assert!(store.changes_since(SERVICES, 2, &all).unwrap().is_empty());
        assert!(expired_line(&Expired { oldest_available: 2 }).contains("\"code\":410"));
    }
}
