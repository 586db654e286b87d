//! Standalone mode's source: a directory of the same manifests one would
//! `kubectl apply` (YAML or JSON). Parsing is lenient the way an operator expects: one bad
//! document or file is reported and skipped, the rest is still programmed.

use std::path::{Path, PathBuf};
use std::sync::Arc;

use anyhow::Context;
use foldhash::HashMap;
use k8s_openapi::Metadata;
use k8s_openapi::api::core::v1::{Namespace, Node, Pod, Secret, Service};
use k8s_openapi::api::discovery::v1::EndpointSlice;
use k8s_openapi::api::networking::v1::{Ingress, IngressClass};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;
use serde::de::DeserializeOwned;
use serde::{Deserialize, Deserializer};
use serde_yaml::Value;

use crate::gateway::types::{Gateway, GatewayClass, HttpRoute, ReferenceGrant};

mod plain_documents;
mod plain_json;
#[cfg(test)]
mod plain_paths_tests;
use crate::problem::{Location, Problem, ProblemKind};

/// Where an object was read from, so that problems `translate` finds later
/// can still point at the file.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Source {
    pub file: String,
    /// 1-based.
    pub document: usize,
}

/// The objects the node is programmed from: the L4 dataplane from Services
/// and EndpointSlices, the L7 routes also from the rest. Services and
/// EndpointSlices, tens of thousands in a large cluster, are shared with the
/// source's own copy (and the reflector stores'), so that a snapshot that
/// differs from the last one by one object costs a pointer per object to
/// make, not a deep copy of every object.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct Snapshot {
    pub services: Vec<Arc<Service>>,
    pub endpoint_slices: Vec<Arc<EndpointSlice>>,
    /// Pods labelled `microservice: "true"` (annotation-routed).
    pub pods: Vec<Pod>,
    pub ingresses: Vec<Ingress>,
    pub ingress_classes: Vec<IngressClass>,
    /// TLS Secrets referenced by served Ingresses and Gateways.
    pub secrets: Vec<Secret>,
    pub gateway_classes: Vec<GatewayClass>,
    pub gateways: Vec<Gateway>,
    pub http_routes: Vec<HttpRoute>,
    pub reference_grants: Vec<ReferenceGrant>,
    /// For Gateway listeners that admit routes by namespace labels.
    pub namespaces: Vec<Namespace>,
    /// The one named like this node gives the NodePort addresses (the API
    /// source watches only that one).
    pub nodes: Vec<Node>,
    /// Keyed by `object_label`; empty for objects from the API server.
    /// Shared: a snapshot patched in place keeps every object's source.
    /// Hashed: a pass looks every Service and EndpointSlice up by its
    /// label, and labels share long prefixes that a tree compares again at
    /// every level.
    pub sources: Arc<HashMap<String, Source>>,
    /// What the source knows about which objects stayed the same.
    pub versions: Versions,
}

/// A version per Service and per EndpointSlice, in the order of
/// `Snapshot::services` and `Snapshot::endpoint_slices`, where the source
/// keeps them (files: one per parse of a document, so an equal version
/// means the same object from the same place); empty where it does not.
/// Only a hint for caches: two snapshots are equal whatever their versions.
#[derive(Clone, Debug, Default)]
pub struct Versions {
    pub services: Vec<u64>,
    pub endpoint_slices: Vec<u64>,
    /// This snapshot's number, unique in the process (0: none).
    pub revision: u64,
    /// How this snapshot differs from the one numbered `since`, where the
    /// source knows it did only by objects replaced in place.
    pub replaced: Option<Replaced>,
}

/// Objects replaced in place since each snapshot of `since`: the same kinds,
/// names and sources at the same indexes, only their contents may differ.
/// Every other object and problem is as it was.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Replaced {
    /// The revisions this snapshot differs from only by the objects below:
    /// the one before it, and older ones where the source keeps a chain of
    /// patches (a reader that skipped snapshots can still patch).
    pub since: Vec<u64>,
    /// Indexes into `Snapshot::services` and `Snapshot::endpoint_slices`.
    pub services: Vec<usize>,
    pub endpoint_slices: Vec<usize>,
    /// Whether objects of other kinds (Pods, Ingresses, ...) were replaced.
    pub others: bool,
}

impl PartialEq for Versions {
    fn eq(&self, _: &Versions) -> bool {
        true
    }
}

impl Versions {
    /// The versions of `snapshot`'s Services and EndpointSlices, if it has
    /// one for each.
    pub fn of(snapshot: &Snapshot) -> Option<&Versions> {
        let versions = &snapshot.versions;
        let complete = versions.services.len() == snapshot.services.len()
            && versions.endpoint_slices.len() == snapshot.endpoint_slices.len()
            && !(snapshot.services.is_empty() && snapshot.endpoint_slices.is_empty());
        complete.then_some(versions)
    }
}

/// Numbers parsed documents and snapshots: never the same twice in a process.
static NEXT_VERSION: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(1);

/// A number never handed out before in this process.
pub fn next_version() -> u64 {
    NEXT_VERSION.fetch_add(1, std::sync::atomic::Ordering::Relaxed)
}

impl Snapshot {
    /// The location of an object, with its file when it came from one.
    pub fn location(&self, kind: &str, metadata: &ObjectMeta) -> Location {
        let object = object_label(kind, metadata);
        let source = self.sources.get(&object);
        Location {
            file: source.map(|source| source.file.clone()),
            document: source.map(|source| source.document),
            object: Some(object),
        }
    }
}

/// "Kind namespace/name", as problems and logs name objects.
pub fn object_label(kind: &str, metadata: &ObjectMeta) -> String {
    let namespace = metadata.namespace.as_deref().unwrap_or("default");
    format!("{kind} {namespace}/{}", metadata.name.as_deref().unwrap_or(""))
}

#[derive(Clone, Debug, Default, PartialEq)]
pub struct Loaded {
    pub snapshot: Snapshot,
    /// Documents of kinds the dataplane does not use (Deployments, ...).
    pub ignored: usize,
    pub problems: Vec<Problem>,
}

/// Whether `path` is named like a manifest file: YAML (`.yaml`, `.yml`) or
/// JSON (`.json`, one object or a `List` of them, as `kubectl get -o json`
/// prints).
pub fn is_manifest_name(path: &Path) -> bool {
    path.extension().is_some_and(|ext| ext == "yaml" || ext == "yml" || ext == "json")
}

fn is_json_name(file: &str) -> bool {
    Path::new(file).extension().is_some_and(|ext| ext == "json")
}

/// The manifest files of `dir` (see [`is_manifest_name`]; not recursive),
/// in name order so that "first wins" conflicts are reproducible.
pub fn manifest_files(dir: &Path) -> anyhow::Result<Vec<PathBuf>> {
    let read_error = || format!("reading the manifest directory {}", dir.display());
    let mut files = Vec::new();
    for entry in std::fs::read_dir(dir).with_context(read_error)? {
        let path = entry.with_context(read_error)?.path();
        if is_manifest_name(&path) && path.is_file() {
            files.push(path);
        }
    }
    files.sort();
    Ok(files)
}

/// Reads every manifest file of `dir` (see [`manifest_files`]). Only an
/// unreadable directory is an error; an unreadable file is a problem.
pub fn load_dir(dir: &Path) -> anyhow::Result<Loaded> {
    let files = manifest_files(dir)?;
    let parsed = read_files(&files);
    let mut loaded = Loaded::default();
    for file in &parsed {
        loaded.add_file(file);
    }
    Ok(loaded)
}

/// Reads and parses `paths`, on as many threads as there are cores (a large
/// directory is mostly parsing), in the order given.
pub fn read_files(paths: &[PathBuf]) -> Vec<ParsedFile> {
    crate::parallel::map(paths.iter().collect(), 1, |path| read_file(path))
}

/// Reads and parses one manifest file; an unreadable one is a problem.
pub fn read_file(path: &Path) -> ParsedFile {
    let file = path.display().to_string();
    match std::fs::read_to_string(path) {
        Ok(text) => parse_file(&file, &text),
        Err(error) => {
            let at = Location { file: Some(file), ..Location::default() };
            let problem = Problem::error(ProblemKind::UnreadableFile, at, format!("cannot read: {error}, file skipped"));
            ParsedFile { docs: vec![Doc::Problem(problem)], ignored: 0 }
        }
    }
}

/// Parses a multi-document YAML text; `file` only labels the problems.
pub fn parse_documents(file: &str, text: &str) -> Loaded {
    let mut loaded = Loaded::default();
    loaded.add_file(&parse_file(file, text));
    loaded
}

/// One file's documents, parsed without looking at any other file: the unit
/// the directory source re-reads when a file changes. [`Loaded::add_file`]
/// puts files together, deciding which of two definitions of an object wins.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct ParsedFile {
    docs: Vec<Doc>,
    /// Documents of kinds the dataplane does not use.
    ignored: usize,
}

#[derive(Clone, Debug, PartialEq)]
enum Doc {
    /// A problem of the document itself (syntax, not an object, no name).
    Problem(Problem),
    /// A named object, or why it could not be read: whether it is used
    /// depends on the files before it (the first definition wins).
    Object {
        label: String,
        at: Location,
        parsed: Result<(Object, Vec<Problem>), Problem>,
        /// This parse of the document (see [`Versions`]).
        version: Version,
    },
}

/// The kinds the agent uses (boxed: they differ a lot in size).
#[derive(Clone, Debug, PartialEq)]
enum Object {
    Service(Arc<Service>),
    EndpointSlice(Arc<EndpointSlice>),
    Pod(Box<Pod>),
    Secret(Box<Secret>),
    Node(Box<Node>),
    Ingress(Box<Ingress>),
    IngressClass(Box<IngressClass>),
    Namespace(Box<Namespace>),
    GatewayClass(Box<GatewayClass>),
    Gateway(Box<Gateway>),
    HttpRoute(Box<HttpRoute>),
    ReferenceGrant(Box<ReferenceGrant>),
}

/// Parses every document of `text`; `file` labels the problems and sources
/// and says whether the text is JSON (its name ends in `.json`).
pub fn parse_file(file: &str, text: &str) -> ParsedFile {
    parse_plain(file, text).unwrap_or_else(|| parse_through_values(file, text))
}

/// [`parse_file`] for the common case, read straight into the agent's
/// types: a file of the plain shape (see [`plain_documents`] and
/// [`plain_json`]) whose every object is of a kind the agent reads and
/// reads without any problem. Anything else gives `None`, and the general
/// path reads the whole file, reporting exactly as it does.
fn parse_plain(file: &str, text: &str) -> Option<ParsedFile> {
    let docs = match is_json_name(file) {
        true => plain_json::read(text, &PlainJson { file })?,
        false => {
            let mut docs = Vec::new();
            for document in plain_documents::split(text)? {
                let at = Location { file: Some(file.to_owned()), document: Some(document.number), object: None };
                let reader = FromDeserializer { at, object: serde_yaml::Deserializer::from_str(document.text) };
                docs.push(read_kind(document.api_version, document.kind, reader)??);
            }
            docs
        }
    };
    Some(ParsedFile { docs, ignored: 0 })
}

/// Reads the objects of a plain JSON file (its one document).
struct PlainJson<'a> {
    file: &'a str,
}

impl plain_json::ReadObject for PlainJson<'_> {
    type Object = Doc;
    fn read<'de, D: Deserializer<'de>>(&self, api_version: &str, kind: &str, object: D) -> Option<Doc> {
        let at = Location { file: Some(self.file.to_owned()), document: Some(1), object: None };
        read_kind(api_version, kind, FromDeserializer { at, object })?
    }
}

/// [`parse_file`] for any text (JSON is YAML too): each document parsed to
/// a YAML value first, which tells its kind and every problem it has.
fn parse_through_values(file: &str, text: &str) -> ParsedFile {
    let mut parsed = ParsedFile::default();
    for (index, document) in serde_yaml::Deserializer::from_str(text).enumerate() {
        let at = Location {
            file: Some(file.to_owned()),
            document: Some(index + 1),
            object: None,
        };
        match Value::deserialize(document) {
            Ok(value) => parsed.add_document(at, value),
            Err(error) => {
                // libyaml cannot resume after a syntax error (it would repeat
                // it forever): the documents before it are kept.
                let message = format!("{error}; rest of the file skipped");
                let kind = if is_json_name(file) { ProblemKind::JsonSyntax } else { ProblemKind::YamlSyntax };
                parsed.docs.push(Doc::Problem(Problem::error(kind, at, message)));
                break;
            }
        }
    }
    parsed
}

/// Where each document of a file landed in a [`Loaded`]: the index of its
/// object in the vector of its kind, `None` for a document that added no
/// object (a problem, a later definition of an object).
pub type Placement = Vec<Option<usize>>;

impl Loaded {
    /// Adds a file's objects and problems after those of the files added
    /// before it. An object already defined keeps its first definition; the
    /// later one is reported.
    pub fn add_file(&mut self, parsed: &ParsedFile) -> Placement {
        self.ignored += parsed.ignored;
        let mut placement = Vec::with_capacity(parsed.docs.len());
        let snapshot = &mut self.snapshot;
        let sources = Arc::make_mut(&mut snapshot.sources);
        for doc in &parsed.docs {
            placement.push(None);
            let (label, at, result, version) = match doc {
                Doc::Problem(problem) => {
                    self.problems.push(problem.clone());
                    continue;
                }
                Doc::Object { label, at, parsed, version } => (label, at, parsed, version.0),
            };
            if let Some(first) = sources.get(label) {
                let message = format!(
                    "also defined in {} doc {}, which wins; object skipped",
                    first.file, first.document
                );
                self.problems.push(Problem::error(ProblemKind::InvalidDocument, at.clone(), message));
                continue;
            }
            let (object, warnings) = match result {
                Ok(parsed) => parsed,
                Err(problem) => {
                    self.problems.push(problem.clone());
                    continue;
                }
            };
            self.problems.extend(warnings.iter().cloned());
            let source = Source {
                file: at.file.clone().unwrap_or_default(),
                document: at.document.unwrap_or(0),
            };
            sources.insert(label.clone(), source);
            let index = match object {
                Object::Service(object) => {
                    snapshot.versions.services.push(version);
                    push(&mut snapshot.services, object.clone())
                }
                Object::EndpointSlice(object) => {
                    snapshot.versions.endpoint_slices.push(version);
                    push(&mut snapshot.endpoint_slices, object.clone())
                }
                Object::Pod(object) => push(&mut snapshot.pods, (**object).clone()),
                Object::Secret(object) => push(&mut snapshot.secrets, (**object).clone()),
                Object::Node(object) => push(&mut snapshot.nodes, (**object).clone()),
                Object::Ingress(object) => push(&mut snapshot.ingresses, (**object).clone()),
                Object::IngressClass(object) => push(&mut snapshot.ingress_classes, (**object).clone()),
                Object::Namespace(object) => push(&mut snapshot.namespaces, (**object).clone()),
                Object::GatewayClass(object) => push(&mut snapshot.gateway_classes, (**object).clone()),
                Object::Gateway(object) => push(&mut snapshot.gateways, (**object).clone()),
                Object::HttpRoute(object) => push(&mut snapshot.http_routes, (**object).clone()),
                Object::ReferenceGrant(object) => push(&mut snapshot.reference_grants, (**object).clone()),
            };
            *placement.last_mut().expect("pushed above") = Some(index);
        }
        placement
    }

    /// Puts `new`, a new parse of a file added as `old` with `placement`,
    /// in its place, if it has the same shape (see [`ParsedFile::same_shape`]):
    /// every object replaced in place, `replaced` told which. Gives what
    /// adding every file again would, at the cost of the one file. `false`
    /// (and nothing changed) when the shapes differ.
    pub fn replace_file(&mut self, old: &ParsedFile, new: &ParsedFile, placement: &Placement, replaced: &mut Replaced) -> bool {
        if !old.same_shape(new) || placement.len() != new.docs.len() {
            return false;
        }
        let snapshot = &mut self.snapshot;
        for (doc, index) in new.docs.iter().zip(placement) {
            let (Some(index), Doc::Object { parsed: Ok((object, _)), version, .. }) = (index, doc) else { continue };
            let index = *index;
            match object {
                Object::Service(object) => {
                    snapshot.services[index] = object.clone();
                    snapshot.versions.services[index] = version.0;
                    replaced.services.push(index);
                }
                Object::EndpointSlice(object) => {
                    snapshot.endpoint_slices[index] = object.clone();
                    snapshot.versions.endpoint_slices[index] = version.0;
                    replaced.endpoint_slices.push(index);
                }
                Object::Pod(object) => snapshot.pods[index] = (**object).clone(),
                Object::Secret(object) => snapshot.secrets[index] = (**object).clone(),
                Object::Node(object) => snapshot.nodes[index] = (**object).clone(),
                Object::Ingress(object) => snapshot.ingresses[index] = (**object).clone(),
                Object::IngressClass(object) => snapshot.ingress_classes[index] = (**object).clone(),
                Object::Namespace(object) => snapshot.namespaces[index] = (**object).clone(),
                Object::GatewayClass(object) => snapshot.gateway_classes[index] = (**object).clone(),
                Object::Gateway(object) => snapshot.gateways[index] = (**object).clone(),
                Object::HttpRoute(object) => snapshot.http_routes[index] = (**object).clone(),
                Object::ReferenceGrant(object) => snapshot.reference_grants[index] = (**object).clone(),
            }
            replaced.others |= !matches!(object, Object::Service(_) | Object::EndpointSlice(_));
        }
        true
    }
}

/// Pushes `item` and returns its index.
fn push<T>(items: &mut Vec<T>, item: T) -> usize {
    items.push(item);
    items.len() - 1
}

impl ParsedFile {
    /// Whether `other` has the same documents but for the contents of its
    /// objects: the same problems, ignored documents, object labels,
    /// locations and kinds, each read or not read alike. A file rewritten
    /// with other contents for the same objects (an endpoint moved) has
    /// the same shape, so its objects can replace the old ones in place.
    fn same_shape(&self, other: &ParsedFile) -> bool {
        self.ignored == other.ignored
            && self.docs.len() == other.docs.len()
            && self.docs.iter().zip(&other.docs).all(|pair| match pair {
                (Doc::Problem(a), Doc::Problem(b)) => a == b,
                (Doc::Object { label, at, parsed, .. }, Doc::Object { label: other_label, at: other_at, parsed: other_parsed, .. }) => {
                    let same_result = match (parsed, other_parsed) {
                        (Ok((a, warnings)), Ok((b, other_warnings))) => {
                            std::mem::discriminant(a) == std::mem::discriminant(b) && warnings == other_warnings
                        }
                        (Err(a), Err(b)) => a == b,
                        _ => false,
                    };
                    label == other_label && at == other_at && same_result
                }
                _ => false,
            })
    }

    fn add_document(&mut self, at: Location, value: Value) {
        if value.is_null() {
            return;
        }
        if value.get("apiVersion").and_then(Value::as_str) == Some("v1") && value.get("kind").and_then(Value::as_str) == Some("List") {
            return self.add_list(at, value);
        }
        // Owned: the value itself goes to the reader.
        let api_version = value.get("apiVersion").and_then(Value::as_str).map(str::to_owned);
        let kind = value.get("kind").and_then(Value::as_str).map(str::to_owned);
        let doc = match (api_version.as_deref(), kind.as_deref()) {
            (Some(api_version), Some(kind)) => match read_kind(api_version, kind, FromValue { at: at.clone(), value }) {
                Some(doc) => doc,
                None => {
                    tracing::debug!(%at, api_version, kind, "ignoring a kind the dataplane does not use");
                    self.ignored += 1;
                    return;
                }
            },
            _ => Doc::Problem(Problem::error(
                ProblemKind::InvalidDocument,
                at,
                "not an object with apiVersion and kind, document skipped",
            )),
        };
        self.docs.push(doc);
    }

    /// A `List` document (what `kubectl get -o yaml|json` prints): its items
    /// are read as documents of their own at its location; a problem of an
    /// item names it (`items[2]`) where the item has no name to go by.
    fn add_list(&mut self, at: Location, mut list: Value) {
        let Some(Value::Sequence(items)) = list.get_mut("items").map(std::mem::take) else {
            let problem = Problem::error(ProblemKind::InvalidDocument, at, "a List without a list of items, document skipped");
            self.docs.push(Doc::Problem(problem.at("items")));
            return;
        };
        for (index, item) in items.into_iter().enumerate() {
            let first_new = self.docs.len();
            if item.get("kind").and_then(Value::as_str) == Some("List") {
                let problem = Problem::error(ProblemKind::InvalidDocument, at.clone(), "a List inside a List, item skipped");
                self.docs.push(Doc::Problem(problem));
            } else {
                self.add_document(at.clone(), item);
            }
            for doc in &mut self.docs[first_new..] {
                if let Doc::Problem(problem) = doc {
                    let field = problem.field.take().map_or_else(String::new, |field| format!(".{field}"));
                    problem.field = Some(format!("items[{index}]{field}"));
                }
            }
        }
    }
}

const GATEWAY_V1: &str = "gateway.networking.k8s.io/v1";
const GATEWAY_V1BETA1: &str = "gateway.networking.k8s.io/v1beta1";

/// Reads a document as the object type its `apiVersion` and `kind` name.
trait ReadAs {
    type Read;
    fn read_as<T>(self, wrap: fn(T) -> Object) -> Self::Read
    where
        T: DeserializeOwned + Metadata<Ty = ObjectMeta>;
}

/// `reader`'s document read as the kind `api_version` and `kind` name;
/// `None` for a kind the dataplane does not use.
fn read_kind<R: ReadAs>(api_version: &str, kind: &str, reader: R) -> Option<R::Read> {
    Some(match (api_version, kind) {
        ("v1", "Service") => reader.read_as(|o| Object::Service(Arc::new(o))),
        ("discovery.k8s.io/v1", "EndpointSlice") => reader.read_as(|o| Object::EndpointSlice(Arc::new(o))),
        ("v1", "Pod") => reader.read_as(|o| Object::Pod(Box::new(o))),
        ("v1", "Secret") => reader.read_as(|o| Object::Secret(Box::new(o))),
        ("v1", "Node") => reader.read_as(|o| Object::Node(Box::new(o))),
        ("networking.k8s.io/v1", "Ingress") => reader.read_as(|o| Object::Ingress(Box::new(o))),
        ("networking.k8s.io/v1", "IngressClass") => reader.read_as(|o| Object::IngressClass(Box::new(o))),
        ("v1", "Namespace") => reader.read_as(|o| Object::Namespace(Box::new(o))),
        (GATEWAY_V1, "GatewayClass") => reader.read_as(|o| Object::GatewayClass(Box::new(o))),
        (GATEWAY_V1, "Gateway") => reader.read_as(|o| Object::Gateway(Box::new(o))),
        (GATEWAY_V1, "HTTPRoute") => reader.read_as(|o| Object::HttpRoute(Box::new(o))),
        (GATEWAY_V1BETA1, "ReferenceGrant") => reader.read_as(|o| Object::ReferenceGrant(Box::new(o))),
        _ => return None,
    })
}

/// A document already parsed to a YAML value: every problem it has is
/// reported (see [`object`]).
struct FromValue {
    at: Location,
    value: Value,
}

impl ReadAs for FromValue {
    type Read = Doc;
    fn read_as<T>(self, wrap: fn(T) -> Object) -> Doc
    where
        T: DeserializeOwned + Metadata<Ty = ObjectMeta>,
    {
        object(self.at, self.value, wrap)
    }
}

/// One object, read only if it has no problem at all.
struct FromDeserializer<D> {
    at: Location,
    object: D,
}

impl<'de, D: Deserializer<'de>> ReadAs for FromDeserializer<D> {
    type Read = Option<Doc>;
    fn read_as<T>(self, wrap: fn(T) -> Object) -> Option<Doc>
    where
        T: DeserializeOwned + Metadata<Ty = ObjectMeta>,
    {
        let mut unknown_fields = false;
        let object: T = serde_ignored::deserialize(self.object, |_: serde_ignored::Path| unknown_fields = true).ok()?;
        let named = !object.metadata().name.as_deref().unwrap_or("").is_empty();
        (named && !unknown_fields).then(|| read_object(self.at, object, Vec::new(), wrap))
    }
}

/// An object read without errors: labelled, its namespace defaulted as
/// `kubectl apply` would, its unknown fields (`unknown`) warnings.
fn read_object<T>(mut at: Location, mut object: T, unknown: Vec<String>, wrap: fn(T) -> Object) -> Doc
where
    T: Metadata<Ty = ObjectMeta>,
{
    object.metadata_mut().namespace.get_or_insert_with(|| "default".to_owned());
    let label = object_label(T::KIND, object.metadata());
    at.object = Some(label.clone());
    let warnings = unknown
        .into_iter()
        .map(|field| Problem::warning(ProblemKind::UnknownField, at.clone(), "unknown field, ignored").at(field))
        .collect();
    Doc::Object { label, at, parsed: Ok((wrap(object), warnings)), version: Version(next_version()) }
}

/// Deserializes one object. Unknown fields (typos such as `nodeport`) are
/// warnings, not errors: the API server would also drop them.
fn object<T>(mut at: Location, value: Value, wrap: fn(T) -> Object) -> Doc
where
    T: DeserializeOwned + Metadata<Ty = ObjectMeta>,
{
    let name = |field: &str| value.get("metadata").and_then(|m| m.get(field)).and_then(Value::as_str);
    let metadata = ObjectMeta {
        namespace: name("namespace").map(str::to_owned),
        name: name("name").map(str::to_owned),
        ..ObjectMeta::default()
    };
    let label = object_label(T::KIND, &metadata);
    at.object = Some(label.clone());
    if metadata.name.as_deref().unwrap_or("").is_empty() {
        let problem = Problem::error(ProblemKind::InvalidDocument, at, "no name, object skipped");
        return Doc::Problem(problem.at("metadata.name"));
    }

    let mut unknown = Vec::new();
    let mut record = |path: serde_ignored::Path| unknown.push(field_path(&path));
    let result = serde_path_to_error::deserialize::<_, T>(serde_ignored::Deserializer::new(value, &mut record));
    match result {
        Ok(object) => read_object(at, object, unknown, wrap),
        Err(error) => {
            let field = error.path().to_string();
            let problem = Problem::error(
                ProblemKind::InvalidField,
                at.clone(),
                format!("{}, object skipped", error.inner()),
            );
            let problem = if field == "." { problem } else { problem.at(field) };
            Doc::Object { label, at, parsed: Err(problem), version: Version(next_version()) }
        }
    }
}

/// A parse's number: equal whatever the numbers, so that a file parsed
/// again to the same documents compares equal to its last parse.
#[derive(Clone, Copy, Debug)]
struct Version(u64);

impl PartialEq for Version {
    fn eq(&self, _: &Version) -> bool {
        true
    }
}

/// Formats like serde_path_to_error does (`spec.ports[0].port`), so that both
/// kinds of problem name fields the same way.
fn field_path(path: &serde_ignored::Path) -> String {
    use serde_ignored::Path;
    match path {
        Path::Root => String::new(),
        Path::Seq { parent, index } => format!("{}[{index}]", field_path(parent)),
        Path::Map { parent, key } => match field_path(parent) {
            parent if parent.is_empty() => key.clone(),
            parent => format!("{parent}.{key}"),
        },
        Path::Some { parent } | Path::NewtypeStruct { parent } | Path::NewtypeVariant { parent } => field_path(parent),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::problem::Severity;

    const SERVICE: &str = "apiVersion: v1\nkind: Service\nmetadata: {name: web, namespace: prod}\n\
                           spec: {clusterIP: 10.96.0.1, ports: [{port: 80}]}\n";
    const SLICE: &str = "apiVersion: discovery.k8s.io/v1\nkind: EndpointSlice\nmetadata: {name: web-1}\n\
                         addressType: IPv4\nendpoints: [{addresses: [10.0.0.1]}]\n";

    type Expected = &'static [(ProblemKind, Severity, Option<&'static str>, &'static str)];
    type Case = (&'static str, String, (usize, usize, usize), Expected);

    #[test]
    fn parse_documents_table() {
        let multi =
            format!("{SERVICE}---\n{SLICE}---\n---\napiVersion: apps/v1\nkind: Deployment\nmetadata: {{name: x}}\n");
        let cases: Vec<Case> = vec![
            ("multi-document, empty and ignored kinds", multi, (1, 1, 1), &[]),
            (
                "unknown field is a warning naming its path",
                SERVICE.replace("{port: 80}", "{port: 80, nodeport: 30080}"),
                (1, 0, 0),
                &[(
                    ProblemKind::UnknownField,
                    Severity::Warning,
                    Some("spec.ports[0].nodeport"),
                    "doc 1 (Service prod/web)",
                )],
            ),
            (
                "wrong type is an error naming its path",
                SERVICE.replace("port: 80", "port: eighty"),
                (0, 0, 0),
                &[(
                    ProblemKind::InvalidField,
                    Severity::Error,
                    Some("spec.ports[0].port"),
                    "(Service prod/web)",
                )],
            ),
            (
                "syntax error keeps the documents before it",
                format!("{SERVICE}---\nkind: [Service\n---\n{SLICE}"),
                (1, 0, 0),
                &[(ProblemKind::YamlSyntax, Severity::Error, None, "a.yaml doc 2: ")],
            ),
            (
                "documents that are not objects",
                "- a list\n---\nkind: Service\n---\njust a string\n".to_owned(),
                (0, 0, 0),
                &[
                    (ProblemKind::InvalidDocument, Severity::Error, None, "doc 1"),
                    (ProblemKind::InvalidDocument, Severity::Error, None, "doc 2"),
                    (ProblemKind::InvalidDocument, Severity::Error, None, "doc 3"),
                ],
            ),
            (
                "nameless and duplicate objects",
                format!("{SERVICE}---\n{SERVICE}---\n{}", SERVICE.replace("name: web, ", "")),
                (1, 0, 0),
                &[
                    (
                        ProblemKind::InvalidDocument,
                        Severity::Error,
                        None,
                        "doc 2 (Service prod/web): also defined in a.yaml doc 1",
                    ),
                    (
                        ProblemKind::InvalidDocument,
                        Severity::Error,
                        Some("metadata.name"),
                        "doc 3",
                    ),
                ],
            ),
            (
                "a List's items are read as documents, each problem naming its item",
                format!(
                    "apiVersion: v1\nkind: List\nitems:\n- {}- {}- {}- {{kind: Service}}\n- apiVersion: apps/v1\n  kind: Deployment\n  metadata: {{name: d}}\n- {{apiVersion: v1, kind: List, items: []}}\n",
                    indent_item(SERVICE),
                    indent_item(&SLICE.replace("addressType", "adressType: x\naddressType")),
                    indent_item(&SERVICE.replace("name: web, ", ""))
                ),
                (1, 1, 1),
                &[
                    (ProblemKind::UnknownField, Severity::Warning, Some("adressType"), "doc 1 (EndpointSlice default/web-1)"),
                    (ProblemKind::InvalidDocument, Severity::Error, Some("items[2].metadata.name"), "no name, object skipped"),
                    (ProblemKind::InvalidDocument, Severity::Error, Some("items[3]"), "not an object with apiVersion and kind"),
                    (ProblemKind::InvalidDocument, Severity::Error, Some("items[5]"), "a List inside a List"),
                ],
            ),
            (
                "a List without items",
                "apiVersion: v1\nkind: List\nitems: {a: 1}\n".to_owned(),
                (0, 0, 0),
                &[(ProblemKind::InvalidDocument, Severity::Error, Some("items"), "a List without a list of items")],
            ),
        ];
        for (name, text, (services, slices, ignored), expected) in cases {
            let loaded = parse_documents("a.yaml", &text);
            let counts = (
                loaded.snapshot.services.len(),
                loaded.snapshot.endpoint_slices.len(),
                loaded.ignored,
            );
            assert_eq!(counts, (services, slices, ignored), "{name}");
            assert_eq!(loaded.problems.len(), expected.len(), "{name}: {:?}", loaded.problems);
            for (problem, (kind, severity, field, text)) in loaded.problems.iter().zip(expected) {
                assert_eq!(
                    (problem.kind, problem.severity, problem.field.as_deref()),
                    (*kind, *severity, *field),
                    "{name}"
                );
                assert!(problem.to_string().contains(text), "{name}: {problem}");
            }
        }
    }

    /// `document` as an item of a YAML sequence (after its `- `).
    fn indent_item(document: &str) -> String {
        document.lines().map(|line| format!("{line}\n")).collect::<Vec<_>>().join("  ")
    }

    #[test]
    fn objects_are_defaulted_and_located() {
        let loaded = parse_documents("a.yaml", &format!("{SERVICE}---\n{SLICE}"));
        let slice = &loaded.snapshot.endpoint_slices[0];
        assert_eq!(slice.metadata.namespace.as_deref(), Some("default"));
        let location = loaded.snapshot.location("EndpointSlice", &slice.metadata);
        assert_eq!(location.to_string(), "a.yaml doc 2 (EndpointSlice default/web-1)");
    }

    #[test]
    fn load_dir_keeps_going_past_bad_files() {
        let dir = std::env::temp_dir().join(format!("ingress-manifests-test-{}", std::process::id()));
        std::fs::create_dir_all(dir.join("sub.yaml")).unwrap();
        std::fs::write(dir.join("a.yaml"), "kind: [\n").unwrap();
        std::fs::write(dir.join("b.yml"), SERVICE).unwrap();
        std::fs::write(dir.join("c.txt"), SERVICE).unwrap();
        std::fs::write(dir.join("d.yaml"), [0xff, 0xfe]).unwrap();
        let loaded = load_dir(&dir).unwrap();
        std::fs::remove_dir_all(&dir).unwrap();

        assert_eq!(loaded.snapshot.services.len(), 1);
        let kinds: Vec<_> = loaded.problems.iter().map(|p| p.kind.label()).collect();
        assert_eq!(kinds, ["yaml_syntax", "unreadable_file"]);
        assert!(
            loaded.problems[1]
                .to_string()
                .starts_with(&format!("{}: cannot read", dir.join("d.yaml").display()))
        );
        assert!(load_dir(&dir).is_err());
    }

    /// A `.json` file is named as JSON in its syntax error (which the
    /// YAML parser finds, JSON being YAML), with where it is.
    #[test]
    fn a_json_files_syntax_error_is_a_json_syntax_problem_with_its_line() {
        let text = "{\"apiVersion\": \"v1\", \"kind\": \"List\",\n \"items\": [,]}\n";
        for (file, kind) in [("f.json", "json_syntax"), ("f.yaml", "yaml_syntax")] {
            let loaded = parse_documents(file, text);
            let problems: Vec<(&str, String)> = loaded.problems.iter().map(|p| (p.kind.label(), p.to_string())).collect();
            assert_eq!(problems.len(), 1, "{file}: {problems:?}");
            assert_eq!(problems[0].0, kind, "{file}");
            assert!(problems[0].1.starts_with(&format!("{file} doc 1: ")) && problems[0].1.contains("line 2"), "{file}: {}", problems[0].1);
        }
    }

    /// The plain path must give what the general path gives, or nothing.
    #[test]
    fn a_plain_file_reads_the_same_as_through_yaml_values_or_falls_back() {
        let service = "apiVersion: v1\nkind: Service\nmetadata:\n  name: web\nspec:\n  clusterIP: 10.96.0.1\n  ports: [{port: 80, targetPort: 8080}]\n";
        let slice = "apiVersion: discovery.k8s.io/v1\nkind: EndpointSlice\nmetadata: {name: web-1, namespace: shop}\naddressType: IPv4\nendpoints:\n  - {addresses: [10.0.0.1], conditions: {ready: true}}\n";
        let json_service = r#"{"apiVersion": "v1", "kind": "Service", "metadata": {"name": "web"}, "spec": {"clusterIP": "10.96.0.1", "ports": [{"port": 80, "targetPort": 8080}]}}"#;
        let json_slice = r#"{"apiVersion": "discovery.k8s.io/v1", "kind": "EndpointSlice", "metadata": {"name": "web-1", "namespace": "shop"}, "addressType": "IPv4", "endpoints": [{"addresses": ["10.0.0.1"], "conditions": {"ready": true}}]}"#;
        let json_list = |items: &str| format!(r#"{{"apiVersion": "v1", "kind": "List", "metadata": {{"resourceVersion": ""}}, "items": [{items}]}}"#);
        let sorted_slice = r#"{"addressType": "IPv4", "apiVersion": "discovery.k8s.io/v1", "endpoints": [{"addresses": ["10.0.0.1"], "conditions": {"ready": true}}], "kind": "EndpointSlice", "metadata": {"name": "web-1", "namespace": "shop"}}"#;
        let json_sorted_list = |items: &str| format!(r#"{{"apiVersion": "v1", "items": [{items}], "kind": "List", "metadata": {{"resourceVersion": ""}}}}"#);
        // (name, file, text, read by the plain path)
        let cases: &[(&str, &str, String, bool)] = &[
            ("two kinds, a head comment", "f.yaml", format!("# shop\n---\n{service}---\n{slice}"), true),
            ("an empty document between", "f.yaml", format!("{service}---\n---\n{slice}"), true),
            ("an unknown field", "f.yaml", format!("{service}  nodeport: 3\n"), false),
            ("a kind the agent does not read", "f.yaml", "apiVersion: apps/v1\nkind: Deployment\nmetadata: {name: d}\n".to_owned(), false),
            ("no name", "f.yaml", "apiVersion: v1\nkind: Service\nmetadata: {namespace: x}\n".to_owned(), false),
            ("a field of the wrong type", "f.yaml", "apiVersion: v1\nkind: Service\nmetadata: {name: w}\nspec: {ports: 3}\n".to_owned(), false),
            ("a syntax error", "f.yaml", format!("{service}---\nkind: Service\napiVersion: v1\nmetadata: {{name: [\n"), false),
            ("a YAML List", "f.yaml", format!("apiVersion: v1\nkind: List\nitems:\n- {json_service}\n- {json_slice}\n"), false),
            ("a JSON List", "f.json", json_list(&format!("{json_service}, {json_slice}")), true),
            ("a JSON List as kubectl prints it (members sorted)", "f.json", json_sorted_list(&format!("{json_service}, {sorted_slice}")), true),
            ("a JSON List with an unknown field", "f.json", json_list(&format!("{json_service}, {}", json_slice.replace("\"addressType\"", "\"adressType\": 1, \"addressType\""))), false),
            ("a JSON List with a nameless item", "f.json", json_list(&format!("{json_service}, {}", json_slice.replace("\"name\": \"web-1\", ", ""))), false),
            ("a JSON syntax error", "f.json", json_list(&format!("{json_service}, {json_slice}")).replace("\"port\": 80", "\"port\": 80,,"), false),
        ];
        for (name, file, text, plain) in cases {
            let read_plain = parse_plain(file, text);
            assert_eq!(read_plain.is_some(), *plain, "{name}");
            let general = parse_through_values(file, text);
            assert_eq!(parse_file(file, text), general, "{name}");
            if let Some(read_plain) = read_plain {
                assert_eq!(read_plain.docs.len(), 2, "{name}");
            }
        }
    }
}
