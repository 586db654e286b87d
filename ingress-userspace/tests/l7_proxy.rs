//! Real HTTP through the L7 proxy to in-process echo backends, loopback only.

mod l7_support;

use std::collections::BTreeSet;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use ingress_userspace::l7::metrics::L7Metrics;
use ingress_userspace::l7::options::ProxyOptions;
use ingress_userspace::manifests::Snapshot;
use l7_support::*;
use serde_json::json;
use tokio::io::AsyncWriteExt;
use tokio::net::TcpStream;

/// `web.test` -> Service `web` (one echo backend `web`).
async fn one_backend() -> Snapshot {
    let mut snapshot = Snapshot::default();
    let web = echo_backend("web").await;
    add_service(&mut snapshot, "web", &[(web, true)]);
    add_ingress(&mut snapshot, "web", json!({}), &[("web.test", "/", "Prefix", "web")]);
    snapshot
}

#[tokio::test]
async fn default_backend_contract() {
    let proxy = start_proxy(routes(&one_backend().await), ProxyOptions::default()).await;
    let cases = [
        ("unknown.test", "/healthz", 200, "ok"),
        ("unknown.test", "/nothing/here", 404, "default backend - 404"),
        ("", "/", 404, "default backend - 404"),
    ];
    for (host, path, status, body) in cases {
        let reply = send(proxy, get(host, path)).await;
        assert_eq!(reply.status, status, "{host}{path}");
        assert_eq!(reply.text(), body);
        assert_eq!(reply.headers["server"], "ebpf-lb");
    }
}

#[tokio::test]
async fn unknown_hosts_can_be_closed_without_a_response() {
    let options = ProxyOptions {
        close_unknown_hosts: true,
        ..ProxyOptions::default()
    };
    let proxy = start_proxy(routes(&one_backend().await), options).await;
    let closed = raw(proxy, b"GET / HTTP/1.1\r\nHost: unknown.test\r\n\r\n").await;
    assert_eq!(closed, "");
    let health = raw(proxy, b"GET /healthz HTTP/1.1\r\nHost: 10.0.0.1\r\nConnection: close\r\n\r\n").await;
    assert!(health.starts_with("HTTP/1.1 200 OK"), "{health}");
    let served = send(proxy, get("web.test", "/")).await;
    assert_eq!(served.status, 200);
}

#[tokio::test]
async fn methods_headers_and_untouched_paths() {
    let metrics = Arc::new(L7Metrics::default());
    let options = ProxyOptions {
        metrics: metrics.clone(),
        ..ProxyOptions::default()
    };
    let proxy = start_proxy(routes(&one_backend().await), options).await;
    for method in ["GET", "POST", "PUT", "DELETE", "PATCH", "HEAD"] {
        let mut request = request(method, "Web.Test:80", "/a/b%20c?x=1&y=2", "payload");
        let headers = request.headers_mut();
        headers.insert("connection", "keep-alive, x-hop".parse().unwrap());
        headers.insert("x-hop", "dropped".parse().unwrap());
        headers.insert("x-forwarded-for", "203.0.113.9".parse().unwrap());
        let reply = send(proxy, request).await;
        assert_eq!(reply.status, 200, "{method}");
        for header in ["server", "date", "content-type", "content-length"] {
            assert!(reply.headers.contains_key(header), "{method}: no {header}");
        }
        if method == "HEAD" {
            assert!(reply.body.is_empty());
            continue;
        }
        let echoed = reply.json();
        assert_eq!(echoed["backend"], "web");
        assert_eq!(echoed["method"], method);
        assert_eq!(echoed["path"], "/a/b%20c?x=1&y=2");
        assert_eq!(echoed["host"], "Web.Test:80");
        assert_eq!(echoed["body_length"], 7);
        let headers = &echoed["headers"];
        assert_eq!(headers["x-forwarded-for"], "203.0.113.9, 127.0.0.1");
        assert_eq!(headers["x-real-ip"], "127.0.0.1");
        assert_eq!(headers["x-forwarded-proto"], "http");
        assert_eq!(headers["x-forwarded-host"], "Web.Test:80");
        assert!(headers.get("x-hop").is_none(), "{headers}");
    }
    assert_eq!(metrics.requests("ingress:default/web:web.test/", 200), 6);
    assert!(metrics.render().contains("lb_l7_request_duration_seconds_count{route=\"ingress:default/web:web.test/\"} 6"));
}

#[tokio::test]
async fn rewrites_reach_the_backend() {
    let mut snapshot = one_backend().await;
    let rewrite = "nginx.ingress.kubernetes.io/rewrite-target";
    add_ingress(&mut snapshot, "regex", json!({rewrite: "/$2"}), &[("re.test", "/one(/|$)(.*)", "ImplementationSpecific", "web")]);
    add_ingress(&mut snapshot, "prefix", json!({rewrite: "/xyz"}), &[("pre.test", "/foo", "Prefix", "web")]);
    let proxy = start_proxy(routes(&snapshot), ProxyOptions::default()).await;
    let cases = [
        ("re.test", "/one", "/", None),
        ("re.test", "/one/aaa/bbb?q=1", "/aaa/bbb?q=1", None),
        ("pre.test", "/foo/bar", "/xyz/bar", Some("/foo")),
    ];
    for (host, path, expected, prefix) in cases {
        let echoed = send(proxy, get(host, path)).await.json();
        assert_eq!(echoed["path"], expected, "{host}{path}");
        assert_eq!(echoed["headers"]["x-forwarded-prefix"].as_str(), prefix, "{host}{path}");
    }
}

#[tokio::test]
async fn round_robin_reaches_all_ten_endpoints() {
    let mut snapshot = Snapshot::default();
    let mut endpoints = Vec::new();
    for index in 0..10 {
        endpoints.push((echo_backend(&format!("pod-{index}")).await, true));
    }
    add_service(&mut snapshot, "many", &endpoints);
    add_ingress(&mut snapshot, "many", json!({}), &[("many.test", "/", "Prefix", "many")]);
    let proxy = start_proxy(routes(&snapshot), ProxyOptions::default()).await;
    let mut reached = BTreeSet::new();
    for _ in 0..100 {
        reached.insert(send(proxy, get("many.test", "/")).await.json()["backend"].to_string());
    }
    assert_eq!(reached.len(), 10, "{reached:?}");
}

#[tokio::test]
async fn upstream_failures_map_to_502_503_504_and_idempotent_requests_retry() {
    let mut snapshot = Snapshot::default();
    let live = echo_backend("live").await;
    let dead = closed_port().await;
    add_service(&mut snapshot, "flaky", &[(live, true), (dead, true)]);
    add_service(&mut snapshot, "dead", &[(dead, true)]);
    add_service(&mut snapshot, "unready", &[(live, false)]);
    add_ingress(
        &mut snapshot,
        "failures",
        json!({}),
        &[("flaky.test", "/", "Prefix", "flaky"), ("dead.test", "/", "Prefix", "dead"), ("unready.test", "/", "Prefix", "unready")],
    );
    let options = ProxyOptions {
        request_timeout: Duration::from_millis(300),
        ..ProxyOptions::default()
    };
    let proxy = start_proxy(routes(&snapshot), options).await;
    for _ in 0..10 {
        assert_eq!(send(proxy, get("flaky.test", "/")).await.status, 200);
    }
    // A body cannot be replayed, so half of them fail on the dead endpoint.
    let mut statuses = BTreeSet::new();
    for _ in 0..4 {
        statuses.insert(send(proxy, request("POST", "flaky.test", "/", "data")).await.status.as_u16());
    }
    assert_eq!(statuses, BTreeSet::from([200, 502]));
    assert_eq!(send(proxy, get("dead.test", "/")).await.status, 502);
    assert_eq!(send(proxy, get("unready.test", "/")).await.status, 503);
    assert_eq!(send(proxy, get("flaky.test", "/sleep")).await.status, 504);
}

#[tokio::test]
async fn client_limits_431_408_413() {
    let options = ProxyOptions {
        header_read_timeout: Duration::from_millis(300),
        max_header_bytes: 8 * 1024,
        max_body_bytes: 1024,
        ..ProxyOptions::default()
    };
    let proxy = start_proxy(routes(&one_backend().await), options).await;
    let huge = format!("GET / HTTP/1.1\r\nHost: web.test\r\nX-Big: {}\r\n\r\n", "a".repeat(20_000));
    assert!(raw(proxy, huge.as_bytes()).await.starts_with("HTTP/1.1 431"));
    let slow = raw(proxy, b"GET / HTTP/1.1\r\nHost: web").await;
    assert!(slow.starts_with("HTTP/1.1 408"), "{slow}");
    let too_big = send(proxy, request("POST", "web.test", "/", &"x".repeat(2000))).await;
    assert_eq!(too_big.status, 413);
    let small = send(proxy, request("POST", "web.test", "/", &"x".repeat(1000))).await;
    assert_eq!(small.status, 200);
    let chunked = format!(
        "POST / HTTP/1.1\r\nHost: web.test\r\nTransfer-Encoding: chunked\r\nConnection: close\r\n\r\n7d0\r\n{}\r\n0\r\n\r\n",
        "x".repeat(2000)
    );
    let chunked_reply = raw(proxy, chunked.as_bytes()).await;
    assert!(chunked_reply.starts_with("HTTP/1.1 413"), "{chunked_reply}");
}

#[tokio::test]
async fn not_an_open_proxy() {
    let proxy = start_proxy(routes(&one_backend().await), ProxyOptions::default()).await;
    let connect = raw(proxy, b"CONNECT evil.example:443 HTTP/1.1\r\nHost: evil.example:443\r\nConnection: close\r\n\r\n").await;
    assert!(connect.starts_with("HTTP/1.1 405"), "{connect}");
    let absolute = raw(proxy, b"GET http://evil.example/ HTTP/1.1\r\nHost: web.test\r\nConnection: close\r\n\r\n").await;
    assert!(absolute.starts_with("HTTP/1.1 421"), "{absolute}");
    let served = raw(proxy, b"GET http://web.test/x HTTP/1.1\r\nHost: web.test\r\nConnection: close\r\n\r\n").await;
    assert!(served.starts_with("HTTP/1.1 200") && served.contains("\"backend\":\"web\""), "{served}");
}

/// Connections and tunnels held open while the routes change.
const KEEP_ALIVE_CONNECTIONS: usize = 1000;
const WEBSOCKETS: usize = 100;
const SWAPS: usize = 1000;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn route_swaps_under_load_drop_nothing() {
    raise_fd_limit(4 * (KEEP_ALIVE_CONNECTIONS + WEBSOCKETS) as u64 + 256);
    let mut blue = Snapshot::default();
    let mut green = Snapshot::default();
    let (blue_addr, green_addr) = (echo_backend("blue").await, echo_backend("green").await);
    add_service(&mut blue, "app", &[(blue_addr, true)]);
    add_service(&mut green, "app", &[(green_addr, true)]);
    for snapshot in [&mut blue, &mut green] {
        add_ingress(snapshot, "app", json!({}), &[("app.test", "/", "Prefix", "app")]);
    }
    let tables = [Arc::new(table(&blue)), Arc::new(table(&green))];
    let routes = ingress_userspace::l7::shared_routes(table(&blue));
    let proxy = start_proxy(routes.clone(), ProxyOptions::default()).await;

    let run = async {
        let mut tunnels = Vec::new();
        for _ in 0..WEBSOCKETS {
            tunnels.push(open_tunnel(proxy).await);
        }
        let mut senders = Vec::new();
        for _ in 0..KEEP_ALIVE_CONNECTIONS {
            let io = hyper_util::rt::TokioIo::new(TcpStream::connect(proxy).await.unwrap());
            let (sender, connection) = hyper::client::conn::http1::handshake(io).await.unwrap();
            tokio::spawn(connection);
            senders.push(sender);
        }
        // Every connection sends while the swaps happen, and once more after.
        let swapping = Arc::new(std::sync::atomic::AtomicBool::new(true));
        let clients: Vec<_> = senders
            .into_iter()
            .map(|mut sender| {
                let swapping = swapping.clone();
                tokio::spawn(async move {
                    let mut sent = 0u32;
                    loop {
                        let more = swapping.load(std::sync::atomic::Ordering::Relaxed);
                        let reply = read_reply(sender.send_request(get("app.test", "/")).await.unwrap()).await;
                        assert_eq!(reply.status, 200);
                        sent += 1;
                        if !more || sent >= 50 {
                            return sent;
                        }
                        tokio::time::sleep(Duration::from_millis(20)).await;
                    }
                })
            })
            .collect();
        for swap in 0..SWAPS {
            routes.store(tables[swap % 2].clone());
            tokio::time::sleep(Duration::from_micros(500)).await;
        }
        swapping.store(false, std::sync::atomic::Ordering::Relaxed);
        let mut requests = 0;
        for client in clients {
            requests += client.await.unwrap();
        }
        for (i, tunnel) in tunnels.iter_mut().enumerate() {
            let message = format!("tunnel {i:03} after {SWAPS} swaps");
            tunnel.write_all(message.as_bytes()).await.unwrap();
            let mut echoed = vec![0u8; message.len()];
            tokio::io::AsyncReadExt::read_exact(tunnel, &mut echoed).await.unwrap();
            assert_eq!(echoed, message.as_bytes(), "WebSocket {i} lost its tunnel");
        }
        requests
    };
    let requests = tokio::time::timeout(Duration::from_secs(120), run).await.expect("bounded in time");
    println!(
        "route swaps: {SWAPS} swaps, {requests} requests on {KEEP_ALIVE_CONNECTIONS} keep-alive connections, \
         0 failed; {WEBSOCKETS} of {WEBSOCKETS} WebSockets kept"
    );
    assert!(requests >= 2 * KEEP_ALIVE_CONNECTIONS as u32, "too few requests during the swaps: {requests}");
}

/// A thousand connections plus the proxy's side of each need more file
/// descriptors than some default soft limits allow.
fn raise_fd_limit(wanted: u64) {
    let mut limit = libc::rlimit { rlim_cur: 0, rlim_max: 0 };
    // SAFETY: plain syscalls on a local struct.
    unsafe {
        if libc::getrlimit(libc::RLIMIT_NOFILE, &mut limit) == 0 && limit.rlim_cur < wanted {
            limit.rlim_cur = wanted.min(limit.rlim_max);
            libc::setrlimit(libc::RLIMIT_NOFILE, &limit);
        }
    }
}

/// Opens a WebSocket through the proxy and returns the upgraded stream.
async fn open_tunnel(proxy: SocketAddr) -> TcpStream {
    let mut stream = TcpStream::connect(proxy).await.unwrap();
    let handshake = "GET /ws HTTP/1.1\r\nHost: app.test\r\nConnection: Upgrade\r\nUpgrade: websocket\r\n\
                     Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n\r\n";
    stream.write_all(handshake.as_bytes()).await.unwrap();
    let mut head = Vec::new();
    let mut byte = [0u8; 1];
    while !head.ends_with(b"\r\n\r\n") && head.len() < 4096 {
        tokio::io::AsyncReadExt::read_exact(&mut stream, &mut byte).await.unwrap();
        head.push(byte[0]);
    }
    let head = String::from_utf8_lossy(&head).to_ascii_lowercase();
    assert!(head.starts_with("http/1.1 101"), "{head}");
    assert!(head.contains("upgrade: websocket"), "{head}");
    stream
}

#[tokio::test]
async fn http2_prior_knowledge() {
    let proxy = start_proxy(routes(&one_backend().await), ProxyOptions::default()).await;
    let request = hyper::Request::builder()
        .uri("http://web.test/h2?x=1")
        .version(hyper::Version::HTTP_2)
        .body(http_body_util::Full::default())
        .unwrap();
    let reply = send_h2c(proxy, request).await;
    assert_eq!(reply.status, 200);
    let echoed = reply.json();
    assert_eq!(echoed["path"], "/h2?x=1");
    assert_eq!(echoed["host"], "web.test");
    let healthz = hyper::Request::builder()
        .uri("http://lb.test/healthz")
        .version(hyper::Version::HTTP_2)
        .body(http_body_util::Full::default())
        .unwrap();
    assert_eq!(send_h2c(proxy, healthz).await.text(), "ok");
}

#[tokio::test]
async fn websocket_upgrade_passes_through() {
    let mut snapshot = Snapshot::default();
    add_service(&mut snapshot, "app", &[(echo_backend("ws").await, true)]);
    add_ingress(&mut snapshot, "app", json!({}), &[("app.test", "/", "Prefix", "app")]);
    let proxy = start_proxy(routes(&snapshot), ProxyOptions::default()).await;
    let mut stream = open_tunnel(proxy).await;
    stream.write_all(b"hello through the tunnel").await.unwrap();
    let mut echoed = [0u8; 24];
    let read = tokio::io::AsyncReadExt::read_exact(&mut stream, &mut echoed);
    tokio::time::timeout(Duration::from_secs(5), read).await.unwrap().unwrap();
    assert_eq!(&echoed, b"hello through the tunnel");
}

/// A CA and leaf certificates it signs, PEM, made for the test.
struct TestPki {
    ca: rcgen::Certificate,
    ca_key: rcgen::KeyPair,
}

impl TestPki {
    fn new() -> TestPki {
        let mut params = rcgen::CertificateParams::new(Vec::<String>::new()).unwrap();
        params.is_ca = rcgen::IsCa::Ca(rcgen::BasicConstraints::Unconstrained);
        let ca_key = rcgen::KeyPair::generate().unwrap();
        let ca = params.self_signed(&ca_key).unwrap();
        TestPki { ca, ca_key }
    }

    /// (certificate PEM, key PEM) for `host`.
    fn leaf(&self, host: &str) -> (String, String) {
        let key = rcgen::KeyPair::generate().unwrap();
        let params = rcgen::CertificateParams::new(vec![host.to_owned()]).unwrap();
        let cert = params.signed_by(&key, &self.ca, &self.ca_key).unwrap();
        (cert.pem(), key.serialize_pem())
    }

    fn client(&self, alpn: &[u8]) -> tokio_rustls::TlsConnector {
        let mut roots = rustls::RootCertStore::empty();
        roots.add(self.ca.der().clone()).unwrap();
        let provider = Arc::new(rustls::crypto::ring::default_provider());
        let config = rustls::ClientConfig::builder_with_provider(provider).with_safe_default_protocol_versions().unwrap();
        let mut config = config.with_root_certificates(roots).with_no_client_auth();
        config.alpn_protocols = vec![alpn.to_vec()];
        tokio_rustls::TlsConnector::from(Arc::new(config))
    }
}

#[tokio::test]
async fn tls_with_sni_alpn_h2_and_a_default_certificate() {
    let pki = TestPki::new();
    let mut snapshot = one_backend().await;
    let (cert, key) = pki.leaf("web.test");
    let ingress = &mut snapshot.ingresses[0];
    ingress.spec.as_mut().unwrap().tls = Some(vec![serde_json::from_value(json!({
        "hosts": ["web.test"], "secretName": "web-tls",
    }))
    .unwrap()]);
    let secret = json!({
        "metadata": {"name": "web-tls", "namespace": "default"},
        "type": "kubernetes.io/tls",
        "stringData": {"tls.crt": cert, "tls.key": key},
    });
    snapshot.secrets.push(serde_json::from_value(secret).unwrap());
    let (default_cert, default_key) = pki.leaf("default.test");
    let default_certificate =
        ingress_userspace::l7::tls::certified_key_from_pem(default_cert.as_bytes(), default_key.as_bytes()).unwrap();
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let proxy = listener.local_addr().unwrap();
    let serve = ingress_userspace::l7::server::serve_tls(listener, routes(&snapshot), ProxyOptions::default(), default_certificate);
    tokio::spawn(serve);

    let connect = |server_name: &'static str, alpn: &'static [u8]| {
        let connector = pki.client(alpn);
        async move {
            let stream = TcpStream::connect(proxy).await.unwrap();
            let name = rustls_pki_types::ServerName::try_from(server_name).unwrap();
            connector.connect(name, stream).await
        }
    };
    // HTTP/1.1 over TLS, the certificate chosen by SNI.
    let tls = connect("web.test", b"http/1.1").await.expect("web.test certificate");
    let (mut sender, connection) = hyper::client::conn::http1::handshake(hyper_util::rt::TokioIo::new(tls)).await.unwrap();
    tokio::spawn(connection);
    let reply = read_reply(sender.send_request(get("web.test", "/secure")).await.unwrap()).await;
    assert_eq!(reply.json()["headers"]["x-forwarded-proto"], "https");

    // HTTP/2 chosen by ALPN.
    let tls = connect("web.test", b"h2").await.expect("web.test certificate");
    assert_eq!(tls.get_ref().1.alpn_protocol(), Some(&b"h2"[..]));
    let (mut sender, connection) =
        hyper::client::conn::http2::handshake(hyper_util::rt::TokioExecutor::new(), hyper_util::rt::TokioIo::new(tls))
            .await
            .unwrap();
    tokio::spawn(connection);
    let request = hyper::Request::builder()
        .uri("https://web.test/over-h2")
        .version(hyper::Version::HTTP_2)
        .body(http_body_util::Full::<bytes::Bytes>::default())
        .unwrap();
    let reply = read_reply(sender.send_request(request).await.unwrap()).await;
    assert_eq!(reply.json()["path"], "/over-h2");

    // An SNI no Ingress names gets the default certificate.
    assert!(connect("default.test", b"http/1.1").await.is_ok());
    let mismatch = connect("unknown.test", b"http/1.1").await.unwrap_err();
    assert!(mismatch.to_string().contains("not valid for name"), "{mismatch}");
}
