//! HTTP/1.1 as the proxy speaks it to upstreams, pure: the request head
//! written into a reused buffer, the response head parsed (httparse) into
//! the parts the client's answer is built from, and the response body's
//! framing, including a chunked decoder. Stricter than RFC 9112 asks where
//! leniency would let one upstream answer be read as two: a response that
//! is not clearly framed is refused (the proxy answers 502), never guessed.

use std::fmt;
use std::io::Write as _;
use std::mem::MaybeUninit;

use bytes::{Buf, Bytes, BytesMut};
use hyper::header::{CONNECTION, CONTENT_LENGTH, HeaderMap, HeaderName, HeaderValue, TRANSFER_ENCODING};
use hyper::{Method, StatusCode, Version};

/// A response head larger than this is refused (nginx refuses one over its
/// `proxy_buffer_size`, 4-8 KiB; this is more lenient).
pub(crate) const MAX_RESPONSE_HEAD: usize = 64 * 1024;
/// Response header lines, as hyper's client allows.
const MAX_RESPONSE_HEADERS: usize = 100;
/// Headers the proxy adds to an answer, at least.
const ROOM_FOR_ADDED: usize = 2;
/// A chunk-size line (with extensions) or a trailer section longer than this is refused.
const MAX_CHUNK_LINE: usize = 4096;
const MAX_TRAILERS: usize = 16 * 1024;

/// Why an upstream's answer cannot be passed on.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Malformed(pub &'static str);

impl fmt::Display for Malformed {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "malformed upstream response: {}", self.0)
    }
}

impl std::error::Error for Malformed {}

/// How the request body goes out, from what the client's request says.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Outgoing {
    NoBody,
    /// `length` bytes; `add_header`: the head has no Content-Length yet.
    Length { length: u64, add_header: bool },
    Chunked,
}

/// As hyper's client decides (the headers are already without hop-by-hop
/// ones, so without Transfer-Encoding): nothing for a finished body, the
/// client's Content-Length when it sent one, else the body's own length;
/// a body of unknown length is chunked, except that GET, HEAD and CONNECT
/// send none.
pub(crate) fn outgoing(method: &Method, headers: &HeaderMap, end_stream: bool, exact_length: Option<u64>) -> Outgoing {
    if end_stream {
        return Outgoing::NoBody;
    }
    if let Some(length) = headers.get(CONTENT_LENGTH).and_then(|value| parse_length(value.as_bytes())) {
        return Outgoing::Length { length, add_header: false };
    }
    match exact_length {
        Some(length) => Outgoing::Length { length, add_header: true },
        None if matches!(*method, Method::GET | Method::HEAD | Method::CONNECT) => Outgoing::NoBody,
        None => Outgoing::Chunked,
    }
}

/// Headers the proxy sets on a request, each in place of any the client
/// sent under its name.
pub(crate) type Added = [(HeaderName, HeaderValue)];

/// Appends the request head: origin-form `target`, the headers as they are
/// (lower-case names, as hyper writes them) but those `added` replaces, then
/// `added`, then the framing header.
pub(crate) fn write_request_head(out: &mut Vec<u8>, method: &Method, target: &str, headers: &HeaderMap, added: &Added, outgoing: Outgoing) {
    out.extend_from_slice(method.as_str().as_bytes());
    out.push(b' ');
    out.extend_from_slice(target.as_bytes());
    out.extend_from_slice(b" HTTP/1.1\r\n");
    for (name, value) in headers {
        if !added.iter().any(|(replacing, _)| replacing == name) {
            write_field(out, name, value);
        }
    }
    for (name, value) in added {
        write_field(out, name, value);
    }
    match outgoing {
        Outgoing::Length { length, add_header: true } => {
            let _ = write!(out, "content-length: {length}\r\n");
        }
        Outgoing::Chunked => out.extend_from_slice(b"transfer-encoding: chunked\r\n"),
        Outgoing::NoBody | Outgoing::Length { .. } => {}
    }
    out.extend_from_slice(b"\r\n");
}

pub(super) fn write_field(out: &mut Vec<u8>, name: &HeaderName, value: &HeaderValue) {
    out.extend_from_slice(name.as_str().as_bytes());
    out.extend_from_slice(b": ");
    out.extend_from_slice(value.as_bytes());
    out.extend_from_slice(b"\r\n");
}

/// Frames one chunk of a chunked request body around `data`.
pub(crate) fn write_chunk_size(out: &mut Vec<u8>, length: usize) {
    let _ = write!(out, "{length:x}\r\n");
}

pub(crate) const LAST_CHUNK: &[u8] = b"0\r\n\r\n";

/// How the response body is delimited (RFC 9112 6.3).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Framing {
    Empty,
    Length(u64),
    Chunked,
    /// Until the upstream closes: an HTTP/1.0-style answer.
    UntilClose,
}

#[derive(Debug)]
pub(crate) struct ResponseHead {
    pub status: StatusCode,
    pub version: Version,
    pub headers: HeaderMap,
    pub framing: Framing,
    /// The upstream keeps the connection, and the body is self-delimited.
    pub keep_alive: bool,
}

/// Takes the final response head off the front of `buffer` (and any 1xx
/// interim heads before it, which are dropped, as hyper's client drops
/// them). `Ok(None)`: not complete yet. A 101 is refused: only a request
/// that asked to switch protocols may get one, and those do not come here.
pub(crate) fn take_response_head(buffer: &mut BytesMut, method: &Method) -> Result<Option<ResponseHead>, Malformed> {
    // Asked first thing after every request goes out, before any answer
    // came: the parser's setup is not free.
    if buffer.is_empty() {
        return Ok(None);
    }
    loop {
        let Some((length, status, version, fields)) = parse_head(&buffer[..])? else {
            if buffer.len() > MAX_RESPONSE_HEAD {
                return Err(Malformed("response head too large"));
            }
            return Ok(None);
        };
        if length > MAX_RESPONSE_HEAD {
            return Err(Malformed("response head too large"));
        }
        if status == StatusCode::SWITCHING_PROTOCOLS {
            return Err(Malformed("101 to a request that did not ask to switch protocols"));
        }
        let head = buffer.split_to(length).freeze();
        if status.is_informational() {
            continue;
        }
        // Room for what the proxy adds to the answer (Server, a CORS or a
        // response-header filter's header), so that adding it does not
        // grow and rehash the map.
        let mut headers = HeaderMap::with_capacity(fields.len() + ROOM_FOR_ADDED);
        let mut seen = Seen::default();
        for field in &fields {
            let name = HeaderName::from_bytes(&head[field.name.0..field.name.1]).map_err(|_| Malformed("invalid header name"))?;
            let value = HeaderValue::from_maybe_shared(head.slice(field.value.0..field.value.1))
                .map_err(|_| Malformed("invalid header value"))?;
            seen.note(&name);
            headers.append(name, value);
        }
        let framing = framing(method, status, &headers, seen)?;
        // HTTP/1.1 keeps the connection unless `Connection` says otherwise.
        let keep_alive = framing != Framing::UntilClose && (if seen.connection { keeps_alive(version, &headers) } else { version == Version::HTTP_11 });
        return Ok(Some(ResponseHead { status, version, headers, framing, keep_alive }));
    }
}

/// Where a header's name and value are in the head, so that the values can
/// share the head's bytes instead of being copied.
struct FieldAt {
    name: (usize, usize),
    value: (usize, usize),
}

type ParsedHead = (usize, StatusCode, Version, Vec<FieldAt>);

fn parse_head(buffer: &[u8]) -> Result<Option<ParsedHead>, Malformed> {
    // Left uninitialised: the head is parsed before any of it is read, and
    // often before it has come, and zeroing room for a hundred headers each
    // time cost more than parsing the two or three there are.
    let mut fields = [const { MaybeUninit::<httparse::Header>::uninit() }; MAX_RESPONSE_HEADERS];
    let mut response = httparse::Response::new(&mut []);
    let length = match httparse::ParserConfig::default().parse_response_with_uninit_headers(&mut response, buffer, &mut fields) {
        Ok(httparse::Status::Complete(length)) => length,
        Ok(httparse::Status::Partial) => return Ok(None),
        Err(httparse::Error::TooManyHeaders) => return Err(Malformed("too many header lines")),
        Err(httparse::Error::Status | httparse::Error::Version) => return Err(Malformed("bad status line")),
        Err(_) => return Err(Malformed("bad header line")),
    };
    let code = response.code.ok_or(Malformed("bad status line"))?;
    let status = StatusCode::from_u16(code).map_err(|_| Malformed("bad status code"))?;
    let version = if response.version == Some(0) { Version::HTTP_10 } else { Version::HTTP_11 };
    let start = buffer.as_ptr() as usize;
    let at = |part: &[u8]| {
        let from = part.as_ptr() as usize - start;
        (from, from + part.len())
    };
    let fields = response.headers.iter().map(|field| FieldAt { name: at(field.name.as_bytes()), value: at(field.value) }).collect();
    Ok(Some((length, status, version, fields)))
}

/// Which of the headers that decide the framing and the keep-alive a head
/// has, noted as its fields are read: most heads have one of them, and
/// looking each up afterwards cost more than the comparisons.
#[derive(Debug, Clone, Copy, Default)]
struct Seen {
    transfer_encoding: bool,
    content_length: bool,
    connection: bool,
}

impl Seen {
    fn note(&mut self, name: &HeaderName) {
        self.transfer_encoding |= name == TRANSFER_ENCODING;
        self.content_length |= name == CONTENT_LENGTH;
        self.connection |= name == CONNECTION;
    }
}

/// RFC 9112 6.3, strictly: no body for HEAD, 1xx, 204 and 304; a
/// Transfer-Encoding must be `chunked` alone and never come with a
/// Content-Length; Content-Length values must all be one number.
fn framing(method: &Method, status: StatusCode, headers: &HeaderMap, seen: Seen) -> Result<Framing, Malformed> {
    if *method == Method::HEAD || status == StatusCode::NO_CONTENT || status == StatusCode::NOT_MODIFIED {
        return Ok(Framing::Empty);
    }
    if seen.transfer_encoding {
        if seen.content_length {
            return Err(Malformed("both Content-Length and Transfer-Encoding"));
        }
        let mut codings = headers.get_all(TRANSFER_ENCODING).iter().flat_map(|value| value.as_bytes().split(|&byte| byte == b','));
        let only_chunked = codings.next().is_some_and(|coding| coding.trim_ascii().eq_ignore_ascii_case(b"chunked")) && codings.next().is_none();
        return if only_chunked { Ok(Framing::Chunked) } else { Err(Malformed("a Transfer-Encoding other than chunked")) };
    }
    if !seen.content_length {
        return Ok(Framing::UntilClose);
    }
    let mut length = None;
    for value in headers.get_all(CONTENT_LENGTH) {
        for item in value.as_bytes().split(|&byte| byte == b',') {
            let item = parse_length(item.trim_ascii()).ok_or(Malformed("invalid Content-Length"))?;
            if length.is_some_and(|length| length != item) {
                return Err(Malformed("differing Content-Length values"));
            }
            length = Some(item);
        }
    }
    Ok(length.map_or(Framing::UntilClose, Framing::Length))
}

/// Digits only (no sign, no spaces), at most what fits a u64.
pub(super) fn parse_length(text: &[u8]) -> Option<u64> {
    if text.is_empty() || !text.iter().all(u8::is_ascii_digit) {
        return None;
    }
    text.iter().try_fold(0u64, |length, digit| length.checked_mul(10)?.checked_add(u64::from(digit - b'0')))
}

/// Whether the upstream keeps the connection after this response (RFC 9112
/// 9.3): HTTP/1.1 unless it says `close`, HTTP/1.0 only if it says `keep-alive`.
pub(crate) fn keeps_alive(version: Version, headers: &HeaderMap) -> bool {
    let says = |token: &str| {
        headers
            .get_all(CONNECTION)
            .iter()
            .filter_map(|value| value.to_str().ok())
            .flat_map(|value| value.split(','))
            .any(|item| item.trim().eq_ignore_ascii_case(token))
    };
    match version {
        Version::HTTP_11 => !says("close"),
        Version::HTTP_10 => says("keep-alive"),
        _ => false,
    }
}

/// A chunked body's decoder over the bytes read so far.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Chunked {
    Size,
    Data(u64),
    /// The CRLF after a chunk's data.
    DataEnd,
    /// Trailer lines (dropped), until the empty line; how many bytes so far.
    Trailers(usize),
    Done,
}

#[derive(Debug, PartialEq, Eq)]
pub(crate) enum Decoded {
    Data(Bytes),
    /// Read more, then decode again.
    NeedMore,
    Done,
}

impl Chunked {
    /// Decodes from the front of `buffer`, taking what it uses.
    pub(crate) fn decode(&mut self, buffer: &mut BytesMut) -> Result<Decoded, Malformed> {
        loop {
            match *self {
                Chunked::Size => {
                    let Some(line) = take_line(buffer, MAX_CHUNK_LINE)? else { return Ok(Decoded::NeedMore) };
                    let size = chunk_size(&line)?;
                    *self = if size == 0 { Chunked::Trailers(0) } else { Chunked::Data(size) };
                }
                Chunked::Data(left) => {
                    if buffer.is_empty() {
                        return Ok(Decoded::NeedMore);
                    }
                    let count = usize::try_from(left).unwrap_or(usize::MAX).min(buffer.len());
                    let left = left - count as u64;
                    *self = if left == 0 { Chunked::DataEnd } else { Chunked::Data(left) };
                    return Ok(Decoded::Data(buffer.split_to(count).freeze()));
                }
                Chunked::DataEnd => {
                    if buffer.len() < 2 {
                        return Ok(Decoded::NeedMore);
                    }
                    if &buffer[..2] != b"\r\n" {
                        return Err(Malformed("chunk data longer than its size"));
                    }
                    buffer.advance(2);
                    *self = Chunked::Size;
                }
                Chunked::Trailers(seen) => {
                    let Some(line) = take_line(buffer, MAX_TRAILERS.saturating_sub(seen))? else { return Ok(Decoded::NeedMore) };
                    *self = if line.is_empty() { Chunked::Done } else { Chunked::Trailers(seen + line.len() + 2) };
                }
                Chunked::Done => return Ok(Decoded::Done),
            }
        }
    }
}

/// The next CRLF-ended line, without its CRLF; a bare LF or a line longer
/// than `limit` is refused.
fn take_line(buffer: &mut BytesMut, limit: usize) -> Result<Option<BytesMut>, Malformed> {
    match buffer.iter().position(|&byte| byte == b'\n') {
        Some(end) if end > limit => Err(Malformed("chunk line too long")),
        Some(0) => Err(Malformed("bare LF in chunked framing")),
        Some(end) if buffer[end - 1] != b'\r' => Err(Malformed("bare LF in chunked framing")),
        Some(end) => {
            let mut line = buffer.split_to(end + 1);
            line.truncate(end - 1);
            Ok(Some(line))
        }
        None if buffer.len() > limit => Err(Malformed("chunk line too long")),
        None => Ok(None),
    }
}

/// `1*HEXDIG [ BWS ";" chunk-ext ]`, at most 16 digits.
fn chunk_size(line: &[u8]) -> Result<u64, Malformed> {
    let digits = line.iter().take_while(|byte| byte.is_ascii_hexdigit()).count();
    if digits == 0 || digits > 16 {
        return Err(Malformed("invalid chunk size"));
    }
    let rest = line[digits..].trim_ascii_start();
    if !rest.is_empty() && rest[0] != b';' {
        return Err(Malformed("invalid chunk size"));
    }
    let text = std::str::from_utf8(&line[..digits]).map_err(|_| Malformed("invalid chunk size"))?;
    u64::from_str_radix(text, 16).map_err(|_| Malformed("invalid chunk size"))
}

#[cfg(test)]
#[path = "h1_wire_tests.rs"]
mod tests;
