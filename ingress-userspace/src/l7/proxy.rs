//! The L7 proxy's server side: accepts connections, enforces the client-side
//! limits and timeouts, routes every request through the current route table
//! and answers for the built-in default backend.

use std::io;
use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::{Duration, Instant};

use bytes::{Buf, Bytes, BytesMut};
use hyper::body::Body;
use hyper::server::conn::{http1, http2};
use hyper::header::{HOST, HeaderValue, SERVER};
use hyper::{Method, Request, Response, StatusCode, Version};
use hyper_util::rt::{TokioExecutor, TokioIo, TokioTimer};
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt, ReadBuf};
use tokio::net::TcpListener;
use tokio::task::JoinSet;

use super::SharedRoutes;
use super::forward::{Client, Forwarded, Upstreams};
use super::metrics::MetricsShard;
use super::misdirected::TlsSession;
use super::mirror::Mirrors;
use super::options::ProxyOptions;
use super::policy;
use super::response::{BoxError, ProxyBody, SERVER_NAME, local};
use super::table::Decision;

/// How an HTTP/2 client with prior knowledge begins (RFC 9113 3.4), up to
/// the first empty line, which is as far as the first head is read.
const H2_PREFACE_HEAD: &[u8] = b"PRI * HTTP/2.0\r\n\r\n";
/// Streams an HTTP/2 client may have open at once (nginx's
/// `http2_max_concurrent_streams`).
const H2_MAX_CONCURRENT_STREAMS: u32 = 128;
/// Streams a client may open and reset before the proxy has even taken
/// them, after which the connection gets GOAWAY: the defence against rapid
/// reset (CVE-2023-44487). h2's own default, stated here so that an upgrade
/// cannot drop it unnoticed.
const H2_MAX_PENDING_ACCEPT_RESET_STREAMS: usize = 20;
/// Streams the proxy may reset for a client's protocol errors before it ends
/// the connection (h2's own default, stated for the same reason).
const H2_MAX_LOCAL_ERROR_RESET_STREAMS: usize = 1024;

/// Everything a connection needs, shared by all of them.
pub(crate) struct Proxy {
    pub(crate) routes: SharedRoutes,
    pub(crate) options: ProxyOptions,
    pub(crate) upstreams: Upstreams,
    mirrors: Mirrors,
    /// This thread's counters (a proxy serves one listener of one thread).
    metrics: Arc<MetricsShard>,
}

/// Serves plain HTTP (HTTP/1.1, and HTTP/2 with prior knowledge) on
/// `listener` until the future is dropped, which also ends its connections.
pub async fn serve(listener: TcpListener, routes: SharedRoutes, options: ProxyOptions) {
    let proxy = Proxy::new(routes, options);
    accept_loop(listener, move |stream, peer, connections| {
        let proxy = proxy.clone();
        connections.spawn(async move { proxy.serve_connection(stream, peer, None, false).await });
    })
    .await
}

pub(crate) async fn accept_loop(
    listener: TcpListener,
    mut on_accept: impl FnMut(tokio::net::TcpStream, SocketAddr, &mut JoinSet<()>),
) {
    let mut connections = JoinSet::new();
    loop {
        tokio::select! {
            accepted = listener.accept() => match accepted {
                Ok((stream, peer)) => {
                    let _ = stream.set_nodelay(true);
                    on_accept(stream, client_addr(peer), &mut connections);
                }
                Err(error) => {
                    // Out of file descriptors, most likely: back off instead of spinning.
                    tracing::warn!(%error, "L7 proxy accept failed");
                    tokio::time::sleep(Duration::from_millis(50)).await;
                }
            },
            Some(_) = connections.join_next(), if !connections.is_empty() => {}
        }
    }
}

/// The client as logs and forwarding headers name it: an IPv4 client of a
/// dual-stack listener arrives IPv4-mapped (`::ffff:a.b.c.d`), and is an
/// IPv4 client all the same.
fn client_addr(peer: SocketAddr) -> SocketAddr {
    SocketAddr::new(peer.ip().to_canonical(), peer.port())
}

impl Proxy {
    pub(crate) fn new(routes: SharedRoutes, options: ProxyOptions) -> Arc<Proxy> {
        let upstreams = Upstreams::new(&options);
        let mirrors = Mirrors::new(upstreams.pool().clone(), options.request_timeout, options.metrics.clone());
        let metrics = options.metrics.shard();
        Arc::new(Proxy {
            routes,
            options,
            upstreams,
            mirrors,
            metrics,
        })
    }

    /// `tls`: the handshake of an HTTPS connection, `None` for plain HTTP.
    /// `h2_negotiated`: ALPN chose HTTP/2, so there is no HTTP/1 head to pre-read.
    pub(crate) async fn serve_connection<IO>(
        self: Arc<Self>,
        mut io: IO,
        peer: SocketAddr,
        tls: Option<Arc<TlsSession>>,
        h2_negotiated: bool,
    ) where
        IO: AsyncRead + AsyncWrite + Unpin + Send + 'static,
    {
        let head = if h2_negotiated {
            BytesMut::new()
        } else {
            match self.read_first_head(&mut io).await {
                Ok(head) => head,
                Err(refusal) => {
                    if let Some(status) = refusal {
                        let response = format!(
                            "HTTP/1.1 {status}\r\nserver: {SERVER_NAME}\r\nconnection: close\r\ncontent-length: 0\r\n\r\n"
                        );
                        let _ = io.write_all(response.as_bytes()).await;
                        let _ = io.shutdown().await;
                    }
                    return;
                }
            }
        };
        // The connection preface of HTTP/2 with prior knowledge starts like a
        // request head ("PRI * HTTP/2.0", then an empty line), so the head
        // already read tells the protocol; hyper's `auto` builder would read
        // and rewind it once more.
        let h2 = h2_negotiated || head.starts_with(H2_PREFACE_HEAD);
        let client = Arc::new(Client::new(peer));
        if h2 {
            self.serve_h2(Prefixed { head: head.freeze(), io }, client, tls).await;
        } else {
            self.serve_http1(io, head, client, tls).await;
        }
    }

    async fn serve_h2<IO>(self: Arc<Self>, io: Prefixed<IO>, client: Arc<Client>, tls: Option<Arc<TlsSession>>)
    where
        IO: AsyncRead + AsyncWrite + Unpin + Send + 'static,
    {
        let peer = client.addr;
        let mut builder = http2::Builder::new(TokioExecutor::new());
        builder
            .timer(TokioTimer::new())
            .max_header_list_size(u32::try_from(self.options.max_header_bytes).unwrap_or(u32::MAX))
            .max_concurrent_streams(H2_MAX_CONCURRENT_STREAMS)
            .max_pending_accept_reset_streams(H2_MAX_PENDING_ACCEPT_RESET_STREAMS)
            .max_local_error_reset_streams(H2_MAX_LOCAL_ERROR_RESET_STREAMS)
            .keep_alive_interval(Some(self.options.client_idle_timeout));
        let proxy = self.clone();
        let service = hyper::service::service_fn(move |request| proxy.clone().handle(request, client.clone(), tls.clone()));
        if let Err(error) = builder.serve_connection(TokioIo::new(io), service).await {
            tracing::debug!(%peer, %error, "L7 client connection ended");
        }
    }

    /// The rest of an HTTP/1 connection, from the bytes in `read` on, as
    /// hyper's server serves it (see `client_conn` for which requests come
    /// here).
    pub(super) async fn serve_with_hyper<IO>(self: Arc<Self>, io: IO, read: Bytes, client: Arc<Client>, tls: Option<Arc<TlsSession>>)
    where
        IO: AsyncRead + AsyncWrite + Unpin + Send + 'static,
    {
        let peer = client.addr;
        let mut builder = http1::Builder::new();
        builder
            .timer(TokioTimer::new())
            // hyper times idle keep-alive connections with the same timer.
            .header_read_timeout(self.options.client_idle_timeout)
            .max_buf_size(self.options.max_header_bytes.max(8192));
        let proxy = self.clone();
        let service = hyper::service::service_fn(move |request| proxy.clone().handle(request, client.clone(), tls.clone()));
        let io = TokioIo::new(Prefixed { head: read, io });
        if let Err(error) = builder.serve_connection(io, service).with_upgrades().await {
            tracing::debug!(%peer, %error, "L7 client connection ended");
        }
    }

    /// Reads until the first request head is complete, so that a slow client
    /// gets 408, an oversized request line 414 (nginx's answer when the line
    /// alone is over `large_client_header_buffers`) and an oversized head
    /// 431. `Err(None)`: the client left.
    async fn read_first_head<IO: AsyncRead + Unpin>(&self, io: &mut IO) -> Result<BytesMut, Option<&'static str>> {
        let limit = self.options.max_header_bytes;
        let mut head = BytesMut::with_capacity(4096);
        let deadline = tokio::time::Instant::now() + self.options.header_read_timeout;
        // Where the search for the empty line resumes: a client trickling its
        // head byte by byte must not make every read rescan all of it.
        let mut searched: usize = 0;
        loop {
            let complete = head[searched.saturating_sub(3)..].windows(4).position(|window| window == b"\r\n\r\n");
            let head_length = complete.map_or(head.len(), |at| searched.saturating_sub(3) + at + 4);
            if head_length > limit {
                let request_line = head.windows(2).position(|window| window == b"\r\n").unwrap_or(head.len());
                if request_line > limit {
                    return Err(Some("414 URI Too Long"));
                }
                return Err(Some("431 Request Header Fields Too Large"));
            }
            if complete.is_some() {
                return Ok(head);
            }
            searched = head.len();
            match tokio::time::timeout_at(deadline, io.read_buf(&mut head)).await {
                Err(_elapsed) => return Err(Some("408 Request Timeout")),
                Ok(Ok(0)) | Ok(Err(_)) => return Err(None),
                Ok(Ok(_)) => {}
            }
        }
    }

    /// Routes and answers one request, whichever server side read it.
    pub(super) async fn handle<B>(
        self: Arc<Self>,
        request: Request<B>,
        client: Arc<Client>,
        tls: Option<Arc<TlsSession>>,
    ) -> Result<Response<ProxyBody>, CloseConnection>
    where
        B: Body<Data = Bytes> + Send + Sync + Unpin + 'static,
        B::Error: Into<BoxError>,
    {
        let started = Instant::now();
        let peer = client.addr;
        let scheme = if tls.is_some() { "https" } else { "http" };
        let method = request.method().clone();
        // The path outlives the request only for the access log, which is off by default.
        let access_log = tracing::enabled!(target: "l7_access", tracing::Level::INFO);
        let path = if access_log { request.uri().path().to_owned() } else { String::new() };
        let authority_value = authority_of(&request);
        let authority = authority_value.to_str().unwrap_or_default();
        let table = self.routes.load_full();
        let absolute_form = request.version() <= Version::HTTP_11 && request.uri().scheme().is_some();
        let (route_name, outcome) = if method == Method::CONNECT {
            ("refused", local(StatusCode::METHOD_NOT_ALLOWED, "CONNECT is not supported\n"))
        } else if absolute_form && !table.serves_host(authority) {
            // Never act as a forward proxy for hosts this node does not serve.
            ("refused", local(StatusCode::MISDIRECTED_REQUEST, "host not served here\n"))
        } else if tls.is_some_and(|tls| tls.misdirects(authority, table.certificates())) {
            ("refused", local(StatusCode::MISDIRECTED_REQUEST, "host does not match the TLS server name\n"))
        } else {
            match table.lookup(authority, scheme, &request) {
                Decision::Forward { route, rule, canary } => {
                    let route = canary.filter(|canary| canary.takes(request.headers())).map_or(route, |canary| &canary.route);
                    let local_answer = || route.filters.redirect(&request, rule, scheme, authority);
                    let response = match policy::local_answer(route, &request, peer.ip(), scheme, authority).or_else(local_answer) {
                        Some(answer) => answer,
                        None => {
                            let cors = route.annotations.cors.as_ref().map(|cors| policy::cors_headers(cors, request.headers()));
                            let mut request = request;
                            let upstream_host = route.filters.rewrite_request(&mut request, rule);
                            let forwarded = Forwarded { client: &client, scheme, authority: &authority_value, rule, upstream_host };
                            if !route.filters.mirrors.is_empty() {
                                self.mirrors.send(&route.filters.mirrors, &request, &forwarded);
                            }
                            let mut response = self.upstreams.forward(request, route, forwarded, &self.options).await;
                            route.filters.response_headers.apply(response.headers_mut());
                            if let Some(cors) = cors {
                                response.headers_mut().extend(cors);
                            }
                            response
                        }
                    };
                    (route.name.as_str(), response)
                }
                Decision::DefaultBackend { known_host } => {
                    let healthz = request.uri().path() == "/healthz" && matches!(method, Method::GET | Method::HEAD);
                    if !known_host && !healthz && self.options.close_unknown_hosts {
                        if access_log {
                            self.log(peer, &method, authority, &path, "unknown-host", None, started);
                        }
                        return Err(CloseConnection);
                    }
                    let response = if healthz {
                        local(StatusCode::OK, "ok")
                    } else {
                        local(StatusCode::NOT_FOUND, "default backend - 404")
                    };
                    ("default-backend", response)
                }
            }
        };
        let mut response = outcome;
        response.headers_mut().insert(SERVER, HeaderValue::from_static(SERVER_NAME));
        let status = response.status();
        self.metrics.observe(route_name, status.as_u16(), started.elapsed());
        if access_log {
            self.log(peer, &method, authority, &path, route_name, Some(status), started);
        }
        Ok(response)
    }

    #[allow(clippy::too_many_arguments)]
    fn log(
        &self,
        peer: SocketAddr,
        method: &Method,
        authority: &str,
        path: &str,
        route: &str,
        status: Option<StatusCode>,
        started: Instant,
    ) {
        let status = status.map_or(0, |status| status.as_u16());
        let millis = started.elapsed().as_secs_f64() * 1000.0;
        tracing::info!(target: "l7_access", client = %peer.ip(), %method, host = authority, path, route, status, millis);
    }
}

/// The service's error: hyper closes the connection without a response.
#[derive(Debug)]
pub struct CloseConnection;

impl std::fmt::Display for CloseConnection {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("connection closed for an unknown host")
    }
}

impl std::error::Error for CloseConnection {}

/// The authority a request is for: the URI's (HTTP/2 `:authority`, or an
/// HTTP/1 absolute-form target, which overrides `Host`), else `Host`,
/// shared rather than copied; empty when it is not visible ASCII.
fn authority_of<B>(request: &Request<B>) -> HeaderValue {
    let empty = || HeaderValue::from_static("");
    if let Some(authority) = request.uri().authority() {
        return HeaderValue::from_str(authority.as_str()).unwrap_or_else(|_| empty());
    }
    let host = request.headers().get(HOST).filter(|host| host.to_str().is_ok());
    host.cloned().unwrap_or_else(empty)
}

/// The bytes read ahead of hyper, replayed before the rest of the stream.
struct Prefixed<IO> {
    head: Bytes,
    io: IO,
}

impl<IO: AsyncRead + Unpin> AsyncRead for Prefixed<IO> {
    fn poll_read(mut self: Pin<&mut Self>, cx: &mut Context<'_>, buf: &mut ReadBuf<'_>) -> Poll<io::Result<()>> {
        if self.head.has_remaining() {
            let count = self.head.len().min(buf.remaining());
            buf.put_slice(&self.head[..count]);
            self.head.advance(count);
            return Poll::Ready(Ok(()));
        }
        Pin::new(&mut self.io).poll_read(cx, buf)
    }
}

impl<IO: AsyncWrite + Unpin> AsyncWrite for Prefixed<IO> {
    fn poll_write(mut self: Pin<&mut Self>, cx: &mut Context<'_>, buf: &[u8]) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.io).poll_write(cx, buf)
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.io).poll_flush(cx)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.io).poll_shutdown(cx)
    }

    fn poll_write_vectored(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.io).poll_write_vectored(cx, bufs)
    }

    fn is_write_vectored(&self) -> bool {
        self.io.is_write_vectored()
    }
}

#[cfg(test)]
#[path = "proxy_tests.rs"]
pub(crate) mod tests;
