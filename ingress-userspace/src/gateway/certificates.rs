//! The certificate of a Gateway listener: its first certificateRef, a
//! `kubernetes.io/tls` Secret of the Gateway's namespace or of one whose
//! ReferenceGrant allows it. Why one cannot be had is the listener's
//! ResolvedRefs reason.

use std::sync::Arc;

use rustls::sign::CertifiedKey;

use super::grants::{self, Kind};
use super::types::{GROUP, Gateway, Listener};
use crate::l7::tls::certified_key;
use crate::manifests::Snapshot;

/// A certificateRef that cannot be served, as the spec's reason and why.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Unresolved {
    /// `InvalidCertificateRef` or `RefNotPermitted`.
    pub reason: &'static str,
    pub message: String,
}

/// `None` when the listener names no certificate.
pub fn listener_certificate(snapshot: &Snapshot, gateway: &Gateway, listener: &Listener) -> Option<Result<Arc<CertifiedKey>, Unresolved>> {
    let reference = listener.tls.as_ref()?.certificate_refs.first()?;
    let namespace = gateway.metadata.namespace.as_deref().unwrap_or("default");
    let secret_namespace = reference.namespace.as_deref().unwrap_or(namespace);
    let name = &reference.name;
    let invalid = |message: String| Unresolved { reason: "InvalidCertificateRef", message };
    let from = Kind { group: GROUP, kind: "Gateway", namespace };
    let to = Kind { group: "", kind: "Secret", namespace: secret_namespace };
    let key = if reference.kind.as_deref().unwrap_or("Secret") != "Secret" || reference.group.as_deref().is_some_and(|group| !group.is_empty()) {
        Err(invalid("only Secrets are served as certificates".to_owned()))
    } else if !grants::allowed(&snapshot.reference_grants, from, to, name) {
        let message = format!("no ReferenceGrant in namespace {secret_namespace} lets Gateways of {namespace} use Secret {name}");
        Err(Unresolved { reason: "RefNotPermitted", message })
    } else {
        let secret = snapshot.secrets.iter().find(|secret| {
            secret.metadata.namespace.as_deref().unwrap_or("default") == secret_namespace && secret.metadata.name.as_ref() == Some(name)
        });
        let secret = secret.ok_or_else(|| invalid(format!("no Secret {secret_namespace}/{name}")));
        secret.and_then(|secret| certified_key(secret).map_err(|error| invalid(format!("Secret {secret_namespace}/{name}: {error}"))))
    };
    Some(key)
}
