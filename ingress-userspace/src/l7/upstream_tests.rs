//! The pool against scripted loopback upstreams: what goes out on the wire,
//! which answers are passed on and which refused, when a connection is
//! reused, and that bytes beyond an answer never become the next answer.

use std::sync::atomic::{AtomicUsize, Ordering};

use http_body_util::{BodyExt, Empty, Full, StreamBody};
use tokio::io::AsyncReadExt;
use tokio::net::TcpListener;

use super::*;

/// What the upstream does with request `request` of its connection `connection`.
type Script = fn(connection: usize, request: usize) -> Option<Vec<u8>>;

/// Raw requests as the upstream read them, and how many connections it took.
#[derive(Clone, Default)]
struct Seen {
    requests: Arc<Mutex<Vec<Vec<u8>>>>,
    connections: Arc<AtomicUsize>,
}

/// Reads whole requests (Content-Length or chunked bodies) and answers each
/// as `script` says; `None` closes the connection without an answer.
async fn scripted(script: Script) -> (SocketAddr, Seen) {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let seen = Seen::default();
    let counting = seen.clone();
    tokio::spawn(async move {
        while let Ok((mut stream, _)) = listener.accept().await {
            let connection = counting.connections.fetch_add(1, Ordering::SeqCst);
            let requests = counting.requests.clone();
            tokio::spawn(async move {
                let mut buffer = BytesMut::new();
                for request in 0.. {
                    let Some(raw) = read_request(&mut stream, &mut buffer).await else { return };
                    requests.lock().unwrap().push(raw);
                    match script(connection, request) {
                        Some(answer) => {
                            if stream.write_all(&answer).await.is_err() {
                                return;
                            }
                        }
                        None => return,
                    }
                }
            });
        }
    });
    (addr, seen)
}

async fn read_request(stream: &mut TcpStream, buffer: &mut BytesMut) -> Option<Vec<u8>> {
    let complete = |buffer: &BytesMut| {
        let head_end = buffer.windows(4).position(|window| window == b"\r\n\r\n")? + 4;
        let head = String::from_utf8_lossy(&buffer[..head_end]).to_ascii_lowercase();
        if head.contains("transfer-encoding: chunked") {
            return buffer.windows(5).position(|window| window == b"0\r\n\r\n").map(|at| at + 5);
        }
        let length = head.lines().find_map(|line| line.strip_prefix("content-length: ")).map_or(0, |value| value.trim().parse().unwrap());
        (buffer.len() >= head_end + length).then_some(head_end + length)
    };
    loop {
        if let Some(end) = complete(buffer) {
            return Some(buffer.split_to(end).to_vec());
        }
        if matches!(stream.read_buf(buffer).await, Ok(0) | Err(_)) {
            return None;
        }
    }
}

fn pool() -> Arc<Pool> {
    Pool::new(Duration::from_secs(2), Duration::from_secs(60), None)
}

fn get() -> Request<ProxyBody> {
    request(Method::GET, Empty::new().map_err(|never| match never {}).boxed())
}

fn request(method: Method, body: ProxyBody) -> Request<ProxyBody> {
    let mut request = Request::new(body);
    *request.method_mut() = method;
    *request.uri_mut() = "/p?q=1".parse().unwrap();
    request.headers_mut().insert("host", "up.example".parse().unwrap());
    request
}

/// The status and body the client would get, or where it failed.
#[derive(Debug, PartialEq)]
enum Outcome {
    Answer(u16, String),
    /// No answer: the proxy answers 502 (or 504).
    HeadRefused,
    /// The head went out, the body was cut: the client's connection is aborted.
    BodyFailed,
}

async fn outcome(pool: &Arc<Pool>, addr: SocketAddr, request: Request<ProxyBody>) -> Outcome {
    let (parts, body) = request.into_parts();
    let target = parts.uri.path_and_query().map_or("/", |target| target.as_str());
    let head = RequestHead { method: &parts.method, target, headers: &parts.headers, added: &[] };
    let Ok(response) = pool.send(addr, &head, body).await else { return Outcome::HeadRefused };
    let status = response.status().as_u16();
    match response.into_body().collect().await {
        Ok(body) => Outcome::Answer(status, String::from_utf8_lossy(&body.to_bytes()).into_owned()),
        Err(_) => Outcome::BodyFailed,
    }
}

#[tokio::test]
async fn answers_are_passed_on_only_when_clearly_framed() {
    let huge_head = format!("HTTP/1.1 200 OK\r\nx-big: {}\r\nContent-Length: 0\r\n\r\n", "a".repeat(70 * 1024));
    let huge_head: &'static str = Box::leak(huge_head.into_boxed_str());
    let cases: [(&str, &str, Outcome); 16] = [
        ("length", "HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok", Outcome::Answer(200, "ok".into())),
        ("chunked", "HTTP/1.1 201 Created\r\nTransfer-Encoding: chunked\r\n\r\n2\r\nok\r\n3;x=y\r\n!!!\r\n0\r\nx-t: 1\r\n\r\n", Outcome::Answer(201, "ok!!!".into())),
        ("until close", "HTTP/1.0 200 OK\r\n\r\nuntil close", Outcome::Answer(200, "until close".into())),
        ("interim 100 dropped", "HTTP/1.1 100 Continue\r\n\r\nHTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok", Outcome::Answer(200, "ok".into())),
        ("same length twice", "HTTP/1.1 200 OK\r\nContent-Length: 2\r\nContent-Length: 2, 2\r\n\r\nok", Outcome::Answer(200, "ok".into())),
        ("bad status line", "HTTP/1.1 20 OK\r\nContent-Length: 2\r\n\r\nok", Outcome::HeadRefused),
        ("not HTTP", "SSH-2.0-OpenSSH\r\n\r\n", Outcome::HeadRefused),
        ("differing lengths", "HTTP/1.1 200 OK\r\nContent-Length: 2\r\nContent-Length: 3\r\n\r\nok", Outcome::HeadRefused),
        ("invalid length", "HTTP/1.1 200 OK\r\nContent-Length: +2\r\n\r\nok", Outcome::HeadRefused),
        ("length and chunked", "HTTP/1.1 200 OK\r\nContent-Length: 2\r\nTransfer-Encoding: chunked\r\n\r\n2\r\nok\r\n0\r\n\r\n", Outcome::HeadRefused),
        ("gzip, chunked", "HTTP/1.1 200 OK\r\nTransfer-Encoding: gzip, chunked\r\n\r\n2\r\nok\r\n0\r\n\r\n", Outcome::HeadRefused),
        ("101 unasked", "HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\n\r\n", Outcome::HeadRefused),
        ("oversized head", huge_head, Outcome::HeadRefused),
        ("truncated length body", "HTTP/1.1 200 OK\r\nContent-Length: 10\r\n\r\nshort", Outcome::BodyFailed),
        ("truncated chunked body", "HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n2\r\nok\r\n", Outcome::BodyFailed),
        ("bad chunk size", "HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\nzz\r\nok\r\n0\r\n\r\n", Outcome::BodyFailed),
    ];
    for (name, answer, expected) in cases {
        // Each answer, then the connection closes.
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        tokio::spawn(async move {
            let (mut stream, _) = listener.accept().await.unwrap();
            let _ = read_request(&mut stream, &mut BytesMut::new()).await;
            let _ = stream.write_all(answer.as_bytes()).await;
        });
        assert_eq!(outcome(&pool(), addr, get()).await, expected, "{name}");
    }
}

#[tokio::test]
async fn bytes_beyond_an_answer_never_become_the_next_answer() {
    let (addr, seen) = scripted(|connection, _| {
        Some(match connection {
            0 => b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nokHTTP/1.1 200 OK\r\nContent-Length: 8\r\n\r\nsmuggled".to_vec(),
            _ => b"HTTP/1.1 200 OK\r\nContent-Length: 5\r\n\r\nfresh".to_vec(),
        })
    })
    .await;
    let pool = pool();
    assert_eq!(outcome(&pool, addr, get()).await, Outcome::Answer(200, "ok".into()));
    assert_eq!(outcome(&pool, addr, get()).await, Outcome::Answer(200, "fresh".into()));
    assert_eq!(seen.connections.load(Ordering::SeqCst), 2);
}

#[tokio::test]
async fn kept_connections_are_reused_and_a_stale_one_is_retried_only_without_a_body() {
    // Every connection answers its first request and drops the second unanswered.
    let (addr, seen) = scripted(|_, request| (request == 0).then(|| b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok".to_vec())).await;
    let pool = pool();
    let ok = Outcome::Answer(200, "ok".into());
    assert_eq!(outcome(&pool, addr, get()).await, ok);
    // The pooled connection takes the request, then closes: sent again on a new one.
    assert_eq!(outcome(&pool, addr, get()).await, ok);
    assert_eq!(seen.connections.load(Ordering::SeqCst), 2);
    // With a body the request is not sent twice.
    let post = request(Method::POST, Full::new(Bytes::from_static(b"abc")).map_err(|never| match never {}).boxed());
    assert_eq!(outcome(&pool, addr, post).await, Outcome::HeadRefused);
    assert_eq!(seen.connections.load(Ordering::SeqCst), 2);
    assert_eq!(seen.requests.lock().unwrap().len(), 4);
}

#[tokio::test]
async fn requests_go_out_framed_as_hyper_frames_them() {
    let (addr, seen) = scripted(|_, _| Some(b"HTTP/1.1 204 No Content\r\n\r\n".to_vec())).await;
    let pool = pool();
    let full = |body: &'static [u8]| Full::new(Bytes::from_static(body)).map_err(|never| match never {}).boxed();
    let chunks = [Ok::<_, BoxError>(Frame::data(Bytes::from_static(b"ab"))), Ok(Frame::data(Bytes::from_static(b"cde")))];
    let streamed = StreamBody::new(futures::stream::iter(chunks)).boxed();
    let mut with_length = request(Method::PUT, full(b"xyz"));
    with_length.headers_mut().insert("content-length", "3".parse().unwrap());
    let cases: [(Request<ProxyBody>, &str); 4] = [
        (get(), "GET /p?q=1 HTTP/1.1\r\nhost: up.example\r\n\r\n"),
        (request(Method::POST, full(b"abc")), "POST /p?q=1 HTTP/1.1\r\nhost: up.example\r\ncontent-length: 3\r\n\r\nabc"),
        (with_length, "PUT /p?q=1 HTTP/1.1\r\nhost: up.example\r\ncontent-length: 3\r\n\r\nxyz"),
        (request(Method::POST, streamed), "POST /p?q=1 HTTP/1.1\r\nhost: up.example\r\ntransfer-encoding: chunked\r\n\r\n2\r\nab\r\n3\r\ncde\r\n0\r\n\r\n"),
    ];
    for (index, (request, wire)) in cases.into_iter().enumerate() {
        assert_eq!(outcome(&pool, addr, request).await, Outcome::Answer(204, String::new()), "{wire}");
        let sent = seen.requests.lock().unwrap()[index].clone();
        assert_eq!(String::from_utf8_lossy(&sent), wire);
    }
    // 204s keep the connection: all four went out on one.
    assert_eq!(seen.connections.load(Ordering::SeqCst), 1);
}

/// An upstream that reads the request head only, then answers `answer`
/// and leaves the body unread; or, with `then_body`, reads `then_body`
/// bytes of body after answering an interim `answer` and says how many.
async fn head_reader(answer: &'static [u8], then_body: Option<usize>) -> SocketAddr {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move {
        let (mut stream, _) = listener.accept().await.unwrap();
        let mut buffer = BytesMut::new();
        while !buffer.windows(4).any(|window| window == b"\r\n\r\n") {
            if matches!(stream.read_buf(&mut buffer).await, Ok(0) | Err(_)) {
                return;
            }
        }
        stream.write_all(answer).await.unwrap();
        let Some(length) = then_body else {
            // Holds the connection open without reading on.
            tokio::time::sleep(Duration::from_secs(60)).await;
            return;
        };
        let head_end = buffer.windows(4).position(|window| window == b"\r\n\r\n").unwrap() + 4;
        while buffer.len() < head_end + length {
            if matches!(stream.read_buf(&mut buffer).await, Ok(0) | Err(_)) {
                return;
            }
        }
        let body = format!("{}", buffer.len() - head_end);
        let _ = stream.write_all(format!("HTTP/1.1 200 OK\r\nContent-Length: {}\r\n\r\n{body}", body.len()).as_bytes()).await;
    });
    addr
}

#[tokio::test]
async fn an_answer_before_the_body_is_sent_is_passed_on() {
    const LARGE: usize = 16 << 20;
    let large = || {
        let mut upload = request(Method::PUT, Full::new(Bytes::from(vec![b'x'; LARGE])).map_err(|never| match never {}).boxed());
        upload.headers_mut().insert("content-length", LARGE.to_string().parse().unwrap());
        upload
    };
    let endless = || {
        let first = futures::stream::iter([Ok::<_, BoxError>(Frame::data(Bytes::from_static(b"ab")))]);
        request(Method::POST, StreamBody::new(futures::StreamExt::chain(first, futures::stream::pending())).boxed())
    };
    let too_large: &[u8] = b"HTTP/1.1 413 Payload Too Large\r\nContent-Length: 9\r\n\r\ntoo large";
    let unauthorized: &[u8] = b"HTTP/1.1 401 Unauthorized\r\nContent-Length: 2\r\n\r\nno";
    let cases: [(&str, SocketAddr, Request<ProxyBody>, Outcome); 3] = [
        ("a large upload refused before it is read", head_reader(too_large, None).await, large(), Outcome::Answer(413, "too large".into())),
        ("a body still coming from the client", head_reader(unauthorized, None).await, endless(), Outcome::Answer(401, "no".into())),
        (
            "an interim 100 Continue does not stop the body",
            head_reader(b"HTTP/1.1 100 Continue\r\n\r\n", Some(LARGE)).await,
            large(),
            Outcome::Answer(200, LARGE.to_string()),
        ),
    ];
    for (name, addr, request, expected) in cases {
        let answered = tokio::time::timeout(Duration::from_secs(20), outcome(&pool(), addr, request)).await;
        assert_eq!(answered.ok(), Some(expected), "{name}");
    }
}

/// `SO_MARK` of a pooled connection's socket.
fn mark_of(conn: &Conn) -> u32 {
    use std::os::fd::AsFd;
    nix::sys::socket::getsockopt(&conn.stream.as_fd(), nix::sys::socket::sockopt::Mark).unwrap()
}

#[tokio::test]
async fn connections_to_an_endpoint_that_closes_after_each_answer_are_not_marked_for_the_shortcut() {
    // Setting SO_MARK needs CAP_NET_ADMIN.
    // SAFETY: geteuid has no preconditions.
    if unsafe { libc::geteuid() } != 0 {
        eprintln!("skipped: marking sockets needs root");
        return;
    }
    const MARK: u32 = 0x20eb;
    let (addr, _seen) = scripted(|connection, _| match connection {
        0 => Some(b"HTTP/1.0 200 OK\r\nContent-Length: 2\r\n\r\nok".to_vec()),
        _ => Some(b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok".to_vec()),
    })
    .await;
    let pool = Pool::new(Duration::from_secs(2), Duration::from_secs(60), Some(MARK));
    let marks = [
        // The first connection is marked, and its answer closes it: the endpoint is short-lived.
        None,
        // So the next one is not; its answer keeps it alive.
        Some(0),
        // So the one after is marked again.
        Some(MARK),
    ];
    for (request, expected) in marks.into_iter().enumerate() {
        assert_eq!(outcome(&pool, addr, get()).await, Outcome::Answer(200, "ok".into()), "request {request}");
        let pooled = pool.checkout(addr);
        assert_eq!(pooled.as_ref().map(mark_of), expected, "request {request}: the mark of the connection left in the pool");
    }
}
