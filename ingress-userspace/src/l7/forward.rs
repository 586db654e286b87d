//! The proxy's upstream side: the forwarding headers, the rewrite, timeouts
//! mapped to 504/502/503 and one retry elsewhere for idempotent requests
//! without a body; connections come from the proxy's own pool (`upstream`).

use std::io::Write as _;
use std::net::{IpAddr, SocketAddr};
use std::pin::pin;
use std::sync::Arc;

use http_body_util::{BodyExt, Empty, LengthLimitError, Limited};
use bytes::Bytes;
use hyper::body::Body;
use hyper::header::{self, HeaderMap, HeaderName, HeaderValue};
use hyper::http::uri::PathAndQuery;
use hyper::{Method, Request, Response, StatusCode, Uri, Version};
use hyper_util::rt::TokioIo;

use super::client_body::{ClientBody, ClientBodyError};
use super::path::PathMatch;
use super::request_timer::{RequestTimers, TimedOut};
use super::options::ProxyOptions;
use super::response::{BoxError, ProxyBody, local};
use super::rewrite::rewrite;
use super::table::Route;
use super::upstream::{Pool, RequestHead};

const X_FORWARDED_FOR: HeaderName = HeaderName::from_static("x-forwarded-for");
const X_FORWARDED_PROTO: HeaderName = HeaderName::from_static("x-forwarded-proto");
const X_FORWARDED_HOST: HeaderName = HeaderName::from_static("x-forwarded-host");
const X_FORWARDED_PREFIX: HeaderName = HeaderName::from_static("x-forwarded-prefix");
const X_REAL_IP: HeaderName = HeaderName::from_static("x-real-ip");

/// Hop-by-hop headers (RFC 9110 7.6.1): they describe one connection, not
/// the message. Names, not strings, so that removing them parses nothing.
const HOP_BY_HOP_COUNT: usize = 9;
const HOP_BY_HOP: [HeaderName; HOP_BY_HOP_COUNT] = [
    header::CONNECTION,
    HeaderName::from_static("keep-alive"),
    HeaderName::from_static("proxy-connection"),
    header::PROXY_AUTHENTICATE,
    header::PROXY_AUTHORIZATION,
    header::TE,
    header::TRAILER,
    header::TRANSFER_ENCODING,
    header::UPGRADE,
];

pub(crate) struct Upstreams {
    pool: Arc<Pool>,
    timers: RequestTimers,
}

/// The client of a connection, its address as header text made once per
/// connection rather than once per request: formatting an IPv4 address cost
/// more than a tenth of a request's instructions.
pub(crate) struct Client {
    pub addr: SocketAddr,
    /// `addr`'s IP as X-Forwarded-For and X-Real-IP carry it.
    pub ip: HeaderValue,
}

impl Client {
    pub(crate) fn new(addr: SocketAddr) -> Client {
        Client { addr, ip: ip_value(addr.ip()) }
    }
}

/// What the client side knows about a request that the upstream must learn.
pub(crate) struct Forwarded<'a> {
    pub client: &'a Client,
    pub scheme: &'static str,
    /// Shared with the client's request: the value goes upstream as it came.
    pub authority: &'a HeaderValue,
    pub rule: Option<&'a PathMatch>,
    /// The `Host` the upstream gets instead of `authority` (URLRewrite).
    pub upstream_host: Option<HeaderValue>,
}

enum Failure {
    TimedOut,
    BodyTooLarge,
    /// The client stopped sending its body (nginx: 408).
    ClientBodyTimedOut,
    /// The client's body was malformed, a bad chunk size say (nginx: 400).
    ClientBodyFailed,
    Failed,
}

impl Upstreams {
    pub(crate) fn new(options: &ProxyOptions) -> Upstreams {
        Upstreams { pool: Pool::new(options.connect_timeout, options.upstream_idle_timeout, options.upstream_mark), timers: RequestTimers::default() }
    }

    pub(crate) fn pool(&self) -> &Arc<Pool> {
        &self.pool
    }

    pub(crate) async fn forward<B>(
        &self,
        mut request: Request<B>,
        route: &Route,
        forwarded: Forwarded<'_>,
        options: &ProxyOptions,
    ) -> Response<ProxyBody>
    where
        B: Body<Data = Bytes> + Send + Sync + Unpin + 'static,
        B::Error: Into<BoxError>,
    {
        let Some(upstream) = route.pick_upstream() else {
            return local(StatusCode::INTERNAL_SERVER_ERROR, "no usable backend\n");
        };
        if upstream.endpoints().is_empty() {
            return local(StatusCode::SERVICE_UNAVAILABLE, "no ready endpoint\n");
        }
        let max_body_bytes = route.annotations.max_body_bytes.unwrap_or(options.max_body_bytes);
        let request_timeout = route.annotations.read_timeout.unwrap_or(options.request_timeout);
        let declared_length = request.body().size_hint().exact();
        if declared_length.is_some_and(|length| length > max_body_bytes) {
            return local(StatusCode::PAYLOAD_TOO_LARGE, "request body too large\n");
        }
        let upgrade = upgrade_protocol(request.headers());
        let client_upgrade = upgrade.is_some().then(|| hyper::upgrade::on(&mut request));
        let rewritten = match (&route.annotations.rewrite_target, forwarded.rule, request.uri().path_and_query()) {
            (Some(target), Some(rule), Some(path_and_query)) => rewrite(rule, target, path_and_query.as_str()),
            _ => None,
        };
        let (parts, body) = request.into_parts();
        // Origin form, as an HTTP/1.1 upstream expects it: the client's own
        // path and query, borrowed, unless a rewrite made another.
        let rewritten = rewritten.map(|rewritten| (rewritten.path_and_query.parse::<Uri>().unwrap_or_default(), rewritten.forwarded_prefix));
        let (target, forwarded_prefix) = match &rewritten {
            Some((uri, prefix)) => (uri.path_and_query().map_or("/", PathAndQuery::as_str), prefix.as_deref()),
            None => (parts.uri.path_and_query().map_or("/", PathAndQuery::as_str), None),
        };
        let mut headers = parts.headers;
        strip_hop_by_hop(&mut headers);
        let added = forwarding_headers(&headers, &forwarded, forwarded_prefix);
        if let Some(protocol) = &upgrade {
            headers.insert(header::CONNECTION, HeaderValue::from_static("upgrade"));
            headers.insert(header::UPGRADE, protocol.clone());
        }
        let head = RequestHead { method: &parts.method, target, headers: &headers, added: &added };

        // Without a body the request can be sent again; with one it is consumed.
        let retryable = is_idempotent(&parts.method) && body.is_end_stream();
        let mut body = (!body.is_end_stream()).then(|| {
            let body = ClientBody::new(body, options.body_read_timeout);
            Limited::new(body, usize::try_from(max_body_bytes).unwrap_or(usize::MAX))
        });
        let attempts = if retryable { 2 } else { 1 };
        let mut last_failure = Failure::TimedOut;
        for endpoint in upstream.pick(attempts) {
            let attempt_body = match body.take() {
                Some(body) if !retryable => body.map_err(BoxError::from).boxed(),
                _ => Empty::new().map_err(|never| match never {}).boxed(),
            };
            let sent = match &client_upgrade {
                None => self.timers.within(request_timeout, pin!(self.pool.send(endpoint, &head, attempt_body))).await,
                Some(_) => {
                    let sending = pin!(self.pool.send_upgrade(endpoint, head.to_request(attempt_body)));
                    self.timers.within(request_timeout, sending).await.map(|sent| sent.map(|response| response.map(|body| body.map_err(BoxError::from).boxed())))
                }
            };
            match sent {
                Ok(Ok(response)) => return respond(response, client_upgrade),
                Err(TimedOut) => return local(StatusCode::GATEWAY_TIMEOUT, "upstream timed out\n"),
                Ok(Err(error)) => {
                    tracing::warn!(route = route.name, %endpoint, error = %error_chain(error.as_ref()), "upstream request failed");
                    last_failure = classify(error.as_ref());
                    if matches!(last_failure, Failure::BodyTooLarge | Failure::ClientBodyTimedOut | Failure::ClientBodyFailed) {
                        break;
                    }
                }
            }
        }
        match last_failure {
            Failure::TimedOut => local(StatusCode::GATEWAY_TIMEOUT, "upstream timed out\n"),
            Failure::BodyTooLarge => local(StatusCode::PAYLOAD_TOO_LARGE, "request body too large\n"),
            Failure::ClientBodyTimedOut => closing(local(StatusCode::REQUEST_TIMEOUT, "request body timed out\n")),
            Failure::ClientBodyFailed => closing(local(StatusCode::BAD_REQUEST, "malformed request body\n")),
            Failure::Failed => local(StatusCode::BAD_GATEWAY, "upstream failed\n"),
        }
    }
}

fn respond(mut response: Response<ProxyBody>, client_upgrade: Option<hyper::upgrade::OnUpgrade>) -> Response<ProxyBody> {
    let switching = response.status() == StatusCode::SWITCHING_PROTOCOLS;
    let upstream_upgrade = switching.then(|| hyper::upgrade::on(&mut response));
    let (mut parts, body) = response.into_parts();
    // The client's connection speaks our HTTP version, not the upstream's: an
    // HTTP/1.0 answer passed on as such would end the client's keep-alive
    // (hyper still answers an HTTP/1.0 client in HTTP/1.0).
    parts.version = Version::HTTP_11;
    if let (Some(client_upgrade), Some(upstream_upgrade)) = (client_upgrade, upstream_upgrade) {
        // Both sides switch once the 101 reaches the client; then bytes flow as they are.
        tokio::spawn(async move {
            let (Ok(client), Ok(upstream)) = (client_upgrade.await, upstream_upgrade.await) else {
                return;
            };
            let (mut client, mut upstream) = (TokioIo::new(client), TokioIo::new(upstream));
            let _ = tokio::io::copy_bidirectional(&mut client, &mut upstream).await;
        });
        return Response::from_parts(parts, body);
    }
    strip_hop_by_hop(&mut parts.headers);
    Response::from_parts(parts, body)
}

/// The rest of the client's body is not read, so the connection cannot
/// carry another request.
fn closing(mut response: Response<ProxyBody>) -> Response<ProxyBody> {
    response.headers_mut().insert(header::CONNECTION, HeaderValue::from_static("close"));
    response
}

fn classify(error: &(dyn std::error::Error + 'static)) -> Failure {
    let mut source = Some(error);
    while let Some(cause) = source {
        if cause.is::<LengthLimitError>() {
            return Failure::BodyTooLarge;
        }
        match cause.downcast_ref::<ClientBodyError>() {
            Some(ClientBodyError::TimedOut(_)) => return Failure::ClientBodyTimedOut,
            Some(ClientBodyError::Failed(_)) => return Failure::ClientBodyFailed,
            None => {}
        }
        if cause.downcast_ref::<std::io::Error>().is_some_and(|io| io.kind() == std::io::ErrorKind::TimedOut) {
            return Failure::TimedOut;
        }
        source = cause.source();
    }
    Failure::Failed
}

fn error_chain(error: &dyn std::error::Error) -> String {
    let mut text = error.to_string();
    let mut source = error.source();
    while let Some(cause) = source {
        text.push_str(": ");
        text.push_str(&cause.to_string());
        source = cause.source();
    }
    text
}

fn is_idempotent(method: &Method) -> bool {
    matches!(
        *method,
        Method::GET | Method::HEAD | Method::OPTIONS | Method::TRACE | Method::PUT | Method::DELETE
    )
}

/// The protocol a client asks to switch to, when `Connection` says so.
pub(super) fn upgrade_protocol(headers: &HeaderMap) -> Option<HeaderValue> {
    // `Upgrade` first: almost no request has one, and most have a `Connection`.
    let protocol = headers.get(header::UPGRADE)?;
    connection_tokens(headers).any(|token| token.eq_ignore_ascii_case("upgrade")).then(|| protocol.clone())
}

fn connection_tokens(headers: &HeaderMap) -> impl Iterator<Item = &str> {
    let values = headers.get_all(header::CONNECTION).iter().filter_map(|value| value.to_str().ok());
    values.flat_map(|value| value.split(',')).map(str::trim).filter(|token| !token.is_empty())
}

pub(super) fn strip_hop_by_hop(headers: &mut HeaderMap) {
    // A message rarely carries any: one pass over its names costs less
    // than looking up each hop-by-hop name.
    if !headers.keys().any(|name| HOP_BY_HOP.contains(name)) {
        return;
    }
    // The names `Connection` lists go too; only those present are copied
    // out. The usual tokens, `close` and `keep-alive`, name no header to
    // look up (`Keep-Alive` goes below in any case).
    let names_a_header = |token: &&str| !token.eq_ignore_ascii_case("close") && !token.eq_ignore_ascii_case("keep-alive");
    let listed: Vec<String> =
        connection_tokens(headers).filter(names_a_header).filter(|token| headers.contains_key(*token)).map(str::to_owned).collect();
    for name in listed {
        headers.remove(name.as_str());
    }
    // Only those there (an answer that closes has `Connection` alone):
    // removing one that is not costs a lookup. The names are made once;
    // each use of the constant makes and drops them again.
    let hop_by_hop = HOP_BY_HOP;
    let mut present = [false; HOP_BY_HOP_COUNT];
    for name in headers.keys() {
        if let Some(at) = hop_by_hop.iter().position(|hop| hop == name) {
            present[at] = true;
        }
    }
    for (name, _) in hop_by_hop.iter().zip(present).filter(|(_, there)| *there) {
        headers.remove(name);
    }
}

/// Forwarding headers there may be: their room is made at once.
const FORWARDING_HEADERS: usize = 6;

/// The client's headers with the forwarding headers in place.
pub(super) fn add_forwarding_headers(headers: &mut HeaderMap, forwarded: &Forwarded, forwarded_prefix: Option<&str>) {
    let added = forwarding_headers(headers, forwarded, forwarded_prefix);
    headers.reserve(added.len());
    for (name, value) in added {
        headers.insert(name, value);
    }
}

/// The headers that tell the upstream about the client, each to go in
/// place of the client's own of that name. Kept apart from the client's
/// headers and written after them (`h1_wire::write_request_head`): adding
/// them to the client's map grew and rehashed it on every request.
pub(super) fn forwarding_headers(headers: &HeaderMap, forwarded: &Forwarded, forwarded_prefix: Option<&str>) -> Vec<(HeaderName, HeaderValue)> {
    let client = forwarded.client;
    let mut added = Vec::with_capacity(FORWARDING_HEADERS);
    let chain = match headers.get(&X_FORWARDED_FOR).and_then(|value| value.to_str().ok()) {
        Some(earlier) => HeaderValue::from_str(&format!("{earlier}, {}", client.addr.ip())).ok(),
        None => Some(client.ip.clone()),
    };
    if let Some(chain) = chain {
        added.push((X_FORWARDED_FOR, chain));
    }
    added.push((X_REAL_IP, client.ip.clone()));
    added.push((X_FORWARDED_PROTO, HeaderValue::from_static(forwarded.scheme)));
    added.push((X_FORWARDED_HOST, forwarded.authority.clone()));
    // HTTP/2 clients send `:authority` only; the HTTP/1.1 upstream needs Host.
    let upstream_host = forwarded.upstream_host.as_ref().filter(|host| host.to_str().is_ok());
    added.push((header::HOST, upstream_host.unwrap_or(forwarded.authority).clone()));
    if let Some(prefix) = forwarded_prefix.and_then(|prefix| HeaderValue::from_str(prefix).ok()) {
        added.push((X_FORWARDED_PREFIX, prefix));
    }
    added
}

/// An address as header text, formatted on the stack: no String.
fn ip_value(ip: IpAddr) -> HeaderValue {
    // The longest: an IPv6 address with an embedded IPv4 one, 45 characters.
    let mut text = [0u8; 48];
    let mut cursor = std::io::Cursor::new(&mut text[..]);
    let _ = write!(cursor, "{ip}");
    let length = usize::try_from(cursor.position()).unwrap_or_default();
    HeaderValue::from_bytes(&text[..length]).unwrap_or_else(|_| HeaderValue::from_static(""))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hop_by_hop_headers_and_those_connection_names_are_removed() {
        type Case = (&'static str, &'static [(&'static str, &'static str)], &'static [&'static str]);
        let cases: &[Case] = &[
            (
                "all of them",
                &[
                    ("connection", "keep-alive, X-Secret"),
                    ("keep-alive", "timeout=5"),
                    ("x-secret", "1"),
                    ("te", "trailers"),
                    ("transfer-encoding", "chunked"),
                    ("proxy-authorization", "Basic x"),
                    ("upgrade", "h2c"),
                    ("accept", "*/*"),
                ],
                &["accept"],
            ),
            ("an answer that closes", &[("content-length", "3"), ("connection", "close")], &["content-length"]),
            ("none", &[("content-length", "3"), ("x-secret", "1")], &["content-length", "x-secret"]),
            ("a name no Connection lists stays", &[("trailer", "x-secret"), ("x-secret", "1")], &["x-secret"]),
            ("the last hop-by-hop name alone", &[("accept", "*/*"), ("upgrade", "h2c")], &["accept"]),
        ];
        for (name, fields, left) in cases {
            let mut headers = HeaderMap::new();
            for (field, value) in *fields {
                headers.insert(HeaderName::from_static(field), HeaderValue::from_static(value));
            }
            assert_eq!(upgrade_protocol(&headers), None, "{name}");
            strip_hop_by_hop(&mut headers);
            let kept: Vec<_> = headers.keys().map(HeaderName::as_str).collect();
            assert_eq!(kept, *left, "{name}");
        }
    }

    #[test]
    fn forwarding_headers_extend_the_chain() {
        let mut headers = HeaderMap::new();
        headers.insert(X_FORWARDED_FOR, HeaderValue::from_static("203.0.113.7"));
        let client = Client::new(SocketAddr::from(([192, 0, 2, 1], 5555)));
        let forwarded = Forwarded {
            client: &client,
            scheme: "https",
            authority: &HeaderValue::from_static("shop.example:8443"),
            rule: None,
            upstream_host: None,
        };
        add_forwarding_headers(&mut headers, &forwarded, Some("/api"));
        let get = |name: &str| headers.get(name).unwrap().to_str().unwrap().to_owned();
        assert_eq!(get("x-forwarded-for"), "203.0.113.7, 192.0.2.1");
        assert_eq!(get("x-real-ip"), "192.0.2.1");
        assert_eq!(get("x-forwarded-proto"), "https");
        assert_eq!(get("x-forwarded-host"), "shop.example:8443");
        assert_eq!(get("host"), "shop.example:8443");
        assert_eq!(get("x-forwarded-prefix"), "/api");
    }

    #[test]
    fn websocket_upgrade_is_recognised() {
        let mut headers = HeaderMap::new();
        headers.insert(header::CONNECTION, HeaderValue::from_static("keep-alive, Upgrade"));
        headers.insert(header::UPGRADE, HeaderValue::from_static("websocket"));
        assert_eq!(upgrade_protocol(&headers), Some(HeaderValue::from_static("websocket")));
    }
}
