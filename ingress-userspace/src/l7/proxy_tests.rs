//! Connection reuse on both sides of the proxy: counted at a loopback
//! upstream that either keeps its connections (HTTP/1.1) or closes each one
//! after its answer (HTTP/1.0, like the lab's echo pods).

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};
use std::sync::atomic::{AtomicUsize, Ordering};

use http_body_util::{BodyExt, Empty, Full};
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

/// An upstream that answers every request with the X-Forwarded-For it got.
async fn forwarded_for_upstream() -> SocketAddr {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move {
        while let Ok((stream, _)) = listener.accept().await {
            let service = hyper::service::service_fn(|request: Request<Incoming>| {
                let forwarded_for = request.headers().get("x-forwarded-for").map(|value| Bytes::copy_from_slice(value.as_bytes()));
                async move { Ok::<_, std::convert::Infallible>(Response::new(Full::new(forwarded_for.unwrap_or_default()))) }
            });
            tokio::spawn(hyper::server::conn::http1::Builder::new().serve_connection(TokioIo::new(stream), service));
        }
    });
    addr
}

async fn start_proxy(upstream: SocketAddr) -> SocketAddr {
    start_proxy_on(TcpListener::bind("127.0.0.1:0").await.unwrap(), upstream)
}

fn start_proxy_on(listener: TcpListener, upstream: SocketAddr) -> SocketAddr {
    let snapshot = Snapshot {
        pods: vec![pod("web", &upstream.ip().to_string(), true, HOST, &format!("{}:/", upstream.port()))],
        ..Snapshot::default()
    };
    let (table, problems) = RouteTable::build(&snapshot, &L7Options::default());
    assert!(problems.is_empty(), "{problems:?}");
    let addr = listener.local_addr().unwrap();
    tokio::spawn(serve(listener, shared_routes(table), ProxyOptions::default()));
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
