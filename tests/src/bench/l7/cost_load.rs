//! The load of the cost measure: exactly N requests for the measured route
//! over C keep-alive connections, every answer read and checked. wrk counts
//! time, not requests, and the cost per request is only comparable between
//! runs when the request count is exact.

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::time::Duration;

use anyhow::{Context, Result, bail};

use crate::netns::NetNs;

/// Generous: the proxy may run under callgrind, fifty times slower.
const READ_TIMEOUT: Duration = Duration::from_secs(60);

/// Sends `requests` GETs for `host` + `/` to `to` from inside `ns`, split
/// over `connections` connections as evenly as they go, as wrk asks: the
/// request line and `Host` only.
pub fn send(ns: &NetNs, to: SocketAddr, host: &str, requests: usize, connections: usize) -> Result<()> {
    let connections = connections.clamp(1, requests.max(1));
    let request = format!("GET / HTTP/1.1\r\nHost: {host}\r\n\r\n").into_bytes();
    let workers = (0..connections).map(|index| {
        let share = requests / connections + usize::from(index < requests % connections);
        let request = request.clone();
        ns.spawn(move || one_connection(to, &request, share))
    });
    let workers = workers.collect::<Result<Vec<_>>>()?;
    for worker in workers {
        worker.join().map_err(|_| anyhow::anyhow!("a load connection panicked"))??;
    }
    Ok(())
}

/// `count` requests one after the other; a connection the proxy closes is
/// opened again (and counted as nothing else).
fn one_connection(to: SocketAddr, request: &[u8], count: usize) -> Result<()> {
    let mut stream: Option<TcpStream> = None;
    let mut buffer = Vec::with_capacity(4096);
    for _ in 0..count {
        let open = match stream.take() {
            Some(open) => open,
            None => {
                let fresh = TcpStream::connect(to).with_context(|| format!("connecting to {to}"))?;
                fresh.set_nodelay(true)?;
                fresh.set_read_timeout(Some(READ_TIMEOUT))?;
                fresh
            }
        };
        let mut open = open;
        open.write_all(request)?;
        let keep = read_response(&mut open, &mut buffer)?;
        if keep {
            stream = Some(open);
        }
    }
    Ok(())
}

/// Reads one response with a `Content-Length` body; true if the connection
/// stays open. Anything but 200 is an error.
fn read_response(stream: &mut TcpStream, buffer: &mut Vec<u8>) -> Result<bool> {
    buffer.clear();
    let mut chunk = [0u8; 4096];
    let head_end = loop {
        if let Some(at) = buffer.windows(4).position(|window| window == b"\r\n\r\n") {
            break at + 4;
        }
        let read = stream.read(&mut chunk)?;
        if read == 0 {
            bail!("the proxy closed the connection before a complete response head");
        }
        buffer.extend_from_slice(&chunk[..read]);
    };
    let head = std::str::from_utf8(&buffer[..head_end]).context("a response head that is not UTF-8")?;
    if !head.starts_with("HTTP/1.1 200 ") {
        bail!("expected 200, got: {}", head.lines().next().unwrap_or_default());
    }
    let header = |name: &str| {
        head.lines().find_map(|line| {
            let (key, value) = line.split_once(':')?;
            key.trim().eq_ignore_ascii_case(name).then(|| value.trim().to_ascii_lowercase())
        })
    };
    let length: usize = header("content-length").context("a response without Content-Length")?.parse()?;
    let keep = header("connection").is_none_or(|value| value != "close");
    let mut body = buffer.len() - head_end;
    while body < length {
        let read = stream.read(&mut chunk)?;
        if read == 0 {
            bail!("the proxy closed the connection in the middle of a body");
        }
        body += read;
    }
    if body != length {
        bail!("{} bytes after a body of {length}: a response the client did not ask for", body - length);
    }
    Ok(keep)
}
