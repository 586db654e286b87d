//! Upstream HTTP/1.1 connections and the keep-alive pool the proxy owns
//! (one per worker thread): the request head is written into a buffer the
//! connection keeps, the response head parsed into the client's answer
//! (`h1_wire`), and the response body read straight from the socket as the
//! client reads it, no task and no channel in between. A connection whose
//! answer was complete, self-delimited and did not ask to close goes back to
//! the pool of its endpoint; any other is dropped, which closes it. Only a
//! request that asks to switch protocols (WebSocket) gets a hyper client
//! connection of its own, polled by a task until the switch.

use std::fmt;
use std::future::poll_fn;
use std::io;
use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::{Arc, Mutex, Weak};
use std::task::{Context, Poll, Waker, ready};
use std::time::Duration;

use bytes::{Bytes, BytesMut};
use hyper::body::{Body, Frame, Incoming, SizeHint};
use hyper::client::conn::http1;
use hyper::header::HeaderMap;
use hyper::{Method, Request, Response, Version};
use hyper_util::rt::TokioIo;
use tokio::io::{AsyncRead, AsyncWrite, AsyncWriteExt, ReadBuf};
use nix::sys::socket::{setsockopt, sockopt};
use tokio::net::{TcpSocket, TcpStream};
use tokio::time::Instant;

use super::body_out::{self, BodyOutError};
use super::h1_wire::{self, Added, Chunked, Decoded, Framing, Malformed, Outgoing, ResponseHead};
use super::response::{BoxError, ProxyBody};

/// Idle connections kept per endpoint, as nginx's `keepalive 32` in the benchmark.
const MAX_IDLE_PER_ENDPOINT: usize = 32;
/// What one read asks for at least; a response head and a small body fit.
const READ_SIZE: usize = 8 * 1024;
/// What a new connection's write buffer starts with: a usual request head
/// fits at once, where growing from empty reallocated at every doubling
/// (with `close` pods, for every request).
const WRITE_HEAD_CAPACITY: usize = 1024;

/// One HTTP/1.1 connection to an upstream and its buffers, kept with it.
pub(crate) struct Conn {
    stream: TcpStream,
    /// What the upstream sent that is not taken yet.
    read: BytesMut,
    /// The request head (and small body pieces) before they are written.
    write: Vec<u8>,
}

struct Idle {
    conn: Conn,
    since: Instant,
}

pub(crate) struct Pool {
    /// Looked up twice a request (foldhash: see Cargo.toml).
    idle: Mutex<foldhash::HashMap<SocketAddr, Vec<Idle>>>,
    connect_timeout: Duration,
    idle_timeout: Duration,
    /// `SO_MARK` of new connections: set when the socket shortcut to local
    /// pods is on (`ProxyOptions::upstream_mark`).
    mark: Option<u32>,
    /// Endpoints that closed their last new connection after its first
    /// answer (HTTP/1.0 or `Connection: close` pods): their connections
    /// skip the shortcut, since pairing two sockets and unpairing them costs
    /// more than one exchange saves (`bench_l7`, close pods: 12.8k req/s
    /// with it, 13.3k without). Emptied by every sweep.
    short_lived: Mutex<foldhash::HashSet<SocketAddr>>,
}

/// Why an exchange with an upstream failed; `source` leads to the request
/// body's own error, which the proxy tells apart (413, 408, 400).
#[derive(Debug)]
pub(crate) enum UpstreamError {
    Io(io::Error),
    /// The upstream closed before a complete response head.
    Closed,
    Malformed(Malformed),
    /// The client's request body failed while it was being sent.
    RequestBody(BoxError),
}

impl fmt::Display for UpstreamError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            UpstreamError::Io(error) => write!(f, "upstream connection failed: {error}"),
            UpstreamError::Closed => f.write_str("the upstream closed the connection before answering"),
            UpstreamError::Malformed(malformed) => malformed.fmt(f),
            UpstreamError::RequestBody(_) => f.write_str("the request body failed"),
        }
    }
}

impl std::error::Error for UpstreamError {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        match self {
            UpstreamError::Io(error) => Some(error),
            UpstreamError::RequestBody(error) => Some(error.as_ref()),
            UpstreamError::Closed | UpstreamError::Malformed(_) => None,
        }
    }
}

/// A failed exchange, and whether the request may go out again: only when
/// nothing came back and no byte of its body was taken, which is a pooled
/// connection the upstream had closed meanwhile.
struct Failed {
    error: UpstreamError,
    may_retry: bool,
}

impl Pool {
    /// Also starts the sweep that closes connections idle for longer than
    /// `idle_timeout`; it ends with the pool. Must run inside a tokio runtime.
    pub(crate) fn new(connect_timeout: Duration, idle_timeout: Duration, mark: Option<u32>) -> Arc<Pool> {
        let pool = Arc::new(Pool { idle: Mutex::default(), connect_timeout, idle_timeout, mark, short_lived: Mutex::default() });
        tokio::spawn(sweep(Arc::downgrade(&pool), idle_timeout));
        pool
    }

    /// Sends the request on an idle connection to `endpoint` (one that the
    /// upstream closed meanwhile is skipped, and a request it could not take
    /// goes out again on a new connection) or on a new one.
    pub(crate) async fn send(self: &Arc<Self>, endpoint: SocketAddr, head: &RequestHead<'_>, mut body: ProxyBody) -> Result<Response<ProxyBody>, BoxError> {
        let outgoing = h1_wire::outgoing(head.method, head.headers, body.is_end_stream(), body.size_hint().exact());
        let mut exchange = Exchange { head, outgoing, body: &mut body, body_taken: false };
        if let Some(conn) = self.checkout(endpoint) {
            match exchange.run(conn).await {
                Ok((head, conn)) => return Ok(self.pass_on(endpoint, head, conn)),
                Err(Failed { error, may_retry: true }) => tracing::debug!(%endpoint, %error, "pooled upstream connection was closed; sending again"),
                Err(Failed { error, .. }) => return Err(error.into()),
            }
        }
        let conn = self.connect(endpoint).await?;
        let (head, conn) = exchange.run(conn).await.map_err(|failed| failed.error)?;
        if self.mark.is_some() {
            let mut short_lived = self.short_lived.lock().unwrap_or_else(|poisoned| poisoned.into_inner());
            if head.keep_alive { short_lived.remove(&endpoint) } else { short_lived.insert(endpoint) };
        }
        Ok(self.pass_on(endpoint, head, conn))
    }

    /// A connection of its own for a request that asks to switch protocols:
    /// polled by a task until the switch hands its socket to the upgrade.
    pub(crate) async fn send_upgrade(&self, endpoint: SocketAddr, request: Request<ProxyBody>) -> Result<Response<Incoming>, BoxError> {
        let stream = self.connect_stream(endpoint).await?;
        let (mut sender, connection) = http1::Builder::new().handshake(TokioIo::new(stream)).await?;
        tokio::spawn(connection.with_upgrades());
        Ok(sender.send_request(request).await?)
    }

    async fn connect(&self, endpoint: SocketAddr) -> Result<Conn, UpstreamError> {
        let stream = self.connect_stream(endpoint).await?;
        Ok(Conn { stream, read: BytesMut::new(), write: Vec::with_capacity(WRITE_HEAD_CAPACITY) })
    }

    async fn connect_stream(&self, endpoint: SocketAddr) -> Result<TcpStream, UpstreamError> {
        let mark = self.mark.filter(|_| !self.short_lived.lock().unwrap_or_else(|poisoned| poisoned.into_inner()).contains(&endpoint));
        let connecting = tokio::time::timeout(self.connect_timeout, connect_marked(endpoint, mark));
        let stream = match connecting.await {
            Ok(connected) => connected.map_err(UpstreamError::Io)?,
            Err(_elapsed) => return Err(UpstreamError::Io(io::Error::new(io::ErrorKind::TimedOut, "connect timed out"))),
        };
        // The request head and a small body go out in one write; what
        // follows must not wait for an ACK.
        stream.set_nodelay(true).map_err(UpstreamError::Io)?;
        Ok(stream)
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

    /// The client's answer: the upstream's head, and a body that reads the
    /// rest from the connection and, once complete, returns it to the pool
    /// when the upstream keeps it alive.
    fn pass_on(self: &Arc<Self>, endpoint: SocketAddr, head: ResponseHead, conn: Conn) -> Response<ProxyBody> {
        let reuse = head.keep_alive.then(|| (self.clone(), endpoint));
        let state = match head.framing {
            Framing::Empty | Framing::Length(0) => State::Done,
            Framing::Length(left) => State::Length(left),
            Framing::Chunked => State::Chunked(Chunked::Size),
            Framing::UntilClose => State::UntilClose,
        };
        let body = UpstreamBody { conn: Some(conn), state, reuse };
        let mut response = Response::new(ProxyBody::new(body));
        *response.status_mut() = head.status;
        *response.version_mut() = head.version;
        *response.headers_mut() = head.headers;
        response
    }
}

/// A request head as it goes upstream, borrowed from where it was built:
/// the same head may go to another endpoint when this one fails.
pub(crate) struct RequestHead<'a> {
    pub method: &'a Method,
    /// Origin form: the path and the query.
    pub target: &'a str,
    pub headers: &'a HeaderMap,
    /// The forwarding headers, in place of the client's of those names.
    pub added: &'a Added,
}

impl RequestHead<'_> {
    /// As hyper's client takes it, for a request that switches protocols.
    pub(crate) fn to_request(&self, body: ProxyBody) -> Request<ProxyBody> {
        let mut request = Request::new(body);
        *request.method_mut() = self.method.clone();
        *request.uri_mut() = self.target.parse().unwrap_or_default();
        *request.version_mut() = Version::HTTP_11;
        let mut headers = self.headers.clone();
        headers.reserve(self.added.len());
        for (name, value) in self.added {
            headers.insert(name, value.clone());
        }
        *request.headers_mut() = headers;
        request
    }
}

/// One request as it goes out, possibly twice (see [`Failed`]).
struct Exchange<'a> {
    head: &'a RequestHead<'a>,
    outgoing: Outgoing,
    body: &'a mut ProxyBody,
    body_taken: bool,
}

impl Exchange<'_> {
    /// Writes the request, then reads until the response head is in; an
    /// answer that comes while the body is still going out ends the writing
    /// (an upstream refusing a large upload early, say, which would never
    /// read the rest of it).
    async fn run(&mut self, mut conn: Conn) -> Result<(ResponseHead, Conn), Failed> {
        conn.write.clear();
        let RequestHead { method, target, headers, added } = self.head;
        h1_wire::write_request_head(&mut conn.write, method, target, headers, added, self.outgoing);
        let head = match self.send_or_answer(&mut conn).await {
            Sending::Sent(Err(error @ UpstreamError::RequestBody(_))) => {
                // The upstream still waits for the rest of the body: no answer is coming.
                return Err(Failed { error, may_retry: false });
            }
            Sending::Sent(sent) => match (sent, read_head(&mut conn.stream, &mut conn.read, method).await) {
                (Ok(()), head) => head,
                // An upstream may answer before it has read the whole body
                // and close: its answer is passed on.
                (Err(UpstreamError::Io(_)), Ok(head)) => Ok(ResponseHead { keep_alive: false, ..head }),
                (Err(error), _) => Err(error),
            },
            // The rest of the body was never sent: the connection is done.
            Sending::Answered(head) => head.map(|head| ResponseHead { keep_alive: false, ..head }),
        };
        match head {
            Ok(head) => Ok((head, conn)),
            Err(error) => {
                let nothing_back = matches!(error, UpstreamError::Closed | UpstreamError::Io(_)) && conn.read.is_empty();
                Err(Failed { may_retry: nothing_back && !self.body_taken, error })
            }
        }
    }

    /// Writes the request while watching for the response head.
    async fn send_or_answer(&mut self, conn: &mut Conn) -> Sending {
        let method = self.head.method;
        let Conn { stream, read, write } = conn;
        let (mut reader, mut writer) = stream.split();
        tokio::select! {
            biased;
            sent = self.send(&mut writer, write) => Sending::Sent(sent),
            head = read_head(&mut reader, read, method) => Sending::Answered(head),
        }
    }

    async fn send(&mut self, stream: &mut (impl AsyncWrite + Unpin), write: &mut Vec<u8>) -> Result<(), UpstreamError> {
        let length = match self.outgoing {
            Outgoing::NoBody => return stream.write_all(&write[..]).await.map_err(UpstreamError::Io),
            Outgoing::Length { length, .. } => Some(length),
            Outgoing::Chunked => None,
        };
        self.body_taken = true;
        body_out::write_body(stream, write, self.body, length).await.map_err(|error| match error {
            BodyOutError::Io(error) => UpstreamError::Io(error),
            BodyOutError::Body(error) => UpstreamError::RequestBody(error),
            BodyOutError::LongerThanDeclared => UpstreamError::RequestBody("the request body is longer than its Content-Length".into()),
            BodyOutError::ShorterThanDeclared => UpstreamError::RequestBody("the request body is shorter than its Content-Length".into()),
        })
    }
}

/// What came of writing a request: it went out whole (or failed), or the
/// response head came first.
enum Sending {
    Sent(Result<(), UpstreamError>),
    Answered(Result<ResponseHead, UpstreamError>),
}

/// Reads from `stream` into `read` until a final response head is there,
/// and takes it. Cancel-safe: what was read stays in `read`.
async fn read_head(stream: &mut (impl AsyncRead + Unpin), read: &mut BytesMut, method: &Method) -> Result<ResponseHead, UpstreamError> {
    loop {
        if let Some(head) = h1_wire::take_response_head(read, method).map_err(UpstreamError::Malformed)? {
            return Ok(head);
        }
        let count = poll_fn(|cx| poll_read_into(Pin::new(&mut *stream), read, cx)).await.map_err(UpstreamError::Io)?;
        if count == 0 {
            return Err(UpstreamError::Closed);
        }
    }
}

/// Reads what the upstream sent into `read`; 0 is its end.
fn poll_read_into(stream: Pin<&mut impl AsyncRead>, read: &mut BytesMut, cx: &mut Context<'_>) -> Poll<io::Result<usize>> {
    if read.capacity() - read.len() < READ_SIZE / 4 {
        read.reserve(READ_SIZE);
    }
    let mut spare = ReadBuf::uninit(read.spare_capacity_mut());
    ready!(stream.poll_read(cx, &mut spare))?;
    let count = spare.filled().len();
    // SAFETY: poll_read initialised the first `count` bytes of the spare capacity.
    unsafe { read.set_len(read.len() + count) };
    Poll::Ready(Ok(count))
}

impl Conn {
    /// Reads what the upstream sent into `read`; 0 is its end.
    fn poll_read(&mut self, cx: &mut Context<'_>) -> Poll<io::Result<usize>> {
        poll_read_into(Pin::new(&mut self.stream), &mut self.read, cx)
    }

    /// Whether an idle connection can take a request: nothing arrived while
    /// it sat idle, neither the upstream's close nor bytes nobody asked for.
    fn is_open(&mut self) -> bool {
        if !self.read.is_empty() {
            return false;
        }
        let mut cx = Context::from_waker(Waker::noop());
        let mut probe = [0u8; 1];
        let mut probe = ReadBuf::new(&mut probe);
        Pin::new(&mut self.stream).poll_read(&mut cx, &mut probe).is_pending()
    }
}

/// A connection to `endpoint`, its socket marked before the handshake when
/// `mark` is set (the sock_ops program reads it at establishment).
async fn connect_marked(endpoint: SocketAddr, mark: Option<u32>) -> io::Result<TcpStream> {
    let Some(mark) = mark else { return TcpStream::connect(endpoint).await };
    let socket = if endpoint.is_ipv4() { TcpSocket::new_v4()? } else { TcpSocket::new_v6()? };
    setsockopt(&socket, sockopt::Mark, &mark)?;
    socket.connect(endpoint).await
}

/// Where the response body is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum State {
    Length(u64),
    Chunked(Chunked),
    UntilClose,
    Done,
}

/// The upstream's response body as the client reads it.
struct UpstreamBody {
    /// Gone once the body failed.
    conn: Option<Conn>,
    state: State,
    reuse: Option<(Arc<Pool>, SocketAddr)>,
}

impl UpstreamBody {
    fn next(&mut self, cx: &mut Context<'_>) -> Poll<Result<Option<Bytes>, UpstreamError>> {
        let Some(conn) = &mut self.conn else { return Poll::Ready(Ok(None)) };
        loop {
            match &mut self.state {
                State::Done => return Poll::Ready(Ok(None)),
                State::Length(left) if !conn.read.is_empty() => {
                    let count = usize::try_from(*left).unwrap_or(usize::MAX).min(conn.read.len());
                    *left -= count as u64;
                    if *left == 0 {
                        self.state = State::Done;
                    }
                    return Poll::Ready(Ok(Some(conn.read.split_to(count).freeze())));
                }
                State::UntilClose if !conn.read.is_empty() => return Poll::Ready(Ok(Some(conn.read.split().freeze()))),
                State::Chunked(decoder) => match decoder.decode(&mut conn.read).map_err(UpstreamError::Malformed)? {
                    Decoded::Data(data) => return Poll::Ready(Ok(Some(data))),
                    Decoded::Done => {
                        self.state = State::Done;
                        return Poll::Ready(Ok(None));
                    }
                    Decoded::NeedMore => {}
                },
                State::Length(_) | State::UntilClose => {}
            }
            if ready!(conn.poll_read(cx)).map_err(UpstreamError::Io)? == 0 {
                if self.state == State::UntilClose {
                    self.state = State::Done;
                    self.reuse = None;
                    continue;
                }
                return Poll::Ready(Err(UpstreamError::Closed));
            }
        }
    }
}

impl Body for UpstreamBody {
    type Data = Bytes;
    type Error = BoxError;

    fn poll_frame(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Result<Frame<Bytes>, BoxError>>> {
        match ready!(self.next(cx)) {
            Ok(data) => Poll::Ready(data.map(|data| Ok(Frame::data(data)))),
            Err(error) => {
                // A body cut short or malformed: this connection is done.
                self.conn = None;
                Poll::Ready(Some(Err(error.into())))
            }
        }
    }

    fn is_end_stream(&self) -> bool {
        self.state == State::Done || self.conn.is_none()
    }

    fn size_hint(&self) -> SizeHint {
        match self.state {
            State::Length(left) => SizeHint::with_exact(left),
            State::Done => SizeHint::with_exact(0),
            State::Chunked(_) | State::UntilClose => SizeHint::default(),
        }
    }
}

impl Drop for UpstreamBody {
    fn drop(&mut self) {
        // Bytes beyond the answer would be read as the next request's answer.
        if let (State::Done, Some(conn), Some((pool, endpoint))) = (self.state, self.conn.take(), self.reuse.take())
            && conn.read.is_empty()
        {
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
        drop(idle);
        // Pods come and go: what was learnt of their endpoints is learnt
        // again (one paired connection each), so the set never outgrows
        // the endpoints of one sweep's interval.
        pool.short_lived.lock().unwrap_or_else(|poisoned| poisoned.into_inner()).clear();
    }
}

#[cfg(test)]
#[path = "upstream_tests.rs"]
mod tests;
