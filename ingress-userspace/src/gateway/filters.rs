//! An HTTPRoute rule's filters checked and built into what the proxy
//! applies; a filter that cannot be applied is a one-line error naming it.

use std::collections::BTreeMap;

use hyper::StatusCode;
use hyper::header::{HeaderName, HeaderValue};

use super::types::{HeaderModifier, HttpRouteFilter, PathModifier, RequestMirror};
use crate::l7::balancer::Upstream;
use crate::l7::filters::{Filters, HeaderEdits, Mirror, PathChange, Redirect, Share, UrlRewrite};

/// The filters, or the first that cannot be applied (`filters[i]...: why`).
/// `mirrors`: the upstream of each RequestMirror filter whose backendRef
/// resolved, by filter index; the others are dropped, as the spec asks.
pub fn build(specs: &[HttpRouteFilter], mut mirrors: BTreeMap<usize, Upstream>) -> Result<Filters, String> {
    let mut filters = Filters::default();
    for (index, spec) in specs.iter().enumerate() {
        let field = format!("filters[{index}]");
        let missing = || format!("{field}: type {} without its settings", spec.type_);
        match spec.type_.as_str() {
            "RequestHeaderModifier" => {
                let modifier = spec.request_header_modifier.as_ref().ok_or_else(missing)?;
                filters.request_headers = header_edits(modifier, &field)?;
            }
            "ResponseHeaderModifier" => {
                let modifier = spec.response_header_modifier.as_ref().ok_or_else(missing)?;
                filters.response_headers = header_edits(modifier, &field)?;
            }
            "RequestRedirect" => {
                let redirect = spec.request_redirect.as_ref().ok_or_else(missing)?;
                let status = match redirect.status_code.unwrap_or(302) {
                    301 => StatusCode::MOVED_PERMANENTLY,
                    302 => StatusCode::FOUND,
                    other => return Err(format!("{field}: statusCode {other} is not 301 or 302")),
                };
                let port = match redirect.port {
                    Some(port) => Some(u16::try_from(port).map_err(|_| format!("{field}: port {port} out of range"))?),
                    None => None,
                };
                let path = redirect.path.as_ref().map(|path| path_change(path, &field)).transpose()?;
                let scheme = redirect.scheme.clone().filter(|scheme| ["http", "https"].contains(&scheme.as_str()));
                if scheme.is_none() && redirect.scheme.is_some() {
                    return Err(format!("{field}: scheme {:?} is not http or https", redirect.scheme.as_deref().unwrap_or("")));
                }
                filters.redirect = Some(Redirect { scheme, hostname: redirect.hostname.clone(), port, path, status });
            }
            "URLRewrite" => {
                let rewrite = spec.url_rewrite.as_ref().ok_or_else(missing)?;
                let hostname = match &rewrite.hostname {
                    Some(host) => Some(HeaderValue::from_str(host).map_err(|_| format!("{field}: hostname {host:?} is not a valid Host"))?),
                    None => None,
                };
                let path = rewrite.path.as_ref().map(|path| path_change(path, &field)).transpose()?;
                filters.rewrite = Some(UrlRewrite { hostname, path });
            }
            "RequestMirror" => {
                let share = mirror_share(spec.request_mirror.as_ref().ok_or_else(missing)?, &field)?;
                if let Some(upstream) = mirrors.remove(&index) {
                    filters.mirrors.push(Mirror::new(upstream, share));
                }
            }
            other => return Err(format!("{field}: filter type {other:?} is not supported")),
        }
    }
    if filters.redirect.is_some() && filters.rewrite.is_some() {
        return Err("filters: RequestRedirect and URLRewrite cannot be used together".into());
    }
    Ok(filters)
}

fn header_edits(modifier: &HeaderModifier, field: &str) -> Result<HeaderEdits, String> {
    let name = |name: &str| HeaderName::from_bytes(name.as_bytes()).map_err(|_| format!("{field}: {name:?} is not a header name"));
    let pair = |header: &super::types::HttpHeader| -> Result<(HeaderName, HeaderValue), String> {
        let value = HeaderValue::from_str(&header.value).map_err(|_| format!("{field}: value of {:?} is not a header value", header.name))?;
        Ok((name(&header.name)?, value))
    };
    Ok(HeaderEdits {
        set: modifier.set.iter().map(pair).collect::<Result<_, _>>()?,
        add: modifier.add.iter().map(pair).collect::<Result<_, _>>()?,
        remove: modifier.remove.iter().map(|header| name(header)).collect::<Result<_, _>>()?,
    })
}

/// The requests a mirror takes: `percent`, or `fraction`, or all.
fn mirror_share(mirror: &RequestMirror, field: &str) -> Result<Share, String> {
    let (numerator, denominator) = match (mirror.percent, &mirror.fraction) {
        (Some(_), Some(_)) => return Err(format!("{field}: requestMirror has both percent and fraction")),
        (Some(percent), None) => (percent, 100),
        (None, Some(fraction)) => (fraction.numerator, fraction.denominator.unwrap_or(100)),
        (None, None) => (1, 1),
    };
    match (u32::try_from(numerator), u32::try_from(denominator)) {
        (Ok(numerator), Ok(denominator)) if denominator > 0 && numerator <= denominator => Ok(Share { numerator, denominator }),
        _ => Err(format!("{field}: requestMirror share {numerator}/{denominator} is not between 0 and 1")),
    }
}

fn path_change(path: &PathModifier, field: &str) -> Result<PathChange, String> {
    match (path.type_.as_str(), &path.replace_full_path, &path.replace_prefix_match) {
        ("ReplaceFullPath", Some(full), _) => Ok(PathChange::ReplaceFullPath(full.clone())),
        ("ReplacePrefixMatch", _, Some(prefix)) => Ok(PathChange::ReplacePrefixMatch(prefix.clone())),
        (other, _, _) => Err(format!("{field}: path type {other:?} without its value")),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::gateway::types::{Fraction, HttpHeader, ObjectReference, RequestRedirect};

    #[test]
    fn unusable_filters_are_named() {
        let redirect = |status: i32, scheme: &str| HttpRouteFilter {
            type_: "RequestRedirect".into(),
            request_redirect: Some(RequestRedirect { status_code: Some(status), scheme: Some(scheme.into()), ..RequestRedirect::default() }),
            ..HttpRouteFilter::default()
        };
        let headers = |name: &str| HttpRouteFilter {
            type_: "RequestHeaderModifier".into(),
            request_header_modifier: Some(HeaderModifier { set: vec![HttpHeader { name: name.into(), value: "v".into() }], ..HeaderModifier::default() }),
            ..HttpRouteFilter::default()
        };
        let mirror = |percent: Option<i32>, fraction: Option<(i32, Option<i32>)>| HttpRouteFilter {
            type_: "RequestMirror".into(),
            request_mirror: Some(RequestMirror {
                backend_ref: ObjectReference { name: "copy".into(), port: Some(80), ..ObjectReference::default() },
                percent,
                fraction: fraction.map(|(numerator, denominator)| Fraction { numerator, denominator }),
            }),
            ..HttpRouteFilter::default()
        };
        let cases = [
            (vec![redirect(301, "https"), headers("x-ok")], ""),
            (vec![mirror(None, None), mirror(Some(0), None), mirror(Some(100), None), mirror(None, Some((1, Some(3))))], ""),
            (vec![mirror(Some(101), None)], "filters[0]: requestMirror share 101/100 is not between 0 and 1"),
            (vec![mirror(Some(-1), None)], "filters[0]: requestMirror share -1/100 is not between 0 and 1"),
            (vec![mirror(None, Some((2, Some(1))))], "filters[0]: requestMirror share 2/1 is not between 0 and 1"),
            (vec![mirror(None, Some((0, Some(0))))], "filters[0]: requestMirror share 0/0 is not between 0 and 1"),
            (vec![mirror(Some(5), Some((1, None)))], "filters[0]: requestMirror has both percent and fraction"),
            (vec![redirect(307, "https")], "filters[0]: statusCode 307 is not 301 or 302"),
            (vec![redirect(301, "ftp")], "filters[0]: scheme \"ftp\" is not http or https"),
            (vec![headers("x-ok"), headers("bad name")], "filters[1]: \"bad name\" is not a header name"),
            (vec![HttpRouteFilter { type_: "URLRewrite".into(), ..HttpRouteFilter::default() }], "filters[0]: type URLRewrite without its settings"),
            (vec![HttpRouteFilter { type_: "ExtensionRef".into(), ..HttpRouteFilter::default() }], "filters[0]: filter type \"ExtensionRef\" is not supported"),
        ];
        for (specs, expected) in cases {
            assert_eq!(build(&specs, BTreeMap::new()).err().unwrap_or_default(), expected);
        }
    }

    #[test]
    fn mirrors_are_built_with_their_share_and_unresolved_ones_dropped() {
        let mirror = |percent: Option<i32>| HttpRouteFilter {
            type_: "RequestMirror".into(),
            request_mirror: Some(RequestMirror { percent, ..RequestMirror::default() }),
            ..HttpRouteFilter::default()
        };
        let resolved = BTreeMap::from([(0, Upstream::default()), (2, Upstream::default())]);
        let filters = build(&[mirror(None), mirror(Some(50)), mirror(Some(20))], resolved).unwrap();
        let shares: Vec<Share> = filters.mirrors.iter().map(|mirror| mirror.share).collect();
        assert_eq!(shares, [Share { numerator: 1, denominator: 1 }, Share { numerator: 20, denominator: 100 }]);
    }
}
