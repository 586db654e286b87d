//! deploy/grafana/dashboard.json is a Grafana dashboard whose every query
//! names series the agent's `/metrics` really has: the text comes from the
//! agent's own renderers, fed one observation of each kind so that every
//! labelled family has samples. Needs nothing but the file.

use std::collections::BTreeSet;
use std::path::Path;
use std::time::Duration;

use ingress_common::stats::{Counter, REASON_NAMES};
use ingress_userspace::l7::metrics::L7Metrics;
use ingress_userspace::metrics::Metrics;
use serde_json::Value;

fn dashboard() -> Value {
    let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("../deploy/grafana/dashboard.json");
    let text = std::fs::read_to_string(&path)
        .unwrap_or_else(|e| panic!("reading {}: {e}", path.display()));
    serde_json::from_str(&text).unwrap_or_else(|e| panic!("{}: not JSON: {e}", path.display()))
}

/// What the admin endpoint serves at `/metrics` (Metrics::render followed by
/// the L7 proxy's), after one event of every kind the agent counts.
fn agent_metrics_text() -> String {
    let metrics = Metrics::default();
    metrics.count_problem("invalid_port");
    metrics.count_api_error("services");
    metrics.sync_succeeded(3, 1, 2);
    metrics.sync_failed();
    metrics.observe_sync(Duration::from_millis(4));
    metrics.set_map_usage("lb_services", 3, 1024);
    metrics.count_map_full("lb_backends");
    metrics.conntrack_swept(1);
    metrics.conntrack_udp_flushed(1);
    let dataplane = vec![
        Counter {
            packets: 1,
            bytes: 60
        };
        REASON_NAMES.len()
    ];
    let l7 = L7Metrics::default();
    l7.shard().observe(
        "ingress:default/web:example.com/",
        200,
        Duration::from_millis(2),
    );
    metrics.render(&dataplane) + &l7.render()
}

/// The series names of the samples in a Prometheus text exposition
/// (histograms appear as their `_bucket`, `_sum` and `_count` series).
fn series_names(text: &str) -> BTreeSet<String> {
    text.lines()
        .filter(|line| !line.starts_with('#') && !line.is_empty())
        .map(|line| line.split(['{', ' ']).next().unwrap_or(line).to_owned())
        .collect()
}

/// The expression with the contents of its string literals blanked: label
/// values such as `map="lb_services"` are not metric names.
fn without_strings(expr: &str) -> String {
    let mut out = String::with_capacity(expr.len());
    let mut quote = None;
    let mut escaped = false;
    for c in expr.chars() {
        match quote {
            None if matches!(c, '"' | '\'' | '`') => quote = Some(c),
            None => {}
            Some(_) if escaped => escaped = false,
            Some(q) if c == '\\' && q != '`' => escaped = true,
            Some(q) if c == q => quote = None,
            Some(_) => {
                out.push(' ');
                continue;
            }
        }
        out.push(c);
    }
    out
}

/// Identifiers `lb_...` in a PromQL expression outside strings (the agent's
/// metrics all share the prefix; PromQL functions and labels never start
/// with it).
fn metric_names(expr: &str) -> Vec<String> {
    let expr = without_strings(expr);
    let is_name_char = |c: char| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '_';
    let mut names = Vec::new();
    let mut rest = expr.as_str();
    while let Some(start) = rest.find("lb_") {
        let preceded_by_name = rest[..start].chars().next_back().is_some_and(is_name_char);
        let tail = &rest[start..];
        let end = tail.find(|c| !is_name_char(c)).unwrap_or(tail.len());
        if !preceded_by_name {
            names.push(tail[..end].to_owned());
        }
        rest = &tail[end..];
    }
    names
}

/// (where, PromQL) for every panel target and every query variable, nested
/// rows included.
fn queries(dashboard: &Value) -> Vec<(String, String)> {
    fn panel_queries(panels: &[Value], out: &mut Vec<(String, String)>) {
        for panel in panels {
            let title = panel["title"].as_str().unwrap_or("(untitled)");
            for target in panel["targets"].as_array().into_iter().flatten() {
                if let Some(expr) = target["expr"].as_str() {
                    out.push((format!("panel {title:?}"), expr.to_owned()));
                }
            }
            panel_queries(panel["panels"].as_array().map_or(&[], Vec::as_slice), out);
        }
    }
    let mut out = Vec::new();
    panel_queries(
        dashboard["panels"].as_array().map_or(&[], Vec::as_slice),
        &mut out,
    );
    for variable in dashboard["templating"]["list"]
        .as_array()
        .into_iter()
        .flatten()
    {
        let name = variable["name"].as_str().unwrap_or("(unnamed)");
        let query = &variable["query"];
        if let Some(query) = query.as_str().or_else(|| query["query"].as_str()) {
            out.push((format!("variable {name:?}"), query.to_owned()));
        }
    }
    out
}

/// "(where): unknown metric NAME" for every name not among `known`.
fn unknown_metrics(queries: &[(String, String)], known: &BTreeSet<String>) -> Vec<String> {
    queries
        .iter()
        .flat_map(|(place, expr)| {
            metric_names(expr)
                .into_iter()
                .filter(|name| !known.contains(name))
                .map(move |name| format!("{place}: {name} is not in the agent's /metrics"))
        })
        .collect()
}

#[test]
fn metric_names_are_read_from_promql() {
    let expr = "histogram_quantile(0.9, sum by (le) (rate(lb_sync_duration_seconds_bucket[5m]))) \
                / on() lb_map_entries{map=\"lb_services\", x='lb_a\\'lb_b'} + xlb_other";
    assert_eq!(
        metric_names(expr),
        ["lb_sync_duration_seconds_bucket", "lb_map_entries"]
    );
}

#[test]
fn an_unknown_metric_is_named_with_its_panel() {
    let known = series_names("# TYPE lb_syncs_total counter\nlb_syncs_total{result=\"ok\"} 1\n");
    let queries = [
        (
            "panel \"Syncs\"".to_owned(),
            "rate(lb_syncs_total[1m])".to_owned(),
        ),
        (
            "panel \"Typo\"".to_owned(),
            "rate(lb_sync_total[1m])".to_owned(),
        ),
    ];
    assert_eq!(
        unknown_metrics(&queries, &known),
        ["panel \"Typo\": lb_sync_total is not in the agent's /metrics"]
    );
}

#[test]
fn the_dashboard_is_a_grafana_dashboard_with_a_prometheus_input() {
    let dashboard = dashboard();
    assert!(
        dashboard["schemaVersion"].as_u64().is_some(),
        "no schemaVersion"
    );
    assert!(
        dashboard["__inputs"]
            .as_array()
            .into_iter()
            .flatten()
            .any(|input| input["name"] == "DS_PROMETHEUS" && input["pluginId"] == "prometheus"),
        "no DS_PROMETHEUS datasource input"
    );
    let panels = dashboard["panels"].as_array().expect("no panels");
    let without_datasource: Vec<&str> = panels
        .iter()
        .filter(|panel| panel["type"] != "row" && panel["datasource"]["uid"] != "${DS_PROMETHEUS}")
        .map(|panel| panel["title"].as_str().unwrap_or("(untitled)"))
        .collect();
    assert!(
        without_datasource.is_empty(),
        "panels not on ${{DS_PROMETHEUS}}: {without_datasource:?}"
    );
    assert!(
        !queries(&dashboard).is_empty(),
        "the dashboard queries nothing"
    );
}

#[test]
fn every_metric_the_dashboard_queries_is_one_the_agent_exports() {
    let known = series_names(&agent_metrics_text());
    let unknown = unknown_metrics(&queries(&dashboard()), &known);
    assert!(
        unknown.is_empty(),
        "{}\nthe agent exports: {known:?}",
        unknown.join("\n")
    );
}
