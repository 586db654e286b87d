//! An HTTPRouteMatch as the route table matches it: the path (Exact,
//! PathPrefix, RegularExpression) and the conditions (method, headers,
//! query parameters).

use hyper::Method;
use hyper::header::HeaderName;

use super::types::{HttpRouteMatch, ValueMatch as ValueMatchSpec};
use crate::l7::conditions::{Conditions, ValueMatch};
use crate::l7::path::PathMatch;

/// The match's path and conditions, or why it cannot be served (a one-line
/// message naming the field).
pub fn translate(spec: &HttpRouteMatch) -> Result<(PathMatch, Conditions), String> {
    let path = spec.path.as_ref();
    let value = path.and_then(|path| path.value.as_deref()).unwrap_or("/");
    let path = match path.and_then(|path| path.type_.as_deref()).unwrap_or("PathPrefix") {
        _ if !value.starts_with('/') => return Err(format!("path.value {value:?} does not start with /")),
        "Exact" => PathMatch::exact(value),
        "PathPrefix" => PathMatch::prefix(value),
        "RegularExpression" => PathMatch::full_regex(value).map_err(|error| format!("path.value {value:?} is no regular expression: {error}"))?,
        other => return Err(format!("path.type {other:?} is not Exact, PathPrefix or RegularExpression")),
    };
    let method = match &spec.method {
        Some(method) => Some(Method::from_bytes(method.as_bytes()).map_err(|_| format!("method {method:?} is not an HTTP method"))?),
        None => None,
    };
    let mut headers: Vec<(HeaderName, ValueMatch)> = Vec::new();
    for (index, header) in spec.headers.iter().enumerate() {
        let name = HeaderName::from_bytes(header.name.as_bytes()).map_err(|_| format!("headers[{index}].name {:?} is not a header name", header.name))?;
        // Only the first of equivalent names counts, the spec says.
        if !headers.iter().any(|(seen, _)| *seen == name) {
            headers.push((name, value_match(header, &format!("headers[{index}]"))?));
        }
    }
    let mut query: Vec<(String, ValueMatch)> = Vec::new();
    for (index, param) in spec.query_params.iter().enumerate() {
        if !query.iter().any(|(seen, _)| *seen == param.name) {
            query.push((param.name.clone(), value_match(param, &format!("queryParams[{index}]"))?));
        }
    }
    Ok((path, Conditions { method, headers, query, scheme: None }))
}

fn value_match(spec: &ValueMatchSpec, field: &str) -> Result<ValueMatch, String> {
    match spec.type_.as_deref().unwrap_or("Exact") {
        "Exact" => Ok(ValueMatch::Exact(spec.value.clone())),
        "RegularExpression" => ValueMatch::regex(&spec.value).map_err(|error| format!("{field}.value {:?} is no regular expression: {error}", spec.value)),
        other => Err(format!("{field}.type {other:?} is not Exact or RegularExpression")),
    }
}

#[cfg(test)]
mod tests {
    use hyper::Request;

    use super::*;
    use crate::gateway::types::HttpPathMatch;

    fn spec(path: Option<(&str, &str)>, headers: &[(&str, &str, &str)], method: Option<&str>) -> HttpRouteMatch {
        HttpRouteMatch {
            path: path.map(|(type_, value)| HttpPathMatch { type_: Some(type_.into()), value: Some(value.into()) }),
            headers: headers
                .iter()
                .map(|(type_, name, value)| ValueMatchSpec { type_: Some((*type_).into()), name: (*name).into(), value: (*value).into() })
                .collect(),
            query_params: Vec::new(),
            method: method.map(Into::into),
        }
    }

    #[test]
    fn matches_translate_or_say_which_field_is_wrong() {
        let get = |uri: &str, headers: &[(&str, &str)]| {
            let mut builder = Request::get(uri);
            for (name, value) in headers {
                builder = builder.header(*name, *value);
            }
            builder.body(()).unwrap()
        };
        let serves = |spec: &HttpRouteMatch, uri: &str, headers: &[(&str, &str)]| {
            let (path, conditions) = translate(spec).unwrap();
            let request = get(uri, headers);
            path.matches(request.uri().path()) && conditions.matches(&request, "http")
        };
        let cases = [
            (spec(None, &[], None), "/anything", &[][..], true),
            (spec(Some(("Exact", "/a")), &[], None), "/a/", &[][..], false),
            (spec(Some(("PathPrefix", "/a/")), &[], None), "/a", &[][..], true),
            (spec(Some(("PathPrefix", "/a")), &[], None), "/ab", &[][..], false),
            (spec(Some(("RegularExpression", "/v[0-9]+")), &[], None), "/v12", &[][..], true),
            (spec(Some(("RegularExpression", "/v[0-9]+")), &[], None), "/v12/x", &[][..], false),
            (spec(Some(("RegularExpression", "/v[0-9]+")), &[], None), "/V12", &[][..], false),
            (spec(None, &[("Exact", "X-Env", "a"), ("Exact", "x-env", "b")], None), "/", &[("x-env", "a")][..], true),
            (spec(None, &[("RegularExpression", "x-env", "a|b")], None), "/", &[("x-env", "b")][..], true),
            (spec(None, &[("RegularExpression", "x-env", "a|b")], None), "/", &[("x-env", "ab")][..], false),
            (spec(None, &[], Some("POST")), "/", &[][..], false),
        ];
        for (index, (spec, uri, headers, expected)) in cases.into_iter().enumerate() {
            assert_eq!(serves(&spec, uri, headers), expected, "case {index}: {spec:?}");
        }
        let errors = [
            (spec(Some(("Exact", "a")), &[], None), "path.value \"a\" does not start with /"),
            (spec(Some(("Glob", "/a")), &[], None), "path.type \"Glob\" is not Exact"),
            (spec(Some(("RegularExpression", "/(")), &[], None), "path.value \"/(\" is no regular expression"),
            (spec(None, &[("Exact", "bad name", "x")], None), "headers[0].name \"bad name\" is not a header name"),
            (spec(None, &[("Prefix", "x", "x")], None), "headers[0].type \"Prefix\" is not Exact or RegularExpression"),
            (spec(None, &[], Some("GET /")), "method \"GET /\" is not an HTTP method"),
        ];
        for (spec, expected) in errors {
            let error = translate(&spec).err().unwrap_or_default();
            assert!(error.starts_with(expected), "{error}");
        }
    }
}
