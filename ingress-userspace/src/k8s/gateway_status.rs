//! Writes the Gateway API status `gateway::status` computes: a merge patch
//! of `status` on the status subresource of each GatewayClass, Gateway and
//! HTTPRoute whose status would change. One task writes, from the latest
//! snapshot only, so writes never overlap and a burst of snapshots costs
//! one pass.

use std::collections::HashMap;
use std::fmt::Debug;
use std::net::IpAddr;
use std::sync::Arc;

use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;
use k8s_openapi::jiff::Timestamp;
use kube::api::{Patch, PatchParams};
use kube::{Api, Client, Resource};
use serde::Serialize;
use serde::de::DeserializeOwned;
use serde_json::{Value, json};
use tokio::sync::watch;

use crate::gateway::status::{Update, updates};
use crate::gateway::types::{Gateway, GatewayClass, HttpRoute};
use crate::manifests::Loaded;
use crate::metrics::Metrics;

#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
enum Kind {
    GatewayClass,
    Gateway,
    HttpRoute,
}

impl Kind {
    /// The status subresource as `access::API_ACCESS` spells it.
    fn status_resource(self) -> &'static str {
        match self {
            Kind::GatewayClass => "gatewayclasses/status",
            Kind::Gateway => "gateways/status",
            Kind::HttpRoute => "httproutes/status",
        }
    }
}

/// (kind, namespace, name).
type Key = (Kind, Option<String>, String);

/// What the status is computed from: the latest snapshot, and the node's
/// addresses (the Gateways' `status.addresses`).
#[derive(Clone)]
pub struct StatusInput {
    pub loaded: Arc<Loaded>,
    pub node_addresses: Vec<IpAddr>,
}

/// Starts the writer; it stops when the returned sender is dropped.
pub fn spawn(client: Client, metrics: Arc<Metrics>) -> watch::Sender<Option<StatusInput>> {
    let (sender, receiver) = watch::channel(None);
    tokio::spawn(write_statuses(client, metrics, receiver));
    sender
}

async fn write_statuses(client: Client, metrics: Arc<Metrics>, mut inputs: watch::Receiver<Option<StatusInput>>) {
    let mut writer = Writer { client, metrics, written: HashMap::new() };
    while inputs.changed().await.is_ok() {
        let Some(StatusInput { loaded, node_addresses }) = inputs.borrow_and_update().clone() else { continue };
        if loaded.snapshot.gateway_classes.is_empty() {
            continue;
        }
        let updates = updates(&loaded.snapshot, &node_addresses, &Time(Timestamp::now()));
        let mut pending = Vec::new();
        pending.extend(updates.gateway_classes.iter().map(|update| writer.prepare(Kind::GatewayClass, update)));
        pending.extend(updates.gateways.iter().map(|update| writer.prepare(Kind::Gateway, update)));
        pending.extend(updates.http_routes.iter().map(|update| writer.prepare(Kind::HttpRoute, update)));
        // What is not pending any more has landed (the snapshot shows it).
        writer.written.retain(|key, _| pending.iter().any(|(pending, _)| pending == key));
        for (key, written) in pending {
            writer.write(key, written).await;
        }
    }
}

/// A status as written, and the resourceVersion it was computed from.
#[derive(Clone, PartialEq)]
struct Written {
    resource_version: Option<String>,
    status: Value,
}

struct Writer {
    client: Client,
    metrics: Arc<Metrics>,
    /// The writes made since the snapshot last showed their object as it
    /// was when written: a snapshot that has not caught up with a write
    /// asks for it again, and gets it skipped.
    written: HashMap<Key, Written>,
}

impl Writer {
    fn prepare<S: Serialize>(&self, kind: Kind, update: &Update<S>) -> (Key, Written) {
        let status = serde_json::to_value(&update.status).unwrap_or_default();
        let written = Written { resource_version: update.resource_version.clone(), status };
        ((kind, update.namespace.clone(), update.name.clone()), written)
    }

    async fn write(&mut self, key: Key, written: Written) {
        if self.written.get(&key) == Some(&written) {
            return;
        }
        let (kind, namespace, name) = &key;
        let patch = Patch::Merge(json!({ "status": written.status }));
        let client = self.client.clone();
        let in_namespace = namespace.as_deref().unwrap_or("default");
        let result = match kind {
            Kind::GatewayClass => patch_status::<GatewayClass>(Api::all(client), name, &patch).await,
            Kind::Gateway => patch_status::<Gateway>(Api::namespaced(client, in_namespace), name, &patch).await,
            Kind::HttpRoute => patch_status::<HttpRoute>(Api::namespaced(client, in_namespace), name, &patch).await,
        };
        let object = format!("{kind:?} {}{name}", namespace.as_deref().map(|namespace| format!("{namespace}/")).unwrap_or_default());
        match result {
            Ok(()) => {
                tracing::info!(%object, "Gateway API status written");
                self.written.insert(key, written);
            }
            Err(error) => {
                self.metrics.count_api_error(kind.status_resource());
                tracing::warn!(%object, "writing the status failed: {error}; tried again on the next snapshot");
            }
        }
    }
}

async fn patch_status<K>(api: Api<K>, name: &str, patch: &Patch<Value>) -> Result<(), kube::Error>
where
    K: Resource + Clone + DeserializeOwned + Debug,
{
    api.patch_status(name, &PatchParams::default(), patch).await.map(drop)
}
