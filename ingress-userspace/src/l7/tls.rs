//! TLS certificates: served Ingresses' `spec.tls` name hosts and a
//! `kubernetes.io/tls` Secret of their namespace. The route table holds them;
//! the HTTPS listener (`server`) chooses one by SNI from the current table.

use std::collections::HashMap;
use std::fmt;
use std::sync::Arc;

use k8s_openapi::api::core::v1::Secret;
use k8s_openapi::api::networking::v1::Ingress;
use rustls::sign::CertifiedKey;
use rustls_pki_types::pem::PemObject;
use rustls_pki_types::{CertificateDer, PrivateKeyDer};

use super::host::{HostPattern, normalize_host, wildcard_suffix};
use crate::manifests::Snapshot;
use crate::problem::{Problem, ProblemKind};

/// Certificates by host, as the served Ingresses name them.
#[derive(Default)]
pub struct Certificates {
    exact: HashMap<String, Arc<CertifiedKey>>,
    /// Keyed by the suffix after `*.`.
    wildcard: HashMap<String, Arc<CertifiedKey>>,
}

impl fmt::Debug for Certificates {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Certificates")
            .field("exact", &self.exact.keys().collect::<Vec<_>>())
            .field("wildcard", &self.wildcard.keys().collect::<Vec<_>>())
            .finish()
    }
}

impl Certificates {
    /// `ingresses` are the served ones, oldest first (the oldest wins a host).
    pub(crate) fn build(snapshot: &Snapshot, ingresses: &[&Ingress], problems: &mut Vec<Problem>) -> Certificates {
        let mut certificates = Certificates::default();
        for ingress in ingresses {
            let location = snapshot.location("Ingress", &ingress.metadata);
            let namespace = ingress.metadata.namespace.as_deref().unwrap_or("default");
            let tls = ingress.spec.as_ref().and_then(|spec| spec.tls.as_ref());
            for (index, entry) in tls.into_iter().flatten().enumerate() {
                let Some(secret_name) = &entry.secret_name else { continue };
                let secret = snapshot.secrets.iter().find(|secret| {
                    secret.metadata.namespace.as_deref().unwrap_or("default") == namespace
                        && secret.metadata.name.as_ref() == Some(secret_name)
                });
                let key = match secret.ok_or_else(|| format!("no Secret {namespace}/{secret_name}")).and_then(certified_key) {
                    Ok(key) => key,
                    Err(error) => {
                        let message = format!("{error}, TLS hosts get the default certificate");
                        let problem = Problem::error(ProblemKind::InvalidField, location.clone(), message);
                        problems.push(problem.at(format!("spec.tls[{index}].secretName")));
                        continue;
                    }
                };
                for host in entry.hosts.iter().flatten() {
                    certificates.add(HostPattern::parse(host), key.clone());
                }
            }
        }
        certificates
    }

    /// Certificates of Gateway listeners, after the Ingresses' (which keep
    /// the hosts they name).
    pub(crate) fn add_all(&mut self, keys: Vec<(HostPattern, Arc<CertifiedKey>)>) {
        for (host, key) in keys {
            self.add(host, key);
        }
    }

    /// The first certificate for a host wins; a host-less entry names none.
    fn add(&mut self, host: HostPattern, key: Arc<CertifiedKey>) {
        let entry = match host {
            HostPattern::Exact(host) => self.exact.entry(host),
            HostPattern::Wildcard(suffix) => self.wildcard.entry(suffix),
            HostPattern::Any => return,
        };
        entry.or_insert(key);
    }

    pub fn find(&self, server_name: &str) -> Option<Arc<CertifiedKey>> {
        let host = normalize_host(server_name);
        let wildcard = || wildcard_suffix(&host).and_then(|suffix| self.wildcard.get(suffix));
        self.exact.get(host.as_ref()).or_else(wildcard).cloned()
    }

    /// The certificate a handshake for `server_name` presents: the one
    /// named for it, else the listener's default.
    pub fn serving(&self, server_name: Option<&str>, default_certificate: &Arc<CertifiedKey>) -> Arc<CertifiedKey> {
        let found = server_name.and_then(|name| self.find(name));
        found.unwrap_or_else(|| default_certificate.clone())
    }
}

/// A `kubernetes.io/tls` Secret's `tls.crt` and `tls.key` as a serving key.
pub(crate) fn certified_key(secret: &Secret) -> Result<Arc<CertifiedKey>, String> {
    if secret.type_.as_deref() != Some("kubernetes.io/tls") {
        return Err("Secret is not of type kubernetes.io/tls".into());
    }
    let field = |name: &str| -> Result<Vec<u8>, String> {
        let data = secret.data.as_ref().and_then(|data| data.get(name)).map(|bytes| bytes.0.clone());
        let text = || secret.string_data.as_ref()?.get(name).map(|text| text.clone().into_bytes());
        data.or_else(text).ok_or_else(|| format!("Secret has no {name}"))
    };
    certified_key_from_pem(&field("tls.crt")?, &field("tls.key")?)
}

/// A certificate chain and private key, both PEM, as a serving key.
pub fn certified_key_from_pem(chain: &[u8], key: &[u8]) -> Result<Arc<CertifiedKey>, String> {
    let chain: Vec<CertificateDer<'static>> = CertificateDer::pem_slice_iter(chain)
        .collect::<Result<_, _>>()
        .map_err(|error| format!("unreadable certificate: {error}"))?;
    if chain.is_empty() {
        return Err("no certificate in tls.crt".into());
    }
    let key = PrivateKeyDer::from_pem_slice(key).map_err(|error| format!("unreadable private key: {error}"))?;
    let signing_key =
        rustls::crypto::ring::sign::any_supported_type(&key).map_err(|error| format!("unusable private key: {error}"))?;
    Ok(Arc::new(CertifiedKey::new(chain, signing_key)))
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeMap;

    use k8s_openapi::api::networking::v1::{IngressSpec, IngressTLS};

    use super::*;

    fn ingress_with_tls(hosts: &[&str], secret: &str) -> Ingress {
        let mut ingress = Ingress::default();
        ingress.metadata.name = Some("web".into());
        ingress.metadata.namespace = Some("default".into());
        ingress.spec = Some(IngressSpec {
            tls: Some(vec![IngressTLS {
                hosts: Some(hosts.iter().map(|host| (*host).to_owned()).collect()),
                secret_name: Some(secret.into()),
            }]),
            ..IngressSpec::default()
        });
        ingress
    }

    fn secret(name: &str, type_: &str, data: &[(&str, &str)]) -> Secret {
        let mut secret = Secret {
            type_: Some(type_.into()),
            string_data: Some(data.iter().map(|(key, value)| ((*key).into(), (*value).into())).collect::<BTreeMap<_, _>>()),
            ..Secret::default()
        };
        secret.metadata.name = Some(name.into());
        secret.metadata.namespace = Some("default".into());
        secret
    }

    #[test]
    fn unusable_secrets_are_reported_and_leave_the_default_certificate() {
        let cases = [
            (None, "no Secret default/web-tls"),
            (Some(secret("web-tls", "Opaque", &[])), "not of type kubernetes.io/tls"),
            (Some(secret("web-tls", "kubernetes.io/tls", &[])), "Secret has no tls.crt"),
            (
                Some(secret("web-tls", "kubernetes.io/tls", &[("tls.crt", "garbage"), ("tls.key", "garbage")])),
                "no certificate in tls.crt",
            ),
        ];
        for (secret, expected) in cases {
            let snapshot = Snapshot {
                secrets: secret.into_iter().collect(),
                ..Snapshot::default()
            };
            let ingress = ingress_with_tls(&["web.test", "*.web.test"], "web-tls");
            let mut problems = Vec::new();
            let certificates = Certificates::build(&snapshot, &[&ingress], &mut problems);
            assert!(certificates.find("web.test").is_none());
            assert_eq!(problems.len(), 1, "{expected}: {problems:?}");
            assert!(problems[0].message.contains(expected), "{}", problems[0].message);
            assert_eq!(problems[0].field.as_deref(), Some("spec.tls[0].secretName"));
        }
    }
}
