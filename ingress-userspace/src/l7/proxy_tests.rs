//! Connection reuse on both sides of the proxy: counted at a loopback
//! upstream that either keeps its connections (HTTP/1.1) or closes each one
//! after its answer (HTTP/1.0, like the lab's echo pods).

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};
use std::sync::atomic::{AtomicUsize, Ordering};

use http_body_util::{BodyExt, Empty, Full};
use hyper::body::Incoming;
use tokio::net::TcpStream;

use super::*;
use crate::l7::annotations::tests::pod;
use crate::l7::{L7Options, RouteTable, shared_routes};
use crate::manifests::Snapshot;

const HOST: &str = "pool.example";

/// An upstream that counts the connections it accepts and answers every
/// request head with a 2-byte body; `closes`: HTTP/1.0 and `Connection:
/// close` after one answer, else HTTP/1.1 keep-alive.
async fn counting_upstream(closes: bool) -> (SocketAddr, Arc<AtomicUsize>) {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let accepted = Arc::new(AtomicUsize::new(0));
    let counter = accepted.clone();
    tokio::spawn(async move {
        while let Ok((mut stream, _)) = listener.accept().await {
            counter.fetch_add(1, Ordering::SeqCst);
            tokio::spawn(async move {
                let mut buffer = BytesMut::new();
                loop {
                    while !buffer.windows(4).any(|window| window == b"\r\n\r\n") {
                        if matches!(stream.read_buf(&mut buffer).await, Ok(0) | Err(_)) {
                            return;
                        }
                    }
                    let end = buffer.windows(4).position(|window| window == b"\r\n\r\n").unwrap() + 4;
                    buffer.advance(end);
                    let answer: &[u8] = if closes {
                        b"HTTP/1.0 200 OK\r\nContent-Length: 2\r\nConnection: close\r\n\r\nok"
                    } else {
                        b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok"
                    };
                    if stream.write_all(answer).await.is_err() || closes {
                        let _ = stream.shutdown().await;
                        return;
                    }
                }
            });
        }
    });
    (addr, accepted)
}

/// A loopback HTTP/1.1 upstream, hyper's server with `service`.
pub(crate) async fn hyper_upstream<S, B>(service: S) -> SocketAddr
where
    S: hyper::service::Service<Request<Incoming>, Response = Response<B>> + Clone + Send + 'static,
    S::Future: Send,
    S::Error: Into<BoxError>,
    B: Body + Send + 'static,
    B::Data: Send,
    B::Error: Into<BoxError>,
{
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move {
        while let Ok((stream, _)) = listener.accept().await {
            tokio::spawn(hyper::server::conn::http1::Builder::new().serve_connection(TokioIo::new(stream), service.clone()));
        }
    });
    addr
}

/// An upstream that answers every request with the X-Forwarded-For it got.
async fn forwarded_for_upstream() -> SocketAddr {
    hyper_upstream(hyper::service::service_fn(|request: Request<Incoming>| {
        let forwarded_for = request.headers().get("x-forwarded-for").map(|value| Bytes::copy_from_slice(value.as_bytes()));
        async move { Ok::<_, std::convert::Infallible>(Response::new(Full::new(forwarded_for.unwrap_or_default()))) }
    }))
    .await
}

async fn start_proxy(upstream: SocketAddr) -> SocketAddr {
    start_proxy_on(TcpListener::bind("127.0.0.1:0").await.unwrap(), upstream)
}

fn start_proxy_on(listener: TcpListener, upstream: SocketAddr) -> SocketAddr {
    start_proxy_with(listener, upstream, ProxyOptions::default())
}

fn start_proxy_with(listener: TcpListener, upstream: SocketAddr, options: ProxyOptions) -> SocketAddr {
    let snapshot = Snapshot {
        pods: vec![pod("web", &upstream.ip().to_string(), true, HOST, &format!("{}:/", upstream.port()))],
        ..Snapshot::default()
    };
    let (table, problems) = RouteTable::build(&snapshot, &L7Options::default());
    assert!(problems.is_empty(), "{problems:?}");
    let addr = listener.local_addr().unwrap();
    tokio::spawn(serve(listener, shared_routes(table), options));
    addr
}

#[tokio::test]
async fn connections_are_kept_on_both_sides() {
    const REQUESTS: usize = 20;
    // (upstream closes after each answer, upstream connections expected)
    let cases = [(false, 1), (true, REQUESTS)];
    for (closes, expected_upstream_connections) in cases {
        let (upstream, accepted) = counting_upstream(closes).await;
        let proxy = start_proxy(upstream).await;
        // One client connection for all requests: it fails as soon as the proxy closes it.
        let stream = TcpStream::connect(proxy).await.unwrap();
        let (mut sender, connection) = hyper::client::conn::http1::handshake(TokioIo::new(stream)).await.unwrap();
        tokio::spawn(connection);
        for index in 0..REQUESTS {
            let request = Request::builder().uri("/").header("host", HOST).body(Empty::<Bytes>::new()).unwrap();
            let response = sender.send_request(request).await.unwrap_or_else(|error| {
                panic!("upstream closes: {closes}: request {index} on the same client connection: {error}")
            });
            assert_eq!(response.status(), StatusCode::OK, "upstream closes: {closes}");
            assert_eq!(response.version(), Version::HTTP_11, "upstream closes: {closes}");
            assert!(!response.headers().contains_key("connection"), "upstream closes: {closes}");
            let body = response.into_body().collect().await.unwrap().to_bytes();
            assert_eq!(body, "ok");
        }
        assert_eq!(accepted.load(Ordering::SeqCst), expected_upstream_connections, "upstream closes: {closes}");
    }
}

#[tokio::test]
async fn an_http_1_0_client_is_answered_in_http_1_0() {
    let (upstream, _) = counting_upstream(false).await;
    let proxy = start_proxy(upstream).await;
    let mut stream = TcpStream::connect(proxy).await.unwrap();
    stream.write_all(format!("GET / HTTP/1.0\r\nHost: {HOST}\r\n\r\n").as_bytes()).await.unwrap();
    let mut answer = String::new();
    stream.read_to_string(&mut answer).await.unwrap();
    assert!(answer.starts_with("HTTP/1.0 200 OK\r\n"), "{answer}");
    assert!(answer.ends_with("\r\n\r\nok"), "{answer}");
}

#[tokio::test]
async fn clients_of_a_dual_stack_listener_are_forwarded_as_they_connected() {
    let upstream = forwarded_for_upstream().await;
    let port = start_proxy_on(crate::listen::on_every_address(0).unwrap(), upstream).port();
    // An IPv4 client arrives IPv4-mapped on the IPv6 socket; the upstream
    // must see it as the IPv4 client it is.
    for (client, forwarded_for) in [(IpAddr::from(Ipv4Addr::LOCALHOST), "127.0.0.1"), (Ipv6Addr::LOCALHOST.into(), "::1")] {
        let mut stream = TcpStream::connect((client, port)).await.unwrap();
        stream.write_all(format!("GET / HTTP/1.0\r\nHost: {HOST}\r\n\r\n").as_bytes()).await.unwrap();
        let mut answer = String::new();
        stream.read_to_string(&mut answer).await.unwrap();
        assert!(answer.starts_with("HTTP/1.0 200 OK\r\n"), "{client}: {answer}");
        assert!(answer.ends_with(&format!("\r\n\r\n{forwarded_for}")), "{client}: {answer}");
    }
}

/// An upstream that answers "METHOD PATH BODY" to every request.
async fn echo_upstream() -> SocketAddr {
    hyper_upstream(hyper::service::service_fn(|request: Request<Incoming>| async move {
        let head = format!("{} {} ", request.method(), request.uri().path());
        let body = request.into_body().collect().await?.to_bytes();
        Ok::<_, hyper::Error>(Response::new(Full::new(Bytes::from([head.as_bytes(), &body].concat()))))
    }))
    .await
}

/// Requests sent at once on one connection, some served by the proxy's own
/// HTTP/1 server and one (with a body) by hyper's, which takes the rest of
/// the connection over with the bytes already read: every answer comes, in
/// order, and the last request's `Connection: close` is honoured.
#[tokio::test]
async fn pipelined_requests_are_answered_in_order_across_the_hand_over_to_hyper() {
    let proxy = start_proxy(echo_upstream().await).await;
    let mut stream = TcpStream::connect(proxy).await.unwrap();
    let requests = [
        format!("GET /one HTTP/1.1\r\nHost: {HOST}\r\n\r\n"),
        format!("HEAD /two HTTP/1.1\r\nHost: {HOST}\r\n\r\n"),
        "GET /three HTTP/1.1\r\nHost: unknown.example\r\n\r\n".to_owned(),
        format!("POST /four HTTP/1.1\r\nHost: {HOST}\r\nContent-Length: 4\r\n\r\nabcd"),
        format!("GET /five HTTP/1.1\r\nHost: {HOST}\r\nConnection: close\r\n\r\n"),
    ];
    stream.write_all(requests.concat().as_bytes()).await.unwrap();
    let mut read = Vec::new();
    // Ends only when the proxy closes the connection.
    tokio::time::timeout(Duration::from_secs(10), stream.read_to_end(&mut read)).await.unwrap().unwrap();
    let mut read = BytesMut::from(&read[..]);
    let expected = [
        (Method::GET, 200, "GET /one "),
        (Method::HEAD, 200, ""),
        (Method::GET, 404, "default backend - 404"),
        (Method::POST, 200, "POST /four abcd"),
        (Method::GET, 200, "GET /five "),
    ];
    for (index, (method, status, body)) in expected.into_iter().enumerate() {
        let head = crate::l7::h1_wire::take_response_head(&mut read, &method).unwrap().unwrap_or_else(|| panic!("answer {index} is missing"));
        assert_eq!(head.status.as_u16(), status, "answer {index}");
        assert!(head.headers.contains_key("date"), "answer {index} has no Date");
        let length = match head.framing {
            crate::l7::h1_wire::Framing::Length(length) => usize::try_from(length).unwrap(),
            crate::l7::h1_wire::Framing::Empty => 0,
            framing => panic!("answer {index} is framed as {framing:?}"),
        };
        assert_eq!(&read.split_to(length)[..], body.as_bytes(), "answer {index}");
    }
    assert!(read.is_empty(), "more than the answers: {read:?}");
}

/// A client that asks to close gets its answer, `Connection: close` and the
/// connection's end, on the proxy's own HTTP/1 server.
#[tokio::test]
async fn a_client_asking_to_close_gets_its_answer_and_the_close() {
    let proxy = start_proxy(echo_upstream().await).await;
    let mut stream = TcpStream::connect(proxy).await.unwrap();
    stream.write_all(format!("GET /bye HTTP/1.1\r\nHost: {HOST}\r\nConnection: close\r\n\r\n").as_bytes()).await.unwrap();
    let mut answer = String::new();
    tokio::time::timeout(Duration::from_secs(10), stream.read_to_string(&mut answer)).await.unwrap().unwrap();
    assert!(answer.starts_with("HTTP/1.1 200 OK\r\n"), "{answer}");
    assert!(answer.contains("\r\nconnection: close\r\n"), "{answer}");
    assert!(answer.ends_with("\r\n\r\nGET /bye "), "{answer}");
}

/// A kept-alive client connection with no request in flight is closed after
/// the idle timeout, and not before: the connection's one timer is moved
/// on by every request.
#[tokio::test]
async fn an_idle_keep_alive_connection_is_closed_after_the_idle_timeout() {
    const IDLE: Duration = Duration::from_millis(400);
    let options = ProxyOptions { client_idle_timeout: IDLE, ..ProxyOptions::default() };
    let proxy = start_proxy_with(TcpListener::bind("127.0.0.1:0").await.unwrap(), echo_upstream().await, options);
    let mut stream = TcpStream::connect(proxy).await.unwrap();
    let request = format!("GET /again HTTP/1.1\r\nHost: {HOST}\r\n\r\n");
    let started = std::time::Instant::now();
    let mut last_answer = started;
    // Requests every quarter of the timeout for longer than two timeouts.
    for _ in 0..9 {
        stream.write_all(request.as_bytes()).await.unwrap();
        let mut answer = [0u8; 512];
        let count = stream.read(&mut answer).await.unwrap();
        assert!(String::from_utf8_lossy(&answer[..count]).ends_with("GET /again "), "closed after {:?}", started.elapsed());
        last_answer = std::time::Instant::now();
        tokio::time::sleep(IDLE / 4).await;
    }
    let mut rest = Vec::new();
    tokio::time::timeout(IDLE * 5, stream.read_to_end(&mut rest)).await.expect("the idle connection stayed open").unwrap();
    assert!(rest.is_empty(), "{rest:?}");
    // The proxy's idle time starts as it writes the answer, a moment before it is read here.
    let idled = last_answer.elapsed();
    assert!(idled >= IDLE - Duration::from_millis(50) && idled < IDLE * 3, "closed after {idled:?} idle");
}
