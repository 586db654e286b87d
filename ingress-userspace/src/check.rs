//! `ingress-userspace check`: before a migration from ingress-nginx, what
//! this controller will make of the Ingresses of a manifest directory or a
//! cluster: per Ingress, each host+path it serves and where to, the
//! annotations in effect, and what is ignored and why. Read-only.

use std::collections::BTreeMap;
use std::fmt::Write;

use k8s_openapi::api::core::v1::{Secret, Service};
use k8s_openapi::api::discovery::v1::EndpointSlice;
use k8s_openapi::api::networking::v1::{Ingress, IngressBackend, IngressClass};
use kube::api::ListParams;
use kube::{Api, Client};

use crate::l7::table::is_served;
use crate::l7::{L7Options, RouteTable, nginx_annotations};
use crate::l7::nginx_annotations::NginxAnnotations;
use crate::manifests::{Loaded, Snapshot, object_label};
use crate::problem::{Problem, Severity};

pub struct CheckReport {
    pub text: String,
    /// Problems that drop something (malformed manifests, annotations, paths).
    pub errors: usize,
}

/// The report for `loaded`: its own problems (unreadable files, bad
/// documents) and those the route table finds.
pub fn report(loaded: &Loaded) -> CheckReport {
    let snapshot = &loaded.snapshot;
    let (_, route_problems) = RouteTable::build(snapshot, &L7Options::default());
    let problems: Vec<&Problem> = loaded.problems.iter().chain(&route_problems).collect();
    let mut by_object: BTreeMap<String, Vec<&Problem>> = BTreeMap::new();
    for problem in &problems {
        by_object.entry(problem.location.object.clone().unwrap_or_default()).or_default().push(problem);
    }
    let mut ingresses: Vec<&Ingress> = snapshot.ingresses.iter().collect();
    ingresses.sort_by_key(|ingress| object_label("Ingress", &ingress.metadata));
    let mut text = String::new();
    let mut served = 0;
    for ingress in ingresses {
        let label = object_label("Ingress", &ingress.metadata);
        let own = by_object.remove(&label).unwrap_or_default();
        served += usize::from(is_served(ingress, &snapshot.ingress_classes));
        describe_ingress(&mut text, snapshot, ingress, &own);
    }
    let others: Vec<&Problem> = by_object.into_values().flatten().collect();
    if !others.is_empty() {
        text.push_str("other problems:\n");
        for problem in others {
            let _ = writeln!(text, "  {}: {problem}", severity(problem));
        }
    }
    let errors = problems.iter().filter(|problem| problem.severity == Severity::Error).count();
    let warnings = problems.len() - errors;
    let total = snapshot.ingresses.len();
    let _ = writeln!(text, "{total} Ingresses, {served} served; errors: {errors}, warnings: {warnings}");
    CheckReport { text, errors }
}

fn describe_ingress(text: &mut String, snapshot: &Snapshot, ingress: &Ingress, problems: &[&Problem]) {
    let metadata = &ingress.metadata;
    let location = snapshot.location("Ingress", metadata);
    if !is_served(ingress, &snapshot.ingress_classes) {
        let class = ingress.spec.as_ref().and_then(|spec| spec.ingress_class_name.clone());
        let class = class.map_or_else(|| "no class, and no default IngressClass of ours".to_owned(), |class| format!("class {class:?} is not ours"));
        let _ = writeln!(text, "{location}: not served ({class})");
        return;
    }
    let _ = writeln!(text, "{location}: served");
    let annotations = effective_annotations(ingress);
    let regex = annotations.use_regex || annotations.rewrite_target.as_ref().is_some_and(|target| target.contains('$'));
    let spec = ingress.spec.clone().unwrap_or_default();
    for (rule_index, rule) in spec.rules.iter().flatten().enumerate() {
        let host = rule.host.as_deref().unwrap_or("*");
        for (path_index, path) in rule.http.iter().flat_map(|http| &http.paths).enumerate() {
            let field = format!("spec.rules[{rule_index}].http.paths[{path_index}]");
            let skipped = problems.iter().any(|problem| {
                problem.severity == Severity::Error && problem.field.as_deref().is_some_and(|at| at.starts_with(&field))
            });
            let match_type = match path.path_type.as_str() {
                "Exact" => "Exact",
                _ if regex => "Regex",
                _ => "Prefix",
            };
            let verb = if skipped { "skipped" } else { "route" };
            let route = format!("{host} {match_type} {}", path.path.as_deref().unwrap_or("/"));
            let _ = writeln!(text, "  {verb} {route} -> {}", backend(&path.backend));
        }
    }
    if let Some(default_backend) = &spec.default_backend {
        let _ = writeln!(text, "  default backend -> {}", backend(default_backend));
    }
    let effective = describe_annotations(&annotations);
    if !effective.is_empty() {
        let _ = writeln!(text, "  annotations: {}", effective.join(", "));
    }
    for problem in problems {
        let field = problem.field.as_deref().map(|field| format!("{field}: ")).unwrap_or_default();
        let _ = writeln!(text, "  {}: {field}{}", severity(problem), problem.message);
    }
}

fn effective_annotations(ingress: &Ingress) -> NginxAnnotations {
    let no_annotations = BTreeMap::new();
    let annotations = ingress.metadata.annotations.as_ref().unwrap_or(&no_annotations);
    // The route table reported these problems already.
    nginx_annotations::parse(annotations, &Default::default(), &mut Vec::new())
}

fn backend(backend: &IngressBackend) -> String {
    let Some(service) = &backend.service else { return "(not a Service)".into() };
    let port = service.port.as_ref();
    let port = port.and_then(|port| port.number.map(|number| number.to_string()).or_else(|| port.name.clone()));
    format!("{}:{}", service.name, port.unwrap_or_else(|| "?".into()))
}

/// The annotations in effect, as `name value` in the annotations' own terms.
fn describe_annotations(annotations: &NginxAnnotations) -> Vec<String> {
    let mut out = Vec::new();
    let mut add = |name: &str, value: Option<String>| {
        if let Some(value) = value {
            out.push(format!("{name}={value}"));
        }
    };
    add("rewrite-target", annotations.rewrite_target.clone());
    add("use-regex", annotations.use_regex.then(|| "true".into()));
    add("ssl-redirect", annotations.ssl_redirect.then(|| "true (308 to https for the TLS hosts)".into()));
    add("force-ssl-redirect", annotations.force_ssl_redirect.then(|| "true (308 to https)".into()));
    let body = |bytes: u64| if bytes == u64::MAX { "unlimited".into() } else { format!("{bytes} bytes") };
    add("proxy-body-size", annotations.max_body_bytes.map(body));
    add("proxy-read-timeout", annotations.read_timeout.map(|timeout| format!("{}s", timeout.as_secs())));
    let ranges = |ranges: &Vec<_>| ranges.iter().map(ToString::to_string).collect::<Vec<_>>().join(" ");
    add("allowlist-source-range", annotations.allowed_sources.as_ref().map(ranges));
    add("app-root", annotations.app_root.clone());
    add("redirect", annotations.redirect.as_ref().map(|redirect| format!("{} {}", redirect.status, redirect.location)));
    add(
        "canary",
        annotations.canary.as_ref().map(|canary| {
            let header = canary.header.as_ref().map(|header| format!(" or by header {header}")).unwrap_or_default();
            format!("weight {}%{header}", canary.weight)
        }),
    );
    add("enable-cors", annotations.cors.as_ref().map(|cors| format!("origins {}", cors.allow_origins.join(" "))));
    out
}

fn severity(problem: &Problem) -> &'static str {
    match problem.severity {
        Severity::Warning => "warning",
        Severity::Error => "error",
    }
}

/// What `check --kubernetes` reads, with list calls only: the Ingresses,
/// IngressClasses, and the Services, EndpointSlices and TLS Secrets their
/// routes and certificates resolve against.
pub async fn load_cluster() -> anyhow::Result<Loaded> {
    // The agent's own client setup: in-cluster, or as KUBECONFIG says.
    let client = Client::try_default().await.map_err(|error| anyhow::anyhow!("configuring the API client: {error}"))?;
    async fn list<K>(client: &Client, params: ListParams) -> anyhow::Result<Vec<K>>
    where
        K: kube::Resource<DynamicType = (), Scope = k8s_openapi::NamespaceResourceScope>
            + Clone
            + serde::de::DeserializeOwned
            + std::fmt::Debug,
    {
        let kind = K::kind(&());
        let listed = Api::<K>::all(client.clone()).list(&params).await;
        Ok(listed.map_err(|error| anyhow::anyhow!("listing {kind}s: {error}"))?.items)
    }
    let classes = Api::<IngressClass>::all(client.clone()).list(&ListParams::default()).await;
    let snapshot = Snapshot {
        ingresses: list::<Ingress>(&client, ListParams::default()).await?,
        ingress_classes: classes.map_err(|error| anyhow::anyhow!("listing IngressClasses: {error}"))?.items,
        services: list::<Service>(&client, ListParams::default()).await?.into_iter().map(Into::into).collect(),
        endpoint_slices: list::<EndpointSlice>(&client, ListParams::default()).await?.into_iter().map(Into::into).collect(),
        secrets: list::<Secret>(&client, ListParams::default().fields("type=kubernetes.io/tls")).await?,
        ..Snapshot::default()
    };
    Ok(Loaded { snapshot, ..Loaded::default() })
}

#[cfg(test)]
#[path = "check_tests.rs"]
mod tests;
