//! How the proxy serves: client-side limits and timeouts, the upstream
//! pool's timeouts, and where it counts requests.

use std::sync::Arc;
use std::time::Duration;

use super::metrics::L7Metrics;

#[derive(Clone)]
pub struct ProxyOptions {
    /// Close the connection without a response when no rule claims the host
    /// (nginx's `return 444`) instead of answering 404. `/healthz` still answers,
    /// so load balancer health checks by IP keep working.
    pub close_unknown_hosts: bool,
    pub connect_timeout: Duration,
    /// Until the upstream's response headers arrive (504 after it).
    pub request_timeout: Duration,
    /// For a client to send a request head (408 after it on a new connection;
    /// nginx's `client_header_timeout`, 60 s there).
    pub header_read_timeout: Duration,
    /// Between two reads of a request body (408 after it; nginx's
    /// `client_body_timeout`, the same 60 s as there).
    pub body_read_timeout: Duration,
    /// A keep-alive client connection with no request in flight is closed after it.
    pub client_idle_timeout: Duration,
    /// Pooled upstream connections are closed after it.
    pub upstream_idle_timeout: Duration,
    /// Request line and headers (431 above it).
    pub max_header_bytes: usize,
    /// Request body (413 above it).
    pub max_body_bytes: u64,
    /// `SO_MARK` on upstream connections, set by the agent when the socket
    /// shortcut to local pods is attached (`PROXY_SOCKET_MARK`).
    pub upstream_mark: Option<u32>,
    pub metrics: Arc<L7Metrics>,
}

impl Default for ProxyOptions {
    fn default() -> Self {
        ProxyOptions {
            close_unknown_hosts: false,
            connect_timeout: Duration::from_secs(5),
            request_timeout: Duration::from_secs(60),
            header_read_timeout: Duration::from_secs(10),
            body_read_timeout: Duration::from_secs(60),
            client_idle_timeout: Duration::from_secs(75),
            upstream_idle_timeout: Duration::from_secs(60),
            max_header_bytes: 16 * 1024,
            max_body_bytes: 16 * 1024 * 1024,
            upstream_mark: None,
            metrics: Arc::default(),
        }
    }
}
