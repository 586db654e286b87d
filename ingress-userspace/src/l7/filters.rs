//! Gateway API HTTPRoute filters, as the proxy applies them around
//! forwarding: header edits both ways, the redirect it answers itself, the
//! URL rewrite of the forwarded request, and which requests are mirrored.

use std::sync::atomic::{AtomicU64, Ordering::Relaxed};

use hyper::header::{self, HeaderMap, HeaderName, HeaderValue};
use hyper::{Request, Response, StatusCode, Uri};

use super::balancer::Upstream;
use super::path::PathMatch;
use super::response::{ProxyBody, local};
use super::rewrite::rewrite;

/// A rule's filters, already checked (built by the Gateway translation).
#[derive(Debug, Default)]
pub struct Filters {
    pub request_headers: HeaderEdits,
    pub response_headers: HeaderEdits,
    pub redirect: Option<Redirect>,
    pub rewrite: Option<UrlRewrite>,
    pub mirrors: Vec<Mirror>,
}

/// `RequestMirror`: a copy of its share of the requests goes to `upstream`,
/// whose answer is dropped (sent by `mirror.rs`).
#[derive(Debug)]
pub struct Mirror {
    pub upstream: Upstream,
    pub share: Share,
    requests: AtomicU64,
}

/// `numerator` of every `denominator` requests (at most 1).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Share {
    pub numerator: u32,
    pub denominator: u32,
}

impl Mirror {
    pub fn new(upstream: Upstream, share: Share) -> Mirror {
        Mirror { upstream, share, requests: AtomicU64::new(0) }
    }

    /// Whether this request is one of the share: exactly `numerator` of
    /// every `denominator` consecutive requests, spread evenly over them
    /// rather than the first ones, so that a burst is sampled too.
    pub fn takes(&self) -> bool {
        let Share { numerator, denominator } = self.share;
        let request = self.requests.fetch_add(1, Relaxed);
        request.wrapping_mul(u64::from(numerator)) % u64::from(denominator) < u64::from(numerator)
    }
}

/// `RequestHeaderModifier` / `ResponseHeaderModifier`.
#[derive(Debug, Default)]
pub struct HeaderEdits {
    pub set: Vec<(HeaderName, HeaderValue)>,
    pub add: Vec<(HeaderName, HeaderValue)>,
    pub remove: Vec<HeaderName>,
}

impl HeaderEdits {
    pub fn apply(&self, headers: &mut HeaderMap) {
        for (name, value) in &self.set {
            headers.insert(name, value.clone());
        }
        for (name, value) in &self.add {
            headers.append(name, value.clone());
        }
        for name in &self.remove {
            headers.remove(name);
        }
    }
}

#[derive(Debug)]
pub enum PathChange {
    ReplaceFullPath(String),
    /// Replaces what a PathPrefix match matched.
    ReplacePrefixMatch(String),
}

impl PathChange {
    /// The new path (query kept) of a request `rule` matched.
    fn apply(&self, rule: Option<&PathMatch>, path_and_query: &str) -> String {
        let query = path_and_query.split_once('?').map(|(_, query)| query);
        match (self, rule) {
            (PathChange::ReplacePrefixMatch(prefix), Some(rule)) => {
                rewrite(rule, prefix, path_and_query).map_or_else(|| path_and_query.to_owned(), |rewritten| rewritten.path_and_query)
            }
            (PathChange::ReplaceFullPath(path) | PathChange::ReplacePrefixMatch(path), _) => match query {
                Some(query) => format!("{path}?{query}"),
                None => path.clone(),
            },
        }
    }
}

/// `RequestRedirect`: what is not given is the request's own.
#[derive(Debug)]
pub struct Redirect {
    pub scheme: Option<String>,
    pub hostname: Option<String>,
    pub port: Option<u16>,
    pub path: Option<PathChange>,
    /// 301 or 302.
    pub status: StatusCode,
}

/// `URLRewrite`.
#[derive(Debug)]
pub struct UrlRewrite {
    pub hostname: Option<HeaderValue>,
    pub path: Option<PathChange>,
}

impl Filters {
    /// The redirect the proxy answers instead of forwarding, if any.
    pub(crate) fn redirect<B>(&self, request: &Request<B>, rule: Option<&PathMatch>, scheme: &str, authority: &str) -> Option<Response<ProxyBody>> {
        let redirect = self.redirect.as_ref()?;
        let (host, port) = split_authority(authority);
        let new_scheme = redirect.scheme.as_deref().unwrap_or(scheme);
        // A new scheme gets its well-known port; else the request's port stays.
        let port = redirect.port.or(if redirect.scheme.is_some() { None } else { port });
        let default_port = match new_scheme {
            "http" => Some(80),
            "https" => Some(443),
            _ => None,
        };
        let port = port.filter(|port| Some(*port) != default_port).map_or_else(String::new, |port| format!(":{port}"));
        let host = redirect.hostname.as_deref().unwrap_or(host);
        let path_and_query = request.uri().path_and_query().map_or("/", |path| path.as_str());
        let path = redirect.path.as_ref().map_or_else(|| path_and_query.to_owned(), |change| change.apply(rule, path_and_query));
        let mut response = local(redirect.status, "");
        response.headers_mut().remove(header::CONTENT_TYPE);
        if let Ok(location) = HeaderValue::from_str(&format!("{new_scheme}://{host}{port}{path}")) {
            response.headers_mut().insert(header::LOCATION, location);
        }
        Some(response)
    }

    /// Edits the request to forward (headers, URL rewrite); the Host the
    /// upstream gets instead of the client's, if rewritten.
    pub(crate) fn rewrite_request<B>(&self, request: &mut Request<B>, rule: Option<&PathMatch>) -> Option<HeaderValue> {
        self.request_headers.apply(request.headers_mut());
        let rewrite = self.rewrite.as_ref()?;
        if let Some(change) = &rewrite.path {
            let path_and_query = request.uri().path_and_query().map_or("/", |path| path.as_str());
            if let Ok(uri) = change.apply(rule, path_and_query).parse::<Uri>() {
                *request.uri_mut() = uri;
            }
        }
        rewrite.hostname.clone()
    }
}

/// Host and port of an authority (an IPv6 literal keeps its brackets).
fn split_authority(authority: &str) -> (&str, Option<u16>) {
    match authority.rsplit_once(':') {
        Some((host, port)) if !port.contains(']') => (host, port.parse().ok()),
        _ => (authority, None),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn redirect_locations() {
        let redirect = |scheme: Option<&str>, hostname: Option<&str>, port: Option<u16>, path: Option<PathChange>| Filters {
            redirect: Some(Redirect { scheme: scheme.map(Into::into), hostname: hostname.map(Into::into), port, path, status: StatusCode::FOUND }),
            ..Filters::default()
        };
        let rule = PathMatch::prefix("/old");
        let cases = [
            (redirect(Some("https"), None, None, None), "http", "a.test:8080", "/old/x?q=1", "https://a.test/old/x?q=1"),
            (redirect(None, Some("b.test"), None, None), "http", "a.test:8080", "/", "http://b.test:8080/"),
            (redirect(None, None, Some(80), None), "http", "a.test:8080", "/", "http://a.test/"),
            (redirect(Some("https"), None, Some(8443), None), "http", "a.test", "/", "https://a.test:8443/"),
            (redirect(None, None, None, Some(PathChange::ReplaceFullPath("/new".into()))), "http", "a.test", "/old/x?q=1", "http://a.test/new?q=1"),
            (redirect(None, None, None, Some(PathChange::ReplacePrefixMatch("/new".into()))), "http", "a.test", "/old/x", "http://a.test/new/x"),
            (redirect(None, None, None, Some(PathChange::ReplacePrefixMatch("/".into()))), "http", "a.test", "/old/x", "http://a.test/x"),
            (redirect(None, None, None, Some(PathChange::ReplacePrefixMatch("/".into()))), "http", "a.test", "/old", "http://a.test/"),
            (redirect(None, None, None, None), "https", "[::1]:443", "/", "https://[::1]/"),
        ];
        for (filters, scheme, authority, uri, expected) in cases {
            let request = Request::get(uri).body(()).unwrap();
            let response = filters.redirect(&request, Some(&rule), scheme, authority).unwrap();
            assert_eq!(response.status(), StatusCode::FOUND);
            assert_eq!(response.headers()[header::LOCATION], expected, "{scheme}://{authority}{uri}");
        }
        assert!(Filters::default().redirect(&Request::get("/").body(()).unwrap(), None, "http", "a").is_none());
    }

    #[test]
    fn mirrors_take_exactly_their_share_spread_over_the_requests() {
        let taken = |numerator, denominator, requests: usize| {
            let mirror = Mirror::new(Upstream::default(), Share { numerator, denominator });
            (0..requests).map(|_| if mirror.takes() { 'x' } else { '.' }).collect::<String>()
        };
        assert_eq!(taken(1, 1, 4), "xxxx");
        assert_eq!(taken(0, 100, 4), "....");
        assert_eq!(taken(20, 100, 10), "x....x....");
        assert_eq!(taken(1, 3, 7), "x..x..x");
        assert_eq!(taken(2, 3, 6), "x.xx.x");
        assert_eq!(taken(100, 100, 3), "xxx");
    }

    #[test]
    fn header_edits_set_add_then_remove() {
        let value = HeaderValue::from_static;
        let edits = HeaderEdits {
            set: vec![(HeaderName::from_static("x-set"), value("new"))],
            add: vec![(HeaderName::from_static("x-add"), value("two"))],
            remove: vec![HeaderName::from_static("x-gone")],
        };
        let mut headers = HeaderMap::new();
        for (name, old) in [("x-set", "old"), ("x-add", "one"), ("x-gone", "bye"), ("x-kept", "yes")] {
            headers.insert(HeaderName::from_static(name), value(old));
        }
        edits.apply(&mut headers);
        let all = |name: &str| headers.get_all(name).iter().map(|value| value.to_str().unwrap().to_owned()).collect::<Vec<_>>();
        assert_eq!((all("x-set"), all("x-add"), all("x-gone"), all("x-kept")), (vec!["new".into()], vec!["one".into(), "two".into()], vec![], vec!["yes".into()]));
    }
}
