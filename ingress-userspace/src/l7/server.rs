//! The L7 side of the agent: the listeners and the route table they share,
//! rebuilt from every snapshot and swapped in without a reload. HTTPS is TLS
//! with SNI (an unknown SNI gets the default certificate) and ALPN offering
//! HTTP/2 and HTTP/1.1, in front of the same proxy as plain HTTP, which
//! answers 421 to a request for a host the connection's certificate does not
//! speak for (see `misdirected`).

use std::fmt;
use std::net::SocketAddr;
use std::sync::Arc;

use anyhow::Context;
use rustls::server::{ClientHello, ResolvesServerCert};
use rustls::sign::CertifiedKey;
use std::thread;

use tokio::net::TcpListener;
use tokio::sync::oneshot;
use tokio_rustls::TlsAcceptor;

use super::misdirected::TlsSession;
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

/// The listeners run on threads of their own, one per CPU the agent may run
/// on, each a single-threaded runtime with its own SO_REUSEPORT socket per
/// listener and its own upstream pools: a connection, its requests and its
/// upstream connections never leave the thread that accepted it. Only the
/// route table is shared, read by every thread.
pub struct L7Server {
    routes: SharedRoutes,
    options: L7Options,
    /// Dropped with the server, which stops and joins their threads.
    _workers: Vec<Worker>,
}

struct Worker {
    stop: Option<oneshot::Sender<()>>,
    thread: Option<thread::JoinHandle<()>>,
}

/// One worker's sockets, before its runtime takes them.
enum Listening {
    Http(std::net::TcpListener),
    Https(std::net::TcpListener, Arc<CertifiedKey>),
}

impl L7Server {
    /// Binds the listeners (an error names the address) and starts serving
    /// the built-in default backend until the first snapshot arrives.
    pub async fn start(config: L7Config) -> anyhow::Result<L7Server> {
        let routes = shared_routes(RouteTable::build(&Snapshot::default(), &config.routes).0);
        let count = thread::available_parallelism().map_or(1, usize::from);
        let mut per_worker: Vec<Vec<Listening>> = (0..count).map(|_| Vec::new()).collect();
        if let Some(addr) = config.http {
            let group = listen::reuse_port_group(addr, count).with_context(|| format!("listening for HTTP on {addr}"))?;
            tracing::info!(addr = %group[0].local_addr()?, threads = count, "L7 proxy listening (HTTP/1.1, h2c)");
            for (listeners, socket) in per_worker.iter_mut().zip(group) {
                listeners.push(Listening::Http(socket));
            }
        }
        if let Some((addr, default_certificate)) = config.https {
            let group = listen::reuse_port_group(addr, count).with_context(|| format!("listening for HTTPS on {addr}"))?;
            tracing::info!(addr = %group[0].local_addr()?, threads = count, "L7 proxy listening (TLS, HTTP/1.1 and HTTP/2 by ALPN)");
            for (listeners, socket) in per_worker.iter_mut().zip(group) {
                listeners.push(Listening::Https(socket, default_certificate.clone()));
            }
        }
        let workers = per_worker.into_iter().enumerate().filter(|(_, listeners)| !listeners.is_empty());
        let workers = workers.map(|(index, listeners)| Worker::start(index, listeners, &routes, &config.proxy));
        let workers = workers.collect::<anyhow::Result<_>>()?;
        Ok(L7Server { routes, options: config.routes, _workers: workers })
    }

    /// Swaps in the routes of `snapshot`; requests in flight finish on the
    /// table they started with. Returns what was wrong in the input.
    pub fn update(&self, snapshot: &Snapshot) -> Vec<Problem> {
        let (table, problems) = RouteTable::build(snapshot, &self.options);
        self.routes.store(Arc::new(table));
        problems
    }
}

impl Worker {
    fn start(index: usize, listeners: Vec<Listening>, routes: &SharedRoutes, options: &ProxyOptions) -> anyhow::Result<Worker> {
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .with_context(|| format!("starting the runtime of L7 thread {index}"))?;
        let (stop, stopped) = oneshot::channel();
        let (routes, options) = (routes.clone(), options.clone());
        let serving = async move {
            for listening in listeners {
                let (socket, default_certificate) = match listening {
                    Listening::Http(socket) => (socket, None),
                    Listening::Https(socket, certificate) => (socket, Some(certificate)),
                };
                let listener = match TcpListener::from_std(socket) {
                    Ok(listener) => listener,
                    Err(error) => return tracing::error!(%error, "L7 thread {index}: registering its listener failed"),
                };
                let (routes, options) = (routes.clone(), options.clone());
                match default_certificate {
                    None => tokio::spawn(proxy::serve(listener, routes, options)),
                    Some(certificate) => tokio::spawn(serve_tls(listener, routes, options, certificate)),
                };
            }
            // Dropping the runtime after this ends every connection of this thread.
            let _ = stopped.await;
        };
        let thread = thread::Builder::new()
            .name(format!("l7-{index}"))
            .spawn(move || runtime.block_on(serving))
            .with_context(|| format!("starting L7 thread {index}"))?;
        Ok(Worker { stop: Some(stop), thread: Some(thread) })
    }
}

impl Drop for Worker {
    fn drop(&mut self) {
        drop(self.stop.take());
        if let Some(thread) = self.thread.take() {
            let _ = thread.join();
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
        Some(self.routes.load().certificates().serving(hello.server_name(), &self.default_certificate))
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
        default_certificate: default_certificate.clone(),
    };
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let config = rustls::ServerConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .expect("the ring provider supports the default TLS versions");
    let mut config = config.with_no_client_auth().with_cert_resolver(Arc::new(resolver));
    config.alpn_protocols = vec![b"h2".to_vec(), b"http/1.1".to_vec()];
    let acceptor = TlsAcceptor::from(Arc::new(config));
    let handshake_timeout = options.header_read_timeout;
    let proxy = Proxy::new(routes.clone(), options);
    accept_loop(listener, move |stream, peer: SocketAddr, connections| {
        let (proxy, acceptor) = (proxy.clone(), acceptor.clone());
        let (routes, default_certificate) = (routes.clone(), default_certificate.clone());
        connections.spawn(async move {
            let stream = match tokio::time::timeout(handshake_timeout, acceptor.accept(stream)).await {
                Ok(Ok(stream)) => stream,
                Ok(Err(error)) => return tracing::debug!(%peer, %error, "TLS handshake failed"),
                Err(_elapsed) => return tracing::debug!(%peer, "TLS handshake timed out"),
            };
            let tls = stream.get_ref().1;
            let h2 = tls.alpn_protocol() == Some(b"h2");
            let session = TlsSession::established(tls.server_name(), routes.load().certificates(), &default_certificate);
            proxy.serve_connection(stream, peer, Some(Arc::new(session)), h2).await;
        });
    })
    .await
}
