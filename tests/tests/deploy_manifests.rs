//! deploy/ as `kubectl apply -k deploy/` applies it, alone and with each of
//! deploy/components/, rendered by kubectl's kustomize, parsed into
//! k8s-openapi's types and checked against what the agent does: the
//! ClusterRole grants exactly the accesses in
//! `ingress_userspace::k8s::access::API_ACCESS`, the DaemonSet gives the agent
//! what it needs on a node and arguments its own parser accepts, the
//! IngressClass names the agent's controller, and each component changes what
//! it says it changes. Needs kubectl on PATH, but no cluster and no root.

use std::collections::{BTreeMap, BTreeSet};
use std::panic::{AssertUnwindSafe, catch_unwind, resume_unwind};
use std::path::{Component, Path, PathBuf};
use std::process::Command;
use std::sync::OnceLock;

use clap::{Parser, Subcommand};
use ingress_userspace::agent::AgentConfig;
use ingress_userspace::k8s::access::API_ACCESS;
use ingress_userspace::gateway::GATEWAY_CONTROLLER;
use ingress_userspace::gateway::types::GatewayClass;
use ingress_userspace::l7::INGRESS_CONTROLLER;
use ingress_userspace::l7::table::is_served;
use k8s_openapi::api::apps::v1::{DaemonSet, Deployment};
use k8s_openapi::api::core::v1::{Container, Namespace, PodSpec, Service, ServiceAccount};
use k8s_openapi::api::networking::v1::{Ingress, IngressClass, IngressSpec};
use k8s_openapi::api::rbac::v1::{ClusterRole, ClusterRoleBinding, PolicyRule};
use k8s_openapi::apimachinery::pkg::util::intstr::IntOrString;
// serde as k8s-openapi re-exports it: the same version its types implement.
use k8s_openapi::serde::de::DeserializeOwned;
use k8s_openapi::serde::{Deserialize, Serialize};
use serde_yaml::Value;

/// The agent's own `run` flags, compiled from its source: they live in the
/// binary crate, which nothing can depend on, and a copy could drift. (Its
/// unit tests come along and run here too.)
#[path = "../../ingress-userspace/src/run_args.rs"]
mod run_args;

const NAMESPACE: &str = "ebpf-lb";
const BPFFS: &str = "/sys/fs/bpf";
const AGENT_CONTAINER: &str = "agent";

fn deploy_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../deploy")
        .canonicalize()
        .expect("the repository has no deploy/")
}

fn components_dir() -> PathBuf {
    deploy_dir().join("components")
}

/// `kubectl kustomize DIR`: what `kubectl apply -k DIR` would apply.
fn kustomize(dir: &Path) -> String {
    let output = match Command::new("kubectl").arg("kustomize").arg(dir).output() {
        Ok(output) => output,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => panic!(
            "kubectl is not on PATH: install kubectl (its built-in kustomize renders deploy/ for these tests)"
        ),
        Err(e) => panic!("running kubectl kustomize {}: {e}", dir.display()),
    };
    assert!(
        output.status.success(),
        "kubectl kustomize {} failed: {}",
        dir.display(),
        String::from_utf8_lossy(&output.stderr).trim()
    );
    String::from_utf8(output.stdout).expect("kubectl kustomize printed non-UTF-8")
}

/// `to` as a path relative to `from` (both absolute): kustomize refuses
/// absolute paths to other kustomizations.
fn relative(from: &Path, to: &Path) -> PathBuf {
    let ups = from
        .components()
        .filter(|c| matches!(c, Component::Normal(_)))
        .map(|_| "..");
    ups.collect::<PathBuf>().join(to.strip_prefix("/").unwrap())
}

/// A user's overlay in a fresh directory: deploy/ plus one component, as the
/// README shows it.
fn kustomize_with(component: &str) -> String {
    let overlay =
        Path::new(env!("CARGO_TARGET_TMPDIR")).join(format!("deploy-overlay-{component}"));
    let _ = std::fs::remove_dir_all(&overlay);
    std::fs::create_dir_all(&overlay).unwrap();
    let overlay = overlay.canonicalize().unwrap();
    let kustomization = format!(
        "apiVersion: kustomize.config.k8s.io/v1beta1\nkind: Kustomization\nresources:\n  - {}\ncomponents:\n  - {}\n",
        relative(&overlay, &deploy_dir()).display(),
        relative(&overlay, &components_dir().join(component)).display(),
    );
    std::fs::write(overlay.join("kustomization.yaml"), kustomization).unwrap();
    let rendered = kustomize(&overlay);
    std::fs::remove_dir_all(&overlay).unwrap();
    rendered
}

/// deploy/ alone, then with each component.
struct Variant {
    name: String,
    manifests: Manifests,
}

fn variants() -> &'static [Variant] {
    static VARIANTS: OnceLock<Vec<Variant>> = OnceLock::new();
    VARIANTS.get_or_init(|| {
        let base = Variant {
            name: "deploy/".into(),
            manifests: Manifests::parse("kubectl kustomize deploy/", &kustomize(&deploy_dir())),
        };
        let with_components = components().into_iter().map(|component| {
            let name = format!("deploy/ with components/{component}");
            let manifests = Manifests::parse(&name, &kustomize_with(&component));
            Variant { name, manifests }
        });
        std::iter::once(base).chain(with_components).collect()
    })
}

fn base() -> &'static Manifests {
    &variants()[0].manifests
}

fn variant(component: &str) -> &'static Manifests {
    let name = format!("deploy/ with components/{component}");
    &variants()
        .iter()
        .find(|v| v.name == name)
        .unwrap_or_else(|| panic!("deploy/components/{component} does not exist"))
        .manifests
}

/// The directory names under deploy/components.
fn components() -> Vec<String> {
    let mut names: Vec<String> = std::fs::read_dir(components_dir())
        .unwrap_or_else(|e| panic!("reading deploy/components: {e}"))
        .map(|entry| entry.unwrap())
        .filter(|entry| entry.path().is_dir())
        .map(|entry| entry.file_name().into_string().unwrap())
        .collect();
    names.sort();
    names
}

/// Runs `check` on every variant; a failure names the variant it failed on.
fn for_every_variant(check: fn(&Manifests)) {
    for variant in variants() {
        if let Err(panic) = catch_unwind(AssertUnwindSafe(|| check(&variant.manifests))) {
            eprintln!("the failure above is in {}", variant.name);
            resume_unwind(panic);
        }
    }
}

#[derive(Default)]
struct Manifests {
    namespaces: Vec<Namespace>,
    service_accounts: Vec<ServiceAccount>,
    cluster_roles: Vec<ClusterRole>,
    cluster_role_bindings: Vec<ClusterRoleBinding>,
    daemon_sets: Vec<DaemonSet>,
    ingress_classes: Vec<IngressClass>,
    gateway_classes: Vec<GatewayClass>,
    deployments: Vec<Deployment>,
    services: Vec<Service>,
    ingresses: Vec<Ingress>,
    /// Each document's origin, kind and namespace (None when unset).
    objects: Vec<(String, String, Option<String>)>,
    /// Fields the typed parse did not keep (misspelt or misplaced keys,
    /// which the API server would reject or silently drop).
    problems: Vec<String>,
}

impl Manifests {
    /// Every document of a multi-document YAML text; `source` names it in
    /// messages.
    fn parse(source: &str, text: &str) -> Manifests {
        let mut manifests = Manifests::default();
        for (index, document) in serde_yaml::Deserializer::from_str(text).enumerate() {
            let value = Value::deserialize(document)
                .unwrap_or_else(|e| panic!("{source} document {index}: not YAML: {e}"));
            if value.is_null() {
                continue;
            }
            manifests.add(&format!("{source} document {index}"), value);
        }
        manifests
    }

    fn add(&mut self, origin: &str, value: Value) {
        let kind = value
            .get("kind")
            .and_then(Value::as_str)
            .unwrap_or_default()
            .to_owned();
        let namespace = value
            .get("metadata")
            .and_then(|m| m.get("namespace"))
            .and_then(Value::as_str)
            .map(str::to_owned);
        self.objects
            .push((origin.to_owned(), kind.clone(), namespace));
        let origin = format!("{origin} ({kind})");
        match kind.as_str() {
            "Namespace" => self.namespaces.push(typed(&origin, value, &mut self.problems)),
            "ServiceAccount" => self.service_accounts.push(typed(&origin, value, &mut self.problems)),
            "ClusterRole" => self.cluster_roles.push(typed(&origin, value, &mut self.problems)),
            "ClusterRoleBinding" => self.cluster_role_bindings.push(typed(&origin, value, &mut self.problems)),
            "DaemonSet" => self.daemon_sets.push(typed(&origin, value, &mut self.problems)),
            "IngressClass" => self.ingress_classes.push(typed(&origin, value, &mut self.problems)),
            "GatewayClass" => self.gateway_classes.push(typed(&origin, value, &mut self.problems)),
            "Deployment" => self.deployments.push(typed(&origin, value, &mut self.problems)),
            "Service" => self.services.push(typed(&origin, value, &mut self.problems)),
            "Ingress" => self.ingresses.push(typed(&origin, value, &mut self.problems)),
            other => self.problems.push(format!(
                "{origin}: kind {other:?} is not one this test parses; add it to Manifests so it is checked"
            )),
        }
    }
}

/// Parses into the API type (which checks apiVersion and kind), then
/// serializes back and records every field of the file that did not survive:
/// the typed parse ignores unknown fields, and this is what catches them.
fn typed<T: DeserializeOwned + Serialize>(
    origin: &str,
    value: Value,
    problems: &mut Vec<String>,
) -> T {
    let object: T =
        serde_yaml::from_value(value.clone()).unwrap_or_else(|e| panic!("{origin}: {e}"));
    let back = serde_yaml::to_value(&object).unwrap();
    lost_fields(&value, &back, String::new(), &mut |path, what| {
        problems.push(format!("{origin}: {path}: {what}"))
    });
    object
}

fn lost_fields(
    original: &Value,
    parsed: &Value,
    path: String,
    report: &mut dyn FnMut(String, String),
) {
    match (original, parsed) {
        (Value::Mapping(original), Value::Mapping(parsed)) => {
            for (key, value) in original {
                let key_text = key
                    .as_str()
                    .map(str::to_owned)
                    .unwrap_or_else(|| format!("{key:?}"));
                let child = if path.is_empty() {
                    key_text
                } else {
                    format!("{path}.{key_text}")
                };
                match parsed.get(key) {
                    Some(parsed) => lost_fields(value, parsed, child, report),
                    None => report(
                        child,
                        "not a field of this type (misspelt or misplaced?)".into(),
                    ),
                }
            }
        }
        (Value::Sequence(original), Value::Sequence(parsed)) if original.len() == parsed.len() => {
            for (index, (original, parsed)) in original.iter().zip(parsed).enumerate() {
                lost_fields(original, parsed, format!("{path}[{index}]"), report);
            }
        }
        _ if original == parsed => {}
        _ => report(path, format!("{original:?} parsed as {parsed:?}")),
    }
}

/// The workload `cargo xtask kind` deploys (deploy/kind/cluster.yaml is
/// kind's own config, not an API object).
fn kind_echo() -> Manifests {
    let path = deploy_dir().join("kind/echo.yaml");
    let text = std::fs::read_to_string(&path)
        .unwrap_or_else(|e| panic!("reading {}: {e}", path.display()));
    Manifests::parse("deploy/kind/echo.yaml", &text)
}

fn one<'a, T>(objects: &'a [T], kind: &str) -> &'a T {
    assert_eq!(
        objects.len(),
        1,
        "should hold exactly one {kind}, holds {}",
        objects.len()
    );
    &objects[0]
}

fn pod_spec(daemon_set: &DaemonSet) -> &PodSpec {
    daemon_set
        .spec
        .as_ref()
        .and_then(|spec| spec.template.spec.as_ref())
        .expect("the DaemonSet has no pod template spec")
}

fn agent(pod: &PodSpec) -> &Container {
    pod.containers
        .iter()
        .find(|c| c.name == AGENT_CONTAINER)
        .unwrap_or_else(|| panic!("the DaemonSet has no container named {AGENT_CONTAINER:?}"))
}

type Grant = (String, String, String);

fn grant(group: &str, resource: &str, verb: &str) -> Grant {
    (group.to_owned(), resource.to_owned(), verb.to_owned())
}

/// (API group, resource, verb) for every combination a rule allows; a rule
/// limited to resourceNames or granting nonResourceURLs is reported, since
/// the agent uses neither and the comparison could not express them.
fn grants(rules: &[PolicyRule]) -> (BTreeSet<Grant>, Vec<String>) {
    let mut granted = BTreeSet::new();
    let mut problems = Vec::new();
    for (index, rule) in rules.iter().enumerate() {
        if rule.resource_names.as_ref().is_some_and(|n| !n.is_empty()) {
            problems.push(format!(
                "rule {index} has resourceNames, which the agent's access list cannot express"
            ));
        }
        if rule
            .non_resource_urls
            .as_ref()
            .is_some_and(|u| !u.is_empty())
        {
            problems.push(format!(
                "rule {index} grants nonResourceURLs, which the agent never uses"
            ));
        }
        for group in rule.api_groups.iter().flatten() {
            for resource in rule.resources.iter().flatten() {
                for verb in &rule.verbs {
                    granted.insert(grant(group, resource, verb));
                }
            }
        }
    }
    (granted, problems)
}

fn agent_uses() -> BTreeSet<Grant> {
    API_ACCESS
        .iter()
        .flat_map(|access| {
            access
                .verbs
                .iter()
                .map(|verb| grant(access.group, access.resource, verb))
        })
        .collect()
}

/// Both directions of the comparison, each grant named.
fn rbac_mismatches(granted: &BTreeSet<Grant>, used: &BTreeSet<Grant>) -> Vec<String> {
    let show = |(group, resource, verb): &Grant| {
        let group = if group.is_empty() { "core" } else { group };
        format!("{verb} {resource} (apiGroup {group})")
    };
    let missing = used
        .difference(granted)
        .map(|g| format!("missing: the agent needs {}", show(g)));
    let extra = granted.difference(used).map(|g| {
        format!(
            "extra: {} is granted but not in ingress-userspace/src/k8s/access.rs",
            show(g)
        )
    });
    missing.chain(extra).collect()
}

#[test]
fn every_manifest_parses_into_its_api_type_without_losing_a_field() {
    let echo = kind_echo();
    let every = variants().iter().map(|v| &v.manifests).chain([&echo]);
    let problems: Vec<&String> = every.flat_map(|m| &m.problems).collect();
    assert!(
        problems.is_empty(),
        "{}",
        problems
            .iter()
            .map(|p| p.as_str())
            .collect::<Vec<_>>()
            .join("\n")
    );
}

#[test]
fn the_comparison_names_a_missing_and_an_extra_grant() {
    let used = agent_uses();
    let mut granted = used.clone();
    granted.remove(&grant("", "services", "watch"));
    granted.insert(grant("", "services", "get"));
    assert_eq!(
        rbac_mismatches(&granted, &used),
        vec![
            "missing: the agent needs watch services (apiGroup core)".to_owned(),
            "extra: get services (apiGroup core) is granted but not in ingress-userspace/src/k8s/access.rs"
                .to_owned(),
        ]
    );
    let wildcard = PolicyRule {
        api_groups: Some(vec!["*".into()]),
        resources: Some(vec!["*".into()]),
        verbs: vec!["*".into()],
        ..Default::default()
    };
    let (granted, _) = grants(&[wildcard]);
    assert!(
        rbac_mismatches(&granted, &used).iter().any(|m| m
            == "extra: * * (apiGroup *) is granted but not in ingress-userspace/src/k8s/access.rs"),
        "a wildcard rule must show up as an extra grant"
    );
}

#[test]
fn the_cluster_role_grants_exactly_what_the_agent_uses() {
    for_every_variant(|manifests| {
        let role = one(&manifests.cluster_roles, "ClusterRole");
        assert!(
            role.aggregation_rule.is_none(),
            "an aggregated ClusterRole grants whatever other roles add"
        );
        let (granted, mut problems) = grants(role.rules.as_deref().unwrap_or_default());
        problems.extend(rbac_mismatches(&granted, &agent_uses()));
        assert!(
            problems.is_empty(),
            "ClusterRole {:?}:\n{}",
            role.metadata.name,
            problems.join("\n")
        );
    });
}

#[test]
fn the_binding_the_service_account_and_the_daemon_set_agree() {
    for_every_variant(|manifests| {
        let account = one(&manifests.service_accounts, "ServiceAccount");
        let role = one(&manifests.cluster_roles, "ClusterRole");
        let binding = one(&manifests.cluster_role_bindings, "ClusterRoleBinding");
        let daemon_set = one(&manifests.daemon_sets, "DaemonSet");
        let account_name = account
            .metadata
            .name
            .as_deref()
            .expect("the ServiceAccount has no name");

        assert_eq!(
            binding.role_ref.api_group, "rbac.authorization.k8s.io",
            "roleRef.apiGroup"
        );
        assert_eq!(binding.role_ref.kind, "ClusterRole", "roleRef.kind");
        assert_eq!(
            Some(&binding.role_ref.name),
            role.metadata.name.as_ref(),
            "roleRef.name is not the ClusterRole"
        );
        let subjects = binding.subjects.as_deref().unwrap_or_default();
        assert!(
            subjects.iter().any(|s| s.kind == "ServiceAccount"
                && s.name == account_name
                && s.namespace.as_deref() == account.metadata.namespace.as_deref()),
            "the ClusterRoleBinding's subjects do not include ServiceAccount {:?}/{account_name}",
            account.metadata.namespace
        );
        assert_eq!(
            subjects.len(),
            1,
            "the ClusterRoleBinding grants the role to more than the agent's ServiceAccount"
        );

        assert_eq!(
            daemon_set.metadata.namespace, account.metadata.namespace,
            "the DaemonSet and its ServiceAccount are in different namespaces"
        );
        assert_eq!(
            pod_spec(daemon_set).service_account_name.as_deref(),
            Some(account_name),
            "the DaemonSet's serviceAccountName is not the bound ServiceAccount"
        );
    });
}

#[test]
fn every_namespaced_object_is_in_the_namespace_deploy_creates() {
    for_every_variant(|manifests| {
        let namespace = one(&manifests.namespaces, "Namespace");
        assert_eq!(namespace.metadata.name.as_deref(), Some(NAMESPACE));
        let cluster_scoped = [
            "Namespace",
            "ClusterRole",
            "ClusterRoleBinding",
            "IngressClass",
            "GatewayClass",
        ];
        let misplaced: Vec<String> = manifests
            .objects
            .iter()
            .filter_map(|(origin, kind, ns)| {
                match (cluster_scoped.contains(&kind.as_str()), ns.as_deref()) {
                    (true, Some(ns)) => Some(format!(
                        "{origin} ({kind}) is cluster-scoped but sets namespace {ns:?}"
                    )),
                    (false, Some(NAMESPACE)) | (true, None) => None,
                    (false, other) => Some(format!(
                        "{origin} ({kind}) has namespace {other:?}, not {NAMESPACE:?}"
                    )),
                }
            })
            .collect();
        assert!(misplaced.is_empty(), "{}", misplaced.join("\n"));
    });
}

/// Each check returns what is wrong, or None.
type Check = fn(&PodSpec, &Container) -> Option<String>;

fn arg_value<'a>(agent: &'a Container, flag: &str) -> Option<&'a str> {
    let args = agent.args.as_deref().unwrap_or_default();
    args.iter()
        .position(|a| a == flag)
        .and_then(|i| args.get(i + 1))
        .map(String::as_str)
}

fn container_port(agent: &Container, name: &str) -> Option<i32> {
    agent
        .ports
        .iter()
        .flatten()
        .find(|p| p.name.as_deref() == Some(name))
        .map(|p| p.container_port)
}

fn probe_problem(agent: &Container, which: &str, path: &str) -> Option<String> {
    let probe = match which {
        "liveness" => agent.liveness_probe.as_ref(),
        _ => agent.readiness_probe.as_ref(),
    };
    let Some(get) = probe.and_then(|p| p.http_get.as_ref()) else {
        return Some(format!("no {which} HTTP probe"));
    };
    if get.path.as_deref() != Some(path) {
        return Some(format!("the {which} probe gets {:?}, not {path}", get.path));
    }
    let admin = container_port(agent, "admin");
    let on_admin = match &get.port {
        IntOrString::String(name) => name == "admin",
        IntOrString::Int(port) => Some(*port) == admin,
    };
    (!on_admin).then(|| {
        format!(
            "the {which} probe is on port {:?}, not the admin port {admin:?}",
            get.port
        )
    })
}

const DAEMON_SET_CHECKS: &[(&str, Check)] = &[
    (
        "host network (XDP and TC attach in the node's namespace)",
        |pod, _| (pod.host_network != Some(true)).then(|| "hostNetwork is not true".into()),
    ),
    ("runs on every node", |pod, _| {
        let tolerates_all = pod.tolerations.iter().flatten().any(|t| {
            t.operator.as_deref() == Some("Exists") && t.key.is_none() && t.effect.is_none()
        });
        (!tolerates_all).then(|| "no toleration with operator Exists and no key or effect".into())
    }),
    ("the host's bpffs at /sys/fs/bpf", |pod, agent| {
        let volume = pod
            .volumes
            .iter()
            .flatten()
            .find(|v| v.host_path.as_ref().is_some_and(|h| h.path == BPFFS));
        let Some(volume) = volume else {
            return Some(format!("no hostPath volume of {BPFFS}"));
        };
        let mounted = agent
            .volume_mounts
            .iter()
            .flatten()
            .any(|m| m.name == volume.name && m.mount_path == BPFFS);
        (!mounted).then(|| format!("volume {:?} is not mounted at {BPFFS}", volume.name))
    }),
    ("pins on that bpffs", |_, agent| {
        match arg_value(agent, "--pin-dir") {
            Some(dir) if Path::new(dir).starts_with(BPFFS) => None,
            other => Some(format!(
                "--pin-dir is {other:?}, not a directory under {BPFFS}"
            )),
        }
    }),
    ("watches the API server", |_, agent| {
        let args = agent.args.as_deref().unwrap_or_default();
        (!args.iter().any(|a| a == "--kubernetes")).then(|| "args lack --kubernetes".into())
    }),
    ("NODE_NAME from the downward API", |_, agent| {
        let from_node = agent.env.iter().flatten().any(|e| {
            e.name == "NODE_NAME"
                && e.value_from
                    .as_ref()
                    .and_then(|v| v.field_ref.as_ref())
                    .is_some_and(|f| f.field_path == "spec.nodeName")
        });
        (!from_node).then(|| "env NODE_NAME is not set from fieldRef spec.nodeName".into())
    }),
    ("admin endpoints on the admin port", |_, agent| {
        let admin = container_port(agent, "admin");
        let listens = arg_value(agent, "--admin")
            .and_then(|a| a.rsplit_once(':'))
            .map(|(_, p)| p.parse::<i32>().ok());
        (admin.is_none() || listens != Some(admin)).then(|| {
            format!("--admin listens on {listens:?}, the container port named admin is {admin:?}")
        })
    }),
    ("the L7 proxy on the http port", |_, agent| {
        let http = container_port(agent, "http");
        let listens = arg_value(agent, "--http-port").map(|p| p.parse::<i32>().ok());
        (http.is_none() || listens != Some(http)).then(|| {
            format!("--http-port is {listens:?}, the container port named http is {http:?}")
        })
    }),
    ("liveness on /healthz", |_, agent| {
        probe_problem(agent, "liveness", "/healthz")
    }),
    ("readiness on /readyz", |_, agent| {
        probe_problem(agent, "readiness", "/readyz")
    }),
    ("resource requests", |_, agent| {
        let requests = agent.resources.as_ref().and_then(|r| r.requests.as_ref());
        let missing: Vec<&str> = ["cpu", "memory"]
            .into_iter()
            .filter(|r| !requests.is_some_and(|q| q.contains_key(*r)))
            .collect();
        (!missing.is_empty()).then(|| format!("no request for {}", missing.join(", ")))
    }),
    (
        "explicit capabilities rather than privileged",
        |_, agent| {
            let context = agent.security_context.as_ref();
            if context.and_then(|c| c.privileged) == Some(true) {
                return Some(
                    "the agent container is privileged; list its capabilities instead".into(),
                );
            }
            let capabilities = context.and_then(|c| c.capabilities.as_ref());
            let dropped = capabilities
                .and_then(|c| c.drop.as_deref())
                .unwrap_or_default();
            if !dropped.iter().any(|c| c == "ALL") {
                return Some(
                    "capabilities.drop lacks ALL, so the runtime's defaults stay granted".into(),
                );
            }
            let added: BTreeSet<&str> = capabilities
                .and_then(|c| c.add.as_deref())
                .unwrap_or_default()
                .iter()
                .map(String::as_str)
                .collect();
            let needed = BTreeSet::from([
                "BPF",
                "NET_ADMIN",
                "PERFMON",
                "SYS_ADMIN",
                "SYS_RESOURCE",
                "NET_BIND_SERVICE",
            ]);
            let missing: Vec<_> = needed.difference(&added).collect();
            let extra: Vec<_> = added.difference(&needed).collect();
            (!missing.is_empty() || !extra.is_empty())
                .then(|| format!("capabilities: missing {missing:?}, not needed {extra:?}"))
        },
    ),
];

#[test]
fn the_daemon_set_gives_the_agent_what_it_needs_on_a_node() {
    for_every_variant(|manifests| {
        let daemon_set = one(&manifests.daemon_sets, "DaemonSet");
        let pod = pod_spec(daemon_set);
        let agent = agent(pod);
        let problems: Vec<String> = DAEMON_SET_CHECKS
            .iter()
            .filter_map(|(what, check)| {
                check(pod, agent).map(|problem| format!("{what}: {problem}"))
            })
            .collect();
        assert!(
            problems.is_empty(),
            "DaemonSet {:?}:\n{}",
            daemon_set.metadata.name,
            problems.join("\n")
        );
    });
}

#[test]
fn the_kustomization_installs_the_agent_and_nothing_else() {
    let mut kinds: Vec<&str> = base()
        .objects
        .iter()
        .map(|(_, kind, _)| kind.as_str())
        .collect();
    kinds.sort();
    assert_eq!(
        kinds,
        [
            "ClusterRole",
            "ClusterRoleBinding",
            "DaemonSet",
            "IngressClass",
            "Namespace",
            "ServiceAccount"
        ],
        "deploy/kustomization.yaml renders other objects (examples/ or kind/ included?)"
    );
}

/// The agent's command line as the API server would start it.
#[derive(Parser)]
struct AgentCommandLine {
    #[command(subcommand)]
    command: AgentCommand,
}

#[derive(Subcommand)]
enum AgentCommand {
    Run(Box<run_args::RunArgs>),
}

/// The agent container's command and args through the agent's own parser
/// and `into_config`, with NODE_NAME (the downward API's) given as a flag.
/// Files the args name are read from `files` instead, under the same name.
fn agent_config(
    manifests: &Manifests,
    files: &BTreeMap<&str, PathBuf>,
) -> Result<AgentConfig, String> {
    let container = agent(pod_spec(one(&manifests.daemon_sets, "DaemonSet")));
    let command = container.command.iter().flatten();
    let args = container.args.iter().flatten().map(|arg| {
        files
            .get(arg.as_str())
            .map_or(arg.clone(), |local| local.display().to_string())
    });
    let node_name = ["--node-name".to_owned(), "node-a".to_owned()];
    let command_line = command.cloned().chain(args).chain(node_name);
    let AgentCommand::Run(run) = AgentCommandLine::try_parse_from(command_line)
        .map_err(|e| e.to_string())?
        .command;
    run.into_config().map_err(|e| format!("{e:#}"))
}

#[test]
fn the_agent_accepts_its_arguments_in_every_variant() {
    for_every_variant(|manifests| {
        let files = default_certificate_files();
        if let Err(error) = agent_config(manifests, &files) {
            panic!("the agent would refuse its arguments: {error}");
        }
    });
}

/// The https component's certificate and key paths, mapped to a
/// certificate made for the test.
fn default_certificate_files() -> BTreeMap<&'static str, PathBuf> {
    static FILES: OnceLock<PathBuf> = OnceLock::new();
    let dir = FILES.get_or_init(|| {
        let dir = Path::new(env!("CARGO_TARGET_TMPDIR")).join("deploy-default-tls");
        std::fs::create_dir_all(&dir).unwrap();
        let certified =
            rcgen::generate_simple_self_signed(vec!["ebpf-lb.test".to_owned()]).unwrap();
        std::fs::write(dir.join("tls.crt"), certified.cert.pem()).unwrap();
        std::fs::write(dir.join("tls.key"), certified.key_pair.serialize_pem()).unwrap();
        dir
    });
    BTreeMap::from([
        (DEFAULT_CERT, dir.join("tls.crt")),
        (DEFAULT_KEY, dir.join("tls.key")),
    ])
}

const DEFAULT_CERT: &str = "/etc/ebpf-lb/default-tls/tls.crt";
const DEFAULT_KEY: &str = "/etc/ebpf-lb/default-tls/tls.key";

/// What the agent runs with in one respect, for comparing variants.
type Effect = fn(&Manifests) -> String;

fn config_of(manifests: &Manifests) -> AgentConfig {
    agent_config(manifests, &default_certificate_files())
        .unwrap_or_else(|e| panic!("the agent would refuse its arguments: {e}"))
}

/// Per component, what it changes and to what; deploy/ alone must differ.
const COMPONENT_EFFECTS: &[(&str, Effect, &str)] = &[
    (
        "default-ingress-class",
        |manifests| {
            let class = one(&manifests.ingress_classes, "IngressClass").clone();
            let classless = Ingress {
                spec: Some(IngressSpec::default()),
                ..Ingress::default()
            };
            format!(
                "serves an Ingress without a class: {}",
                is_served(&classless, &[class])
            )
        },
        "serves an Ingress without a class: true",
    ),
    (
        "gateway-api",
        |manifests| format!("GatewayClasses: {}", manifests.gateway_classes.len()),
        "GatewayClasses: 1",
    ),
    (
        "host-routing",
        |manifests| format!("host routing: {:?}", config_of(manifests).host_routing),
        "host routing: On",
    ),
    (
        "http-port",
        |manifests| format!("HTTP on {:?}", config_of(manifests).l7.http),
        "HTTP on Some(0.0.0.0:8080)",
    ),
    (
        "https",
        |manifests| {
            let config = config_of(manifests);
            format!("HTTPS on {:?}", config.l7.https.map(|(addr, _)| addr))
        },
        "HTTPS on Some(0.0.0.0:443)",
    ),
    (
        "map-sizes",
        |manifests| {
            let sizes = config_of(manifests).map_sizes;
            format!(
                "services {}, backends {}, conntrack {}",
                sizes.services, sizes.backends, sizes.conntrack
            )
        },
        "services 1048576, backends 524288, conntrack 1048576",
    ),
    (
        "snat-ports",
        |manifests| {
            let ports = config_of(manifests).conntrack.snat_ports;
            format!("SNAT ports {}-{}", ports.min, ports.max)
        },
        "SNAT ports 20000-29999",
    ),
];

#[test]
fn each_component_changes_what_the_agent_runs_with() {
    let mut problems = Vec::new();
    for component in components() {
        let Some((_, effect, expected)) = COMPONENT_EFFECTS
            .iter()
            .find(|(name, ..)| *name == component)
        else {
            problems.push(format!(
                "components/{component}: no entry in COMPONENT_EFFECTS saying what it changes"
            ));
            continue;
        };
        let without = effect(base());
        let with = effect(variant(&component));
        if with != *expected || without == with {
            problems.push(format!(
                "components/{component}: expected {expected:?}; deploy/ alone gives {without:?}, with the component {with:?}"
            ));
        }
    }
    assert!(problems.is_empty(), "{}", problems.join("\n"));
}

#[test]
fn the_https_component_reads_its_certificate_from_the_mounted_secret() {
    let manifests = variant("https");
    let pod = pod_spec(one(&manifests.daemon_sets, "DaemonSet"));
    let agent = agent(pod);
    let mounted_from_secret = |file: &str| {
        agent.volume_mounts.iter().flatten().any(|mount| {
            Path::new(file).starts_with(&mount.mount_path)
                && pod.volumes.iter().flatten().any(|volume| {
                    volume.name == mount.name
                        && volume
                            .secret
                            .as_ref()
                            .and_then(|s| s.secret_name.as_deref())
                            == Some("ebpf-lb-default-tls")
                })
        })
    };
    for (flag, file) in [
        ("--default-cert", DEFAULT_CERT),
        ("--default-key", DEFAULT_KEY),
    ] {
        assert_eq!(arg_value(agent, flag), Some(file), "{flag}");
        assert!(
            mounted_from_secret(file),
            "{flag} {file} is not under a mount of Secret ebpf-lb-default-tls"
        );
    }
    let https = container_port(agent, "https");
    let listens = arg_value(agent, "--https-port").and_then(|p| p.parse::<i32>().ok());
    assert!(
        https.is_some() && https == listens,
        "--https-port is {listens:?}, the container port named https is {https:?}"
    );
}

#[test]
fn the_ingress_class_names_the_agents_controller() {
    for_every_variant(|manifests| {
        let class = one(&manifests.ingress_classes, "IngressClass");
        assert_eq!(
            class.metadata.name.as_deref(),
            Some("ebpf-lb"),
            "IngressClass name"
        );
        assert_eq!(
            class.spec.as_ref().and_then(|s| s.controller.as_deref()),
            Some(INGRESS_CONTROLLER),
            "IngressClass spec.controller is not the agent's INGRESS_CONTROLLER"
        );
    });
}

/// Only with components/gateway-api: deploy/ alone must apply to a
/// cluster without the Gateway API CRDs.
#[test]
fn the_gateway_class_names_the_agents_gateway_controller() {
    assert!(base().gateway_classes.is_empty(), "deploy/ alone renders a GatewayClass");
    let class = one(&variant("gateway-api").gateway_classes, "GatewayClass");
    assert_eq!(class.metadata.name.as_deref(), Some("ebpf-lb"), "GatewayClass name");
    assert_eq!(
        class.spec.controller_name, GATEWAY_CONTROLLER,
        "GatewayClass spec.controllerName is not the agent's GATEWAY_CONTROLLER"
    );
}

#[test]
fn the_kind_cluster_has_no_kube_proxy() {
    let path = deploy_dir().join("kind/cluster.yaml");
    let config: Value = serde_yaml::from_str(&std::fs::read_to_string(&path).unwrap()).unwrap();
    let field = |key: &str| config.get(key).and_then(Value::as_str).map(str::to_owned);
    assert_eq!(
        field("kind").as_deref(),
        Some("Cluster"),
        "{}: kind",
        path.display()
    );
    assert_eq!(
        field("apiVersion").as_deref(),
        Some("kind.x-k8s.io/v1alpha4"),
        "{}: apiVersion",
        path.display()
    );
    assert_eq!(
        config
            .get("networking")
            .and_then(|n| n.get("kubeProxyMode"))
            .and_then(Value::as_str),
        Some("none"),
        "{}: networking.kubeProxyMode must be none, or kube-proxy would serve the Services the agent should",
        path.display()
    );
}

#[test]
fn the_kind_echo_workload_is_reachable_the_three_ways_xtask_checks() {
    let manifests = kind_echo();
    let deployment = one(&manifests.deployments, "Deployment in deploy/kind");
    let service = one(&manifests.services, "Service in deploy/kind");
    let ingress = one(&manifests.ingresses, "Ingress in deploy/kind");
    let class = one(&base().ingress_classes, "IngressClass");

    let pod_labels = deployment
        .spec
        .as_ref()
        .and_then(|s| s.template.metadata.as_ref())
        .and_then(|m| m.labels.clone())
        .unwrap_or_default();
    let spec = service.spec.as_ref().expect("the echo Service has no spec");
    let selector: BTreeMap<String, String> = spec.selector.clone().unwrap_or_default();
    assert!(
        !selector.is_empty() && selector.iter().all(|(k, v)| pod_labels.get(k) == Some(v)),
        "the Service's selector {selector:?} does not select the Deployment's pods {pod_labels:?}"
    );
    assert_eq!(
        spec.type_.as_deref(),
        Some("NodePort"),
        "the echo Service must be a NodePort"
    );
    let port = spec
        .ports
        .iter()
        .flatten()
        .next()
        .expect("the echo Service has no port");
    assert!(
        port.node_port.is_some(),
        "the NodePort is not fixed, so xtask could not know where to connect"
    );

    assert_eq!(
        ingress
            .spec
            .as_ref()
            .and_then(|s| s.ingress_class_name.as_ref()),
        class.metadata.name.as_ref()
    );
    let backends: Vec<_> = ingress
        .spec
        .iter()
        .flat_map(|s| s.rules.iter().flatten())
        .flat_map(|r| r.http.iter().flat_map(|h| h.paths.iter()))
        .filter_map(|p| p.backend.service.as_ref())
        .collect();
    assert!(
        !backends.is_empty(),
        "the echo Ingress routes to no Service"
    );
    for backend in backends {
        assert_eq!(
            Some(&backend.name),
            service.metadata.name.as_ref(),
            "the Ingress routes to another Service"
        );
        assert_eq!(
            backend.port.as_ref().and_then(|p| p.number),
            Some(port.port),
            "the Ingress backend port"
        );
    }
}
