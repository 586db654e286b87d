//! The maps the programs write, full, in the real kernel (BPF_PROG_TEST_RUN
//! on crafted frames, maps made small with `MapSizes`).
//!
//! Conntrack (1,024 entries) under a SYN flood of 20,000 spoofed sources:
//! every flood SYN is translated (the LRU map evicts to make room, it never
//! refuses), and established flows survive. What survives and how:
//! - a flow exchanging a request and its response every 400 flood SYNs
//!   (800 entries written between them, most of the map) keeps its backend
//!   and its replies are translated back at every exchange, whether its
//!   entries survived or not;
//! - a flow silent through another flood keeps both entries too: the
//!   kernel's LRU evicts from its inactive list, and an entry looked up again
//!   (any established flow's) moves to the active one, which a SYN's never
//!   does. Only when the flood's sources send a second packet (an ACK) do
//!   they compete with real flows;
//! - a flow that lost both entries gets its backend again from its next
//!   packet (an ACK, not a SYN) the way a new flow does, Maglev on the
//!   5-tuple, so the same one while the backends are the same, and both
//!   entries back, counted as `forward_ct_recreated`;
//! - the LRU evicts the two entries of a flow one by one: a flow whose reply
//!   entry alone went gets it back from its next forward packet (counted the
//!   same way). Until then a reply leaves untranslated (`pass_not_a_reply`):
//!   what is lost is a backend speaking twice in a row, silent client, with
//!   its entries evicted in between.
//!
//! ClientIP affinity (64 entries) with 1,000 clients: every connection is
//! translated; clients beyond the map's capacity lose their affinity (the
//! oldest first) and get a fresh Maglev choice, the recent ones keep theirs.
//!
//! The services map full, with the API server: the Service port that does
//! not fit is left out whole and a Warning Event on its Service says so.

use std::collections::BTreeSet;
use std::net::{IpAddr, Ipv4Addr};
use std::time::{Duration, Instant};

use aya::maps::{HashMap, Map, MapData};
use ingress_common::addr::Addr;
use ingress_common::maps::{CONNTRACK_MAP, CT_FORWARD, CT_REPLY, CtEntry, CtKey};
use ingress_common::stats::{DROP_REWRITE_FAILED, FORWARD_CT_RECREATED, FORWARD_TRANSLATED, PASS_NOT_A_REPLY, REPLY_TRANSLATED};
use ingress_tests::figures;
use ingress_tests::agent::{AgentLog, AgentProcess, NODE_NAME, agent_binary};
use ingress_tests::api_stand_in::{ApiStandIn, service_with_one_endpoint};
use ingress_tests::is_root;
use ingress_tests::lab::{Lab, LabSpec};
use ingress_tests::packet::{self, ACK, Frame, PSH, SYN};
use ingress_tests::pins::PinDir;
use ingress_tests::prog_run::{Programmed, TC_ACT_OK, XDP_PASS, local_backends};
use ingress_userspace::dataplane::MapWriter;
use ingress_userspace::dataplane::ebpf::PinnedMaps;
use ingress_userspace::dataplane::plan::describe;
use ingress_userspace::dataplane::sizes::MapSizes;
use ingress_userspace::model::{DesiredState, Frontend, FrontendState, Protocol, ServicePortRef};
use serde_json::{Value, json};

const VIP: Ipv4Addr = Ipv4Addr::new(10, 96, 0, 10);
const PODS: [Ipv4Addr; 3] = [Ipv4Addr::new(10, 244, 1, 2), Ipv4Addr::new(10, 244, 1, 3), Ipv4Addr::new(10, 244, 1, 4)];
const POD_PORT: u16 = 8080;
const CONNTRACK_ENTRIES: u32 = 1024;
const AFFINITY_ENTRIES: u32 = 64;
/// The real clients' established flows.
const FLOWS: u16 = 8;
const FLOOD: u32 = 20_000;
/// Flood SYNs between two exchanges (of one flow or another): each flow
/// exchanges once every `FLOWS * SYNS_PER_EXCHANGE` SYNs.
const SYNS_PER_EXCHANGE: u32 = 50;

/// `VIP:80/TCP` over `PODS`, with ClientIP affinity if `affinity_timeout_s`
/// is not 0, in maps of `sizes`.
fn programmed(name: &str, affinity_timeout_s: u32, sizes: &MapSizes) -> Option<Programmed> {
    let mut desired = DesiredState::default();
    let service = ServicePortRef { namespace: "default".into(), name: name.into(), port_name: "http".into() };
    let state = FrontendState { service, backends: local_backends(&PODS, POD_PORT), affinity_timeout_s, ..FrontendState::default() };
    desired.frontends.insert(Frontend { addr: VIP.into(), port: 80, protocol: Protocol::Tcp }, state);
    Programmed::load_sized(name, &desired, sizes)
}

fn small_conntrack() -> MapSizes {
    MapSizes { conntrack: CONNTRACK_ENTRIES, ..MapSizes::default() }
}

/// A real client's connection, and the backend its SYN got.
#[derive(Clone, Copy, Debug)]
struct Established {
    client: Ipv4Addr,
    sport: u16,
    backend: Ipv4Addr,
}

/// A client's packet through `lb_xdp`: where it went, if it was translated
/// with valid checksums.
fn forward(p: &mut Programmed, frame: &Frame) -> Result<packet::Seen, String> {
    let (verdict, out) = p.xdp(&frame.build());
    let seen = packet::read(&out);
    if verdict != XDP_PASS || seen.dport != POD_PORT || !seen.ip_checksum_ok || !seen.l4_checksum_ok {
        return Err(format!("verdict {verdict}, {seen:?}"));
    }
    Ok(seen)
}

/// The flow's backend answering through `lb_tc_out`: it must leave as
/// `VIP:80` with valid checksums.
fn reply(p: &mut Programmed, flow: &Established, flags: u8) -> Result<(), String> {
    let frame = Frame::tcp(flow.backend, POD_PORT, flow.client, flow.sport, flags).with_payload(b"response");
    let (verdict, out) = p.tc_out(&frame.build());
    let seen = packet::read(&out);
    if verdict == TC_ACT_OK && (seen.src, seen.sport) == (VIP, 80) && seen.ip_checksum_ok && seen.l4_checksum_ok {
        Ok(())
    } else {
        Err(format!("{flow:?}: reply left as {seen:?} (verdict {verdict})"))
    }
}

/// A request and its response on an established flow: the request must
/// reach the flow's backend and the response be translated back.
fn exchange(p: &mut Programmed, flow: &Established) -> Result<(), String> {
    let request = Frame::tcp(flow.client, flow.sport, VIP, 80, ACK | PSH).with_payload(b"request");
    let seen = forward(p, &request).map_err(|e| format!("{flow:?}: request {e}"))?;
    if seen.dst != flow.backend {
        return Err(format!("{flow:?}: request went to {}", seen.dst));
    }
    reply(p, flow, ACK | PSH)
}

/// `FLOWS` connections of real clients, handshakes done through the programs.
fn establish(p: &mut Programmed) -> Vec<Established> {
    (0..FLOWS)
        .map(|i| {
            let (client, sport) = (Ipv4Addr::new(198, 51, 100, 2 + i as u8), 40_000 + i);
            let syn = forward(p, &Frame::tcp(client, sport, VIP, 80, SYN)).unwrap_or_else(|e| panic!("SYN {i}: {e}"));
            let flow = Established { client, sport, backend: syn.dst };
            reply(p, &flow, SYN | ACK).unwrap();
            exchange(p, &flow).unwrap();
            flow
        })
        .collect()
}

/// Flood SYN `n`: a spoofed source of its own (100.64.0.0/10 onwards). It
/// must be translated to a pod like any new flow.
fn flood_syn(p: &mut Programmed, n: u32) -> Result<(), String> {
    let spoofed = Ipv4Addr::from(u32::from(Ipv4Addr::new(100, 64, 0, 0)) + n);
    let seen = forward(p, &Frame::tcp(spoofed, 1024 + (n % 60_000) as u16, VIP, 80, SYN))?;
    if PODS.contains(&seen.dst) { Ok(()) } else { Err(format!("flood SYN {n} went to {}", seen.dst)) }
}

/// Flood source `n`'s second packet, an ACK: translated like its SYN.
fn flood_ack(p: &mut Programmed, n: u32) -> Result<(), String> {
    let spoofed = Ipv4Addr::from(u32::from(Ipv4Addr::new(100, 64, 0, 0)) + n);
    forward(p, &Frame::tcp(spoofed, 1024 + (n % 60_000) as u16, VIP, 80, ACK)).map(|_| ())
}

/// The conntrack entries of `flows` still in the map, both directions.
fn entries_of(p: &Programmed, flows: &[Established]) -> Vec<CtKey> {
    let clients: BTreeSet<(Addr, u16)> = flows.iter().map(|f| (IpAddr::from(f.client).into(), f.sport.to_be())).collect();
    let entries = p.maps.conntrack().unwrap();
    entries
        .into_iter()
        .map(|(key, _)| key)
        .filter(|key| match key.direction {
            CT_FORWARD => clients.contains(&(key.saddr, key.sport)),
            CT_REPLY => clients.contains(&(key.daddr, key.dport)),
            _ => false,
        })
        .collect()
}

#[test]
fn established_flows_survive_a_syn_flood_of_spoofed_sources() {
    let Some(mut p) = programmed("ct-flood", 0, &small_conntrack()) else { return };
    let flows = establish(&mut p);
    let translated_before = p.packets(FORWARD_TRANSLATED) + p.packets(FORWARD_CT_RECREATED);

    // Busy flows: an exchange every SYNS_PER_EXCHANGE flood SYNs.
    let mut failures = Vec::new();
    let mut exchanges = 0u64;
    for n in 0..FLOOD {
        if let Err(failure) = flood_syn(&mut p, n) {
            failures.push(failure);
        }
        if n % SYNS_PER_EXCHANGE == 0 {
            let flow = flows[(n / SYNS_PER_EXCHANGE) as usize % flows.len()];
            exchanges += 1;
            if let Err(failure) = exchange(&mut p, &flow) {
                failures.push(failure);
            }
        }
    }
    let busy_recreated = p.packets(FORWARD_CT_RECREATED);
    figures::report("full_maps", &format!(
        "busy flows: {FLOOD} spoofed SYNs into {CONNTRACK_ENTRIES} conntrack entries, {exchanges} exchanges of {FLOWS} \
         established flows (one per flow every {} SYNs): {} failed, {busy_recreated} forward packets re-created their \
         conntrack, {} entries in the map",
        FLOWS as u32 * SYNS_PER_EXCHANGE,
        failures.len(),
        p.maps.conntrack().unwrap().len()
    ));
    assert_eq!(failures, Vec::<String>::new());
    assert_eq!(p.packets(DROP_REWRITE_FAILED), 0, "a full LRU map evicts, it never refuses an insert");
    let translated = p.packets(FORWARD_TRANSLATED) + p.packets(FORWARD_CT_RECREATED) - translated_before;
    assert_eq!(translated, u64::from(FLOOD) + exchanges, "every flood SYN and every request translated");

    // Silent flows through another flood of one-packet sources keep their
    // entries: the kernel's LRU moves an entry looked up again to its active
    // list, and evicts from the inactive one, where a SYN's entries stay.
    for n in FLOOD..2 * FLOOD {
        flood_syn(&mut p, n).unwrap();
    }
    let kept = entries_of(&p, &flows).len();
    assert_eq!(kept, 2 * flows.len(), "a SYN flood evicts no entry of an established flow");

    // Silent flows through a flood of sources that also send an ACK (their
    // entries are used twice too): evicted or not, every flow keeps its
    // backend and its replies, and each one that lost an entry is counted.
    for n in 2 * FLOOD..3 * FLOOD {
        flood_syn(&mut p, n).unwrap();
        flood_ack(&mut p, n).unwrap();
    }
    let missing = flows.iter().filter(|flow| entries_of(&p, &[**flow]).len() < 2).count() as u64;
    let before = p.packets(FORWARD_CT_RECREATED);
    for flow in &flows {
        exchange(&mut p, flow).unwrap();
    }
    let recreated = p.packets(FORWARD_CT_RECREATED) - before;
    figures::report("full_maps", &format!(
        "silent flows: through {FLOOD} more SYNs all {FLOWS} kept both entries; through {FLOOD} SYN+ACK sources \
         {missing} lost an entry, and all kept their backend and replies ({recreated} re-created)"
    ));
    assert_eq!(recreated, missing, "one re-creation per flow that lost an entry");
    assert_eq!(entries_of(&p, &flows).len(), 2 * flows.len(), "both entries of every flow are back");
}

#[test]
fn a_flow_that_lost_its_entries_gets_them_back_from_its_next_forward_packet() {
    let Some(mut p) = programmed("ct-half", 0, &small_conntrack()) else { return };
    let flow = establish(&mut p)[0];
    let recreated = p.packets(FORWARD_CT_RECREATED);
    exchange(&mut p, &flow).unwrap();
    assert_eq!(p.packets(FORWARD_CT_RECREATED), recreated, "a whole flow re-creates nothing");

    // The LRU map evicts the reply entry alone (done here by hand).
    let path = p.pins.path().join(CONNTRACK_MAP);
    let mut conntrack: HashMap<MapData, CtKey, CtEntry> =
        HashMap::try_from(Map::from_map_data(MapData::from_pin(&path).unwrap()).unwrap()).unwrap();
    let reply_key = *entries_of(&p, &[flow]).iter().find(|key| key.direction == CT_REPLY).expect("the reply entry");
    conntrack.remove(&reply_key).unwrap();

    // The backend speaking first is not translated back: that is the loss.
    let not_a_reply = p.packets(PASS_NOT_A_REPLY);
    assert!(reply(&mut p, &flow, ACK | PSH).is_err());
    assert_eq!(p.packets(PASS_NOT_A_REPLY), not_a_reply + 1);
    // The client's next packet puts it back.
    let replies = p.packets(REPLY_TRANSLATED);
    exchange(&mut p, &flow).unwrap();
    assert_eq!(p.packets(FORWARD_CT_RECREATED), recreated + 1);
    assert_eq!(p.packets(REPLY_TRANSLATED), replies + 1);
    assert_eq!(entries_of(&p, &[flow]).len(), 2);

    // Both entries evicted: the next ACK gets the same backend (Maglev) and
    // both entries back.
    for key in entries_of(&p, &[flow]) {
        conntrack.remove(&key).unwrap();
    }
    exchange(&mut p, &flow).unwrap();
    assert_eq!(p.packets(FORWARD_CT_RECREATED), recreated + 2);
    assert_eq!(entries_of(&p, &[flow]).len(), 2);
}

#[test]
fn client_ip_affinity_with_more_clients_than_entries_still_translates_every_flow() {
    const CLIENTS: u32 = 1_000;
    let sizes = MapSizes { affinity: AFFINITY_ENTRIES, ..MapSizes::default() };
    let Some(mut p) = programmed("affinity-full", 10_800, &sizes) else { return };
    let client = |n: u32| Ipv4Addr::from(u32::from(Ipv4Addr::new(100, 64, 0, 0)) + n);
    let syn = |n: u32, sport: u16| Frame::tcp(client(n), sport, VIP, 80, SYN);

    let first: Vec<Ipv4Addr> = (0..CLIENTS).map(|n| forward(&mut p, &syn(n, 40_000)).unwrap().dst).collect();
    assert_eq!(p.packets(FORWARD_TRANSLATED), u64::from(CLIENTS), "every client's connection translated");
    assert_eq!(p.packets(DROP_REWRITE_FAILED), 0);
    let remembered = p.maps.affinity_entries();
    assert!(remembered <= AFFINITY_ENTRIES as usize, "{remembered} affinity entries in a map of {AFFINITY_ENTRIES}");

    // Each client's second connection (another port, so another Maglev
    // choice) right after its first keeps that first backend if the client
    // was still remembered; the oldest were evicted and get a fresh choice,
    // still translated. A third connection at once keeps the second's backend.
    let mut kept = 0;
    for n in 0..CLIENTS {
        let second = forward(&mut p, &syn(n, 41_000)).unwrap().dst;
        assert!(PODS.contains(&second), "client {n}: {second}");
        kept += usize::from(second == first[n as usize]);
        let third = forward(&mut p, &syn(n, 42_000)).unwrap().dst;
        assert_eq!(third, second, "client {n} lost its affinity at once");
    }
    figures::report("full_maps", &format!(
        "affinity: {CLIENTS} clients into {AFFINITY_ENTRIES} entries: every connection translated ({} SYNs), \
         {remembered} remembered, {kept} of {CLIENTS} later connections on their first backend (1 in {} by chance)",
        3 * CLIENTS,
        PODS.len()
    ));
    assert_eq!(p.packets(FORWARD_TRANSLATED), 3 * u64::from(CLIENTS));
    assert_eq!(p.packets(DROP_REWRITE_FAILED), 0);
}

/// With the API server (the stand-in): three ClusterIP Services of one
/// endpoint each (a header and a slot each) and a services map of 4
/// entries. The last by name, c, is left out whole, and a Warning Event on
/// it names the map and the flag.
#[test]
fn a_service_left_out_of_a_full_services_map_gets_a_warning_event() -> anyhow::Result<()> {
    if !is_root() {
        eprintln!("skipped: needs root");
        return Ok(());
    }
    let lab = Lab::build(LabSpec { pods: vec!["pod-a".into()] })?;
    let pod_ip = lab.pod("pod-a").map(|pod| pod.echo_addr().ip().to_string()).unwrap_or_default();
    let listener = lab.node().run(|| std::net::TcpListener::bind("127.0.0.1:0"))??;
    let api = ApiStandIn::serve(listener)?;
    api.apply(&json!({
        "apiVersion": "v1", "kind": "Node", "metadata": { "name": NODE_NAME },
        "status": { "addresses": [{ "type": "InternalIP", "address": lab.node_ip().to_string() }] },
    }))?;
    for (name, cluster_ip) in [("a", "10.96.0.10"), ("b", "10.96.0.11"), ("c", "10.96.0.12")] {
        for object in service_with_one_endpoint("apps", name, cluster_ip, &pod_ip) {
            api.apply(&object)?;
        }
    }
    let pins = PinDir::unique("full-services");
    let log = std::env::temp_dir().join(format!("lb-full-services-{}.log", std::process::id()));
    let _agent = AgentProcess::spawn_watching_with(&agent_binary()?, &lab, api.kubeconfig(), pins.path(), &AgentLog::File(log.clone()), |command| {
        command.args(["--services-map-size", "4"]);
    })?;

    let started = Instant::now();
    let map_full = loop {
        let events = api.list("Event");
        let found: Vec<Value> = events.into_iter().filter(|event| event["reason"] == "MapFull").collect();
        if !found.is_empty() || started.elapsed() > Duration::from_secs(20) {
            break found;
        }
        std::thread::sleep(Duration::from_millis(100));
    };
    let regarding: Vec<(&str, &str, &str)> = map_full
        .iter()
        .map(|e| (e["type"].as_str().unwrap_or(""), e["regarding"]["kind"].as_str().unwrap_or(""), e["regarding"]["name"].as_str().unwrap_or("")))
        .collect();
    assert_eq!(regarding, [("Warning", "Service", "c")], "MapFull Events (the agent's log: {})", log.display());
    let note = map_full[0]["note"].as_str().unwrap_or("");
    assert!(note.contains("lb_services is full") && note.contains("--services-map-size"), "{note}");
    let programmed = PinnedMaps::open(pins.path())?.read()?;
    let frontends: Vec<String> = describe(&programmed).iter().map(|p| p.frontend.to_string()).collect();
    assert_eq!(frontends, ["10.96.0.10:80/TCP", "10.96.0.11:80/TCP"], "a and b fit and are programmed");
    Ok(())
}
