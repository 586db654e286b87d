//! HTTP/1.1 as the proxy speaks it to clients on its fast path, pure: a
//! request head taken off the connection's buffer when it is one the fast
//! path serves (no body, no protocol switch, no `Expect`), and the response
//! head written with the framing its body needs. Anything else is left in
//! the buffer untouched for hyper's server, which then serves the rest of
//! the connection (`client_conn`): the edge cases keep hyper's answers.

use std::io::Write as _;
use std::mem::MaybeUninit;

use bytes::{Bytes, BytesMut};
use hyper::header::{CONNECTION, CONTENT_LENGTH, DATE, HeaderMap, HeaderName, HeaderValue, TRANSFER_ENCODING};
use hyper::{Method, Request, StatusCode, Uri, Version};

use super::h1_wire::{parse_length, write_field};

/// Request header lines, as hyper's server allows (more: hyper answers 431).
const MAX_REQUEST_HEADERS: usize = 100;

/// What the front of a connection's buffer holds.
#[derive(Debug)]
// Taken apart where it is returned, once a request: a box would cost an
// allocation each.
#[allow(clippy::large_enum_variant)]
pub(crate) enum NextRequest {
    /// No complete head yet.
    Partial,
    /// A head the fast path does not serve, or a malformed one: the buffer
    /// is as it was, for hyper.
    HandOver,
    /// A bodyless HTTP/1.1 request, taken off the buffer. `close`: the
    /// client asked to close the connection after it.
    Ready { request: Request<()>, close: bool },
}

/// Takes the next request head off the front of `buffer` when it is
/// complete, at most `max_head` bytes long, and one the fast path serves.
pub(crate) fn take_request(buffer: &mut BytesMut, max_head: usize) -> NextRequest {
    // Asked first thing after every answer, before the next request came.
    if buffer.is_empty() {
        return NextRequest::Partial;
    }
    let parsed = {
        let mut fields = [const { MaybeUninit::<httparse::Header>::uninit() }; MAX_REQUEST_HEADERS];
        let mut request = httparse::Request::new(&mut []);
        match request.parse_with_uninit_headers(&buffer[..], &mut fields) {
            Ok(httparse::Status::Partial) => return NextRequest::Partial,
            Ok(httparse::Status::Complete(length)) if length <= max_head && request.version == Some(1) => {
                match fast_path_fields(&request, &buffer[..]) {
                    Some(fields) => (length, fields),
                    None => return NextRequest::HandOver,
                }
            }
            Ok(httparse::Status::Complete(_)) | Err(_) => return NextRequest::HandOver,
        }
    };
    let (length, fields) = parsed;
    let head = buffer.split_to(length).freeze();
    match build(&head, &fields) {
        Some(ready) => ready,
        None => {
            // Something hyper must refuse (an invalid URI, say): the head
            // goes back where it was.
            let mut restored = BytesMut::with_capacity(head.len() + buffer.len());
            restored.extend_from_slice(&head);
            restored.extend_from_slice(buffer);
            *buffer = restored;
            NextRequest::HandOver
        }
    }
}

/// Where the parts of a head are, so that the request can share its bytes.
struct Fields {
    method: (usize, usize),
    target: (usize, usize),
    headers: Vec<((usize, usize), (usize, usize))>,
    close: bool,
}

/// The head's parts by position, or `None` for a head hyper must serve:
/// CONNECT, a body (Transfer-Encoding, a Content-Length other than one 0),
/// `Expect`, or a protocol switch.
fn fast_path_fields(request: &httparse::Request, buffer: &[u8]) -> Option<Fields> {
    let start = buffer.as_ptr() as usize;
    let at = |part: &[u8]| {
        let from = part.as_ptr() as usize - start;
        (from, from + part.len())
    };
    let method = request.method?;
    if method == "CONNECT" {
        return None;
    }
    let target = request.path?;
    let mut close = false;
    let mut headers = Vec::with_capacity(request.headers.len());
    for field in request.headers.iter() {
        let name = field.name.as_bytes();
        if name.eq_ignore_ascii_case(b"transfer-encoding") || name.eq_ignore_ascii_case(b"expect") || name.eq_ignore_ascii_case(b"upgrade") {
            return None;
        }
        if name.eq_ignore_ascii_case(b"content-length") && field.value != b"0" {
            return None;
        }
        if name.eq_ignore_ascii_case(b"connection") {
            close |= asks_close(field.value);
        }
        headers.push((at(name), at(field.value)));
    }
    Some(Fields { method: at(method.as_bytes()), target: at(target.as_bytes()), headers, close })
}

fn build(head: &Bytes, fields: &Fields) -> Option<NextRequest> {
    let part = |(from, to): (usize, usize)| &head[from..to];
    let method = Method::from_bytes(part(fields.method)).ok()?;
    let uri = Uri::from_maybe_shared(head.slice(fields.target.0..fields.target.1)).ok()?;
    let mut headers = HeaderMap::with_capacity(fields.headers.len());
    for &(name, (from, to)) in &fields.headers {
        let name = HeaderName::from_bytes(part(name)).ok()?;
        let value = HeaderValue::from_maybe_shared(head.slice(from..to)).ok()?;
        headers.append(name, value);
    }
    let mut request = Request::new(());
    *request.method_mut() = method;
    *request.uri_mut() = uri;
    *request.version_mut() = Version::HTTP_11;
    *request.headers_mut() = headers;
    Some(NextRequest::Ready { request, close: fields.close })
}

/// How a response body goes to the client.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum BodyFraming {
    /// No body bytes at all: HEAD, 1xx, 204, 304.
    None,
    /// As many bytes as the Content-Length says; `add_header`: the head
    /// has none yet and gets this one.
    Length { length: u64, add_header: bool },
    Chunked,
}

/// As hyper's server frames a response to an HTTP/1.1 request, from the
/// response's first Content-Length (`declared`) and the body's own length.
pub(crate) fn response_framing(head_request: bool, status: StatusCode, declared: Option<u64>, exact_length: Option<u64>) -> BodyFraming {
    if head_request || !may_have_length(status) {
        return BodyFraming::None;
    }
    match (declared, exact_length) {
        (Some(length), _) => BodyFraming::Length { length, add_header: false },
        (None, Some(length)) => BodyFraming::Length { length, add_header: true },
        (None, None) => BodyFraming::Chunked,
    }
}

/// 1xx, 204 and 304 answers carry neither a body nor a length.
fn may_have_length(status: StatusCode) -> bool {
    !(status.is_informational() || status == StatusCode::NO_CONTENT || status == StatusCode::NOT_MODIFIED)
}

/// What the proxy knows of an answer besides its status and headers.
#[derive(Debug, Clone, Copy)]
pub(crate) struct AnswerTo {
    /// The request was a HEAD: no body goes out.
    pub head_request: bool,
    /// The body's length, when it is known.
    pub exact_length: Option<u64>,
    /// The client asked to close the connection after this answer.
    pub asked_close: bool,
}

/// What the written head committed the connection to.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Written {
    pub framing: BodyFraming,
    /// The connection closes after the body: the client or the response asked.
    pub close: bool,
}

/// Appends the response head: the status line, `headers` but any
/// Transfer-Encoding (the framing is this hop's), a `Date` unless there is
/// one, the framing header, and `connection: close` when the client asked
/// to close and the headers do not say so already. The headers are read
/// once, as they are written: looking up the few that decide the framing
/// and the close cost more than the pass itself.
pub(crate) fn write_response_head(out: &mut Vec<u8>, status: StatusCode, headers: &HeaderMap, to: AnswerTo, date: &[u8]) -> Written {
    out.extend_from_slice(b"HTTP/1.1 ");
    out.extend_from_slice(status.as_str().as_bytes());
    out.push(b' ');
    out.extend_from_slice(status.canonical_reason().unwrap_or("").as_bytes());
    out.extend_from_slice(b"\r\n");
    let (mut dated, mut first_length, mut says_close) = (false, None, false);
    for (name, value) in headers {
        if name == TRANSFER_ENCODING {
            continue;
        }
        if name == DATE {
            dated = true;
        } else if name == CONTENT_LENGTH {
            first_length.get_or_insert_with(|| parse_length(value.as_bytes()));
        } else if name == CONNECTION {
            says_close |= asks_close(value.as_bytes());
        }
        write_field(out, name, value);
    }
    if !dated {
        out.extend_from_slice(b"date: ");
        out.extend_from_slice(date);
        out.extend_from_slice(b"\r\n");
    }
    let framing = response_framing(to.head_request, status, first_length.flatten(), to.exact_length);
    match framing {
        BodyFraming::Length { length, add_header: true } => {
            let _ = write!(out, "content-length: {length}\r\n");
        }
        BodyFraming::Chunked => out.extend_from_slice(b"transfer-encoding: chunked\r\n"),
        // A HEAD answer tells the length of the body it does not carry, as
        // hyper's does (not a zero length: that may not be the GET's).
        BodyFraming::None => match to.exact_length {
            Some(length) if to.head_request && first_length.is_none() && length > 0 && may_have_length(status) => {
                let _ = write!(out, "content-length: {length}\r\n");
            }
            _ => {}
        },
        BodyFraming::Length { .. } => {}
    }
    if to.asked_close && !says_close {
        out.extend_from_slice(b"connection: close\r\n");
    }
    out.extend_from_slice(b"\r\n");
    Written { framing, close: to.asked_close || says_close }
}

/// Whether a `Connection` value lists `close`.
fn asks_close(value: &[u8]) -> bool {
    value.split(|&byte| byte == b',').any(|token| token.trim_ascii().eq_ignore_ascii_case(b"close"))
}

#[cfg(test)]
#[path = "client_wire_tests.rs"]
mod tests;
