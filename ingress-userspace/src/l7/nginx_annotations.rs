//! The `nginx.ingress.kubernetes.io/*` annotations that Ingresses migrated
//! from ingress-nginx carry, parsed into typed values (never templated into
//! a configuration). A malformed value is an error naming the annotation and
//! the value, and only that annotation is ignored; an annotation this
//! controller does not implement is a warning naming it, never silence.

use std::collections::BTreeMap;
use std::time::Duration;

use crate::model::SourceRange;
use crate::problem::{Location, Problem, ProblemKind};
use crate::translate::addresses::parse_range;

pub const PREFIX: &str = "nginx.ingress.kubernetes.io/";

/// What the annotations of one Ingress ask for, as far as it is served.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct NginxAnnotations {
    pub rewrite_target: Option<String>,
    pub use_regex: bool,
    /// `ssl-redirect: "true"`: plain HTTP to a host the Ingress has TLS for
    /// is redirected to HTTPS.
    pub ssl_redirect: bool,
    /// `force-ssl-redirect: "true"`: redirected even without TLS.
    pub force_ssl_redirect: bool,
    /// `proxy-body-size`; `Some(u64::MAX)` for nginx's `0` (no limit).
    pub max_body_bytes: Option<u64>,
    /// `proxy-read-timeout`: how long the upstream may take to answer.
    pub read_timeout: Option<Duration>,
    /// `whitelist-source-range` / `allowlist-source-range`: only these
    /// clients are served (403 for others); empty refuses every client.
    pub allowed_sources: Option<Vec<SourceRange>>,
    /// `app-root`: a request for `/` is redirected here.
    pub app_root: Option<String>,
    /// `permanent-redirect` (301) or `temporal-redirect` (302).
    pub redirect: Option<Redirect>,
    /// `canary: "true"`: this Ingress splits traffic off another's host+path.
    pub canary: Option<Canary>,
    pub cors: Option<Cors>,
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Redirect {
    pub status: u16,
    pub location: String,
}

#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Canary {
    /// Percent of requests (0-100) that go to the canary.
    pub weight: u32,
    /// A request whose header says `always` goes to the canary, `never` to
    /// the main route (or, with `header_value`, that value means canary).
    pub header: Option<String>,
    pub header_value: Option<String>,
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Cors {
    /// `*`, or the origins that are echoed back.
    pub allow_origins: Vec<String>,
    pub allow_methods: String,
    pub allow_headers: String,
    pub allow_credentials: bool,
    pub max_age_seconds: u64,
}

/// Annotations understood and applied; every other one under [`PREFIX`] is
/// reported (see [`IGNORED`] for the ones deliberately not implemented).
const SUPPORTED: &[&str] = &[
    "rewrite-target",
    "use-regex",
    "ssl-redirect",
    "force-ssl-redirect",
    "backend-protocol",
    "proxy-body-size",
    "proxy-read-timeout",
    "proxy-send-timeout",
    "proxy-connect-timeout",
    "whitelist-source-range",
    "allowlist-source-range",
    "app-root",
    "permanent-redirect",
    "temporal-redirect",
    "canary",
    "canary-weight",
    "canary-by-header",
    "canary-by-header-value",
    "enable-cors",
    "cors-allow-origin",
    "cors-allow-methods",
    "cors-allow-headers",
    "cors-allow-credentials",
    "cors-max-age",
];

/// Recognised but not implemented: a warning says what happens instead.
const IGNORED: &[(&str, &str)] = &[
    ("affinity", "session affinity is not supported, requests are balanced round robin"),
    ("session-cookie-name", "session affinity is not supported, requests are balanced round robin"),
    ("limit-rps", "rate limiting is not supported, no limit applies"),
];

const DEFAULT_CORS_METHODS: &str = "GET, PUT, POST, DELETE, PATCH, OPTIONS";
const DEFAULT_CORS_HEADERS: &str =
    "DNT,Keep-Alive,User-Agent,X-Requested-With,If-Modified-Since,Cache-Control,Content-Type,Range,Authorization";
const DEFAULT_CORS_MAX_AGE: u64 = 1_728_000;

/// Parses the annotations of the Ingress at `location`; every problem names
/// the annotation as its field.
pub fn parse(annotations: &BTreeMap<String, String>, location: &Location, problems: &mut Vec<Problem>) -> NginxAnnotations {
    let mut parser = Parser { annotations, location, problems };
    let parsed = parser.parse();
    parser.report_unsupported();
    parsed
}

struct Parser<'a> {
    annotations: &'a BTreeMap<String, String>,
    location: &'a Location,
    problems: &'a mut Vec<Problem>,
}

impl Parser<'_> {
    fn parse(&mut self) -> NginxAnnotations {
        let mut parsed = NginxAnnotations {
            rewrite_target: self.raw("rewrite-target").map(str::to_owned),
            use_regex: self.typed("use-regex", "true or false", parse_bool).unwrap_or(false),
            ssl_redirect: self.typed("ssl-redirect", "true or false", parse_bool).unwrap_or(false),
            force_ssl_redirect: self.typed("force-ssl-redirect", "true or false", parse_bool).unwrap_or(false),
            max_body_bytes: self.typed("proxy-body-size", "a size such as 8m, 512k or 0 (no limit)", parse_size),
            read_timeout: self.typed("proxy-read-timeout", "whole seconds", parse_seconds),
            allowed_sources: self.source_ranges(),
            app_root: self.typed("app-root", "a path starting with /", parse_path),
            redirect: self.redirect(),
            canary: None,
            cors: None,
        };
        if let Some(protocol) = self.typed("backend-protocol", "HTTP, HTTPS, GRPC or GRPCS", parse_protocol)
            && protocol != "HTTP"
        {
            let reason = format!("upstreams are spoken to in plain HTTP/1.1, {protocol} is not supported");
            self.ignored("backend-protocol", &reason);
        }
        // Validated so a typo is caught; the proxy's own timeouts apply.
        for (name, instead) in [
            ("proxy-send-timeout", "request bodies are streamed without a per-write timer"),
            ("proxy-connect-timeout", "the proxy's 5 s connect timeout applies"),
        ] {
            if self.typed(name, "whole seconds", parse_seconds).is_some() {
                self.ignored(name, instead);
            }
        }
        parsed.canary = self.canary();
        parsed.cors = self.cors();
        parsed
    }

    fn raw(&self, name: &str) -> Option<&str> {
        self.annotations.get(&format!("{PREFIX}{name}")).map(String::as_str)
    }

    /// The annotation's value parsed; a malformed one is reported, naming
    /// what was `expected`, and counts as absent.
    fn typed<T>(&mut self, name: &str, expected: &str, parse: impl Fn(&str) -> Option<T>) -> Option<T> {
        let value = self.raw(name)?;
        let parsed = parse(value.trim());
        if parsed.is_none() {
            let message = format!("invalid value {value:?} (expected {expected}), annotation ignored");
            self.report(ProblemKind::InvalidAnnotation, name, message);
        }
        parsed
    }

    fn ignored(&mut self, name: &str, reason: &str) {
        self.report(ProblemKind::UnsupportedAnnotation, name, format!("{reason}; annotation ignored"));
    }

    fn report(&mut self, kind: ProblemKind, name: &str, message: String) {
        let problem = match kind {
            ProblemKind::InvalidAnnotation => Problem::error(kind, self.location.clone(), message),
            _ => Problem::warning(kind, self.location.clone(), message),
        };
        self.problems.push(problem.at(format!("metadata.annotations[{PREFIX}{name}]")));
    }

    /// A malformed CIDR is left out and the others still apply; with none
    /// left every client is refused: an allowlist is never silently lifted.
    fn source_ranges(&mut self) -> Option<Vec<SourceRange>> {
        let name = ["whitelist-source-range", "allowlist-source-range"].into_iter().rev().find(|name| self.raw(name).is_some())?;
        let value = self.raw(name)?.to_owned();
        let mut ranges = Vec::new();
        for text in value.split(',').map(str::trim).filter(|text| !text.is_empty()) {
            match parse_range(text) {
                Ok(range) => ranges.push(range),
                Err(what) => {
                    let message = format!("{what} {text:?} in {value:?}, range skipped (the others still apply)");
                    self.report(ProblemKind::InvalidAnnotation, name, message);
                }
            }
        }
        Some(ranges)
    }

    fn redirect(&mut self) -> Option<Redirect> {
        let url = |value: &str| (value.starts_with('/') || value.starts_with("http://") || value.starts_with("https://")).then(|| value.to_owned());
        let expected = "an absolute URL or a path";
        let permanent = self.typed("permanent-redirect", expected, url).map(|location| Redirect { status: 301, location });
        let temporal = self.typed("temporal-redirect", expected, url).map(|location| Redirect { status: 302, location });
        permanent.or(temporal)
    }

    fn canary(&mut self) -> Option<Canary> {
        let enabled = self.typed("canary", "true or false", parse_bool).unwrap_or(false);
        let percent = |value: &str| value.parse::<u32>().ok().filter(|weight| *weight <= 100);
        let weight = self.typed("canary-weight", "a whole percentage, 0 to 100", percent);
        let header = self.typed("canary-by-header", "a header name", parse_header_name);
        let header_value = self.raw("canary-by-header-value").map(str::to_owned);
        if !enabled {
            for name in ["canary-weight", "canary-by-header", "canary-by-header-value"] {
                if self.raw(name).is_some() {
                    self.ignored(name, "canary is not \"true\"");
                }
            }
            return None;
        }
        Some(Canary { weight: weight.unwrap_or(0), header, header_value })
    }

    fn cors(&mut self) -> Option<Cors> {
        let enabled = self.typed("enable-cors", "true or false", parse_bool).unwrap_or(false);
        let list = |value: &str| {
            let items: Vec<String> = value.split(',').map(str::trim).filter(|item| !item.is_empty()).map(str::to_owned).collect();
            (!items.is_empty()).then_some(items)
        };
        let tokens = |value: &str| list(value).map(|items| items.join(", "));
        let allow_origins = self.typed("cors-allow-origin", "* or a comma-separated list of origins", list);
        let allow_methods = self.typed("cors-allow-methods", "a comma-separated list of methods", tokens);
        let allow_headers = self.typed("cors-allow-headers", "a comma-separated list of headers", tokens);
        let allow_credentials = self.typed("cors-allow-credentials", "true or false", parse_bool);
        let max_age_seconds = self.typed("cors-max-age", "whole seconds", |value| value.parse().ok());
        enabled.then(|| Cors {
            allow_origins: allow_origins.unwrap_or_else(|| vec!["*".into()]),
            allow_methods: allow_methods.unwrap_or_else(|| DEFAULT_CORS_METHODS.into()),
            allow_headers: allow_headers.unwrap_or_else(|| DEFAULT_CORS_HEADERS.into()),
            allow_credentials: allow_credentials.unwrap_or(true),
            max_age_seconds: max_age_seconds.unwrap_or(DEFAULT_CORS_MAX_AGE),
        })
    }

    fn report_unsupported(&mut self) {
        let names: Vec<&str> = self.annotations.keys().filter_map(|key| key.strip_prefix(PREFIX)).collect();
        for name in names {
            if SUPPORTED.contains(&name) {
                continue;
            }
            match IGNORED.iter().find(|(ignored, _)| *ignored == name) {
                Some((_, reason)) => self.ignored(name, reason),
                None => self.report(
                    ProblemKind::UnknownAnnotation,
                    name,
                    "not implemented by this controller, annotation ignored".into(),
                ),
            }
        }
    }
}

fn parse_bool(value: &str) -> Option<bool> {
    match value {
        "true" => Some(true),
        "false" => Some(false),
        _ => None,
    }
}

/// nginx's size syntax: bytes, or a number with k, m or g (either case).
fn parse_size(value: &str) -> Option<u64> {
    let split = value.find(|c: char| !c.is_ascii_digit()).unwrap_or(value.len());
    let (digits, unit) = value.split_at(split);
    let number: u64 = digits.parse().ok()?;
    let multiplier: u64 = match unit {
        "" => 1,
        "k" | "K" => 1 << 10,
        "m" | "M" => 1 << 20,
        "g" | "G" => 1 << 30,
        _ => return None,
    };
    Some(if number == 0 { u64::MAX } else { number.checked_mul(multiplier)? })
}

/// ingress-nginx's timeouts are whole seconds.
fn parse_seconds(value: &str) -> Option<Duration> {
    value.parse::<u64>().ok().filter(|seconds| *seconds > 0).map(Duration::from_secs)
}

fn parse_path(value: &str) -> Option<String> {
    (value.starts_with('/') && !value.contains(char::is_whitespace)).then(|| value.to_owned())
}

fn parse_protocol(value: &str) -> Option<String> {
    let upper = value.to_ascii_uppercase();
    ["HTTP", "HTTPS", "GRPC", "GRPCS"].contains(&upper.as_str()).then_some(upper)
}

fn parse_header_name(value: &str) -> Option<String> {
    hyper::header::HeaderName::from_bytes(value.as_bytes()).ok().map(|name| name.as_str().to_owned())
}

#[cfg(test)]
#[path = "nginx_annotations_tests.rs"]
mod tests;
