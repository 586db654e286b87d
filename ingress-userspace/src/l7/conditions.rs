//! What a rule asks of a request beyond its host and path: the Gateway API
//! HTTPRoute matches (method, headers, query parameters) and the scheme of
//! the listener a route is attached to. Ingress rules ask nothing more.

use hyper::header::HeaderName;
use hyper::{Method, Request};
use regex::Regex;

#[derive(Clone, Debug, Default)]
pub struct Conditions {
    pub method: Option<Method>,
    /// Names are case-insensitive (`HeaderName` is lower-case).
    pub headers: Vec<(HeaderName, ValueMatch)>,
    /// Names are case-sensitive.
    pub query: Vec<(String, ValueMatch)>,
    /// `http` or `https`: the route is attached only to listeners of that
    /// protocol. `None`: any.
    pub scheme: Option<&'static str>,
}

#[derive(Clone, Debug)]
pub enum ValueMatch {
    Exact(String),
    /// Matches the whole value.
    Regex(Regex),
}

impl ValueMatch {
    pub fn regex(source: &str) -> Result<ValueMatch, regex::Error> {
        Regex::new(&format!("^(?:{source})$")).map(ValueMatch::Regex)
    }

    fn matches(&self, value: &str) -> bool {
        match self {
            ValueMatch::Exact(exact) => exact == value,
            ValueMatch::Regex(regex) => regex.is_match(value),
        }
    }
}

impl Conditions {
    pub fn matches<B>(&self, request: &Request<B>, scheme: &str) -> bool {
        if self.scheme.is_some_and(|wanted| wanted != scheme) {
            return false;
        }
        if self.method.as_ref().is_some_and(|method| method != request.method()) {
            return false;
        }
        let header_ok = |(name, wanted): &(HeaderName, ValueMatch)| {
            let value = request.headers().get(name).and_then(|value| value.to_str().ok());
            value.is_some_and(|value| wanted.matches(value))
        };
        if !self.headers.iter().all(header_ok) {
            return false;
        }
        let query = request.uri().query().unwrap_or("");
        self.query.iter().all(|(name, wanted)| query_value(query, name).is_some_and(|value| wanted.matches(value)))
    }

    /// The spec's tie-breakers after the path, most specific first when
    /// sorted descending: a method, then more headers, then more query
    /// parameters.
    pub fn specificity(&self) -> (bool, usize, usize) {
        (self.method.is_some(), self.headers.len(), self.query.len())
    }
}

/// The first value of query parameter `name` (as sent, not percent-decoded).
fn query_value<'a>(query: &'a str, name: &str) -> Option<&'a str> {
    query.split('&').find_map(|pair| {
        let (key, value) = pair.split_once('=').unwrap_or((pair, ""));
        (key == name).then_some(value)
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn request(method: Method, uri: &str, headers: &[(&str, &str)]) -> Request<()> {
        let mut builder = Request::builder().method(method).uri(uri);
        for (name, value) in headers {
            builder = builder.header(*name, *value);
        }
        builder.body(()).unwrap()
    }

    #[test]
    fn every_condition_must_hold() {
        let conditions = Conditions {
            method: Some(Method::POST),
            headers: vec![(HeaderName::from_static("x-env"), ValueMatch::Exact("beta".into()))],
            query: vec![("v".into(), ValueMatch::regex("[0-9]+").unwrap())],
            scheme: Some("https"),
        };
        let cases = [
            (Method::POST, "/x?a=1&v=12", &[("X-Env", "beta")][..], "https", true),
            (Method::GET, "/x?v=12", &[("x-env", "beta")][..], "https", false),
            (Method::POST, "/x?v=12", &[("x-env", "Beta")][..], "https", false),
            (Method::POST, "/x?v=12", &[][..], "https", false),
            (Method::POST, "/x?v=12a", &[("x-env", "beta")][..], "https", false),
            (Method::POST, "/x?V=12", &[("x-env", "beta")][..], "https", false),
            (Method::POST, "/x", &[("x-env", "beta")][..], "https", false),
            (Method::POST, "/x?v=12", &[("x-env", "beta")][..], "http", false),
        ];
        for (index, (method, uri, headers, scheme, expected)) in cases.into_iter().enumerate() {
            assert_eq!(conditions.matches(&request(method, uri, headers), scheme), expected, "case {index}: {uri}");
        }
        assert!(Conditions::default().matches(&request(Method::DELETE, "/", &[]), "http"));
    }

    #[test]
    fn query_values_are_the_first_of_their_name() {
        let cases = [("a=1&b=2", "b", Some("2")), ("a=1&a=2", "a", Some("1")), ("flag&x=1", "flag", Some("")), ("ab=1", "a", None)];
        for (query, name, expected) in cases {
            assert_eq!(query_value(query, name), expected, "{query} {name}");
        }
    }
}
