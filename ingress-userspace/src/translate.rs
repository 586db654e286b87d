//! Services and EndpointSlices to the desired dataplane state, with
//! kube-proxy's semantics. Pure: a bad field drops only the port or address it
//! concerns, and is reported as a problem.

pub(crate) mod addresses;
mod patch;

use std::collections::BTreeSet;
use std::net::IpAddr;
use std::sync::Arc;

use foldhash::{HashMap, HashMapExt, HashSet};
use k8s_openapi::api::core::v1::{Service, ServicePort};
use k8s_openapi::api::discovery::v1::EndpointSlice;

use crate::manifests::{Snapshot, Source, Versions, object_label};
#[cfg(doc)]
use crate::manifests::Replaced;
use crate::model::{
    Backend, BackendAddr, BackendState, DesiredState, Frontend, FrontendState, HealthCheck, LocalOnly, NodeInfo,
    Protocol, ServicePortRef,
};
use crate::problem::{Location, Problem, ProblemKind};
use addresses::{Family, PerFamily, ip, ip_list};

const SERVICE_NAME_LABEL: &str = "kubernetes.io/service-name";

/// One endpoint of a slice, reduced to what the dataplane uses.
struct Endpoint {
    addr: IpAddr,
    ready: bool,
    /// Serving and terminating: the KEP-1669 fallback when nothing is ready.
    fallback: bool,
    local: bool,
}

/// A slice's ports and endpoints: a port applies to every endpoint of its slice,
/// which is how a named `targetPort` resolves to different numbers per pod.
/// Its endpoints serve only the frontends of its family.
struct Slice {
    family: Family,
    ports: Vec<(String, Protocol, u16)>,
    endpoints: Vec<Endpoint>,
}

type ServiceName<'a> = (&'a str, &'a str);

/// Translates a whole snapshot from scratch (see [`Translator`]).
pub fn translate(snapshot: &Snapshot, node: &NodeInfo) -> (DesiredState, Vec<Problem>) {
    let mut translator = Translator::default();
    translator.translate(snapshot, node);
    (translator.desired, translator.problems)
}

/// Translates snapshot after snapshot, keeping each Service's translation:
/// a Service whose object, EndpointSlices and their sources are the same as
/// last time is not translated again, and a snapshot that only replaced
/// objects of the last one (see [`Replaced`]) costs what those objects
/// cost, not a walk of every Service. Gives exactly what [`translate`] gives.
#[derive(Default)]
pub struct Translator {
    node: Option<NodeInfo>,
    services: HashMap<ServiceKey, Translated>,
    /// The revision of the snapshot last translated (0: none or unknown).
    revision: u64,
    desired: DesiredState,
    problems: Vec<Problem>,
    /// The Service each slice of that snapshot serves, by index; `None`
    /// for one that serves none (no family, no known Service).
    slice_services: Vec<Option<ServiceKey>>,
}

/// A Service's namespace and name.
type ServiceKey = (String, String);

/// Fewer Services to translate than this per thread stay on one thread.
const MIN_SERVICES_PER_THREAD: usize = 256;

/// One Service's inputs and what they translate to, before conflicts with
/// other Services are resolved.
struct Translated {
    inputs: Inputs,
    /// Indexes in the snapshot last translated: the Service's and its slices'.
    service: usize,
    slices: Vec<usize>,
    /// The problems of each slice (in `slices` order).
    slice_problems: Vec<Vec<Problem>>,
    location: Location,
    items: Vec<Item>,
}

/// What a translation was made from, to tell whether it still holds.
#[derive(PartialEq)]
enum Inputs {
    /// The source's versions of the Service and of its slices, in order.
    Versions(u64, Vec<u64>),
    /// Without versions: the objects themselves and where they came from
    /// (shared with the source, so unchanged ones compare by pointer).
    Objects {
        service: Arc<Service>,
        source: Option<Source>,
        slices: Vec<(Arc<EndpointSlice>, Option<Source>)>,
    },
}

/// What a Service translates to, in order.
enum Item {
    Problem(Problem),
    /// Taken unless another Service (earlier by name) has the frontend.
    Frontend { frontend: Frontend, state: FrontendState, field: String },
    HealthCheck { port: u16, check: HealthCheck },
}

/// A Service or EndpointSlice and its index in the snapshot.
type Indexed<'a, T> = (usize, &'a Arc<T>);

impl Translator {
    /// What the last snapshot translates to.
    pub fn desired(&self) -> &DesiredState {
        &self.desired
    }

    /// The problems found in the last snapshot, in the order a single pass finds them.
    pub fn problems(&self) -> &[Problem] {
        &self.problems
    }

    /// Translates `snapshot`. Returns the frontends whose state may differ
    /// from the last snapshot's (added, removed or changed), `None` when
    /// any may have.
    pub fn translate(&mut self, snapshot: &Snapshot, node: &NodeInfo) -> Option<BTreeSet<Frontend>> {
        let changed = if self.node.as_ref() == Some(node) { self.patch(snapshot) } else { None };
        if changed.is_none() {
            self.translate_all(snapshot, node);
        }
        self.revision = snapshot.versions.revision;
        changed
    }

    /// Translates every Service that changed and puts the whole desired
    /// state together again.
    fn translate_all(&mut self, snapshot: &Snapshot, node: &NodeInfo) {
        if self.node.as_ref() != Some(node) {
            self.services.clear();
            self.node = Some(node.clone());
        }
        let versions = Versions::of(snapshot);
        let mut problems = Vec::new();
        let mut services: Vec<Indexed<Service>> = snapshot.services.iter().enumerate().collect();
        // Conflicts resolve by namespace/name, whatever order the sources list objects in.
        services.sort_by(|(_, a), (_, b)| name_of(a).cmp(&name_of(b)));
        let known: HashSet<ServiceName> = services.iter().map(|(_, service)| name_of(service)).collect();

        // Each used slice's Service and its place among that Service's slices.
        let mut slices: HashMap<ServiceName, Vec<Indexed<EndpointSlice>>> = HashMap::new();
        let mut order: Vec<(ServiceName, usize)> = Vec::new();
        let mut slice_services = Vec::with_capacity(snapshot.endpoint_slices.len());
        for (index, slice) in snapshot.endpoint_slices.iter().enumerate() {
            slice_services.push(None);
            // FQDN slices are for DNS, not for proxies (kube-proxy skips
            // them too): not errors.
            if Family::named(&slice.address_type).is_none() {
                continue;
            }
            let (namespace, service) = slice_service(slice);
            let Some(service) = service.filter(|service| known.contains(&(namespace, service))) else {
                let location = snapshot.location("EndpointSlice", &slice.metadata);
                let message = match service {
                    Some(service) => format!("no Service {namespace}/{service}, slice unused"),
                    None => format!("no {SERVICE_NAME_LABEL} label, slice unused"),
                };
                problems.push(Problem::warning(ProblemKind::UnknownService, location, message));
                order.push((("", ""), usize::MAX));
                continue;
            };
            slice_services[index] = Some((namespace.to_owned(), service.to_owned()));
            let own = slices.entry((namespace, service)).or_default();
            order.push(((namespace, service), own.len()));
            own.push((index, slice));
        }

        let mut fresh = HashMap::with_capacity(services.len());
        let mut changed = Vec::new();
        for &(index, service) in &services {
            let name = name_of(service);
            let own = slices.get(&name).map_or(&[][..], Vec::as_slice);
            let inputs = versions.map(|versions| {
                let slices = own.iter().map(|(index, _)| versions.endpoint_slices[*index]).collect();
                Inputs::Versions(versions.services[index], slices)
            });
            let key = (name.0.to_owned(), name.1.to_owned());
            match (self.services.remove(&key), inputs) {
                (Some(known), Some(inputs)) if known.inputs == inputs => fresh.insert(key, known.at(index, own)),
                (Some(known), None) if known.same_objects(snapshot, service, own) => fresh.insert(key, known.at(index, own)),
                (_, inputs) => {
                    changed.push((key, (index, service), own, inputs));
                    continue;
                }
            };
        }
        // A first pass translates every Service: on every CPU.
        let translated = crate::parallel::map(changed, MIN_SERVICES_PER_THREAD, |(key, service, own, inputs)| {
            (key, Translated::new(snapshot, service, own, node, inputs))
        });
        fresh.extend(translated);
        self.services = fresh;
        self.slice_services = slice_services;

        // Problems in the order a single pass finds them: slices first.
        let mut unknown = problems.into_iter();
        let mut problems = Vec::new();
        for (service, index) in order {
            if index == usize::MAX {
                problems.extend(unknown.next());
                continue;
            }
            let key = (service.0.to_owned(), service.1.to_owned());
            problems.extend(self.services[&key].slice_problems[index].iter().cloned());
        }

        let mut desired = DesiredState::default();
        for (_, service) in services {
            let (namespace, name) = name_of(service);
            let translated = &self.services[&(namespace.to_owned(), name.to_owned())];
            translated.add_to(&mut desired, &mut problems);
        }
        self.desired = desired;
        self.problems = problems;
    }
}

impl Translated {
    fn new(
        snapshot: &Snapshot,
        (index, service): Indexed<Service>,
        slices: &[Indexed<EndpointSlice>],
        node: &NodeInfo,
        inputs: Option<Inputs>,
    ) -> Translated {
        let mut slice_problems = Vec::with_capacity(slices.len());
        let mut digested = Vec::with_capacity(slices.len());
        for (_, slice) in slices {
            let location = snapshot.location("EndpointSlice", &slice.metadata);
            let mut problems = Vec::new();
            digested.extend(digest_slice(slice, &location, node, &mut problems));
            slice_problems.push(problems);
        }
        let location = snapshot.location("Service", &service.metadata);
        let items = translate_service(&location, service, &digested, node);
        let inputs = inputs.unwrap_or_else(|| Inputs::Objects {
            service: service.clone(),
            source: source_of(snapshot, "Service", &service.metadata),
            slices: slices
                .iter()
                .map(|(_, slice)| ((*slice).clone(), source_of(snapshot, "EndpointSlice", &slice.metadata)))
                .collect(),
        });
        let slices = slices.iter().map(|(index, _)| *index).collect();
        Translated { inputs, service: index, slices, slice_problems, location, items }
    }

    /// This translation, with the indexes of its objects in a new snapshot.
    fn at(mut self, service: usize, slices: &[Indexed<EndpointSlice>]) -> Translated {
        self.service = service;
        self.slices = slices.iter().map(|(index, _)| *index).collect();
        self
    }

    /// Without versions: whether this translation still holds (same
    /// objects, same sources).
    fn same_objects(&self, snapshot: &Snapshot, service: &Arc<Service>, slices: &[Indexed<EndpointSlice>]) -> bool {
        let Inputs::Objects { service: known, source, slices: known_slices } = &self.inputs else { return false };
        same(known, service)
            && known_slices.len() == slices.len()
            && known_slices.iter().zip(slices).all(|((known, _), (_, slice))| same(known, slice))
            && *source == source_of(snapshot, "Service", &service.metadata)
            && known_slices
                .iter()
                .zip(slices)
                .all(|((_, source), (_, slice))| *source == source_of(snapshot, "EndpointSlice", &slice.metadata))
    }

    /// Adds the frontends and health check no earlier Service took.
    fn add_to(&self, desired: &mut DesiredState, problems: &mut Vec<Problem>) {
        for item in &self.items {
            match item {
                Item::Problem(problem) => problems.push(problem.clone()),
                Item::Frontend { frontend, state, field } => match desired.frontends.get(frontend) {
                    // The same address listed twice by one port (an externalIP equal to the ingress IP).
                    Some(existing) if existing.service == state.service => {}
                    Some(existing) => {
                        let message = format!("{frontend} already belongs to {}, skipped", existing.service);
                        let problem = Problem::error(ProblemKind::DuplicateFrontend, self.location.clone(), message);
                        problems.push(problem.at(field));
                    }
                    None => {
                        desired.frontends.insert(*frontend, state.clone());
                    }
                },
                Item::HealthCheck { port, check } => {
                    if let Some(existing) = desired.health_checks.get(port) {
                        let message = format!(
                            "health check port {port} already belongs to {}/{}, skipped",
                            existing.namespace, existing.name
                        );
                        let problem = Problem::error(ProblemKind::DuplicateFrontend, self.location.clone(), message);
                        problems.push(problem.at("spec.healthCheckNodePort"));
                        continue;
                    }
                    desired.health_checks.insert(*port, check.clone());
                }
            }
        }
    }
}

/// Equal objects: the same one shared, or equal contents.
fn same<T: PartialEq>(a: &Arc<T>, b: &Arc<T>) -> bool {
    Arc::ptr_eq(a, b) || a == b
}

/// The namespace of a slice and the Service its label names, if any.
fn slice_service(slice: &EndpointSlice) -> (&str, Option<&str>) {
    let namespace = slice.metadata.namespace.as_deref().unwrap_or("default");
    let service = slice.metadata.labels.as_ref().and_then(|labels| labels.get(SERVICE_NAME_LABEL));
    (namespace, service.map(String::as_str))
}

fn source_of(snapshot: &Snapshot, kind: &str, metadata: &k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta) -> Option<Source> {
    if snapshot.sources.is_empty() {
        return None;
    }
    snapshot.sources.get(&object_label(kind, metadata)).cloned()
}

fn name_of(service: &Service) -> ServiceName<'_> {
    let metadata = &service.metadata;
    (
        metadata.namespace.as_deref().unwrap_or("default"),
        metadata.name.as_deref().unwrap_or(""),
    )
}

/// `None` for a slice of no address family (FQDN).
fn digest_slice(
    slice: &EndpointSlice,
    location: &Location,
    node: &NodeInfo,
    problems: &mut Vec<Problem>,
) -> Option<Slice> {
    let family = Family::named(&slice.address_type)?;
    let mut ports = Vec::new();
    for (index, port) in slice.ports.iter().flatten().enumerate() {
        let protocol = match port.protocol.as_deref() {
            None | Some("TCP") => Protocol::Tcp,
            Some("UDP") => Protocol::Udp,
            // The Service side reports unsupported protocols.
            Some(_) => continue,
        };
        // An unset port means "all ports", which only headless Services use.
        let Some(number) = port.port else { continue };
        match valid_port(number) {
            Some(number) => ports.push((port.name.clone().unwrap_or_default(), protocol, number)),
            None => problems.push(invalid_port(location, format!("ports[{index}].port"), number)),
        }
    }
    let mut endpoints = Vec::new();
    for (index, endpoint) in slice.endpoints.iter().enumerate() {
        // All addresses of an endpoint are the same pod; kube-proxy uses the first.
        let Some(text) = endpoint.addresses.first() else {
            continue;
        };
        let field = format!("endpoints[{index}].addresses[0]");
        let Some(addr) = ip(text, location, field.clone(), problems) else {
            continue;
        };
        if Family::of(&addr) != family {
            let message = format!("{text} is not an {} address, endpoint skipped", family.name());
            problems.push(Problem::error(ProblemKind::InvalidAddress, location.clone(), message).at(field));
            continue;
        }
        let conditions = endpoint.conditions.clone().unwrap_or_default();
        // nil means true for ready and serving, false for terminating (as in kube-proxy).
        let serving = conditions.serving.unwrap_or(true);
        let local = endpoint.node_name.as_deref() == Some(node.name.as_str());
        endpoints.push(Endpoint {
            addr,
            ready: conditions.ready.unwrap_or(true),
            fallback: serving && conditions.terminating.unwrap_or(false),
            local,
        });
    }
    Some(Slice { family, ports, endpoints })
}

/// A Service's frontends, health check and problems, in order.
fn translate_service(location: &Location, service: &Service, slices: &[Slice], node: &NodeInfo) -> Vec<Item> {
    let mut items = Vec::new();
    let Some(spec) = &service.spec else { return items };
    let headless = spec.cluster_ip.as_deref() == Some("None");
    if headless || spec.type_.as_deref() == Some("ExternalName") {
        return items;
    }
    let location = location.clone();
    let mut problems = Vec::new();
    let problems = &mut problems;
    let cluster_ips = match &spec.cluster_ips {
        Some(ips) if !ips.is_empty() => ip_list(ips, &location, "spec.clusterIPs", problems),
        _ => match spec.cluster_ip.as_deref() {
            // An empty clusterIP is one the API server has not allocated yet.
            Some(text) if !text.is_empty() => ip(text, &location, "spec.clusterIP".into(), problems)
                .into_iter()
                .collect(),
            _ => Vec::new(),
        },
    };
    let external_ips = ip_list(
        spec.external_ips.as_deref().unwrap_or_default(),
        &location,
        "spec.externalIPs",
        problems,
    );
    let ingress = service
        .status
        .as_ref()
        .and_then(|status| status.load_balancer.as_ref()?.ingress.as_ref());
    // Ingress entries with only a hostname have nothing to program.
    let ingress_ips: Vec<_> = ingress
        .into_iter()
        .flatten()
        .enumerate()
        .filter_map(|(i, ingress)| {
            ip(
                ingress.ip.as_deref()?,
                &location,
                format!("status.loadBalancer.ingress[{i}].ip"),
                problems,
            )
        })
        .collect();
    let node_ports = matches!(spec.type_.as_deref(), Some("NodePort" | "LoadBalancer"));
    let node_addresses = node_addresses(spec, &cluster_ips, node);
    let affinity_timeout_s = affinity_timeout(spec);
    let source_ranges = addresses::source_ranges(spec, &location, problems);
    let (internal_policy, external_policy) = traffic_policies(spec);

    let (namespace, name) = name_of(service);
    if external_policy == LocalOnly::ExternalClients
        && let Some((port, check)) = health_check(spec, slices, (namespace, name), &location, problems)
    {
        items.extend(problems.drain(..).map(Item::Problem));
        items.push(Item::HealthCheck { port, check });
    }
    for (index, port) in spec.ports.iter().flatten().enumerate() {
        let field = format!("spec.ports[{index}]");
        let Some((protocol, number)) = port_of(port, &location, &field, problems) else {
            continue;
        };
        let internal = cluster_ips.iter().map(|addr| (*addr, number, internal_policy));
        let external = external_ips.iter().chain(&ingress_ips).map(|addr| (*addr, number, external_policy));
        let mut frontends: Vec<(IpAddr, u16, LocalOnly)> = internal.chain(external).collect();
        // nodePort 0 is how the API spells "not allocated".
        if let Some(node_port) = port.node_port.filter(|node_port| node_ports && *node_port != 0) {
            match valid_port(node_port) {
                Some(node_port) => {
                    frontends.extend(node_addresses.iter().map(|addr| (*addr, node_port, external_policy)))
                }
                None => problems.push(invalid_port(&location, format!("{field}.nodePort"), node_port)),
            }
        }
        let port_name = port.name.clone().unwrap_or_default();
        let service_ref = ServicePortRef {
            namespace: namespace.to_owned(),
            name: name.to_owned(),
            port_name,
        };
        let backends = PerFamily::new(|family| backends(slices, family, &service_ref.port_name, protocol));
        items.extend(problems.drain(..).map(Item::Problem));
        for (addr, port, local_only) in frontends {
            let frontend = Frontend { addr, port, protocol };
            let family = Family::of(&addr);
            // kube-proxy filters sources on the load balancer's own
            // addresses only; NodePorts and externalIPs stay open.
            let source_ranges = source_ranges.get(family).clone().filter(|_| ingress_ips.contains(&addr));
            let state = FrontendState {
                service: service_ref.clone(),
                backends: backends.get(family).clone(),
                affinity_timeout_s,
                source_ranges,
                local_only,
            };
            // Whether another Service has it already is for `add_to` to say.
            items.push(Item::Frontend { frontend, state, field: field.clone() });
        }
    }
    items.extend(problems.drain(..).map(Item::Problem));
    items
}

/// The Service's `healthCheckNodePort`, answered with its number of ready
/// endpoints on this node, whatever their ports. kube-proxy answers per
/// family, each family counting its own endpoints; one answer for both
/// takes the larger count, so a dual-stack pod counts once and a Service
/// with ready local endpoints in either family is healthy.
fn health_check(
    spec: &k8s_openapi::api::core::v1::ServiceSpec,
    slices: &[Slice],
    (namespace, name): ServiceName,
    location: &Location,
    problems: &mut Vec<Problem>,
) -> Option<(u16, HealthCheck)> {
    let field = "spec.healthCheckNodePort";
    // Unset (not allocated yet) or 0: nothing to serve.
    let number = spec.health_check_node_port.filter(|port| *port != 0)?;
    let Some(port) = valid_port(number) else {
        problems.push(invalid_port(location, field.into(), number));
        return None;
    };
    let local = PerFamily::new(|family| {
        let addrs: BTreeSet<IpAddr> = of_family(slices, family)
            .flat_map(|slice| &slice.endpoints)
            .filter(|endpoint| endpoint.local && endpoint.ready)
            .map(|endpoint| endpoint.addr)
            .collect();
        addrs.len()
    });
    let local_endpoints = local.v4.max(local.v6);
    let check = HealthCheck { namespace: namespace.into(), name: name.into(), local_endpoints };
    // Whether another Service has the port already is for `add_to` to say.
    Some((port, check))
}

/// The policies of the Service's ClusterIP frontends and of its external ones
/// (NodePorts, LoadBalancer IPs, external IPs). As in kube-proxy,
/// `externalTrafficPolicy` counts only for NodePort and LoadBalancer Services.
fn traffic_policies(spec: &k8s_openapi::api::core::v1::ServiceSpec) -> (LocalOnly, LocalOnly) {
    let internal = match spec.internal_traffic_policy.as_deref() {
        Some("Local") => LocalOnly::AllClients,
        _ => LocalOnly::Nobody,
    };
    let external_type = matches!(spec.type_.as_deref(), Some("NodePort" | "LoadBalancer"));
    let external = match spec.external_traffic_policy.as_deref() {
        Some("Local") if external_type => LocalOnly::ExternalClients,
        _ => LocalOnly::Nobody,
    };
    (internal, external)
}

/// kube-proxy's default ClientIP affinity timeout (3 hours).
const DEFAULT_AFFINITY_TIMEOUT_S: i32 = 10_800;

/// The ClientIP affinity timeout, 0 without affinity. The API server allows
/// 1..=86400 seconds; anything else falls back to the default.
fn affinity_timeout(spec: &k8s_openapi::api::core::v1::ServiceSpec) -> u32 {
    if spec.session_affinity.as_deref() != Some("ClientIP") {
        return 0;
    }
    let configured = spec
        .session_affinity_config
        .as_ref()
        .and_then(|config| config.client_ip.as_ref()?.timeout_seconds)
        .filter(|seconds| (1..=86_400).contains(seconds));
    configured.unwrap_or(DEFAULT_AFFINITY_TIMEOUT_S) as u32
}

fn port_of(
    port: &ServicePort,
    location: &Location,
    field: &str,
    problems: &mut Vec<Problem>,
) -> Option<(Protocol, u16)> {
    let protocol = match port.protocol.as_deref() {
        None | Some("TCP") => Protocol::Tcp,
        Some("UDP") => Protocol::Udp,
        Some(other) => {
            let field = format!("{field}.protocol");
            let problem = match other {
                "SCTP" => Problem::warning(
                    ProblemKind::UnsupportedProtocol,
                    location.clone(),
                    "SCTP is not supported, port skipped",
                ),
                _ => Problem::error(
                    ProblemKind::UnsupportedProtocol,
                    location.clone(),
                    format!("unknown protocol {other:?}, port skipped"),
                ),
            };
            problems.push(problem.at(field));
            return None;
        }
    };
    match valid_port(port.port) {
        Some(number) => Some((protocol, number)),
        None => {
            problems.push(invalid_port(location, format!("{field}.port"), port.port));
            None
        }
    }
}

/// The slices of one family.
fn of_family(slices: &[Slice], family: Family) -> impl Iterator<Item = &Slice> {
    slices.iter().filter(move |slice| slice.family == family)
}

/// The node addresses a Service's NodePorts are served on: those of its
/// families (as kube-proxy, which serves a Service in the families of its
/// cluster IPs and `ipFamilies`), or all of them for a Service that names
/// neither (a hand-written manifest).
fn node_addresses(spec: &k8s_openapi::api::core::v1::ServiceSpec, cluster_ips: &[IpAddr], node: &NodeInfo) -> Vec<IpAddr> {
    let named = spec.ip_families.iter().flatten().filter_map(|name| Family::named(name));
    let families: Vec<Family> = cluster_ips.iter().map(Family::of).chain(named).collect();
    let served = |addr: &&IpAddr| families.is_empty() || families.contains(&Family::of(addr));
    node.addresses.iter().filter(served).copied().collect()
}

/// The endpoints of one family serving one Service port, sorted and without
/// duplicates (an endpoint may briefly appear in two slices while the
/// controller moves it).
fn backends(slices: &[Slice], family: Family, port_name: &str, protocol: Protocol) -> Vec<Backend> {
    let mut ready = Vec::new();
    let mut fallback = Vec::new();
    for slice in of_family(slices, family) {
        let port = slice
            .ports
            .iter()
            .find(|(name, proto, _)| name == port_name && *proto == protocol);
        let Some(&(_, _, port)) = port else { continue };
        for endpoint in &slice.endpoints {
            let addr = BackendAddr {
                addr: endpoint.addr,
                port,
            };
            if endpoint.ready {
                ready.push(Backend {
                    addr,
                    state: BackendState::Active,
                    local: endpoint.local,
                });
            } else if endpoint.fallback {
                fallback.push(Backend {
                    addr,
                    state: BackendState::Terminating,
                    local: endpoint.local,
                });
            }
        }
    }
    let mut backends = if ready.is_empty() { fallback } else { ready };
    backends.sort();
    backends.dedup_by_key(|backend| backend.addr);
    backends
}

fn valid_port(port: i32) -> Option<u16> {
    u16::try_from(port).ok().filter(|port| *port != 0)
}

fn invalid_port(location: &Location, field: String, port: i32) -> Problem {
    Problem::error(
        ProblemKind::InvalidPort,
        location.clone(),
        format!("invalid port {port}, port skipped"),
    )
    .at(field)
}

#[cfg(test)]
mod tests;
