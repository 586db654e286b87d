//! What a route's nginx annotations make the proxy do around forwarding:
//! answers it gives itself (403 for a client outside the allowlist, the
//! HTTPS, permanent/temporal and app-root redirects, the CORS preflight),
//! the CORS headers on forwarded answers, and which requests a canary takes.

use std::net::IpAddr;

use hyper::header::{self, HeaderMap, HeaderName, HeaderValue};
use hyper::http::uri::Authority;
use hyper::{Method, Request, Response, StatusCode};

use super::nginx_annotations::Cors;
use super::response::{ProxyBody, local};
use super::table::Route;

/// The answer the proxy gives itself instead of forwarding, if any: the
/// allowlist first (a refused client learns nothing, not even a redirect),
/// then the redirects, then the CORS preflight.
pub(crate) fn local_answer<B>(route: &Route, request: &Request<B>, client: IpAddr, scheme: &str, authority: &str) -> Option<Response<ProxyBody>> {
    let annotations = &route.annotations;
    if let Some(allowed) = &annotations.allowed_sources
        && !allowed.iter().any(|range| range.contains(client))
    {
        return Some(local(StatusCode::FORBIDDEN, "403 Forbidden\n"));
    }
    let path_and_query = request.uri().path_and_query().map_or("/", |path| path.as_str());
    if route.https_redirect && scheme == "http" {
        // nginx's 308 keeps the method and body; the port is HTTPS's own.
        let host = authority.parse::<Authority>().map_or_else(|_| authority.to_owned(), |parsed| parsed.host().to_owned());
        return Some(redirect(StatusCode::PERMANENT_REDIRECT, &format!("https://{host}{path_and_query}")));
    }
    if let Some(target) = &annotations.redirect {
        let status = StatusCode::from_u16(target.status).unwrap_or(StatusCode::FOUND);
        return Some(redirect(status, &target.location));
    }
    if let Some(app_root) = &annotations.app_root
        && request.uri().path() == "/"
    {
        return Some(redirect(StatusCode::FOUND, &format!("{scheme}://{authority}{app_root}")));
    }
    let preflight = request.method() == Method::OPTIONS && request.headers().contains_key(header::ACCESS_CONTROL_REQUEST_METHOD);
    match &annotations.cors {
        Some(cors) if preflight => {
            let mut response = local(StatusCode::NO_CONTENT, "");
            response.headers_mut().remove(header::CONTENT_TYPE);
            response.headers_mut().extend(cors_headers(cors, request.headers()));
            response.headers_mut().insert(header::ACCESS_CONTROL_MAX_AGE, HeaderValue::from(cors.max_age_seconds));
            Some(response)
        }
        _ => None,
    }
}

fn redirect(status: StatusCode, location: &str) -> Response<ProxyBody> {
    let mut response = local(status, "");
    response.headers_mut().remove(header::CONTENT_TYPE);
    if let Ok(location) = HeaderValue::from_str(location) {
        response.headers_mut().insert(header::LOCATION, location);
    }
    response
}

/// The CORS headers for an answer to a request with these headers: none
/// without an `Origin`, or for an origin that is not allowed.
pub(crate) fn cors_headers(cors: &Cors, request_headers: &HeaderMap) -> HeaderMap {
    let mut headers = HeaderMap::new();
    let Some(origin) = request_headers.get(header::ORIGIN) else { return headers };
    let allowed = if cors.allow_origins.iter().any(|allowed| allowed == "*") {
        HeaderValue::from_static("*")
    } else if cors.allow_origins.iter().any(|allowed| allowed.as_bytes() == origin.as_bytes()) {
        origin.clone()
    } else {
        return headers;
    };
    headers.insert(header::ACCESS_CONTROL_ALLOW_ORIGIN, allowed);
    let mut set = |name: HeaderName, value: &str| {
        if let Ok(value) = HeaderValue::from_str(value) {
            headers.insert(name, value);
        }
    };
    set(header::ACCESS_CONTROL_ALLOW_METHODS, &cors.allow_methods);
    set(header::ACCESS_CONTROL_ALLOW_HEADERS, &cors.allow_headers);
    if cors.allow_credentials {
        set(header::ACCESS_CONTROL_ALLOW_CREDENTIALS, "true");
    }
    headers
}

#[cfg(test)]
#[path = "policy_proxy_tests.rs"]
mod proxy_tests;

#[cfg(test)]
mod tests {
    use super::*;
    use crate::l7::canary::CanaryRoute;
    use crate::l7::nginx_annotations::Canary;
    use std::sync::Arc;

    fn headers(pairs: &[(&'static str, &'static str)]) -> HeaderMap {
        pairs.iter().map(|(name, value)| (HeaderName::from_static(name), HeaderValue::from_static(value))).collect()
    }

    #[test]
    fn the_canary_header_decides_before_the_weight() {
        let canary = |weight, header_value: Option<&str>| {
            let canary = Canary { weight, header: Some("x-canary".into()), header_value: header_value.map(str::to_owned) };
            CanaryRoute::new(Arc::new(Route::new("canary".into(), Default::default())), canary)
        };
        let cases = [
            (canary(0, None), &[("x-canary", "always")][..], true),
            (canary(100, None), &[("x-canary", "never")][..], false),
            (canary(0, Some("beta")), &[("x-canary", "beta")][..], true),
            (canary(0, Some("beta")), &[("x-canary", "always")][..], false),
            (canary(100, None), &[("x-canary", "maybe")][..], true),
            (canary(0, None), &[][..], false),
        ];
        for (index, (canary, pairs, expected)) in cases.into_iter().enumerate() {
            assert_eq!(canary.takes(&headers(pairs)), expected, "case {index}");
        }
        let split = canary(30, None);
        let taken = (0..1000).filter(|_| split.takes(&HeaderMap::new())).count();
        assert_eq!(taken, 300);
    }

    #[test]
    fn cors_headers_only_for_allowed_origins() {
        let cors = |origins: &[&str]| Cors {
            allow_origins: origins.iter().map(|origin| (*origin).to_owned()).collect(),
            allow_methods: "GET, POST".into(),
            allow_headers: "Content-Type".into(),
            allow_credentials: false,
            max_age_seconds: 5,
        };
        let from_a = headers(&[("origin", "https://a.example")]);
        let cases = [
            (cors(&["*"]), from_a.clone(), Some("*")),
            (cors(&["https://b.example", "https://a.example"]), from_a.clone(), Some("https://a.example")),
            (cors(&["https://b.example"]), from_a.clone(), None),
            (cors(&["*"]), HeaderMap::new(), None),
        ];
        for (cors, request, expected) in cases {
            let answer = cors_headers(&cors, &request);
            let origin = answer.get(header::ACCESS_CONTROL_ALLOW_ORIGIN).map(|value| value.to_str().unwrap());
            assert_eq!(origin, expected, "{cors:?}");
            assert_eq!(answer.contains_key(header::ACCESS_CONTROL_ALLOW_METHODS), expected.is_some());
            assert!(!answer.contains_key(header::ACCESS_CONTROL_ALLOW_CREDENTIALS));
        }
    }
}
