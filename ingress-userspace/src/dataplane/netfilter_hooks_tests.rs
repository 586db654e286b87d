use super::*;

const NF_INET_PRE_ROUTING: u32 = 0;
const NF_INET_FORWARD: u32 = 2;
const NF_INET_POST_ROUTING: u32 = 4;
const NF_NETDEV_INGRESS: u32 = 0;
const NLA_F_NESTED: u16 = 0x8000;

fn attribute(kind: u16, value: &[u8]) -> Vec<u8> {
    let mut bytes = Vec::new();
    bytes.extend_from_slice(&((NLA_HDRLEN + value.len()) as u16).to_ne_bytes());
    bytes.extend_from_slice(&kind.to_ne_bytes());
    bytes.extend_from_slice(value);
    bytes.resize(align(bytes.len()), 0);
    bytes
}

fn message(kind: u16, payload: &[u8]) -> Vec<u8> {
    let mut bytes = Vec::new();
    bytes.extend_from_slice(&((NLMSG_HDRLEN + payload.len()) as u32).to_ne_bytes());
    bytes.extend_from_slice(&kind.to_ne_bytes());
    bytes.extend_from_slice(&(libc::NLM_F_MULTI as u16).to_ne_bytes());
    bytes.extend_from_slice(&[0; 8]);
    bytes.extend_from_slice(payload);
    bytes.resize(align(bytes.len()), 0);
    bytes
}

/// A chain as the kernel dumps it; `hook` None for a regular chain.
fn chain(family: u8, table: &str, name: &str, hook: Option<u32>) -> Vec<u8> {
    let mut payload = vec![family, 0, 0, 0];
    payload.extend(attribute(NFTA_CHAIN_TABLE, format!("{table}\0").as_bytes()));
    payload.extend(attribute(2, &7u64.to_be_bytes()));
    payload.extend(attribute(NFTA_CHAIN_NAME, format!("{name}\0").as_bytes()));
    if let Some(hook) = hook {
        let mut nested = attribute(NFTA_HOOK_HOOKNUM, &hook.to_be_bytes());
        nested.extend(attribute(2, &0i32.to_be_bytes()));
        payload.extend(attribute(NFTA_CHAIN_HOOK | NLA_F_NESTED, &nested));
    }
    message(NFNL_SUBSYS_NFTABLES << 8 | NFT_MSG_NEWCHAIN, &payload)
}

fn done() -> Vec<u8> {
    message(libc::NLMSG_DONE as u16, &0i32.to_ne_bytes())
}

#[test]
fn chains_that_routed_flows_pass_are_hooks_and_others_are_not() {
    let cases: &[(&str, Vec<u8>, Option<&str>)] = &[
        ("iptables-nft FORWARD", chain(NFPROTO_IPV4, "filter", "FORWARD", Some(NF_INET_FORWARD)), Some("nftables ip filter chain FORWARD (hook 2)")),
        ("nat PREROUTING", chain(NFPROTO_IPV4, "nat", "PREROUTING", Some(NF_INET_PRE_ROUTING)), Some("nftables ip nat chain PREROUTING (hook 0)")),
        ("inet postrouting", chain(NFPROTO_INET, "cni", "post", Some(NF_INET_POST_ROUTING)), Some("nftables inet cni chain post (hook 4)")),
        ("ip6 forward", chain(NFPROTO_IPV6, "filter", "FORWARD", Some(NF_INET_FORWARD)), Some("nftables ip6 filter chain FORWARD (hook 2)")),
        ("netdev ingress", chain(NFPROTO_NETDEV, "dev", "in", Some(NF_NETDEV_INGRESS)), Some("nftables netdev dev chain in (hook 0)")),
        ("bridge forward", chain(NFPROTO_BRIDGE, "br", "fwd", Some(NF_INET_FORWARD)), Some("nftables bridge br chain fwd (hook 2)")),
        ("input only", chain(NFPROTO_IPV4, "filter", "INPUT", Some(NF_INET_LOCAL_IN)), None),
        ("inet output only", chain(NFPROTO_INET, "fw", "out", Some(NF_INET_LOCAL_OUT)), None),
        ("regular chain", chain(NFPROTO_IPV4, "filter", "KUBE-FORWARD", None), None),
        ("arp", chain(NFPROTO_ARP, "arp", "in", Some(0)), None),
    ];
    for (what, bytes, expected) in cases {
        let mut hooks = Vec::new();
        assert_eq!(parse_dump(bytes, &mut hooks).expect(what), Dump::More, "{what}");
        assert_eq!(hooks, expected.iter().map(|hook| Hook(hook.to_string())).collect::<Vec<_>>(), "{what}");
    }
}

#[test]
fn a_datagram_of_several_chains_and_the_end_is_read_whole() {
    let mut datagram = chain(NFPROTO_IPV4, "filter", "INPUT", Some(NF_INET_LOCAL_IN));
    datagram.extend(chain(NFPROTO_IPV4, "filter", "FORWARD", Some(NF_INET_FORWARD)));
    datagram.extend(done());
    let mut hooks = Vec::new();
    assert_eq!(parse_dump(&datagram, &mut hooks).unwrap(), Dump::Done);
    assert_eq!(hooks, vec![Hook("nftables ip filter chain FORWARD (hook 2)".into())]);
}

#[test]
fn cut_short_or_refused_dumps_are_errors() {
    let whole = chain(NFPROTO_IPV4, "filter", "FORWARD", Some(NF_INET_FORWARD));
    for cut in [3, NLMSG_HDRLEN - 1, NLMSG_HDRLEN + 2, whole.len() - 4] {
        let error = parse_dump(&whole[..cut], &mut Vec::new()).expect_err("a cut message");
        assert!(error.to_string().contains("cut short") || error.to_string().contains("bytes in"), "{cut}: {error}");
    }
    let refused = message(libc::NLMSG_ERROR as u16, &(-libc::EPERM).to_ne_bytes());
    let error = parse_dump(&refused, &mut Vec::new()).expect_err("refused");
    assert!(format!("{error:#}").contains("refused"), "{error:#}");
}

#[test]
fn every_legacy_table_is_a_hook() {
    assert_eq!(
        legacy_tables("filter\nnat\n", "iptables"),
        vec![Hook("iptables-legacy table filter".into()), Hook("iptables-legacy table nat".into())]
    );
    assert!(legacy_tables("", "ip6tables").is_empty());
}

#[test]
fn the_request_is_a_dump_of_chains_of_every_family() {
    let request = dump_request(9);
    assert_eq!(request.len(), NLMSG_HDRLEN + NFGENMSG_LEN);
    assert_eq!(u16::from_ne_bytes([request[4], request[5]]), 0x0a04);
    assert_eq!(u16::from_ne_bytes([request[6], request[7]]), (libc::NLM_F_REQUEST | libc::NLM_F_DUMP) as u16);
    assert_eq!(request[NLMSG_HDRLEN], 0, "AF_UNSPEC: every family");
}
