//! A minimal HTTP/1.1 client for the lab: one request per connection, from
//! inside a namespace, to check where the L7 proxy routed it.

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};

use anyhow::{Context, Result};

use crate::netns::NetNs;
use crate::traffic::DEFAULT_TIMEOUT;

/// Status and body of a response.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Response {
    pub status: u16,
    pub body: String,
}

/// `GET path` with `Host: host` to `to`, read until the server closes.
pub fn get(ns: &NetNs, to: impl Into<SocketAddr>, host: &str, path: &str) -> Result<Response> {
    get_with_headers(ns, to, host, path, &[])
}

/// [`get`] with more request headers.
pub fn get_with_headers(ns: &NetNs, to: impl Into<SocketAddr>, host: &str, path: &str, headers: &[(&str, &str)]) -> Result<Response> {
    let to = to.into();
    let stream = ns.run(move || TcpStream::connect_timeout(&to, DEFAULT_TIMEOUT))??;
    let mut stream = stream;
    stream.set_read_timeout(Some(DEFAULT_TIMEOUT))?;
    let headers: String = headers.iter().map(|(name, value)| format!("{name}: {value}\r\n")).collect();
    write!(stream, "GET {path} HTTP/1.1\r\nHost: {host}\r\n{headers}Connection: close\r\n\r\n")?;
    let mut raw = Vec::new();
    stream.read_to_end(&mut raw).with_context(|| format!("reading the response from {to}"))?;
    parse(&String::from_utf8_lossy(&raw))
}

fn parse(raw: &str) -> Result<Response> {
    let (head, body) = raw.split_once("\r\n\r\n").context("no end of headers in the response")?;
    let status = head
        .split_whitespace()
        .nth(1)
        .and_then(|s| s.parse().ok())
        .with_context(|| format!("no status in {:?}", head.lines().next()))?;
    Ok(Response { status, body: body.to_string() })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_status_and_body() {
        let r = parse("HTTP/1.1 404 Not Found\r\nserver: x\r\n\r\ndefault backend - 404").unwrap();
        assert_eq!(r, Response { status: 404, body: "default backend - 404".into() });
        assert!(parse("garbage").is_err());
    }
}
