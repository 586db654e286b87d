//! Host/SNI mismatch: whether a request on an HTTPS connection names a host
//! that this connection's certificate does not speak for, to be answered
//! 421 Misdirected Request (RFC 9110 15.5.20) so that the client retries on
//! a connection of its own for that host.
//!
//! RFC 9113 9.1.1 lets a client reuse a connection for any host the
//! certificate it was shown is valid for (HTTP/2 coalescing), so that stays
//! allowed, as does any host the proxy would serve with the very same
//! certificate (the default one included). What is refused is a host that a
//! handshake of its own would get another certificate for (the host's, or the
//! default one) and that the presented one does not cover: a client naming
//! one site in its ClientHello and another in its request.
//!
//! Stricter than stock nginx, which answers 421 for a mismatch only when the
//! requested server verifies client certificates (`ssl_verify_client`) and
//! otherwise serves the Host's server whatever the SNI; like nginx, a
//! connection without SNI (a client that dialled an IP address, or an old
//! one) is never refused for its Host, as it named nothing to mismatch.

use std::sync::Arc;

use rustls::client::verify_server_name;
use rustls::server::ParsedCertificate;
use rustls::sign::CertifiedKey;
use rustls_pki_types::ServerName;

use super::host::normalize_host;
use super::tls::Certificates;

/// What the TLS handshake of one connection settled.
pub(crate) struct TlsSession {
    /// The SNI, normalised; `None` when the client sent none.
    server_name: Option<String>,
    /// The certificate the handshake presented for it.
    presented: Arc<CertifiedKey>,
    /// The listener's certificate for hosts no Ingress or Gateway names.
    default_certificate: Arc<CertifiedKey>,
}

impl TlsSession {
    /// `certificates` must be the table the handshake chose from.
    pub(crate) fn established(
        server_name: Option<&str>,
        certificates: &Certificates,
        default_certificate: &Arc<CertifiedKey>,
    ) -> TlsSession {
        TlsSession {
            server_name: server_name.map(|name| normalize_host(name).into_owned()),
            presented: certificates.serving(server_name, default_certificate),
            default_certificate: default_certificate.clone(),
        }
    }

    /// Whether a request for `authority` (`Host` or `:authority`) is to be
    /// answered 421 on this connection, `certificates` being the current
    /// table's.
    pub(crate) fn misdirects(&self, authority: &str, certificates: &Certificates) -> bool {
        let Some(server_name) = &self.server_name else { return false };
        let host = normalize_host(authority);
        if host.is_empty() || host == server_name.as_str() {
            return false;
        }
        let serving = certificates.serving(Some(host.as_ref()), &self.default_certificate);
        !same_certificate(&serving, &self.presented) && !covers(&self.presented, &host)
    }
}

/// Compared by the end-entity certificate, not the `Arc`: two Ingresses
/// naming one Secret hold two copies of the same certificate.
fn same_certificate(one: &CertifiedKey, other: &CertifiedKey) -> bool {
    one.cert.first() == other.cert.first()
}

/// Whether the certificate's subject alternative names include `host` (a
/// DNS name, wildcards matching one label, or an IP address), as the
/// client checked before reusing the connection for it.
fn covers(certificate: &CertifiedKey, host: &str) -> bool {
    let (Ok(end_entity), Ok(name)) = (certificate.end_entity_cert(), ServerName::try_from(host)) else {
        return false;
    };
    ParsedCertificate::try_from(end_entity).is_ok_and(|parsed| verify_server_name(&parsed, &name).is_ok())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::l7::host::HostPattern;
    use crate::l7::tls::certified_key_from_pem;

    /// A self-signed certificate for `names`: only its names matter here.
    fn certificate(names: &[&str]) -> Arc<CertifiedKey> {
        let names = names.iter().map(|name| (*name).to_owned()).collect::<Vec<_>>();
        let generated = rcgen::generate_simple_self_signed(names).unwrap();
        certified_key_from_pem(generated.cert.pem().as_bytes(), generated.key_pair.serialize_pem().as_bytes()).unwrap()
    }

    #[test]
    fn a_host_the_connection_cannot_speak_for_is_misdirected() {
        let site = certificate(&["a.test", "alias.test"]);
        let wildcard = certificate(&["*.w.test"]);
        let shared = certificate(&["b.test"]);
        let default_certificate = certificate(&["default.test"]);
        let mut certificates = Certificates::default();
        certificates.add_all(vec![
            (HostPattern::parse("a.test"), site),
            (HostPattern::parse("*.w.test"), wildcard),
            (HostPattern::parse("b.test"), shared.clone()),
            // One Secret named by a second Ingress: an equal copy.
            (HostPattern::parse("c.test"), Arc::new(CertifiedKey::new(shared.cert.clone(), shared.key.clone()))),
        ]);
        // (SNI, Host, misdirected); `plain.test` and `alias.test` have no
        // certificate of their own, so the default one serves them.
        let cases = [
            (Some("a.test"), "a.test", false),
            (Some("a.test"), "A.Test.:443", false),
            (Some("a.test"), "b.test", true),
            (Some("a.test"), "x.w.test", true),
            (Some("a.test"), "plain.test", true),
            (Some("a.test"), "127.0.0.1:8443", true),
            // HTTP/2 coalescing onto a certificate valid for the host.
            (Some("a.test"), "alias.test", false),
            (Some("x.w.test"), "y.w.test:443", false),
            (Some("x.w.test"), "w.test", true),
            (Some("x.w.test"), "z.y.w.test", true),
            // One certificate serves both hosts, whatever its names say.
            (Some("b.test"), "c.test", false),
            (Some("unknown.test"), "plain.test", false),
            (Some("unknown.test"), "a.test", true),
            // No SNI: nothing was named to mismatch, as in nginx.
            (None, "a.test", false),
            (None, "plain.test", false),
            // No host at all: routed (to the default backend) as ever.
            (Some("a.test"), "", false),
        ];
        for (server_name, authority, expected) in cases {
            let session = TlsSession::established(server_name, &certificates, &default_certificate);
            assert_eq!(session.misdirects(authority, &certificates), expected, "SNI {server_name:?}, Host {authority:?}");
        }
    }
}
