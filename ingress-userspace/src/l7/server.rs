//! The L7 side of the agent: the listeners and the route table they share,
//! rebuilt from every snapshot and swapped in without a reload. HTTPS is TLS
//! with SNI (an unknown SNI gets the default certificate) and ALPN offering
//! HTTP/2 and HTTP/1.1, in front of the same proxy as plain HTTP.

use std::fmt;
use std::net::{Ipv4Addr, SocketAddr};
use std::sync::Arc;

use anyhow::Context;
use rustls::server::{ClientHello, ResolvesServerCert};
use rustls::sign::CertifiedKey;
use tokio::net::TcpListener;
use tokio::task::JoinHandle;
use tokio_rustls::TlsAcceptor;

use super::options::ProxyOptions;
use super::proxy::{self, Proxy, accept_loop};
use super::{L7Options, RouteTable, SharedRoutes, shared_routes};
use crate::listen;
use crate::manifests::Snapshot;
use crate::problem::Problem;

/// A listener address of `0.0.0.0:port` stands for that port on every node
/// address, of both families (see [`listen::on_every_address`]); any other
/// address is listened on exactly as given.
pub struct L7Config {
    pub http: Option<SocketAddr>,
    /// The HTTPS listener and the certificate for clients whose SNI no
    /// Ingress names.
    pub https: Option<(SocketAddr, Arc<CertifiedKey>)>,
    pub proxy: ProxyOptions,
    pub routes: L7Options,
}

pub struct L7Server {
    routes: SharedRoutes,
    options: L7Options,
    listeners: Vec<JoinHandle<()>>,
}

impl L7Server {
    /// Binds the listeners (an error names the address) and starts serving
    /// the built-in default backend until the first snapshot arrives.
    pub async fn start(config: L7Config) -> anyhow::Result<L7Server> {
        let routes = shared_routes(RouteTable::build(&Snapshot::default(), &config.routes).0);
        let mut listeners = Vec::new();
        if let Some(addr) = config.http {
            let listener = listen_on(addr).await.with_context(|| format!("listening for HTTP on {addr}"))?;
            tracing::info!(addr = %listener.local_addr()?, "L7 proxy listening (HTTP/1.1, h2c)");
            listeners.push(tokio::spawn(proxy::serve(listener, routes.clone(), config.proxy.clone())));
        }
        if let Some((addr, default_certificate)) = config.https {
            let listener = listen_on(addr).await.with_context(|| format!("listening for HTTPS on {addr}"))?;
            tracing::info!(addr = %listener.local_addr()?, "L7 proxy listening (TLS, HTTP/1.1 and HTTP/2 by ALPN)");
            let serving = serve_tls(listener, routes.clone(), config.proxy.clone(), default_certificate);
            listeners.push(tokio::spawn(serving));
        }
        Ok(L7Server { routes, options: config.routes, listeners })
    }

    /// Swaps in the routes of `snapshot`; requests in flight finish on the
    /// table they started with. Returns what was wrong in the input.
    pub fn update(&self, snapshot: &Snapshot) -> Vec<Problem> {
        let (table, problems) = RouteTable::build(snapshot, &self.options);
        self.routes.store(Arc::new(table));
        problems
    }
}

async fn listen_on(addr: SocketAddr) -> std::io::Result<TcpListener> {
    if addr == SocketAddr::from((Ipv4Addr::UNSPECIFIED, addr.port())) {
        listen::on_every_address(addr.port())
    } else {
        TcpListener::bind(addr).await
    }
}

impl Drop for L7Server {
    fn drop(&mut self) {
        for listener in &self.listeners {
            listener.abort();
        }
    }
}

/// Chooses the certificate by SNI from whatever route table is current.
struct SniResolver {
    routes: SharedRoutes,
    default_certificate: Arc<CertifiedKey>,
}

impl fmt::Debug for SniResolver {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("SniResolver")
    }
}

impl ResolvesServerCert for SniResolver {
    fn resolve(&self, hello: ClientHello<'_>) -> Option<Arc<CertifiedKey>> {
        let found = hello.server_name().and_then(|name| self.routes.load().certificates().find(name));
        Some(found.unwrap_or_else(|| self.default_certificate.clone()))
    }
}

/// Serves HTTPS on `listener` until the future is dropped: TLS with SNI, then
/// HTTP/2 or HTTP/1.1 as ALPN decided, routed like plain HTTP.
pub async fn serve_tls(
    listener: TcpListener,
    routes: SharedRoutes,
    options: ProxyOptions,
    default_certificate: Arc<CertifiedKey>,
) {
    let resolver = SniResolver {
        routes: routes.clone(),
        default_certificate,
    };
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let config = rustls::ServerConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .expect("the ring provider supports the default TLS versions");
    let mut config = config.with_no_client_auth().with_cert_resolver(Arc::new(resolver));
    config.alpn_protocols = vec![b"h2".to_vec(), b"http/1.1".to_vec()];
    let acceptor = TlsAcceptor::from(Arc::new(config));
    let handshake_timeout = options.header_read_timeout;
    let proxy = Proxy::new(routes, options);
    accept_loop(listener, move |stream, peer: SocketAddr, connections| {
        let (proxy, acceptor) = (proxy.clone(), acceptor.clone());
        connections.spawn(async move {
            let stream = match tokio::time::timeout(handshake_timeout, acceptor.accept(stream)).await {
                Ok(Ok(stream)) => stream,
                Ok(Err(error)) => return tracing::debug!(%peer, %error, "TLS handshake failed"),
                Err(_elapsed) => return tracing::debug!(%peer, "TLS handshake timed out"),
            };
            let h2 = stream.get_ref().1.alpn_protocol() == Some(b"h2");
            proxy.serve_connection(stream, peer, "https", h2).await;
        });
    })
    .await
}
