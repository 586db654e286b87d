//! The one route table the proxy reads: built purely from a `Snapshot` (served
//! Ingresses, annotated pods, the optional default Service), then swapped in
//! whole, so a request sees either the old table or the new one.

use std::collections::{BTreeMap, HashMap};
use std::net::SocketAddr;
use std::sync::Arc;

use hyper::Request;
use k8s_openapi::api::networking::v1::{Ingress, IngressBackend, IngressClass};

use super::annotations::pod_routes;
use super::nginx_annotations;
use super::canary::CanaryRoute;
use super::balancer::Upstream;
use super::endpoints::ServiceIndex;
use super::host::{HostPattern, normalize_host, wildcard_suffix};
use super::path::PathMatch;
pub use super::route::Route;
use super::rule::{Rule, Seniority};
use super::tls::Certificates;
use super::{INGRESS_CONTROLLER, L7Options};
use crate::gateway::translate as gateway;
use crate::manifests::Snapshot;
use crate::problem::{Location, Problem, ProblemKind};

pub const LEGACY_CLASS_ANNOTATION: &str = "kubernetes.io/ingress.class";
pub const DEFAULT_CLASS_ANNOTATION: &str = "ingressclass.kubernetes.io/is-default-class";
pub const CANARY_ANNOTATION: &str = "nginx.ingress.kubernetes.io/canary";

#[derive(Debug, Default)]
struct HostRules {
    /// In precedence order.
    rules: Vec<Rule>,
    /// The `spec.defaultBackend` of the Ingress that named this host.
    default_backend: Option<Arc<Route>>,
}

impl HostRules {
    /// `deep`: the host matched a wildcard by more than one label, which
    /// only Gateway API wildcards allow.
    fn find<B>(&self, path: &str, request: &Request<B>, scheme: &str, deep: bool) -> Option<&Rule> {
        self.rules.iter().find(|rule| (!deep || rule.any_depth) && rule.matches(path, request, scheme))
    }

    fn has_any_depth(&self) -> bool {
        self.rules.iter().any(|rule| rule.any_depth)
    }
}

#[derive(Debug, Default)]
pub struct RouteTable {
    /// Looked up for every request (foldhash: see Cargo.toml).
    exact: foldhash::HashMap<String, HostRules>,
    /// Keyed by the suffix after `*.`.
    wildcard: foldhash::HashMap<String, HostRules>,
    any_host: HostRules,
    /// The user-named Service for unmatched traffic, if configured.
    fallback: Option<Arc<Route>>,
    /// `namespace/name` of the Ingresses this controller serves (status targets).
    served_ingresses: Vec<String>,
    certificates: Certificates,
}

#[derive(Debug)]
pub enum Decision<'a> {
    Forward {
        route: &'a Arc<Route>,
        /// The rule that matched; `None` for a default backend route.
        rule: Option<&'a PathMatch>,
        /// Takes some of the rule's requests instead of `route`.
        canary: Option<&'a CanaryRoute<Route>>,
    },
    /// The built-in default backend. `known_host` is false when no host rule
    /// claimed the host (the case the proxy may answer by closing).
    DefaultBackend { known_host: bool },
}

impl RouteTable {
    pub fn build(snapshot: &Snapshot, options: &L7Options) -> (RouteTable, Vec<Problem>) {
        let mut builder = Builder {
            snapshot,
            index: ServiceIndex::new(snapshot),
            table: RouteTable::default(),
            claimed: HashMap::new(),
            problems: Vec::new(),
        };
        let mut ingresses: Vec<&Ingress> = snapshot
            .ingresses
            .iter()
            .filter(|ingress| is_served(ingress, &snapshot.ingress_classes))
            .collect();
        // Oldest wins a conflict; objects without a timestamp (from files) come
        // after the API server's, then namespace/name decides.
        // Canaries last: they join the routes of the Ingresses they split.
        ingresses.sort_by_key(|ingress| {
            let metadata = &ingress.metadata;
            let canary = metadata.annotations.as_ref().and_then(|annotations| annotations.get(CANARY_ANNOTATION));
            let created = metadata.creation_timestamp.clone();
            let canary = canary.is_some_and(|value| value == "true");
            (canary, created.is_none(), created, metadata.namespace.clone(), metadata.name.clone())
        });
        for ingress in &ingresses {
            builder.add_ingress(ingress);
        }
        builder.table.certificates = Certificates::build(snapshot, &ingresses, &mut builder.problems);
        builder.add_pods();
        let gateways = gateway::translate(snapshot, &builder.index);
        builder.problems.extend(gateways.problems);
        for (host, rule) in gateways.rules {
            builder.host_rules(&host).rules.push(rule);
        }
        builder.table.certificates.add_all(gateways.certificates);
        if let Some(service) = &options.default_backend_service {
            let endpoints = match builder.index.resolve(&service.namespace, &service.name, &service.port) {
                Ok(endpoints) => endpoints,
                Err(error) => {
                    let message = format!("default backend Service: {error}, answering 503");
                    builder.problems.push(Problem::warning(ProblemKind::UnknownService, Location::default(), message));
                    Vec::new()
                }
            };
            builder.table.fallback = Some(Arc::new(Route::new("default-backend-service".into(), Upstream::new(endpoints))));
        }
        let table = &mut builder.table;
        let all = table.exact.values_mut().chain(table.wildcard.values_mut());
        for host in all.chain([&mut table.any_host]) {
            host.rules.sort_by(Rule::precedence);
        }
        (builder.table, builder.problems)
    }

    /// `authority` is a raw `Host` header or `:authority` (the request's own
    /// may be another); `scheme` the listener's, `http` or `https`.
    pub fn lookup<B>(&self, authority: &str, scheme: &str, request: &Request<B>) -> Decision<'_> {
        let path = request.uri().path();
        let (rules, known_host, deep) = match self.host_rules(&normalize_host(authority)) {
            // A matched host never falls through to other hosts' rules.
            Some((rules, deep)) => (rules, true, deep),
            None => (&self.any_host, false, false),
        };
        if let Some(rule) = rules.find(path, request, scheme, deep) {
            return Decision::Forward {
                route: &rule.route,
                rule: Some(&rule.path),
                canary: rule.canary.as_ref(),
            };
        }
        let default_backend = rules.default_backend.as_ref().filter(|_| !deep);
        match default_backend.or(self.fallback.as_ref()) {
            Some(route) => Decision::Forward { route, rule: None, canary: None },
            None => Decision::DefaultBackend { known_host },
        }
    }

    /// Whether a host rule (exact or wildcard) claims the host; host-less
    /// rules do not count.
    pub fn serves_host(&self, authority: &str) -> bool {
        self.host_rules(&normalize_host(authority)).is_some()
    }

    /// The rules of the most specific host pattern that claims `host`: its
    /// exact name, else the wildcard of the longest suffix (a suffix more
    /// than one label short claims only with Gateway API wildcards), and
    /// whether that suffix was more than one label short.
    fn host_rules(&self, host: &str) -> Option<(&HostRules, bool)> {
        if let Some(rules) = self.exact.get(host) {
            return Some((rules, false));
        }
        let mut deep = false;
        let mut rest = host;
        while let Some(suffix) = wildcard_suffix(rest) {
            match self.wildcard.get(suffix) {
                Some(rules) if !deep || rules.has_any_depth() => return Some((rules, deep)),
                _ => {}
            }
            rest = suffix;
            deep = true;
        }
        None
    }

    pub fn served_ingresses(&self) -> &[String] {
        &self.served_ingresses
    }

    pub fn certificates(&self) -> &Certificates {
        &self.certificates
    }
}

/// Whether this controller serves the Ingress (by class).
pub fn is_served(ingress: &Ingress, classes: &[IngressClass]) -> bool {
    let ours = |class: &&IngressClass| {
        let controller = class.spec.as_ref().and_then(|spec| spec.controller.as_deref());
        controller == Some(INGRESS_CONTROLLER)
    };
    let annotation = |metadata: &k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta, key: &str| {
        metadata.annotations.as_ref().and_then(|annotations| annotations.get(key)).cloned()
    };
    let class_name = ingress.spec.as_ref().and_then(|spec| spec.ingress_class_name.clone());
    match class_name.or_else(|| annotation(&ingress.metadata, LEGACY_CLASS_ANNOTATION)) {
        Some(name) => classes
            .iter()
            .filter(ours)
            .any(|class| class.metadata.name.as_deref() == Some(&name)),
        None => classes
            .iter()
            .filter(ours)
            .any(|class| annotation(&class.metadata, DEFAULT_CLASS_ANNOTATION).as_deref() == Some("true")),
    }
}

type RuleKey = (HostPattern, &'static str, String);

struct Builder<'a> {
    snapshot: &'a Snapshot,
    index: ServiceIndex<'a>,
    table: RouteTable,
    /// Who owns each host + path (+ match kind), for oldest-wins conflicts.
    claimed: HashMap<RuleKey, String>,
    problems: Vec<Problem>,
}

impl Builder<'_> {
    fn host_rules(&mut self, host: &HostPattern) -> &mut HostRules {
        match host {
            HostPattern::Exact(host) => self.table.exact.entry(host.clone()).or_default(),
            HostPattern::Wildcard(suffix) => self.table.wildcard.entry(suffix.clone()).or_default(),
            HostPattern::Any => &mut self.table.any_host,
        }
    }

    fn add_ingress(&mut self, ingress: &Ingress) {
        let metadata = &ingress.metadata;
        let location = self.snapshot.location("Ingress", metadata);
        let namespace = metadata.namespace.as_deref().unwrap_or("default");
        let owner = format!("Ingress {namespace}/{}", metadata.name.as_deref().unwrap_or(""));
        let no_annotations = BTreeMap::new();
        let annotations = metadata.annotations.as_ref().unwrap_or(&no_annotations);
        let annotations = nginx_annotations::parse(annotations, &location, &mut self.problems);
        // A target naming capture groups only makes sense with regex paths.
        let use_regex = annotations.use_regex || annotations.rewrite_target.as_ref().is_some_and(|target| target.contains('$'));
        let Some(spec) = &ingress.spec else { return };
        let route_prefix = format!("ingress:{namespace}/{}", metadata.name.as_deref().unwrap_or(""));
        let tls_hosts: Vec<HostPattern> = spec.tls.iter().flatten().flat_map(|tls| tls.hosts.iter().flatten()).map(|host| HostPattern::parse(host)).collect();
        let with_annotations = |route: Route, https_redirect: bool| {
            Arc::new(Route { annotations: annotations.clone(), https_redirect, ..route })
        };

        let mut hosts = Vec::new();
        for (rule_index, rule) in spec.rules.iter().flatten().enumerate() {
            let host = HostPattern::parse(rule.host.as_deref().unwrap_or(""));
            hosts.push(host.clone());
            let paths = rule.http.iter().flat_map(|http| &http.paths);
            for (path_index, path) in paths.enumerate() {
                let field = format!("spec.rules[{rule_index}].http.paths[{path_index}]");
                let text = path.path.as_deref().unwrap_or("/");
                let matcher = match (path.path_type.as_str(), use_regex) {
                    (_, _) if !text.starts_with('/') => Err(format!("path {text:?} does not start with /")),
                    ("Exact", _) => Ok(PathMatch::exact(text)),
                    ("Prefix" | "ImplementationSpecific", false) => Ok(PathMatch::prefix(text)),
                    ("Prefix" | "ImplementationSpecific", true) => {
                        PathMatch::regex(text).map_err(|error| format!("invalid regex path {text:?}: {error}"))
                    }
                    (other, _) => Err(format!("unknown pathType {other:?}")),
                };
                let matcher = match matcher {
                    Ok(matcher) => matcher,
                    Err(message) => {
                        let message = format!("{message}, path skipped");
                        let problem = Problem::error(ProblemKind::InvalidField, location.clone(), message);
                        self.problems.push(problem.at(format!("{field}.path")));
                        continue;
                    }
                };
                let key = (host.clone(), matcher.kind(), matcher.as_str().to_owned());
                let https_redirect = annotations.force_ssl_redirect || (annotations.ssl_redirect && tls_hosts.contains(&host));
                let name = format!("{route_prefix}:{host}{text}");
                if let Some(canary) = &annotations.canary {
                    let Some(route) = self.route(name, &path.backend, namespace, &location, &field) else { continue };
                    let canary = CanaryRoute::new(with_annotations(route, https_redirect), canary.clone());
                    if let Err(message) = self.attach_canary(&key, text, canary) {
                        let problem = Problem::error(ProblemKind::DuplicateRoute, location.clone(), format!("{message}, path skipped"));
                        self.problems.push(problem.at(field));
                    }
                    continue;
                }
                if let Some(winner) = self.claimed.get(&key) {
                    let message = format!(
                        "{} path {} {text} is already routed by the older {winner}, path skipped",
                        host,
                        matcher.kind()
                    );
                    let problem = Problem::error(ProblemKind::DuplicateRoute, location.clone(), message);
                    self.problems.push(problem.at(field));
                    continue;
                }
                if let Some(route) = self.route(name, &path.backend, namespace, &location, &field) {
                    self.claimed.insert(key, owner.clone());
                    let route = with_annotations(route, https_redirect);
                    let seniority = Seniority::of(metadata, (rule_index, path_index));
                    self.host_rules(&host).rules.push(Rule::new(matcher, route, seniority));
                }
            }
        }

        if annotations.canary.is_some() && spec.default_backend.is_some() {
            let message = "a canary Ingress splits only its rules' paths, defaultBackend skipped";
            let problem = Problem::warning(ProblemKind::InvalidField, location.clone(), message);
            self.problems.push(problem.at("spec.defaultBackend"));
        }
        let default_backend = spec.default_backend.as_ref().filter(|_| annotations.canary.is_none()).and_then(|backend| {
            let name = format!("{route_prefix}:default");
            let route = self.route(name, backend, namespace, &location, "spec.defaultBackend")?;
            Some(with_annotations(route, annotations.force_ssl_redirect))
        });
        if let Some(route) = default_backend {
            // An Ingress with only a defaultBackend catches every host.
            if hosts.is_empty() {
                hosts.push(HostPattern::Any);
            }
            hosts.sort();
            hosts.dedup();
            for host in hosts {
                let key = (host.clone(), "default", String::new());
                if let Some(winner) = self.claimed.get(&key) {
                    let message = format!("{host} already has the defaultBackend of the older {winner}, skipped here");
                    let problem = Problem::error(ProblemKind::DuplicateRoute, location.clone(), message);
                    self.problems.push(problem.at("spec.defaultBackend"));
                    continue;
                }
                self.claimed.insert(key, owner.clone());
                self.host_rules(&host).default_backend = Some(route.clone());
            }
        }
        let served = owner.trim_start_matches("Ingress ").to_owned();
        self.table.served_ingresses.push(served);
    }

    /// Puts `canary` next to the route of the Ingress that owns `key` (the
    /// rule's `text` as written, for messages).
    fn attach_canary(&mut self, key: &RuleKey, text: &str, canary: CanaryRoute<Route>) -> Result<(), String> {
        let (host, kind, path) = key;
        let Some(owner) = self.claimed.get(key).cloned() else {
            return Err(format!("is a canary but no Ingress routes {host} path {kind} {text}"));
        };
        let rules = &mut self.host_rules(host).rules;
        let rule = rules.iter_mut().find(|rule| rule.path.kind() == *kind && rule.path.as_str() == path);
        match rule {
            Some(rule) if rule.canary.is_none() => {
                rule.canary = Some(canary);
                Ok(())
            }
            Some(_) => Err(format!("{host} path {kind} {text} of {owner} already has an older canary")),
            None => Err(format!("is a canary but {host} path {kind} {text} is routed by {owner}, which takes no canary")),
        }
    }

    fn route(&mut self, name: String, backend: &IngressBackend, namespace: &str, location: &Location, field: &str) -> Option<Route> {
        let service = backend.service.as_ref().filter(|service| service.port.is_some());
        let Some(service) = service else {
            let message = "only Service backends with a port are supported, skipped";
            let problem = Problem::error(ProblemKind::InvalidField, location.clone(), message);
            self.problems.push(problem.at(format!("{field}.backend")));
            return None;
        };
        let port = service.port.clone().unwrap_or_default();
        let endpoints = self.index.resolve(namespace, &service.name, &port).unwrap_or_else(|error| {
            let message = format!("{error}, answering 503");
            let problem = Problem::warning(ProblemKind::UnknownService, location.clone(), message);
            self.problems.push(problem.at(format!("{field}.backend.service")));
            Vec::new()
        });
        Some(Route::new(name, Upstream::new(endpoints)))
    }

    fn add_pods(&mut self) {
        let mut pools: BTreeMap<(HostPattern, String), (Vec<SocketAddr>, Location)> = BTreeMap::new();
        for pod in &self.snapshot.pods {
            let location = self.snapshot.location("Pod", &pod.metadata);
            for route in pod_routes(pod, &location, &mut self.problems) {
                let pool = pools.entry((route.host, route.path)).or_insert_with(|| (Vec::new(), location.clone()));
                pool.0.push(route.endpoint);
            }
        }
        for ((host, path), (endpoints, location)) in pools {
            let matcher = PathMatch::prefix(&path);
            let key = (host.clone(), matcher.kind(), matcher.as_str().to_owned());
            if let Some(winner) = self.claimed.get(&key) {
                let message = format!("{host}{path} is already routed by {winner}, pod route skipped");
                self.problems.push(Problem::error(ProblemKind::DuplicateRoute, location, message));
                continue;
            }
            self.claimed.insert(key, "annotated pods".into());
            let route = Arc::new(Route::new(format!("pods:{host}{path}"), Upstream::new(endpoints)));
            let seniority = Seniority { undated: true, object: "pods".into(), ..Seniority::default() };
            self.host_rules(&host).rules.push(Rule::new(matcher, route, seniority));
        }
    }
}

#[cfg(test)]
#[path = "table_tests.rs"]
pub(crate) mod tests;
