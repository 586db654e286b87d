//! Client side: requests from inside a namespace and bookkeeping of who answered.

use std::collections::BTreeMap;
use std::fmt;
use std::io::{BufRead, BufReader, ErrorKind, Write};
use std::net::{SocketAddr, TcpStream, UdpSocket};
use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail};

use crate::netns::NetNs;

/// Timeout for connecting, sending and receiving unless a caller picks another.
pub const DEFAULT_TIMEOUT: Duration = Duration::from_secs(2);

/// What an echo server answered: which pod, and the peer address the pod
/// saw (IPv4 or IPv6, as the request reached it).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Reply {
    pub pod: String,
    pub peer: SocketAddr,
}

impl Reply {
    /// Parses `"<pod> <ip>:<port>"` or `"<pod> [<ipv6>]:<port>"`, with or
    /// without a trailing newline.
    pub fn parse(text: &str) -> Result<Reply> {
        let (pod, peer) = text
            .trim_end()
            .split_once(' ')
            .with_context(|| format!("malformed echo reply {text:?}"))?;
        let peer = peer
            .parse()
            .with_context(|| format!("bad peer address in echo reply {text:?}"))?;
        Ok(Reply {
            pod: pod.to_owned(),
            peer,
        })
    }
}

/// One request on a new TCP connection (to an IPv4 or IPv6 address).
pub fn tcp_request(ns: &NetNs, to: impl Into<SocketAddr>) -> Result<Reply> {
    tcp_request_timeout(ns, to, DEFAULT_TIMEOUT)
}

pub fn tcp_request_timeout(ns: &NetNs, to: impl Into<SocketAddr>, timeout: Duration) -> Result<Reply> {
    TcpSession::open_timeout(ns, to, timeout)?.request()
}

/// A persistent TCP connection: every request must reach the same pod.
pub struct TcpSession {
    to: SocketAddr,
    reader: BufReader<TcpStream>,
}

impl TcpSession {
    pub fn open(ns: &NetNs, to: impl Into<SocketAddr>) -> Result<TcpSession> {
        Self::open_timeout(ns, to, DEFAULT_TIMEOUT)
    }

    pub fn open_timeout(ns: &NetNs, to: impl Into<SocketAddr>, timeout: Duration) -> Result<TcpSession> {
        let to = to.into();
        let stream = ns
            .run(move || TcpStream::connect_timeout(&to, timeout))?
            .with_context(|| format!("TCP connect to {to} from {}", ns.name()))?;
        stream.set_read_timeout(Some(timeout))?;
        stream.set_write_timeout(Some(timeout))?;
        Ok(TcpSession {
            to,
            reader: BufReader::new(stream),
        })
    }

    /// The client's own address, to compare with what the pod reports.
    pub fn local_addr(&self) -> Result<SocketAddr> {
        Ok(self.reader.get_ref().local_addr()?)
    }

    pub fn request(&mut self) -> Result<Reply> {
        let to = self.to;
        self.reader
            .get_mut()
            .write_all(b"hello\n")
            .with_context(|| format!("TCP send to {to}"))?;
        let mut line = String::new();
        let n = self
            .reader
            .read_line(&mut line)
            .with_context(|| format!("TCP reply from {to}"))?;
        if n == 0 {
            bail!("TCP connection to {to} closed without a reply");
        }
        Reply::parse(&line)
    }
}

/// One datagram out, one back, from a fresh source port.
pub fn udp_request(ns: &NetNs, to: impl Into<SocketAddr>) -> Result<Reply> {
    UdpSession::open(ns, to)?.request()
}

pub fn udp_request_timeout(ns: &NetNs, to: impl Into<SocketAddr>, timeout: Duration) -> Result<Reply> {
    UdpSession::open_timeout(ns, to, timeout)?.request()
}

/// A UDP socket on an ephemeral port of `to`'s family, connected to `to`
/// (so that only `to`'s answers are accepted, and an ICMP error for it is
/// reported on the socket), created inside `ns`.
pub fn connected_udp_socket(ns: &NetNs, to: SocketAddr) -> Result<UdpSocket> {
    ns.run(move || -> std::io::Result<UdpSocket> {
        let any: SocketAddr = if to.is_ipv4() { ([0, 0, 0, 0], 0).into() } else { ([0u16; 8], 0).into() };
        let socket = UdpSocket::bind(any)?;
        socket.connect(to)?;
        Ok(socket)
    })?
    .with_context(|| format!("UDP socket to {to} in {}", ns.name()))
}

/// A connected UDP socket: repeated requests share one 5-tuple (one flow).
pub struct UdpSession {
    to: SocketAddr,
    socket: UdpSocket,
}

impl UdpSession {
    pub fn open(ns: &NetNs, to: impl Into<SocketAddr>) -> Result<UdpSession> {
        Self::open_timeout(ns, to, DEFAULT_TIMEOUT)
    }

    pub fn open_timeout(ns: &NetNs, to: impl Into<SocketAddr>, timeout: Duration) -> Result<UdpSession> {
        let to = to.into();
        let socket = connected_udp_socket(ns, to)?;
        socket.set_read_timeout(Some(timeout))?;
        socket.set_write_timeout(Some(timeout))?;
        Ok(UdpSession { to, socket })
    }

    pub fn local_addr(&self) -> Result<SocketAddr> {
        Ok(self.socket.local_addr()?)
    }

    pub fn request(&self) -> Result<Reply> {
        let to = self.to;
        self.socket
            .send(b"hello")
            .with_context(|| format!("UDP send to {to}"))?;
        let mut buf = [0u8; 2048];
        let n = self
            .socket
            .recv(&mut buf)
            .with_context(|| format!("UDP reply from {to}"))?;
        Reply::parse(&String::from_utf8_lossy(&buf[..n]))
    }
}

/// A TCP connect from inside `ns` with `patience` to wait: its error kind
/// (None when it connected) and how long it took, e.g. to tell a prompt
/// refusal from a timeout.
pub fn connect_outcome(ns: &NetNs, to: impl Into<SocketAddr>, patience: Duration) -> Result<(Option<ErrorKind>, Duration)> {
    let to = to.into();
    ns.run(move || {
        let start = Instant::now();
        let result = TcpStream::connect_timeout(&to, patience);
        (result.err().map(|e| e.kind()), start.elapsed())
    })
}

/// One datagram on a connected UDP socket, then a receive waiting up to
/// `patience`: its error kind (None when an answer came), e.g.
/// `ConnectionRefused` after an ICMP port unreachable.
pub fn udp_exchange_outcome(ns: &NetNs, to: impl Into<SocketAddr>, patience: Duration) -> Result<Option<ErrorKind>> {
    let socket = connected_udp_socket(ns, to.into())?;
    socket.set_read_timeout(Some(patience))?;
    socket.send(b"hello")?;
    Ok(socket.recv(&mut [0u8; 64]).err().map(|e| e.kind()))
}

/// Replies per pod, plus failed attempts; `Display` prints a small table.
#[derive(Debug, Default, Clone)]
pub struct Tally {
    counts: BTreeMap<String, u64>,
    failures: u64,
}

impl Tally {
    pub fn new() -> Tally {
        Tally::default()
    }

    pub fn add(&mut self, reply: &Reply) {
        *self.counts.entry(reply.pod.clone()).or_default() += 1;
    }

    /// Records the outcome of one request, whatever it was.
    pub fn record(&mut self, result: &Result<Reply>) {
        match result {
            Ok(reply) => self.add(reply),
            Err(_) => self.failures += 1,
        }
    }

    pub fn count(&self, pod: &str) -> u64 {
        self.counts.get(pod).copied().unwrap_or(0)
    }

    /// Successful replies.
    pub fn total(&self) -> u64 {
        self.counts.values().sum()
    }

    pub fn failures(&self) -> u64 {
        self.failures
    }

    /// Pods that answered at least once, sorted by name.
    pub fn pods(&self) -> impl Iterator<Item = (&str, u64)> {
        self.counts.iter().map(|(pod, n)| (pod.as_str(), *n))
    }
}

impl fmt::Display for Tally {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let total = self.total();
        let failed_label = if self.failures > 0 { "failed".len() } else { 0 };
        let width = self
            .counts
            .keys()
            .map(String::len)
            .chain([failed_label])
            .max()
            .unwrap_or(0);
        let digits = total.max(self.failures).to_string().len();
        for (pod, n) in &self.counts {
            let share = 100.0 * *n as f64 / total as f64;
            writeln!(f, "{pod:<width$}  {n:>digits$}  ({share:.1}%)")?;
        }
        if self.failures > 0 {
            writeln!(f, "{:<width$}  {:>digits$}", "failed", self.failures)?;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_tcp_and_udp_replies() {
        let tcp = Reply::parse("pod-a 198.51.100.2:40000\n").unwrap();
        assert_eq!(tcp.pod, "pod-a");
        assert_eq!(tcp.peer, "198.51.100.2:40000".parse().unwrap());
        assert_eq!(Reply::parse("pod-b 10.244.1.2:53").unwrap().pod, "pod-b");
        let v6 = Reply::parse("pod-c [2001:db8::2]:40000\n").unwrap();
        assert_eq!((v6.pod.as_str(), v6.peer), ("pod-c", "[2001:db8::2]:40000".parse().unwrap()));
        assert!(Reply::parse("pod-a").is_err());
        assert!(Reply::parse("pod-a nonsense").is_err());
    }

    #[test]
    fn tally_table() {
        let mut tally = Tally::new();
        for (pod, n) in [("pod-a", 103), ("pod-b", 100), ("pod-c", 97)] {
            let reply = Reply {
                pod: pod.into(),
                peer: "1.2.3.4:5".parse().unwrap(),
            };
            (0..n).for_each(|_| tally.add(&reply));
        }
        tally.record(&Err(anyhow::anyhow!("timeout")));
        assert_eq!(
            (tally.total(), tally.failures(), tally.count("pod-a")),
            (300, 1, 103)
        );
        assert_eq!(
            tally.to_string(),
            "pod-a   103  (34.3%)\npod-b   100  (33.3%)\npod-c    97  (32.3%)\nfailed    1\n"
        );
    }
}
