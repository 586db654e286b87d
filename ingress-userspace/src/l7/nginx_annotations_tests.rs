use super::*;
use crate::problem::Severity;

fn parse_pairs(pairs: &[(&str, &str)]) -> (NginxAnnotations, Vec<Problem>) {
    let annotations = pairs.iter().map(|(name, value)| (format!("{PREFIX}{name}"), (*value).to_owned())).collect();
    let mut problems = Vec::new();
    let parsed = parse(&annotations, &Location::object("Ingress shop/web"), &mut problems);
    (parsed, problems)
}

fn range(text: &str) -> SourceRange {
    parse_range(text).unwrap()
}

#[test]
fn well_formed_values_become_typed_values_without_problems() {
    type Check = fn(&NginxAnnotations) -> bool;
    let cases: &[(&[(&str, &str)], Check)] = &[
        (&[("ssl-redirect", "true")], |parsed| parsed.ssl_redirect && !parsed.force_ssl_redirect),
        (&[("force-ssl-redirect", "true")], |parsed| parsed.force_ssl_redirect),
        (&[("backend-protocol", "http")], |parsed| *parsed == NginxAnnotations::default()),
        (&[("proxy-body-size", "8m")], |parsed| parsed.max_body_bytes == Some(8 << 20)),
        (&[("proxy-body-size", "512K")], |parsed| parsed.max_body_bytes == Some(512 << 10)),
        (&[("proxy-body-size", "1000")], |parsed| parsed.max_body_bytes == Some(1000)),
        (&[("proxy-body-size", "0")], |parsed| parsed.max_body_bytes == Some(u64::MAX)),
        (&[("proxy-read-timeout", "120")], |parsed| parsed.read_timeout == Some(Duration::from_secs(120))),
        (&[("whitelist-source-range", "10.0.0.0/8, 192.168.1.7")], |parsed| {
            parsed.allowed_sources == Some(vec![range("10.0.0.0/8"), range("192.168.1.7/32")])
        }),
        (&[("allowlist-source-range", "fd00::/64")], |parsed| parsed.allowed_sources == Some(vec![range("fd00::/64")])),
        (&[("use-regex", "true")], |parsed| parsed.use_regex),
        (&[("rewrite-target", "/$2")], |parsed| parsed.rewrite_target.as_deref() == Some("/$2")),
        (&[("app-root", "/app1")], |parsed| parsed.app_root.as_deref() == Some("/app1")),
        (&[("permanent-redirect", "https://new.example/")], |parsed| {
            parsed.redirect == Some(Redirect { status: 301, location: "https://new.example/".into() })
        }),
        (&[("temporal-redirect", "/maintenance")], |parsed| {
            parsed.redirect == Some(Redirect { status: 302, location: "/maintenance".into() })
        }),
        (&[("canary", "true"), ("canary-weight", "30"), ("canary-by-header", "X-Canary")], |parsed| {
            parsed.canary == Some(Canary { weight: 30, header: Some("x-canary".into()), header_value: None })
        }),
        (&[("canary", "true"), ("canary-by-header", "x-env"), ("canary-by-header-value", "beta")], |parsed| {
            parsed.canary == Some(Canary { weight: 0, header: Some("x-env".into()), header_value: Some("beta".into()) })
        }),
        (&[("enable-cors", "true")], |parsed| {
            let cors = parsed.cors.as_ref().unwrap();
            cors.allow_origins == ["*"] && cors.allow_methods == DEFAULT_CORS_METHODS && cors.allow_credentials
        }),
        (
            &[("enable-cors", "true"), ("cors-allow-origin", "https://a.example, https://b.example"), ("cors-allow-methods", "GET,POST"), ("cors-allow-credentials", "false"), ("cors-max-age", "60")],
            |parsed| {
                let cors = parsed.cors.as_ref().unwrap();
                cors.allow_origins == ["https://a.example", "https://b.example"]
                    && cors.allow_methods == "GET, POST"
                    && !cors.allow_credentials
                    && cors.max_age_seconds == 60
            },
        ),
    ];
    for (pairs, check) in cases {
        let (parsed, problems) = parse_pairs(pairs);
        assert!(problems.is_empty(), "{pairs:?}: {problems:?}");
        assert!(check(&parsed), "{pairs:?}: {parsed:?}");
    }
}

#[test]
fn a_malformed_value_is_one_error_naming_ingress_annotation_and_value_and_only_it_is_ignored() {
    let cases = [
        ("proxy-body-size", "10Q", "a size"),
        ("proxy-body-size", "-1", "a size"),
        ("proxy-read-timeout", "60s", "whole seconds"),
        ("proxy-connect-timeout", "soon", "whole seconds"),
        ("ssl-redirect", "yes", "true or false"),
        ("backend-protocol", "FCGI", "HTTP, HTTPS, GRPC or GRPCS"),
        ("app-root", "app1", "a path starting with /"),
        ("permanent-redirect", "new.example", "an absolute URL or a path"),
        ("canary-weight", "150", "a whole percentage"),
        ("cors-max-age", "forever", "whole seconds"),
    ];
    for (name, value, expected) in cases {
        let mut pairs = vec![(name, value)];
        if name != "proxy-read-timeout" {
            pairs.push(("proxy-read-timeout", "30"));
        }
        if name.starts_with("canary") {
            pairs.push(("canary", "true"));
        }
        if name.starts_with("cors") {
            pairs.push(("enable-cors", "true"));
        }
        let (parsed, problems) = parse_pairs(&pairs);
        assert_eq!(problems.len(), 1, "{name}: {problems:?}");
        let line = problems[0].to_string();
        let wanted = format!("Ingress shop/web: metadata.annotations[{PREFIX}{name}]: invalid value {value:?} (expected {expected}");
        assert!(line.starts_with(&wanted), "{line}\nwanted {wanted}");
        assert!(line.ends_with("annotation ignored"), "{line}");
        assert_eq!((problems[0].severity, problems[0].kind), (Severity::Error, ProblemKind::InvalidAnnotation));
        if name != "proxy-read-timeout" {
            assert_eq!(parsed.read_timeout, Some(Duration::from_secs(30)), "{name}: the other annotation still applies");
        }
    }
}

#[test]
fn a_bad_cidr_is_skipped_and_an_allowlist_without_a_good_one_refuses_everyone() {
    let (parsed, problems) = parse_pairs(&[("whitelist-source-range", "10.0.0.0/8,10.0.0.0/33")]);
    assert_eq!(parsed.allowed_sources, Some(vec![range("10.0.0.0/8")]));
    assert_eq!(problems.len(), 1);
    assert!(problems[0].message.contains("\"10.0.0.0/33\""), "{}", problems[0]);
    let (parsed, problems) = parse_pairs(&[("allowlist-source-range", "office")]);
    assert_eq!(parsed.allowed_sources, Some(vec![]));
    assert_eq!(problems[0].kind, ProblemKind::InvalidAnnotation);
}

#[test]
fn unknown_and_unimplemented_annotations_are_warnings_naming_them() {
    let cases = [
        ("configuration-snippet", ProblemKind::UnknownAnnotation, "not implemented by this controller"),
        ("affinity", ProblemKind::UnsupportedAnnotation, "session affinity is not supported"),
        ("session-cookie-name", ProblemKind::UnsupportedAnnotation, "session affinity is not supported"),
        ("limit-rps", ProblemKind::UnsupportedAnnotation, "rate limiting is not supported"),
        ("proxy-send-timeout", ProblemKind::UnsupportedAnnotation, "per-write timer"),
        ("proxy-connect-timeout", ProblemKind::UnsupportedAnnotation, "5 s connect timeout"),
        ("canary-weight", ProblemKind::UnsupportedAnnotation, "canary is not \"true\""),
    ];
    for (name, kind, reason) in cases {
        let value = if name.ends_with("timeout") || name.starts_with("canary") || name == "limit-rps" { "10" } else { "cookie" };
        let (_, problems) = parse_pairs(&[(name, value)]);
        assert_eq!(problems.len(), 1, "{name}: {problems:?}");
        assert_eq!((problems[0].severity, problems[0].kind), (Severity::Warning, kind), "{name}");
        let line = problems[0].to_string();
        assert!(line.contains(&format!("[{PREFIX}{name}]")) && line.contains(reason), "{line}");
    }
    let (_, problems) = parse_pairs(&[("backend-protocol", "GRPC")]);
    assert!(problems[0].message.contains("GRPC is not supported"), "{}", problems[0]);
    let mut others = BTreeMap::new();
    others.insert("kubernetes.io/ingress.class".to_owned(), "x".to_owned());
    let mut problems = Vec::new();
    parse(&others, &Location::default(), &mut problems);
    assert!(problems.is_empty(), "annotations outside the nginx prefix are not ours to judge");
}
