//! The netfilter hooks of the agent's network namespace that a Service's
//! flows pass on the kernel's path, and that host routing would skip: a
//! base chain of nftables (iptables-nft's tables among them) at prerouting,
//! forward or postrouting (ip, ip6, inet), at a device's ingress or egress
//! (netdev, inet), or on a bridge; and any table of the legacy iptables,
//! each of which hooks one of them (filter and security forward, nat, mangle
//! and raw prerouting). input and output hooks see only the node's own
//! traffic, never a routed flow. A chain with no rule still counts: a CNI's
//! policy chain may be filled at any time.

use std::io;
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd};

use anyhow::{Context, bail};

const NETLINK_NETFILTER: libc::c_int = 12;
const NFNL_SUBSYS_NFTABLES: u16 = 10;
const NFT_MSG_GETCHAIN: u16 = 4;
const NFT_MSG_NEWCHAIN: u16 = 3;
const NLMSG_HDRLEN: usize = 16;
const NFGENMSG_LEN: usize = 4;
const NLA_HDRLEN: usize = 4;
const NLA_TYPE_MASK: u16 = 0x3fff;
const NFTA_CHAIN_TABLE: u16 = 1;
const NFTA_CHAIN_NAME: u16 = 3;
const NFTA_CHAIN_HOOK: u16 = 4;
const NFTA_HOOK_HOOKNUM: u16 = 1;

const NFPROTO_INET: u8 = 1;
const NFPROTO_IPV4: u8 = 2;
const NFPROTO_ARP: u8 = 3;
const NFPROTO_NETDEV: u8 = 5;
const NFPROTO_BRIDGE: u8 = 7;
const NFPROTO_IPV6: u8 = 10;
const NF_INET_LOCAL_IN: u32 = 1;
const NF_INET_LOCAL_OUT: u32 = 3;

/// One hook a routed flow would pass, said as `nft` says it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Hook(pub String);

impl std::fmt::Display for Hook {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.0)
    }
}

/// The hooks of the calling thread's network namespace that host routing
/// would skip; empty when it skips none.
pub fn scan() -> anyhow::Result<Vec<Hook>> {
    let mut hooks = nftables_chains().context("listing nftables chains over netlink")?;
    for (file, family) in [("/proc/thread-self/net/ip_tables_names", "iptables"), ("/proc/thread-self/net/ip6_tables_names", "ip6tables")] {
        match std::fs::read_to_string(file) {
            Ok(names) => hooks.extend(legacy_tables(&names, family)),
            // No legacy iptables module, so no table of it.
            Err(error) if error.kind() == io::ErrorKind::NotFound => {}
            Err(error) => return Err(error).with_context(|| format!("reading {file}")),
        }
    }
    Ok(hooks)
}

/// The tables a legacy iptables lists in `/proc/net/ip*_tables_names`.
fn legacy_tables(names: &str, family: &str) -> Vec<Hook> {
    names.split_whitespace().map(|table| Hook(format!("{family}-legacy table {table}"))).collect()
}

fn nftables_chains() -> anyhow::Result<Vec<Hook>> {
    // SAFETY: a plain socket call; the descriptor is owned at once.
    let fd = unsafe { libc::socket(libc::AF_NETLINK, libc::SOCK_RAW | libc::SOCK_CLOEXEC, NETLINK_NETFILTER) };
    if fd < 0 {
        return Err(io::Error::last_os_error()).context("opening a netfilter netlink socket");
    }
    // SAFETY: `fd` is a new descriptor nothing else owns.
    let socket = unsafe { OwnedFd::from_raw_fd(fd) };
    let request = dump_request(1);
    // SAFETY: sends `request`'s bytes to the kernel (the default address).
    if unsafe { libc::send(socket.as_raw_fd(), request.as_ptr().cast(), request.len(), 0) } < 0 {
        return Err(io::Error::last_os_error()).context("asking for the nftables chains");
    }
    let mut hooks = Vec::new();
    let mut buffer = vec![0u8; 64 * 1024];
    loop {
        // SAFETY: receives into `buffer`, at most its length.
        let received = unsafe { libc::recv(socket.as_raw_fd(), buffer.as_mut_ptr().cast(), buffer.len(), 0) };
        if received < 0 {
            return Err(io::Error::last_os_error()).context("reading the nftables chains");
        }
        if let Dump::Done = parse_dump(&buffer[..received as usize], &mut hooks)? {
            return Ok(hooks);
        }
    }
}

/// NFT_MSG_GETCHAIN of every family, as a dump.
fn dump_request(sequence: u32) -> Vec<u8> {
    let length = (NLMSG_HDRLEN + NFGENMSG_LEN) as u32;
    let mut message = Vec::with_capacity(length as usize);
    message.extend_from_slice(&length.to_ne_bytes());
    message.extend_from_slice(&(NFNL_SUBSYS_NFTABLES << 8 | NFT_MSG_GETCHAIN).to_ne_bytes());
    message.extend_from_slice(&((libc::NLM_F_REQUEST | libc::NLM_F_DUMP) as u16).to_ne_bytes());
    message.extend_from_slice(&sequence.to_ne_bytes());
    message.extend_from_slice(&0u32.to_ne_bytes());
    // nfgenmsg: every family (AF_UNSPEC), version 0, resource 0.
    message.extend_from_slice(&[0, 0, 0, 0]);
    message
}

#[derive(Debug, PartialEq, Eq)]
enum Dump {
    More,
    Done,
}

/// Adds the hooked chains of one datagram of the dump to `hooks`.
fn parse_dump(datagram: &[u8], hooks: &mut Vec<Hook>) -> anyhow::Result<Dump> {
    let mut rest = datagram;
    while !rest.is_empty() {
        let Some(header) = rest.get(..NLMSG_HDRLEN) else { bail!("a netlink header cut short ({} bytes)", rest.len()) };
        let length = u32::from_ne_bytes(header[0..4].try_into().expect("4 bytes")) as usize;
        let kind = u16::from_ne_bytes(header[4..6].try_into().expect("2 bytes"));
        if length < NLMSG_HDRLEN || length > rest.len() {
            bail!("a netlink message of {length} bytes in {} left", rest.len());
        }
        let payload = &rest[NLMSG_HDRLEN..length];
        match kind as libc::c_int {
            libc::NLMSG_DONE => return Ok(Dump::Done),
            libc::NLMSG_ERROR => {
                let errno = payload.get(..4).map(|code| i32::from_ne_bytes(code.try_into().expect("4 bytes")));
                match errno {
                    Some(0) => {}
                    Some(code) => return Err(io::Error::from_raw_os_error(-code)).context("the kernel refused the dump"),
                    None => bail!("a netlink error cut short"),
                }
            }
            _ if kind == NFNL_SUBSYS_NFTABLES << 8 | NFT_MSG_NEWCHAIN => hooks.extend(hooked_chain(payload)?),
            _ => {}
        }
        rest = &rest[align(length).min(rest.len())..];
    }
    Ok(Dump::More)
}

/// The chain's hook, when it is a base chain at a hook a routed flow passes.
fn hooked_chain(payload: &[u8]) -> anyhow::Result<Option<Hook>> {
    let Some(&family) = payload.first() else { bail!("a chain message with no family") };
    let (mut table, mut name, mut hook) = ("", "", None);
    for (kind, value) in attributes(payload.get(NFGENMSG_LEN..).unwrap_or_default())? {
        match kind {
            NFTA_CHAIN_TABLE => table = c_string(value),
            NFTA_CHAIN_NAME => name = c_string(value),
            NFTA_CHAIN_HOOK => {
                for (kind, value) in attributes(value)? {
                    if kind == NFTA_HOOK_HOOKNUM && value.len() >= 4 {
                        hook = Some(u32::from_be_bytes(value[..4].try_into().expect("4 bytes")));
                    }
                }
            }
            _ => {}
        }
    }
    let Some(hook) = hook else { return Ok(None) };
    let family_name = match family {
        NFPROTO_IPV4 => "ip",
        NFPROTO_IPV6 => "ip6",
        NFPROTO_INET => "inet",
        NFPROTO_NETDEV => "netdev",
        NFPROTO_BRIDGE => "bridge",
        NFPROTO_ARP => return Ok(None),
        _ => "unknown family",
    };
    let local_only = matches!(family, NFPROTO_IPV4 | NFPROTO_IPV6 | NFPROTO_INET) && matches!(hook, NF_INET_LOCAL_IN | NF_INET_LOCAL_OUT);
    Ok((!local_only).then(|| Hook(format!("nftables {family_name} {table} chain {name} (hook {hook})"))))
}

/// The netlink attributes of `bytes`, as (type, value).
fn attributes(mut bytes: &[u8]) -> anyhow::Result<Vec<(u16, &[u8])>> {
    let mut found = Vec::new();
    while bytes.len() >= NLA_HDRLEN {
        let length = u16::from_ne_bytes(bytes[0..2].try_into().expect("2 bytes")) as usize;
        let kind = u16::from_ne_bytes(bytes[2..4].try_into().expect("2 bytes")) & NLA_TYPE_MASK;
        if length < NLA_HDRLEN || length > bytes.len() {
            bail!("a netlink attribute of {length} bytes in {} left", bytes.len());
        }
        found.push((kind, &bytes[NLA_HDRLEN..length]));
        bytes = &bytes[align(length).min(bytes.len())..];
    }
    Ok(found)
}

fn c_string(value: &[u8]) -> &str {
    let end = value.iter().position(|&byte| byte == 0).unwrap_or(value.len());
    std::str::from_utf8(&value[..end]).unwrap_or("?")
}

fn align(length: usize) -> usize {
    (length + 3) & !3
}

#[cfg(test)]
#[path = "netfilter_hooks_tests.rs"]
mod tests;
