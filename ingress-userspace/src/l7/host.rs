//! Host names as routes compare them: lower-cased, without port and without
//! one trailing dot, so `Foo.Bar.com.:8080` and `foo.bar.com` are one host.

use std::borrow::Cow;

/// The host part of a `Host` header or `:authority`, normalised; borrowed
/// from `authority` unless it had upper-case letters, as most requests'
/// hosts have none.
pub fn normalize_host(authority: &str) -> Cow<'_, str> {
    let authority = authority.trim();
    let host = if let Some(bracketed) = authority.strip_prefix('[') {
        // An IPv6 literal: its colons are not a port separator.
        bracketed.split(']').next().unwrap_or_default()
    } else {
        authority.rsplit_once(':').map_or(authority, |(host, _port)| host)
    };
    let host = host.strip_suffix('.').unwrap_or(host);
    if host.bytes().any(|byte| byte.is_ascii_uppercase()) {
        Cow::Owned(host.to_ascii_lowercase())
    } else {
        Cow::Borrowed(host)
    }
}

/// What the `host` of an Ingress rule (or a pod's `trafficHosts` entry) matches.
#[derive(Clone, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum HostPattern {
    Exact(String),
    /// `*.foo.com`, stored as `foo.com`: matches exactly one more label.
    Wildcard(String),
    /// No host: every host.
    Any,
}

impl HostPattern {
    pub fn parse(host: &str) -> HostPattern {
        let host = normalize_host(host);
        if host.is_empty() {
            HostPattern::Any
        } else if let Some(suffix) = host.strip_prefix("*.") {
            HostPattern::Wildcard(suffix.to_owned())
        } else {
            HostPattern::Exact(host.into_owned())
        }
    }

    /// `host` must be normalised.
    pub fn matches(&self, host: &str) -> bool {
        match self {
            HostPattern::Exact(exact) => exact == host,
            HostPattern::Wildcard(suffix) => wildcard_suffix(host) == Some(suffix.as_str()),
            HostPattern::Any => true,
        }
    }
}

/// The suffix a wildcard rule must equal for `host` to match it: all but the
/// first label, which must not be empty.
pub fn wildcard_suffix(host: &str) -> Option<&str> {
    match host.split_once('.') {
        Some((label, rest)) if !label.is_empty() && !rest.is_empty() => Some(rest),
        _ => None,
    }
}

impl std::fmt::Display for HostPattern {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            HostPattern::Exact(host) => f.write_str(host),
            HostPattern::Wildcard(suffix) => write!(f, "*.{suffix}"),
            HostPattern::Any => f.write_str("*"),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn normalises_case_port_and_trailing_dot() {
        let cases = [
            ("foo.bar.com", "foo.bar.com"),
            ("Foo.BAR.com", "foo.bar.com"),
            ("foo.bar.com:8080", "foo.bar.com"),
            ("foo.bar.com.", "foo.bar.com"),
            ("foo.bar.com.:443", "foo.bar.com"),
            ("[::1]:8080", "::1"),
            ("[FE80::1]", "fe80::1"),
            ("10.0.0.1:80", "10.0.0.1"),
            ("", ""),
        ];
        for (input, expected) in cases {
            assert_eq!(normalize_host(input), expected, "{input}");
        }
    }

    #[test]
    fn wildcard_matches_exactly_one_label() {
        let wildcard = HostPattern::parse("*.foo.com");
        assert_eq!(wildcard, HostPattern::Wildcard("foo.com".into()));
        let cases = [
            ("bar.foo.com", true),
            ("baz.bar.foo.com", false),
            ("foo.com", false),
            (".foo.com", false),
            ("barfoo.com", false),
        ];
        for (host, expected) in cases {
            assert_eq!(wildcard.matches(host), expected, "{host}");
        }
    }

    #[test]
    fn exact_and_any() {
        let exact = HostPattern::parse("Foo.Bar.com.");
        assert!(exact.matches("foo.bar.com"));
        assert!(!exact.matches("x.foo.bar.com"));
        assert_eq!(HostPattern::parse(""), HostPattern::Any);
        assert!(HostPattern::Any.matches("anything.example"));
    }
}
