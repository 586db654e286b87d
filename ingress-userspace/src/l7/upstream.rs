//! Upstream HTTP/1.1 connections and the keep-alive pool the proxy owns: one
//! `hyper::client::conn::http1` connection per TCP stream it connects itself,
//! driven by the request that uses it (no task per connection): while the
//! response head is awaited, then by the response body as the client reads
//! it. A connection whose answer was complete and did not ask to close goes
//! back to the pool of its endpoint; any other is dropped, which closes it.

use std::collections::HashMap;
use std::future::{Future, poll_fn};
use std::io;
use std::net::SocketAddr;
use std::pin::{Pin, pin};
use std::sync::{Arc, Mutex, Weak};
use std::task::{Context, Poll, Waker};
use std::time::Duration;

use bytes::Bytes;
use hyper::body::{Body, Frame, Incoming, SizeHint};
use hyper::client::conn::http1::{self, Connection, SendRequest};
use hyper::header::{self, HeaderMap};
use hyper::{Request, Response, Version};
use hyper_util::rt::TokioIo;
use tokio::net::TcpStream;
use tokio::time::Instant;

use super::response::{BoxError, ProxyBody};

/// Idle connections kept per endpoint, as nginx's `keepalive 32` in the benchmark.
const MAX_IDLE_PER_ENDPOINT: usize = 32;

type Io = TokioIo<TcpStream>;

/// One HTTP/1.1 connection to an upstream: the side that sends requests and
/// the state machine that must be polled for anything to move.
pub(crate) struct Conn {
    sender: SendRequest<ProxyBody>,
    connection: Connection<Io, ProxyBody>,
}

struct Idle {
    conn: Conn,
    since: Instant,
}

pub(crate) struct Pool {
    idle: Mutex<HashMap<SocketAddr, Vec<Idle>>>,
    connect_timeout: Duration,
    idle_timeout: Duration,
}

impl Pool {
    /// Also starts the sweep that closes connections idle for longer than
    /// `idle_timeout`; it ends with the pool. Must run inside a tokio runtime.
    pub(crate) fn new(connect_timeout: Duration, idle_timeout: Duration) -> Arc<Pool> {
        let pool = Arc::new(Pool { idle: Mutex::default(), connect_timeout, idle_timeout });
        tokio::spawn(sweep(Arc::downgrade(&pool), idle_timeout));
        pool
    }

    /// Sends `request` on an idle connection to `endpoint` (one that the
    /// upstream closed meanwhile is skipped, and a request it could not take
    /// goes out again on a new connection) or on a new one.
    pub(crate) async fn send(self: &Arc<Self>, endpoint: SocketAddr, request: Request<ProxyBody>) -> Result<Response<ProxyBody>, BoxError> {
        let mut request = request;
        if let Some(conn) = self.checkout(endpoint) {
            match exchange(conn, request).await {
                Ok((response, conn)) => return Ok(self.pass_on(endpoint, response, conn)),
                Err(mut error) => match error.take_message() {
                    Some(unsent) => request = unsent,
                    None => return Err(error.into_error().into()),
                },
            }
        }
        let conn = self.connect(endpoint).await?;
        let (response, conn) = exchange(conn, request).await.map_err(|error| error.into_error())?;
        Ok(self.pass_on(endpoint, response, conn))
    }

    /// A connection of its own for a request that asks to switch protocols:
    /// polled by a task until the switch hands its socket to the upgrade.
    pub(crate) async fn send_upgrade(&self, endpoint: SocketAddr, request: Request<ProxyBody>) -> Result<Response<Incoming>, BoxError> {
        let Conn { mut sender, connection } = self.connect(endpoint).await?;
        tokio::spawn(connection.with_upgrades());
        Ok(sender.send_request(request).await?)
    }

    async fn connect(&self, endpoint: SocketAddr) -> Result<Conn, BoxError> {
        let connecting = tokio::time::timeout(self.connect_timeout, TcpStream::connect(endpoint));
        let stream = match connecting.await {
            Ok(connected) => connected?,
            Err(_elapsed) => return Err(io::Error::new(io::ErrorKind::TimedOut, "connect timed out").into()),
        };
        // The request head and a small body go out in one write; what
        // follows must not wait for an ACK.
        stream.set_nodelay(true)?;
        let (sender, connection) = http1::Builder::new().handshake(TokioIo::new(stream)).await?;
        Ok(Conn { sender, connection })
    }

    /// The newest idle connection to `endpoint` that is still open.
    fn checkout(&self, endpoint: SocketAddr) -> Option<Conn> {
        let mut idle = self.idle.lock().unwrap_or_else(|poisoned| poisoned.into_inner());
        let conns = idle.get_mut(&endpoint)?;
        while let Some(Idle { mut conn, since }) = conns.pop() {
            if since.elapsed() < self.idle_timeout && conn.is_open() {
                return Some(conn);
            }
        }
        None
    }

    fn checkin(&self, endpoint: SocketAddr, conn: Conn) {
        let mut idle = self.idle.lock().unwrap_or_else(|poisoned| poisoned.into_inner());
        let conns = idle.entry(endpoint).or_default();
        if conns.len() < MAX_IDLE_PER_ENDPOINT {
            conns.push(Idle { conn, since: Instant::now() });
        }
    }

    /// The response, with a body that keeps the connection moving and, once
    /// complete, returns it to the pool when the upstream keeps it alive.
    fn pass_on(self: &Arc<Self>, endpoint: SocketAddr, response: Response<Incoming>, conn: Conn) -> Response<ProxyBody> {
        let reuse = keeps_alive(response.version(), response.headers()).then(|| (self.clone(), endpoint));
        response.map(|body| ProxyBody::new(DrivingBody { body, conn: Some(conn), finished: false, reuse }))
    }
}

impl Conn {
    /// Lets the connection read what arrived while it sat idle (the
    /// upstream's close, most likely) and tells whether it can take a request.
    fn is_open(&mut self) -> bool {
        let mut cx = Context::from_waker(Waker::noop());
        match self.connection.poll_without_shutdown(&mut cx) {
            Poll::Ready(_) => false,
            Poll::Pending => self.sender.is_ready(),
        }
    }
}

/// Sends `request` and polls the connection until the response head is in.
/// `poll_without_shutdown`: a connection that ends is dropped, which closes
/// the socket; a `shutdown` first would only cost a system call.
async fn exchange(
    mut conn: Conn,
    request: Request<ProxyBody>,
) -> Result<(Response<Incoming>, Conn), hyper::client::conn::TrySendError<Request<ProxyBody>>> {
    let mut response = pin!(conn.sender.try_send_request(request));
    let mut connection_done = false;
    let response = poll_fn(|cx| {
        if let Poll::Ready(response) = response.as_mut().poll(cx) {
            return Poll::Ready(response);
        }
        if !connection_done && conn.connection.poll_without_shutdown(cx).is_ready() {
            // The dispatcher is gone, so the response future has its error now.
            connection_done = true;
            return response.as_mut().poll(cx);
        }
        Poll::Pending
    })
    .await?;
    Ok((response, conn))
}

/// Whether the upstream keeps the connection after this response (RFC 9112
/// 9.3): HTTP/1.1 unless it says `close`, HTTP/1.0 only if it says `keep-alive`.
fn keeps_alive(version: Version, headers: &HeaderMap) -> bool {
    let says = |token: &str| {
        headers
            .get_all(header::CONNECTION)
            .iter()
            .filter_map(|value| value.to_str().ok())
            .flat_map(|value| value.split(','))
            .any(|item| item.trim().eq_ignore_ascii_case(token))
    };
    match version {
        Version::HTTP_11 => !says("close"),
        Version::HTTP_10 => says("keep-alive"),
        _ => false,
    }
}

/// The upstream's response body as the client reads it; polling it also
/// polls the connection, which is what reads the upstream's bytes.
struct DrivingBody {
    body: Incoming,
    conn: Option<Conn>,
    finished: bool,
    reuse: Option<(Arc<Pool>, SocketAddr)>,
}

impl Body for DrivingBody {
    type Data = Bytes;
    type Error = BoxError;

    fn poll_frame(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Result<Frame<Bytes>, BoxError>>> {
        let this = &mut *self;
        if let Some(conn) = &mut this.conn
            && conn.connection.poll_without_shutdown(cx).is_ready()
        {
            // Closed (its last bytes already handed to the body) or failed (the body says how).
            this.conn = None;
        }
        let frame = Pin::new(&mut this.body).poll_frame(cx);
        if let Poll::Ready(None) = frame {
            this.finished = true;
        }
        frame.map_err(BoxError::from)
    }

    fn is_end_stream(&self) -> bool {
        self.body.is_end_stream()
    }

    fn size_hint(&self) -> SizeHint {
        self.body.size_hint()
    }
}

impl Drop for DrivingBody {
    fn drop(&mut self) {
        let complete = self.finished || self.body.is_end_stream();
        if let (true, Some(conn), Some((pool, endpoint))) = (complete, self.conn.take(), self.reuse.take()) {
            pool.checkin(endpoint, conn);
        }
    }
}

/// Closes connections idle past `idle_timeout`, until the pool is gone.
async fn sweep(pool: Weak<Pool>, idle_timeout: Duration) {
    let mut ticks = tokio::time::interval(idle_timeout.max(Duration::from_secs(1)) / 2);
    loop {
        ticks.tick().await;
        let Some(pool) = pool.upgrade() else { return };
        let mut idle = pool.idle.lock().unwrap_or_else(|poisoned| poisoned.into_inner());
        idle.retain(|_, conns| {
            conns.retain(|conn| conn.since.elapsed() < idle_timeout);
            !conns.is_empty()
        });
    }
}

#[cfg(test)]
mod tests {
    use hyper::header::HeaderValue;

    use super::*;

    #[test]
    fn keep_alive_follows_the_version_and_the_connection_header() {
        let cases = [
            (Version::HTTP_11, None, true),
            (Version::HTTP_11, Some("close"), false),
            (Version::HTTP_11, Some("Keep-Alive, Close"), false),
            (Version::HTTP_10, None, false),
            (Version::HTTP_10, Some("keep-alive"), true),
            (Version::HTTP_10, Some("close"), false),
        ];
        for (version, connection, expected) in cases {
            let mut headers = HeaderMap::new();
            if let Some(connection) = connection {
                headers.insert(header::CONNECTION, HeaderValue::from_static(connection));
            }
            assert_eq!(keeps_alive(version, &headers), expected, "{version:?} {connection:?}");
        }
    }
}
