//! The L7 side of the agent: the listeners and the route table they share,
//! rebuilt from every snapshot and swapped in without a reload.

use std::net::{Ipv4Addr, SocketAddr};
use std::sync::Arc;

use anyhow::Context;
use rustls::sign::CertifiedKey;
use tokio::net::TcpListener;
use tokio::task::JoinHandle;

use super::proxy::{self, ProxyOptions};
use super::{L7Options, RouteTable, SharedRoutes, shared_routes, tls};
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
            let serving = tls::serve_tls(listener, routes.clone(), config.proxy.clone(), default_certificate);
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
