//! The API server source: one watcher and reflector store per resource, read
//! together into complete snapshots once every store has had its first list.
//!
//! kube's watcher re-lists after `410 Gone` and, with the backoff of
//! `retry`, retries forever; the stores keep their last contents meanwhile, so nothing is
//! published (and the programmed state stays) until the API server is back.
//!
//! The Gateway API kinds are CRDs a cluster may not have: their list
//! answering 404 counts as an empty list (logged once), and the watcher's
//! retries pick them up, without a restart, once they are installed.

use std::collections::BTreeSet;
use std::fmt::Debug;
use std::sync::Arc;
use std::time::Duration;

use futures::StreamExt;
use futures::stream::{BoxStream, select_all};
use k8s_openapi::api::core::v1::{Namespace, Node, Pod, Secret, Service};
use k8s_openapi::api::discovery::v1::EndpointSlice;
use k8s_openapi::api::networking::v1::{Ingress, IngressClass};
use kube::runtime::reflector::{self, ObjectRef, Store};
use kube::runtime::{WatchStreamExt, watcher};
use kube::{Api, Client, Resource, ResourceExt};
use serde::de::DeserializeOwned;
use tokio::time::Instant;

use super::retry;
use super::snapshots::{Dirty, ObjectKey, Objects, Snapshotter, key_of};
use crate::gateway::translate::our_gateways;
use crate::gateway::types::{GatewayClass, Gateway, HttpRoute, ReferenceGrant};
use crate::manifests::{Loaded, Snapshot};
use crate::metrics::Metrics;
use crate::source::Snapshots;

/// Coalesces bursts (a rollout touches many slices at once) into one
/// snapshot. Measured from the first change, so steady churn still
/// publishes; short, because a snapshot that replaced a few objects costs
/// the agent what they cost (see `Snapshotter`).
const DEBOUNCE: Duration = Duration::from_millis(10);

/// What the reflectors keep: the last listed and watched state, which is
/// also what stays while the API server is away.
struct Stores {
    services: Store<Service>,
    endpoint_slices: Store<EndpointSlice>,
    nodes: Store<Node>,
    pods: Store<Pod>,
    ingresses: Store<Ingress>,
    ingress_classes: Store<IngressClass>,
    secrets: Store<Secret>,
    gateway_classes: Store<GatewayClass>,
    gateways: Store<Gateway>,
    http_routes: Store<HttpRoute>,
    reference_grants: Store<ReferenceGrant>,
    namespaces: Store<Namespace>,
}

/// The resources of CRDs (the Gateway API's) that a cluster may lack.
const OPTIONAL: &[&str] = &["gatewayclasses", "gateways", "httproutes", "referencegrants"];

/// Whether `error` says the resource is not served at all (its CRD is not
/// installed), rather than that the API server failed.
fn is_not_served(error: &watcher::Error) -> bool {
    matches!(error, watcher::Error::InitialListFailed(kube::Error::Api(status)) if status.code == 404)
}

/// What one watcher event did to its store.
enum Step {
    /// The first (or a new) complete list replaced the store's contents.
    Listed,
    Changed(Touched),
    /// Part of a list in progress: the store is unchanged until it completes.
    Pending,
}

/// What a change touched.
enum Touched {
    Service(ObjectKey),
    EndpointSlice(ObjectKey),
    /// A deletion, or an object of another kind.
    Other,
}

/// Which of the kinds snapshots can patch a resource is.
#[derive(Clone, Copy)]
enum Kind {
    Service,
    EndpointSlice,
    Other,
}

type Steps = BoxStream<'static, (&'static str, Result<Step, watcher::Error>)>;

/// Publishes a snapshot once every resource has been listed, and again after
/// every change. Never returns unless the agent stops listening.
pub async fn watch_cluster(client: Client, node_name: String, metrics: Arc<Metrics>, snapshots: Snapshots) {
    let config = watcher::Config::default;
    let mut streams = Vec::new();
    let mut watch = |stream| streams.push(stream);
    let stores = Stores {
        services: reflect(Api::all(client.clone()), ("services", Kind::Service), config(), &mut watch),
        endpoint_slices: reflect(Api::all(client.clone()), ("endpointslices", Kind::EndpointSlice), config(), &mut watch),
        nodes: reflect(
            Api::all(client.clone()),
            ("nodes", Kind::Other),
            config().fields(&format!("metadata.name={node_name}")),
            &mut watch,
        ),
        pods: reflect(Api::all(client.clone()), ("pods", Kind::Other), config().labels("microservice=true"), &mut watch),
        ingresses: reflect(Api::all(client.clone()), ("ingresses", Kind::Other), config(), &mut watch),
        ingress_classes: reflect(Api::all(client.clone()), ("ingressclasses", Kind::Other), config(), &mut watch),
        secrets: reflect(Api::all(client.clone()), ("secrets", Kind::Other), config().fields("type=kubernetes.io/tls"), &mut watch),
        gateway_classes: reflect(Api::all(client.clone()), ("gatewayclasses", Kind::Other), config(), &mut watch),
        gateways: reflect(Api::all(client.clone()), ("gateways", Kind::Other), config(), &mut watch),
        http_routes: reflect(Api::all(client.clone()), ("httproutes", Kind::Other), config(), &mut watch),
        reference_grants: reflect(Api::all(client.clone()), ("referencegrants", Kind::Other), config(), &mut watch),
        namespaces: reflect(Api::all(client), ("namespaces", Kind::Other), config(), &mut watch),
    };
    let resources = streams.len();
    let mut steps = select_all(streams);

    let mut listed = BTreeSet::new();
    // The optional resources found not served, until they are.
    let mut not_served = BTreeSet::new();
    let mut due: Option<Instant> = None;
    let mut dirty = Dirty::default();
    let mut snapshotter = Snapshotter::default();
    loop {
        let complete = listed.len() == resources;
        tokio::select! {
            step = steps.next() => {
                let Some((resource, step)) = step else { return };
                match step {
                    Ok(Step::Listed) => {
                        listed.insert(resource);
                        if not_served.remove(resource) {
                            tracing::info!(resource, "the API server serves it now, watching");
                        }
                        dirty.structure = true;
                        due.get_or_insert_with(|| Instant::now() + DEBOUNCE);
                    }
                    Ok(Step::Changed(touched)) => {
                        match touched {
                            Touched::Service(key) => dirty.services.insert(key),
                            Touched::EndpointSlice(key) => dirty.endpoint_slices.insert(key),
                            Touched::Other => std::mem::replace(&mut dirty.structure, true),
                        };
                        due.get_or_insert_with(|| Instant::now() + DEBOUNCE);
                    }
                    Ok(Step::Pending) => {}
                    Err(error) if OPTIONAL.contains(&resource) && is_not_served(&error) => {
                        // Retried with the backoff, quietly: a cluster without
                        // the Gateway API is a configuration, not a failure.
                        if not_served.is_empty() {
                            tracing::warn!(resource, "the Gateway API CRDs are not installed: serving Ingresses only, Gateway API objects are picked up once they are");
                        }
                        if not_served.insert(resource) && listed.insert(resource) {
                            dirty.structure = true;
                            due.get_or_insert_with(|| Instant::now() + DEBOUNCE);
                        }
                    }
                    Err(error) => {
                        metrics.count_api_error(resource);
                        if retry::is_gone(&error) {
                            tracing::info!(resource, "watch expired, re-listing");
                        } else {
                            tracing::warn!(resource, "API server: {error}, retrying; keeping the last state");
                        }
                    }
                }
            }
            _ = tokio::time::sleep_until(due.unwrap_or_else(Instant::now)), if complete && due.is_some() => {
                due = None;
                let Some(snapshot) = snapshotter.next(&stores, &std::mem::take(&mut dirty)) else { continue };
                let loaded = Loaded { snapshot, ..Loaded::default() };
                if snapshots.send(Some(Arc::new(loaded))).is_err() {
                    return;
                }
            }
        }
    }
}

/// Starts a reflector for one resource: its store, and its stream of steps
/// handed to `watch`. `resource` is spelled as in `access::API_ACCESS`, so
/// that metrics and logs name what the ClusterRole grants.
fn reflect<K>(api: Api<K>, (resource, kind): (&'static str, Kind), config: watcher::Config, watch: &mut impl FnMut(Steps)) -> Store<K>
where
    K: Resource<DynamicType = ()> + Clone + DeserializeOwned + Debug + Send + Sync + 'static,
{
    let (store, writer) = reflector::store();
    let steps = retry::paced(watcher(api, config))
        .reflect(writer)
        .map(move |event| {
            let step = event.map(|event| match event {
                watcher::Event::InitDone => Step::Listed,
                watcher::Event::Apply(object) => Step::Changed(match kind {
                    Kind::Service => Touched::Service(key_of(object.meta())),
                    Kind::EndpointSlice => Touched::EndpointSlice(key_of(object.meta())),
                    Kind::Other => Touched::Other,
                }),
                watcher::Event::Delete(_) => Step::Changed(Touched::Other),
                watcher::Event::Init | watcher::Event::InitApply(_) => Step::Pending,
            });
            (resource, step)
        });
    watch(steps.boxed());
    store
}

impl Objects for Stores {
    fn everything(&self) -> Snapshot {
        let mut snapshot = Snapshot {
            services: shared(&self.services),
            endpoint_slices: shared(&self.endpoint_slices),
            pods: objects(&self.pods),
            ingress_classes: objects(&self.ingress_classes),
            nodes: objects(&self.nodes),
            ingresses: objects(&self.ingresses),
            gateway_classes: objects(&self.gateway_classes),
            gateways: objects(&self.gateways),
            http_routes: objects(&self.http_routes),
            reference_grants: objects(&self.reference_grants),
            namespaces: objects(&self.namespaces),
            ..Snapshot::default()
        };
        // Only the Secrets served Ingresses and our Gateways' listeners name:
        // the others stay out of the agent's state, logs and L7 configuration.
        let referenced = referenced_secrets(&snapshot);
        snapshot.secrets = objects(&self.secrets)
            .into_iter()
            .filter(|secret| referenced.contains(&(secret.namespace(), secret.name_any())))
            .collect();
        snapshot
    }

    fn service(&self, (namespace, name): &ObjectKey) -> Option<Arc<Service>> {
        self.services.get(&ObjectRef::new(name).within(namespace))
    }

    fn endpoint_slice(&self, (namespace, name): &ObjectKey) -> Option<Arc<EndpointSlice>> {
        self.endpoint_slices.get(&ObjectRef::new(name).within(namespace))
    }
}

/// (namespace, name) of the TLS Secrets of Ingresses and of the listeners
/// of our Gateways.
fn referenced_secrets(snapshot: &Snapshot) -> BTreeSet<(Option<String>, String)> {
    let of_ingresses = snapshot.ingresses.iter().flat_map(|ingress| {
        let tls = ingress.spec.iter().flat_map(|spec| spec.tls.iter().flatten());
        tls.filter_map(|tls| Some((ingress.namespace(), tls.secret_name.clone()?)))
    });
    let of_gateways = our_gateways(snapshot).into_iter().flat_map(|gateway| {
        let references = gateway.spec.listeners.iter().filter_map(|listener| listener.tls.as_ref()).flat_map(|tls| &tls.certificate_refs);
        let is_secret = |reference: &&crate::gateway::types::ObjectReference| {
            reference.group.as_deref().unwrap_or("").is_empty() && reference.kind.as_deref().unwrap_or("Secret") == "Secret"
        };
        references.filter(is_secret).map(|reference| (reference.namespace.clone().or_else(|| gateway.namespace()), reference.name.clone()))
    });
    of_ingresses.chain(of_gateways).collect()
}

/// The store's objects in namespace/name order, so that equal contents make
/// equal snapshots whatever order the API server listed them in.
fn objects<K: Resource<DynamicType = ()> + Clone>(store: &Store<K>) -> Vec<K> {
    shared(store).iter().map(|object| K::clone(object)).collect()
}

/// The store's objects in namespace/name order, shared with the store: the
/// kinds a cluster has tens of thousands of, which a snapshot does not copy
/// (and the translator compares by pointer first).
fn shared<K: Resource<DynamicType = ()> + Clone>(store: &Store<K>) -> Vec<Arc<K>> {
    let mut objects = store.state();
    objects.sort_by(|a, b| (a.meta().namespace.as_deref(), a.meta().name.as_deref()).cmp(&(b.meta().namespace.as_deref(), b.meta().name.as_deref())));
    objects
}
