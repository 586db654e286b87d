//! The agent's own TCP listeners (healthCheckNodePorts, the L7 proxy) on
//! every address of the node, of both families where the node has IPv6.

use std::io;
use std::net::{Ipv4Addr, Ipv6Addr, SocketAddr};

use nix::sys::socket::{setsockopt, sockopt};
use socket2::{Domain, Protocol, Socket, Type};
use tokio::net::TcpListener;

/// Pending connections, as tokio's `TcpListener::bind` allows.
const BACKLOG: i32 = 1024;

/// Listens on `port` of every node address: one `[::]` socket that takes
/// IPv4 too (its peers then appear as `::ffff:a.b.c.d`), as kube-proxy does
/// on a dual-stack node, or `0.0.0.0` with a warning where the kernel has no
/// IPv6. Must run inside a tokio runtime.
pub fn on_every_address(port: u16) -> io::Result<TcpListener> {
    TcpListener::from_std(every_address(port, Sharing::Exclusive)?)
}

/// `count` listening sockets on one address, with SO_REUSEPORT: the kernel
/// spreads new connections over them, so that each can be served by a
/// thread of its own. `0.0.0.0:port` stands for every node address, as in
/// [`on_every_address`]; port 0 is chosen once, for all of them.
pub fn reuse_port_group(addr: SocketAddr, count: usize) -> io::Result<Vec<std::net::TcpListener>> {
    let first = if addr == SocketAddr::from((Ipv4Addr::UNSPECIFIED, addr.port())) {
        every_address(addr.port(), Sharing::ReusePort)?
    } else {
        listen(addr, Sharing::ReusePort)?
    };
    let bound = first.local_addr()?;
    let mut group = vec![first];
    for _ in 1..count {
        group.push(listen(bound, Sharing::ReusePort)?);
    }
    Ok(group)
}

#[derive(Clone, Copy, PartialEq)]
enum Sharing {
    Exclusive,
    ReusePort,
}

fn every_address(port: u16, sharing: Sharing) -> io::Result<std::net::TcpListener> {
    match listen(SocketAddr::from((Ipv6Addr::UNSPECIFIED, port)), sharing) {
        Err(error) if ipv6_unavailable(&error) => {
            tracing::warn!(port, "IPv6 is unavailable ({error}): listening on IPv4 only");
            listen(SocketAddr::from((Ipv4Addr::UNSPECIFIED, port)), sharing)
        }
        dual_stack => dual_stack,
    }
}

/// Errors that mean this kernel or network namespace has no IPv6 (the
/// module absent or disabled), not that the port is taken.
fn ipv6_unavailable(error: &io::Error) -> bool {
    matches!(error.raw_os_error(), Some(libc::EAFNOSUPPORT | libc::EPROTONOSUPPORT | libc::EADDRNOTAVAIL))
}

fn listen(addr: SocketAddr, sharing: Sharing) -> io::Result<std::net::TcpListener> {
    let socket = Socket::new(Domain::for_address(addr), Type::STREAM, Some(Protocol::TCP))?;
    if addr.is_ipv6() {
        // IPv4 too, whatever the system's default (net.ipv6.bindv6only) says.
        socket.set_only_v6(false)?;
    }
    // As std and tokio do: a restarted agent can listen again at once while
    // the connections of the previous one linger in TIME_WAIT.
    socket.set_reuse_address(true)?;
    if sharing == Sharing::ReusePort {
        // nix's: socket2 has it only behind its `all` feature.
        setsockopt(&socket, sockopt::ReusePort, &true)?;
    }
    socket.set_nonblocking(true)?;
    socket.bind(&addr.into())?;
    socket.listen(BACKLOG)?;
    Ok(socket.into())
}

#[cfg(test)]
mod tests {
    use std::net::IpAddr;

    use super::*;

    /// The peer address `listener` sees for a connection to `to`.
    async fn peer_of_connection(listener: &TcpListener, to: SocketAddr) -> IpAddr {
        let _client = tokio::net::TcpStream::connect(to).await.unwrap();
        listener.accept().await.unwrap().1.ip()
    }

    #[tokio::test]
    async fn every_address_is_one_socket_serving_both_families() {
        let listener = on_every_address(0).unwrap();
        let local = listener.local_addr().unwrap();
        assert_eq!(local.ip(), IpAddr::from(Ipv6Addr::UNSPECIFIED), "no IPv6 where the tests run?");
        let over_ipv4 = peer_of_connection(&listener, SocketAddr::from((Ipv4Addr::LOCALHOST, local.port()))).await;
        assert_eq!(over_ipv4, "::ffff:127.0.0.1".parse::<IpAddr>().unwrap());
        let over_ipv6 = peer_of_connection(&listener, SocketAddr::from((Ipv6Addr::LOCALHOST, local.port()))).await;
        assert_eq!(over_ipv6, IpAddr::from(Ipv6Addr::LOCALHOST));
    }

    #[test]
    fn only_a_missing_ipv6_stack_falls_back_to_ipv4() {
        assert!(ipv6_unavailable(&io::Error::from_raw_os_error(libc::EAFNOSUPPORT)));
        assert!(ipv6_unavailable(&io::Error::from_raw_os_error(libc::EADDRNOTAVAIL)));
        assert!(!ipv6_unavailable(&io::Error::from_raw_os_error(libc::EADDRINUSE)));
        assert!(!ipv6_unavailable(&io::Error::from_raw_os_error(libc::EACCES)));
    }
}
