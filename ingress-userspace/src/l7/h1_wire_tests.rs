use super::*;

fn headers(pairs: &[(&'static str, &'static str)]) -> HeaderMap {
    let mut map = HeaderMap::new();
    for &(name, value) in pairs {
        map.append(HeaderName::from_static(name), HeaderValue::from_static(value));
    }
    map
}

#[test]
fn request_bodies_are_framed_as_hyper_frames_them() {
    let with_length = headers(&[("content-length", "5")]);
    let none = HeaderMap::new();
    let cases = [
        (Method::GET, &none, true, Some(0), Outgoing::NoBody),
        (Method::POST, &with_length, true, Some(0), Outgoing::NoBody),
        (Method::POST, &with_length, false, Some(5), Outgoing::Length { length: 5, add_header: false }),
        (Method::PUT, &none, false, Some(3), Outgoing::Length { length: 3, add_header: true }),
        (Method::POST, &none, false, None, Outgoing::Chunked),
        (Method::GET, &none, false, None, Outgoing::NoBody),
        (Method::HEAD, &none, false, None, Outgoing::NoBody),
    ];
    for (method, headers, end_stream, exact, expected) in cases {
        assert_eq!(outgoing(&method, headers, end_stream, exact), expected, "{method} {headers:?} {end_stream} {exact:?}");
    }
}

#[test]
fn the_request_head_is_written_as_is_with_its_framing_header() {
    let map = headers(&[("host", "a.example"), ("x-forwarded-for", "192.0.2.1"), ("accept", "*/*")]);
    let cases = [
        (Outgoing::NoBody, ""),
        (Outgoing::Length { length: 3, add_header: false }, ""),
        (Outgoing::Length { length: 3, add_header: true }, "content-length: 3\r\n"),
        (Outgoing::Chunked, "transfer-encoding: chunked\r\n"),
    ];
    for (framing, extra) in cases {
        let mut out = Vec::new();
        write_request_head(&mut out, &Method::POST, "/p?q=1", &map, &[], framing);
        let expected = format!("POST /p?q=1 HTTP/1.1\r\nhost: a.example\r\nx-forwarded-for: 192.0.2.1\r\naccept: */*\r\n{extra}\r\n");
        assert_eq!(String::from_utf8(out).unwrap(), expected, "{framing:?}");
    }
    // Added headers replace the client's of the same name, and come last.
    let added = [(HeaderName::from_static("x-forwarded-for"), HeaderValue::from_static("192.0.2.9")), (hyper::header::HOST, HeaderValue::from_static("b.example"))];
    let mut out = Vec::new();
    write_request_head(&mut out, &Method::GET, "/", &map, &added, Outgoing::NoBody);
    let expected = "GET / HTTP/1.1\r\naccept: */*\r\nx-forwarded-for: 192.0.2.9\r\nhost: b.example\r\n\r\n";
    assert_eq!(String::from_utf8(out).unwrap(), expected);
    let mut out = Vec::new();
    write_chunk_size(&mut out, 255);
    assert_eq!(out, b"ff\r\n");
}

/// What `take_response_head` makes of a buffer: `Ok(Some((status, framing,
/// keep_alive, what is left in the buffer)))`.
type HeadOutcome = Result<Option<(u16, Framing, bool, &'static str)>, &'static str>;

#[test]
fn response_heads_are_taken_only_when_clearly_framed() {
    let too_long_value = format!("HTTP/1.1 200 OK\r\nx-big: {}", "a".repeat(MAX_RESPONSE_HEAD + 1));
    let too_long_value: &'static str = Box::leak(too_long_value.into_boxed_str());
    let too_many: String = (0..=MAX_RESPONSE_HEADERS).map(|index| format!("x-h{index}: 1\r\n")).collect();
    let too_many: &'static str = Box::leak(format!("HTTP/1.1 200 OK\r\n{too_many}\r\n").into_boxed_str());
    let cases: Vec<(&str, Method, &str, HeadOutcome)> = vec![
        ("length", Method::GET, "HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok", Ok(Some((200, Framing::Length(2), true, "ok")))),
        ("no reason phrase", Method::GET, "HTTP/1.1 200 \r\nContent-Length: 0\r\n\r\n", Ok(Some((200, Framing::Length(0), true, "")))),
        ("1.0 close", Method::GET, "HTTP/1.0 200 OK\r\nConnection: close\r\nContent-Length: 2\r\n\r\nok", Ok(Some((200, Framing::Length(2), false, "ok")))),
        ("1.0 keep-alive", Method::GET, "HTTP/1.0 200 OK\r\nConnection: Keep-Alive\r\nContent-Length: 2\r\n\r\nok", Ok(Some((200, Framing::Length(2), true, "ok")))),
        ("1.1 close", Method::GET, "HTTP/1.1 200 OK\r\nConnection: keep-alive, close\r\nContent-Length: 0\r\n\r\n", Ok(Some((200, Framing::Length(0), false, "")))),
        ("until close", Method::GET, "HTTP/1.1 200 OK\r\n\r\nbody", Ok(Some((200, Framing::UntilClose, false, "body")))),
        ("chunked", Method::GET, "HTTP/1.1 200 OK\r\ntransfer-encoding: Chunked\r\n\r\n0\r\n\r\n", Ok(Some((200, Framing::Chunked, true, "0\r\n\r\n")))),
        ("HEAD", Method::HEAD, "HTTP/1.1 200 OK\r\nContent-Length: 9\r\n\r\n", Ok(Some((200, Framing::Empty, true, "")))),
        ("204", Method::GET, "HTTP/1.1 204 No Content\r\n\r\n", Ok(Some((204, Framing::Empty, true, "")))),
        ("304", Method::GET, "HTTP/1.1 304 Not Modified\r\nContent-Length: 9\r\n\r\n", Ok(Some((304, Framing::Empty, true, "")))),
        ("interim heads dropped", Method::GET, "HTTP/1.1 100 Continue\r\n\r\nHTTP/1.1 103 Early Hints\r\nLink: </a>\r\n\r\nHTTP/1.1 200 OK\r\nContent-Length: 0\r\n\r\n", Ok(Some((200, Framing::Length(0), true, "")))),
        ("repeated equal lengths", Method::GET, "HTTP/1.1 200 OK\r\nContent-Length: 2\r\nContent-Length: 2, 2\r\n\r\nok", Ok(Some((200, Framing::Length(2), true, "ok")))),
        ("partial", Method::GET, "HTTP/1.1 200 OK\r\nContent-Le", Ok(None)),
        ("partial interim", Method::GET, "HTTP/1.1 100 Continue\r\n\r\nHTTP/1.1 2", Ok(None)),
        ("empty", Method::GET, "", Ok(None)),
        ("bad status code", Method::GET, "HTTP/1.1 2000 OK\r\n\r\n", Err("bad status line")),
        ("status code 99", Method::GET, "HTTP/1.1 099 Low\r\n\r\n", Err("bad status code")),
        ("HTTP/2 status line", Method::GET, "HTTP/2.0 200 OK\r\n\r\n", Err("bad status line")),
        ("no status", Method::GET, "HTTP/1.1 OK\r\n\r\n", Err("bad status line")),
        ("not HTTP", Method::GET, "hello\r\n\r\n", Err("bad status line")),
        ("differing lengths", Method::GET, "HTTP/1.1 200 OK\r\nContent-Length: 2\r\nContent-Length: 3\r\n\r\nok", Err("differing Content-Length values")),
        ("differing length list", Method::GET, "HTTP/1.1 200 OK\r\nContent-Length: 2, 3\r\n\r\nok", Err("differing Content-Length values")),
        ("signed length", Method::GET, "HTTP/1.1 200 OK\r\nContent-Length: +2\r\n\r\nok", Err("invalid Content-Length")),
        ("negative length", Method::GET, "HTTP/1.1 200 OK\r\nContent-Length: -1\r\n\r\n", Err("invalid Content-Length")),
        ("empty length", Method::GET, "HTTP/1.1 200 OK\r\nContent-Length: \r\n\r\n", Err("invalid Content-Length")),
        ("hex length", Method::GET, "HTTP/1.1 200 OK\r\nContent-Length: 0x2\r\n\r\nok", Err("invalid Content-Length")),
        ("overflowing length", Method::GET, "HTTP/1.1 200 OK\r\nContent-Length: 18446744073709551616\r\n\r\n", Err("invalid Content-Length")),
        ("length and chunked", Method::GET, "HTTP/1.1 200 OK\r\nContent-Length: 2\r\nTransfer-Encoding: chunked\r\n\r\n", Err("both Content-Length and Transfer-Encoding")),
        ("gzip, chunked", Method::GET, "HTTP/1.1 200 OK\r\nTransfer-Encoding: gzip, chunked\r\n\r\n", Err("a Transfer-Encoding other than chunked")),
        ("chunked twice", Method::GET, "HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\nTransfer-Encoding: chunked\r\n\r\n", Err("a Transfer-Encoding other than chunked")),
        ("identity", Method::GET, "HTTP/1.1 200 OK\r\nTransfer-Encoding: identity\r\n\r\n", Err("a Transfer-Encoding other than chunked")),
        ("101 unasked", Method::GET, "HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\n\r\n", Err("101 to a request that did not ask to switch protocols")),
        ("space in a name", Method::GET, "HTTP/1.1 200 OK\r\nbad name: 1\r\nContent-Length: 0\r\n\r\n", Err("bad header line")),
        ("obs-fold", Method::GET, "HTTP/1.1 200 OK\r\nx-a: 1\r\n 2\r\nContent-Length: 0\r\n\r\n", Err("bad header line")),
        ("control byte in a value", Method::GET, "HTTP/1.1 200 OK\r\nx-a: 1\x01\r\nContent-Length: 0\r\n\r\n", Err("bad header line")),
        ("too many headers", Method::GET, too_many, Err("too many header lines")),
        ("oversized head", Method::GET, too_long_value, Err("response head too large")),
    ];
    for (name, method, input, expected) in cases {
        let mut buffer = BytesMut::from(input.as_bytes());
        let taken = take_response_head(&mut buffer, &method);
        let got: HeadOutcome = match taken {
            Ok(Some(head)) => {
                let left: &'static str = Box::leak(String::from_utf8_lossy(&buffer).into_owned().into_boxed_str());
                Ok(Some((head.status.as_u16(), head.framing, head.keep_alive, left)))
            }
            Ok(None) => Ok(None),
            Err(Malformed(reason)) => Err(reason),
        };
        assert_eq!(got, expected, "{name}");
    }
}

#[test]
fn header_values_share_the_heads_bytes_and_repeat_in_order() {
    let mut buffer = BytesMut::from(&b"HTTP/1.1 200 OK\r\nSet-Cookie: a=1\r\nX-Custom: v\r\nSet-Cookie: b=2\r\nContent-Length: 0\r\n\r\n"[..]);
    let head = take_response_head(&mut buffer, &Method::GET).unwrap().unwrap();
    let cookies: Vec<_> = head.headers.get_all("set-cookie").iter().map(|value| value.to_str().unwrap()).collect();
    assert_eq!(cookies, ["a=1", "b=2"]);
    assert_eq!(head.headers.get("x-custom").unwrap(), "v");
    assert_eq!(head.version, Version::HTTP_11);
}

/// Feeds `input` in pieces of `step` bytes; the data decoded, whether the
/// last chunk was seen, what is left after it, or the first error.
fn decode_all(input: &[u8], step: usize) -> Result<(String, bool, String), &'static str> {
    let mut decoder = Chunked::Size;
    let mut buffer = BytesMut::new();
    let mut data = Vec::new();
    for (index, piece) in input.chunks(step).enumerate() {
        buffer.extend_from_slice(piece);
        loop {
            match decoder.decode(&mut buffer).map_err(|Malformed(reason)| reason)? {
                Decoded::Data(bytes) => data.extend_from_slice(&bytes),
                Decoded::NeedMore => break,
                Decoded::Done => {
                    // What the decoder left, then what was not fed yet.
                    buffer.extend_from_slice(&input[((index + 1) * step).min(input.len())..]);
                    let left = String::from_utf8_lossy(&buffer).into_owned();
                    return Ok((String::from_utf8(data).unwrap(), true, left));
                }
            }
        }
    }
    Ok((String::from_utf8(data).unwrap(), false, String::from_utf8_lossy(&buffer).into_owned()))
}

/// The data, whether the last chunk was seen and what is left after it; or the error.
type ChunkedOutcome<'a> = Result<(&'a str, bool, &'a str), &'static str>;

#[test]
fn chunked_bodies_decode_whole_or_not_at_all() {
    let long_line = format!("1;{}\r\nx\r\n0\r\n\r\n", "e".repeat(MAX_CHUNK_LINE));
    let cases: Vec<(&str, String, ChunkedOutcome)> = vec![
        ("one chunk", "2\r\nok\r\n0\r\n\r\n".into(), Ok(("ok", true, ""))),
        ("upper-case hex, two chunks", "A\r\n0123456789\r\n1\r\n!\r\n0\r\n\r\n".into(), Ok(("0123456789!", true, ""))),
        ("extensions", "2;name=value\r\nok\r\n0 ; last\r\n\r\n".into(), Ok(("ok", true, ""))),
        ("trailers dropped", "2\r\nok\r\n0\r\nx-checksum: 1\r\nx-more: 2\r\n\r\n".into(), Ok(("ok", true, ""))),
        ("bytes after the end are left", "0\r\n\r\nHTTP/1.1 200 OK".into(), Ok(("", true, "HTTP/1.1 200 OK"))),
        ("truncated data", "5\r\nab".into(), Ok(("ab", false, ""))),
        ("truncated before the last chunk", "2\r\nok\r\n".into(), Ok(("ok", false, ""))),
        ("no size", "\r\nok\r\n".into(), Err("invalid chunk size")),
        ("not hex", "g\r\nok\r\n".into(), Err("invalid chunk size")),
        ("junk after the size", "2 x\r\nok\r\n".into(), Err("invalid chunk size")),
        ("negative size", "-2\r\nok\r\n".into(), Err("invalid chunk size")),
        ("seventeen digits", "00000000000000002\r\nok\r\n".into(), Err("invalid chunk size")),
        ("data longer than its size", "2\r\nokX\r\n0\r\n\r\n".into(), Err("chunk data longer than its size")),
        ("bare LF", "2\nok\n0\n\n".into(), Err("bare LF in chunked framing")),
        ("size line too long", long_line, Err("chunk line too long")),
    ];
    for (name, input, expected) in cases {
        for step in [1, 3, input.len().max(1)] {
            let got = decode_all(input.as_bytes(), step);
            let got = got.as_ref().map(|(data, done, left)| (data.as_str(), *done, left.as_str())).map_err(|reason| *reason);
            assert_eq!(got, expected, "{name}, fed {step} bytes at a time");
        }
    }
}

#[test]
fn keep_alive_follows_the_version_and_the_connection_header() {
    let cases = [
        (Version::HTTP_11, None, true),
        (Version::HTTP_11, Some("close"), false),
        (Version::HTTP_11, Some("Keep-Alive, Close"), false),
        (Version::HTTP_10, None, false),
        (Version::HTTP_10, Some("keep-alive"), true),
        (Version::HTTP_10, Some("close"), false),
    ];
    for (version, connection, expected) in cases {
        let mut map = HeaderMap::new();
        if let Some(connection) = connection {
            map.insert(CONNECTION, HeaderValue::from_static(connection));
        }
        assert_eq!(keeps_alive(version, &map), expected, "{version:?} {connection:?}");
    }
}
