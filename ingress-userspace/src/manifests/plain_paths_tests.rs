//! The plain JSON path against the general one on generated files: whatever
//! the order of the members, an unknown, missing or repeated member, a value
//! of the wrong type, an escaped or unknown kind, a List in a List, the plain
//! path reads what the general path reads, or leaves the file to it.

use super::{parse_plain, parse_through_values};
use crate::test_rng::Rng;

type Members = Vec<(String, String)>;

fn members(pairs: &[(&str, &str)]) -> Members {
    pairs.iter().map(|(key, value)| (key.to_string(), value.to_string())).collect()
}

fn service(index: usize) -> Members {
    let metadata = format!(r#"{{"name": "web-{index}", "namespace": "shop", "labels": {{"app": "web"}}}}"#);
    let spec = r#"{"clusterIP": "10.96.0.1", "ports": [{"name": "http", "port": 80, "targetPort": 8080}], "selector": {"app": "web"}}"#;
    members(&[("apiVersion", r#""v1""#), ("kind", r#""Service""#), ("metadata", &metadata), ("spec", spec)])
}

fn endpoint_slice(index: usize) -> Members {
    let metadata = format!(r#"{{"name": "web-{index}-a", "namespace": "shop", "labels": {{"kubernetes.io/service-name": "web-{index}"}}}}"#);
    let endpoints = format!(r#"[{{"addresses": ["10.0.0.{index}"], "conditions": {{"ready": true}}}}]"#);
    members(&[
        ("apiVersion", r#""discovery.k8s.io/v1""#),
        ("kind", r#""EndpointSlice""#),
        ("metadata", &metadata),
        ("addressType", r#""IPv4""#),
        ("endpoints", &endpoints),
        ("ports", r#"[{"name": "http", "port": 8080}]"#),
    ])
}

/// `object` in a random order, sometimes spoilt one way.
fn render(mut object: Members, rng: &mut Rng) -> String {
    if rng.chance(40) {
        let at = rng.below(object.len());
        match rng.below(6) {
            0 => object.push(("nodeport".to_owned(), "3".to_owned())),
            1 => drop(object.remove(at)),
            2 => object.push(object[at].clone()),
            3 => object[at].1 = "3".to_owned(),
            4 => object.iter_mut().filter(|(key, _)| key == "kind").for_each(|member| member.1 = r#""Serv\u0069ce""#.to_owned()),
            _ => object.iter_mut().filter(|(key, _)| key == "kind").for_each(|member| member.1 = r#""List""#.to_owned()),
        }
    }
    for index in (1..object.len()).rev() {
        object.swap(index, rng.below(index + 1));
    }
    let members: Vec<String> = object.iter().map(|(key, value)| format!("\"{key}\": {value}")).collect();
    format!("{{{}}}", members.join(", "))
}

fn file(rng: &mut Rng) -> String {
    let object = |rng: &mut Rng| {
        let index = rng.below(1000);
        render(if rng.chance(50) { service(index) } else { endpoint_slice(index) }, rng)
    };
    if rng.chance(20) {
        return object(rng);
    }
    let items: Vec<String> = (0..rng.below(5)).map(|_| object(rng)).collect();
    let list = members(&[("apiVersion", r#""v1""#), ("kind", r#""List""#), ("metadata", r#"{"resourceVersion": ""}"#)]);
    let items = ("items".to_owned(), format!("[{}]", items.join(", ")));
    render(list.into_iter().chain([items]).collect(), rng)
}

#[test]
fn the_plain_json_path_reads_what_the_general_path_reads_or_nothing() {
    let mut rng = Rng(0x5eed_1234_abcd);
    let (mut plain, mut general) = (0, 0);
    for case in 0..3000 {
        let text = file(&mut rng);
        match parse_plain("f.json", &text) {
            Some(read) => {
                assert_eq!(read, parse_through_values("f.json", &text), "case {case}: {text}");
                plain += 1;
            }
            None => general += 1,
        }
    }
    // Both paths taken often enough for the comparison to mean something.
    assert!(plain > 600 && general > 600, "{plain} files read the plain way, {general} the general way");
}
