//! A throwaway certificate authority for TLS tests: leaf certificates for
//! the proxy (as `kubernetes.io/tls` Secrets, or as its default certificate)
//! and TLS clients that trust this CA alone.

use std::sync::Arc;

use ingress_userspace::l7::tls::certified_key_from_pem;
use k8s_openapi::api::core::v1::Secret;
use rustls::sign::CertifiedKey;

pub struct TestCa {
    certificate: rcgen::Certificate,
    key: rcgen::KeyPair,
}

impl TestCa {
    pub fn generate() -> TestCa {
        let mut params = rcgen::CertificateParams::new(Vec::<String>::new()).expect("CA parameters");
        params.is_ca = rcgen::IsCa::Ca(rcgen::BasicConstraints::Unconstrained);
        let key = rcgen::KeyPair::generate().expect("a CA key");
        let certificate = params.self_signed(&key).expect("a self-signed CA");
        TestCa { certificate, key }
    }

    /// A leaf certificate valid for `names`: (certificate PEM, key PEM).
    fn leaf_pem(&self, names: &[&str]) -> (String, String) {
        let names = names.iter().map(|name| (*name).to_owned()).collect::<Vec<_>>();
        let key = rcgen::KeyPair::generate().expect("a leaf key");
        let params = rcgen::CertificateParams::new(names).expect("leaf parameters");
        let leaf = params.signed_by(&key, &self.certificate, &self.key).expect("a leaf signed by the CA");
        (leaf.pem(), key.serialize_pem())
    }

    /// A leaf for `names` as a listener's certificate.
    pub fn certified_key(&self, names: &[&str]) -> Arc<CertifiedKey> {
        let (certificate, key) = self.leaf_pem(names);
        certified_key_from_pem(certificate.as_bytes(), key.as_bytes()).expect("a usable leaf")
    }

    /// A leaf for `names` as the `kubernetes.io/tls` Secret `default/{name}`.
    pub fn secret(&self, name: &str, names: &[&str]) -> Secret {
        let (certificate, key) = self.leaf_pem(names);
        let mut secret = Secret {
            type_: Some("kubernetes.io/tls".into()),
            string_data: Some([("tls.crt".to_owned(), certificate), ("tls.key".to_owned(), key)].into()),
            ..Secret::default()
        };
        secret.metadata.name = Some(name.into());
        secret.metadata.namespace = Some("default".into());
        secret
    }

    /// A client trusting this CA alone and offering `alpn`.
    pub fn connector(&self, alpn: &[u8]) -> tokio_rustls::TlsConnector {
        let mut roots = rustls::RootCertStore::empty();
        roots.add(self.certificate.der().clone()).expect("the CA as a root");
        let provider = Arc::new(rustls::crypto::ring::default_provider());
        let config = rustls::ClientConfig::builder_with_provider(provider)
            .with_safe_default_protocol_versions()
            .expect("the ring provider supports the default TLS versions");
        let mut config = config.with_root_certificates(roots).with_no_client_auth();
        config.alpn_protocols = vec![alpn.to_vec()];
        tokio_rustls::TlsConnector::from(Arc::new(config))
    }
}
