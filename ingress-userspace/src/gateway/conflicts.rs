//! The spec's "distinct listeners", within one Gateway: a connection must
//! be told to exactly one listener. Listeners of one port (and transport)
//! conflict when their protocols cannot share the port (HTTP beside HTTPS,
//! say: `ProtocolConflict`), or when they can but have the same hostname
//! (`HostnameConflict`). As the spec asks, no conflicted listener wins:
//! none of them is accepted or served.
//!
//! Only the listeners of one Gateway are compared: the Gateways of this
//! controller all share the proxy's ports, and a listener without hostname
//! on port 80 in each of two Gateways (the conformance suite's base) is how
//! Gateways are meant to be used, not a conflict.

use super::types::Listener;

/// Why a listener is conflicted: the `Conflicted` condition's reason, and
/// which other listener it conflicts with.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Conflict {
    pub reason: &'static str,
    pub message: String,
}

/// One entry per listener, in order: its conflict, if any. A protocol
/// conflict is reported before a hostname one.
pub fn conflicts(listeners: &[Listener]) -> Vec<Option<Conflict>> {
    listeners
        .iter()
        .enumerate()
        .map(|(index, listener)| {
            let same_port = listeners
                .iter()
                .enumerate()
                .filter(|(other_index, other)| *other_index != index && other.port == listener.port && transport(other) == transport(listener))
                .map(|(_, other)| other);
            let mut same_hostname = None;
            for other in same_port {
                if handshake(other) != handshake(listener) {
                    let message = format!(
                        "port {} is also listener {:?}'s, whose protocol {} cannot share it with {}",
                        listener.port, other.name, other.protocol, listener.protocol
                    );
                    return Some(Conflict { reason: "ProtocolConflict", message });
                }
                if same_hostname.is_none() && hostname(other) == hostname(listener) {
                    same_hostname = Some(other);
                }
            }
            same_hostname.map(|other| {
                let host = hostname(listener).map_or_else(|| "no hostname".to_owned(), |host| format!("hostname {host}"));
                Conflict { reason: "HostnameConflict", message: format!("{host} on port {} is also listener {:?}'s", listener.port, other.name) }
            })
        })
        .collect()
}

/// UDP ports are not TCP ports.
fn transport(listener: &Listener) -> &'static str {
    if listener.protocol == "UDP" { "UDP" } else { "TCP" }
}

/// What a connection to the port begins with, which decides whether
/// listeners can share it: HTTPS and TLS both begin with a TLS handshake
/// and are told apart by SNI; plain HTTP, or raw TCP, cannot be.
fn handshake(listener: &Listener) -> &str {
    match listener.protocol.as_str() {
        "HTTPS" | "TLS" => "TLS",
        other => other,
    }
}

/// The hostname listeners of a port are told apart by; TCP and UDP have
/// none to tell them by.
fn hostname(listener: &Listener) -> Option<String> {
    match listener.protocol.as_str() {
        "TCP" | "UDP" => None,
        _ => listener.hostname.as_deref().filter(|host| !host.is_empty()).map(str::to_ascii_lowercase),
    }
}
