//! The "application" in every pod: answers with the pod name and the peer
//! address it sees, so tests can tell which backend answered and whether the
//! client address survived the load balancer.

use std::io::{self, BufRead, BufReader, ErrorKind, Write};
use std::net::{Ipv6Addr, Shutdown, SocketAddr, SocketAddrV6, TcpListener, TcpStream, UdpSocket};
use std::os::fd::{AsRawFd, OwnedFd};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::thread::{self, JoinHandle};
use std::time::{Duration, Instant};

use anyhow::{Context, Result};
use nix::errno::Errno;
use nix::sys::socket::{self, AddressFamily, Backlog, SockFlag, SockType, SockaddrIn6, sockopt};

use crate::netns::NetNs;

/// How often blocked connection reads look at the stop flag.
const POLL: Duration = Duration::from_millis(100);
/// Upper bound for waiting on threads when stopping.
const JOIN_LIMIT: Duration = Duration::from_secs(2);
/// Header lines read from an HTTP request before answering anyway.
const MAX_HTTP_HEADERS: usize = 100;

/// How the echo server answers an HTTP request.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum HttpAnswers {
    /// HTTP/1.0 with `Connection: close`, then the connection ends (the lab's pods).
    CloseAfterEach,
    /// HTTP/1.1 on a connection kept for request after request, as most services answer.
    KeepAlive,
}

/// TCP and UDP echo server on `0.0.0.0:port` and `[::]:port` inside a
/// namespace; stops on drop.
pub struct EchoServer {
    stop: Arc<AtomicBool>,
    // Clones kept only to shut the sockets down; they also keep the fds valid
    // until then, so the shutdown can never hit an unrelated, reused fd.
    listeners: Vec<TcpListener>,
    udp: Vec<UdpSocket>,
    threads: Vec<JoinHandle<()>>,
}

/// A socket of `kind` on `[::]:port` that takes IPv6 only, so that IPv4
/// clients stay on the IPv4 socket and are reported with IPv4 addresses
/// (not IPv4-mapped ones). None when the kernel has no IPv6.
fn bind_v6_only(kind: SockType, port: u16) -> io::Result<Option<OwnedFd>> {
    let fd = match socket::socket(AddressFamily::Inet6, kind, SockFlag::SOCK_CLOEXEC, None) {
        Ok(fd) => fd,
        Err(Errno::EAFNOSUPPORT) => return Ok(None),
        Err(e) => return Err(e.into()),
    };
    socket::setsockopt(&fd, sockopt::Ipv6V6Only, &true)?;
    socket::setsockopt(&fd, sockopt::ReuseAddr, &true)?;
    let any = SockaddrIn6::from(SocketAddrV6::new(Ipv6Addr::UNSPECIFIED, port, 0, 0));
    socket::bind(fd.as_raw_fd(), &any)?;
    if kind == SockType::Stream {
        socket::listen(&fd, Backlog::new(128)?)?;
    }
    Ok(Some(fd))
}

impl EchoServer {
    /// Binds all sockets before returning, so the server is reachable at once.
    pub fn spawn(ns: &NetNs, pod_name: &str, port: u16, answers: HttpAnswers) -> Result<EchoServer> {
        let (listeners, udp) = ns
            .run(move || -> io::Result<_> {
                let any = SocketAddr::from(([0, 0, 0, 0], port));
                let mut listeners = vec![TcpListener::bind(any)?];
                let mut udp = vec![UdpSocket::bind(any)?];
                listeners.extend(bind_v6_only(SockType::Stream, port)?.map(TcpListener::from));
                udp.extend(bind_v6_only(SockType::Datagram, port)?.map(UdpSocket::from));
                Ok((listeners, udp))
            })?
            .with_context(|| format!("cannot bind echo port {port} in {}", ns.name()))?;
        // Assembled before spawning, so that a failed spawn still stops (via
        // Drop) the threads started before it.
        let mut server = EchoServer {
            stop: Arc::new(AtomicBool::new(false)),
            listeners,
            udp,
            threads: Vec::new(),
        };
        for i in 0..server.listeners.len() {
            let (listener, stop, pod) = (server.listeners[i].try_clone()?, server.stop.clone(), pod_name.to_owned());
            let tcp = spawn_named("echo-tcp", move || accept_loop(listener, &stop, &pod, answers))?;
            server.threads.push(tcp);
        }
        for i in 0..server.udp.len() {
            let (udp, stop, pod) = (server.udp[i].try_clone()?, server.stop.clone(), pod_name.to_owned());
            let udp = spawn_named("echo-udp", move || udp_loop(udp, &stop, &pod))?;
            server.threads.push(udp);
        }
        Ok(server)
    }
}

impl Drop for EchoServer {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::SeqCst);
        // shutdown() wakes a thread blocked in accept()/recvfrom() on the same
        // socket; the result is ignored because an unconnected UDP socket
        // reports ENOTCONN even though the wake-up happens.
        let fds = self.listeners.iter().map(AsRawFd::as_raw_fd).chain(self.udp.iter().map(AsRawFd::as_raw_fd));
        for fd in fds {
            // SAFETY: fd is owned by self and open for the duration of the call.
            unsafe { libc::shutdown(fd, libc::SHUT_RDWR) };
        }
        join_bounded(std::mem::take(&mut self.threads));
    }
}

fn spawn_named(name: &str, f: impl FnOnce() + Send + 'static) -> Result<JoinHandle<()>> {
    thread::Builder::new()
        .name(name.to_owned())
        .spawn(f)
        .with_context(|| format!("cannot spawn {name} thread"))
}

/// Waits for threads up to [`JOIN_LIMIT`]; a thread that does not finish is
/// reported and left detached rather than hanging the caller.
fn join_bounded(threads: Vec<JoinHandle<()>>) {
    let deadline = Instant::now() + JOIN_LIMIT;
    for handle in threads {
        while !handle.is_finished() && Instant::now() < deadline {
            thread::sleep(Duration::from_millis(5));
        }
        if handle.is_finished() {
            let _ = handle.join();
        } else {
            eprintln!("warning: echo thread did not stop within {JOIN_LIMIT:?}");
        }
    }
}

fn accept_loop(listener: TcpListener, stop: &Arc<AtomicBool>, pod: &str, answers: HttpAnswers) {
    let mut conns: Vec<JoinHandle<()>> = Vec::new();
    while !stop.load(Ordering::SeqCst) {
        match listener.accept() {
            Ok((stream, _)) => {
                conns.retain(|h| !h.is_finished());
                let (stop, pod) = (stop.clone(), pod.to_owned());
                match spawn_named("echo-conn", move || serve_connection(stream, &stop, &pod, answers)) {
                    Ok(h) => conns.push(h),
                    Err(e) => eprintln!("warning: {e:#}"),
                }
            }
            Err(_) if stop.load(Ordering::SeqCst) => break,
            // E.g. EMFILE or an aborted handshake: keep serving, but never spin.
            Err(_) => thread::sleep(Duration::from_millis(10)),
        }
    }
    join_bounded(conns);
}

fn serve_connection(stream: TcpStream, stop: &AtomicBool, pod: &str, answers: HttpAnswers) {
    if let Err(e) = try_serve_connection(stream, stop, pod, answers)
        // The client gone: reset, also before this thread asked for its
        // address (NotConnected: hundreds in each of HAProxy's runs against
        // the `close` pods, which made the bench's output unreadable).
        && !matches!(e.kind(), ErrorKind::ConnectionReset | ErrorKind::BrokenPipe | ErrorKind::NotConnected)
    {
        eprintln!("warning: echo connection in {pod}: {e}");
    }
}

fn try_serve_connection(stream: TcpStream, stop: &AtomicBool, pod: &str, answers: HttpAnswers) -> io::Result<()> {
    // A short read timeout lets an idle connection notice the stop flag.
    stream.set_read_timeout(Some(POLL))?;
    stream.set_write_timeout(Some(JOIN_LIMIT))?;
    let reply = format!("{pod} {}\n", stream.peer_addr()?);
    let mut writer = stream.try_clone()?;
    let mut reader = BufReader::new(stream);
    let mut line = Vec::new();
    let mut first = true;
    while read_line(&mut reader, &mut line, stop)? {
        if first && (line.starts_with(b"GET ") || line.starts_with(b"HEAD ")) {
            return answer_http(&mut reader, &mut writer, stop, pod, line, answers);
        }
        first = false;
        writer.write_all(reply.as_bytes())?;
        line.clear();
    }
    Ok(())
}

/// Minimal HTTP so that a person can `curl` a pod: `request_line` is the
/// first request's; with [`HttpAnswers::KeepAlive`] the requests that follow
/// on the connection are answered too.
fn answer_http(
    reader: &mut BufReader<TcpStream>,
    writer: &mut TcpStream,
    stop: &AtomicBool,
    pod: &str,
    mut request_line: Vec<u8>,
    answers: HttpAnswers,
) -> io::Result<()> {
    let body = format!("{pod}\n");
    let head = match answers {
        HttpAnswers::CloseAfterEach => "HTTP/1.0 200 OK\r\nContent-Type: text/plain\r\nConnection: close",
        HttpAnswers::KeepAlive => "HTTP/1.1 200 OK\r\nContent-Type: text/plain",
    };
    let mut line = Vec::new();
    loop {
        // Read the headers first: closing with unread data would send a RST that
        // can destroy the response before the client reads it.
        for _ in 0..MAX_HTTP_HEADERS {
            line.clear();
            if !read_line(reader, &mut line, stop)? || line.trim_ascii().is_empty() {
                break;
            }
        }
        let mut response = format!("{head}\r\nContent-Length: {}\r\n\r\n", body.len());
        if request_line.starts_with(b"GET ") {
            response.push_str(&body);
        }
        writer.write_all(response.as_bytes())?;
        if answers == HttpAnswers::CloseAfterEach {
            return writer.shutdown(Shutdown::Write);
        }
        request_line.clear();
        if !read_line(reader, &mut request_line, stop)? || !(request_line.starts_with(b"GET ") || request_line.starts_with(b"HEAD ")) {
            return Ok(());
        }
    }
}

/// Reads one line into `buf`, riding out read timeouts until `stop` is set.
/// Returns false on end of stream or stop.
fn read_line(reader: &mut impl BufRead, buf: &mut Vec<u8>, stop: &AtomicBool) -> io::Result<bool> {
    loop {
        if stop.load(Ordering::SeqCst) {
            return Ok(false);
        }
        // read_until keeps the bytes read before a timeout in `buf`, so
        // calling it again simply continues the line.
        match reader.read_until(b'\n', buf) {
            Ok(0) => return Ok(!buf.is_empty()),
            Ok(_) if buf.ends_with(b"\n") => return Ok(true),
            Ok(_) => {}
            Err(e) if matches!(e.kind(), ErrorKind::WouldBlock | ErrorKind::TimedOut) => {}
            Err(e) => return Err(e),
        }
    }
}

fn udp_loop(udp: UdpSocket, stop: &AtomicBool, pod: &str) {
    let mut buf = [0u8; 2048];
    while !stop.load(Ordering::SeqCst) {
        match udp.recv_from(&mut buf) {
            // Also reached through the wake-up from shutdown(), hence the flag check.
            Ok((_, peer)) if !stop.load(Ordering::SeqCst) => {
                let _ = udp.send_to(format!("{pod} {peer}").as_bytes(), peer);
            }
            Ok(_) => break,
            Err(_) if stop.load(Ordering::SeqCst) => break,
            Err(_) => thread::sleep(Duration::from_millis(10)),
        }
    }
}
