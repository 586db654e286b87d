use super::*;

const MAX_HEAD: usize = 16 * 1024;

fn taken(bytes: &[u8]) -> (NextRequest, BytesMut) {
    let mut buffer = BytesMut::from(bytes);
    let next = take_request(&mut buffer, MAX_HEAD);
    (next, buffer)
}

/// (bytes, method, URI, asked to close, what stays in the buffer)
type TakenCase = (&'static [u8], &'static str, &'static str, bool, &'static [u8]);

#[test]
fn bodyless_http11_requests_are_taken_and_the_rest_stays() {
    let cases: [TakenCase; 5] = [
        (b"GET /a?b=1 HTTP/1.1\r\nHost: x.example\r\n\r\n", "GET", "/a?b=1", false, b""),
        (b"HEAD / HTTP/1.1\r\nHost: x\r\nConnection: keep-alive, Close\r\n\r\n", "HEAD", "/", true, b""),
        (b"DELETE /d HTTP/1.1\r\nHost: x\r\nContent-Length: 0\r\n\r\n", "DELETE", "/d", false, b""),
        // Pipelined: the second request waits in the buffer.
        (b"GET /1 HTTP/1.1\r\nHost: x\r\n\r\nGET /2 HTTP/1.1\r\n", "GET", "/1", false, b"GET /2 HTTP/1.1\r\n"),
        (b"OPTIONS http://x.example/p HTTP/1.1\r\nHost: y\r\n\r\n", "OPTIONS", "http://x.example/p", false, b""),
    ];
    for (bytes, method, uri, close, rest) in cases {
        let (next, buffer) = taken(bytes);
        let NextRequest::Ready { request, close: asked_close } = next else { panic!("{bytes:?}: {next:?}") };
        assert_eq!(request.method().as_str(), method);
        assert_eq!(request.uri().to_string(), uri);
        assert_eq!(request.version(), Version::HTTP_11);
        assert_eq!(asked_close, close, "{bytes:?}");
        assert_eq!(&buffer[..], rest);
    }
}

#[test]
fn header_values_are_kept_as_sent_under_lower_case_names() {
    let (next, _) = taken(b"GET / HTTP/1.1\r\nHost: x.example\r\nX-Tag: a\r\nx-tag: B c\r\n\r\n");
    let NextRequest::Ready { request, .. } = next else { panic!("{next:?}") };
    let tags: Vec<_> = request.headers().get_all("x-tag").iter().map(|value| value.to_str().unwrap()).collect();
    assert_eq!(tags, ["a", "B c"]);
    assert_eq!(request.headers()["host"], "x.example");
}

#[test]
fn heads_the_fast_path_does_not_serve_are_left_for_hyper_untouched() {
    let cases: [&[u8]; 10] = [
        b"POST / HTTP/1.1\r\nHost: x\r\nContent-Length: 5\r\n\r\nhello",
        b"POST / HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n",
        b"PUT / HTTP/1.1\r\nHost: x\r\nContent-Length: 0\r\nContent-Length: 1\r\n\r\n",
        b"PUT / HTTP/1.1\r\nHost: x\r\nExpect: 100-continue\r\nContent-Length: 0\r\n\r\n",
        b"GET /ws HTTP/1.1\r\nHost: x\r\nConnection: Upgrade\r\nUpgrade: websocket\r\n\r\n",
        b"CONNECT x.example:443 HTTP/1.1\r\nHost: x.example:443\r\n\r\n",
        b"GET / HTTP/1.0\r\nHost: x\r\n\r\n",
        b"GET / HTTP/1.1\r\nHost: x\r\nX-Folded: a\r\n b\r\n\r\n",
        // httparse takes the target; the URI parser refuses it.
        b"GET http://[::1/ HTTP/1.1\r\nHost: x\r\n\r\n",
        b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n",
    ];
    for bytes in cases {
        let (next, buffer) = taken(bytes);
        assert!(matches!(next, NextRequest::HandOver), "{}: {next:?}", String::from_utf8_lossy(bytes));
        assert_eq!(&buffer[..], bytes, "the buffer changed");
    }
}

#[test]
fn incomplete_heads_wait_and_oversized_or_crowded_ones_go_to_hyper() {
    assert!(matches!(taken(b"GET / HTTP/1.1\r\nHost: x\r\n").0, NextRequest::Partial));
    assert!(matches!(taken(b"").0, NextRequest::Partial));
    let long = format!("GET /{} HTTP/1.1\r\nHost: x\r\n\r\n", "a".repeat(MAX_HEAD));
    assert!(matches!(taken(long.as_bytes()).0, NextRequest::HandOver));
    let crowded: String = (0..=MAX_REQUEST_HEADERS).map(|index| format!("X-{index}: 1\r\n")).collect();
    let crowded = format!("GET / HTTP/1.1\r\n{crowded}\r\n");
    assert!(matches!(taken(crowded.as_bytes()).0, NextRequest::HandOver));
}

fn headers(pairs: &[(&'static str, &'static str)]) -> HeaderMap {
    pairs.iter().map(|&(name, value)| (HeaderName::from_static(name), HeaderValue::from_static(value))).collect()
}

#[test]
fn responses_are_framed_as_hyper_frames_them() {
    let cases = [
        (false, StatusCode::OK, Some(12), None, BodyFraming::Length { length: 12, add_header: false }),
        (false, StatusCode::OK, None, Some(3), BodyFraming::Length { length: 3, add_header: true }),
        (false, StatusCode::OK, None, None, BodyFraming::Chunked),
        (true, StatusCode::OK, Some(12), Some(0), BodyFraming::None),
        (false, StatusCode::NO_CONTENT, None, Some(0), BodyFraming::None),
        (false, StatusCode::NOT_MODIFIED, Some(12), None, BodyFraming::None),
    ];
    for (head_request, status, declared, exact, expected) in cases {
        assert_eq!(response_framing(head_request, status, declared, exact), expected, "{head_request} {status} {declared:?} {exact:?}");
    }
}

#[test]
fn the_response_head_carries_its_framing_a_date_and_the_close() {
    const DATE: &[u8] = b"Sat, 05 Dec 2026 20:00:00 GMT";
    let upstream = headers(&[("content-type", "text/plain"), ("transfer-encoding", "chunked")]);
    let dated = headers(&[("date", "Fri, 04 Dec 2026 00:00:00 GMT"), ("connection", "close")]);
    let sized = headers(&[("content-length", "12"), ("content-length", "x"), ("connection", "keep-alive, CLOSE")]);
    let answer = |head_request, exact_length, asked_close| AnswerTo { head_request, exact_length, asked_close };
    let written = |framing, close| Written { framing, close };
    let cases = [
        (
            StatusCode::OK,
            &upstream,
            answer(false, Some(5), false),
            "HTTP/1.1 200 OK\r\ncontent-type: text/plain\r\ndate: Sat, 05 Dec 2026 20:00:00 GMT\r\ncontent-length: 5\r\n\r\n",
            written(BodyFraming::Length { length: 5, add_header: true }, false),
        ),
        (
            StatusCode::NOT_FOUND,
            &upstream,
            answer(false, None, true),
            "HTTP/1.1 404 Not Found\r\ncontent-type: text/plain\r\ndate: Sat, 05 Dec 2026 20:00:00 GMT\r\ntransfer-encoding: chunked\r\nconnection: close\r\n\r\n",
            written(BodyFraming::Chunked, true),
        ),
        (
            StatusCode::REQUEST_TIMEOUT,
            &dated,
            answer(true, Some(0), true),
            "HTTP/1.1 408 Request Timeout\r\ndate: Fri, 04 Dec 2026 00:00:00 GMT\r\nconnection: close\r\n\r\n",
            written(BodyFraming::None, true),
        ),
        // The first Content-Length frames the body; a response asking to close closes.
        (
            StatusCode::OK,
            &sized,
            answer(false, None, false),
            "HTTP/1.1 200 OK\r\ncontent-length: 12\r\ncontent-length: x\r\nconnection: keep-alive, CLOSE\r\ndate: Sat, 05 Dec 2026 20:00:00 GMT\r\n\r\n",
            written(BodyFraming::Length { length: 12, add_header: false }, true),
        ),
        // A HEAD answer carries the length of the body it leaves out.
        (
            StatusCode::NOT_FOUND,
            &upstream,
            answer(true, Some(21), false),
            "HTTP/1.1 404 Not Found\r\ncontent-type: text/plain\r\ndate: Sat, 05 Dec 2026 20:00:00 GMT\r\ncontent-length: 21\r\n\r\n",
            written(BodyFraming::None, false),
        ),
        (
            StatusCode::NOT_MODIFIED,
            &upstream,
            answer(true, Some(21), false),
            "HTTP/1.1 304 Not Modified\r\ncontent-type: text/plain\r\ndate: Sat, 05 Dec 2026 20:00:00 GMT\r\n\r\n",
            written(BodyFraming::None, false),
        ),
    ];
    for (status, headers, to, expected_head, expected) in cases {
        let mut out = Vec::new();
        let written = write_response_head(&mut out, status, headers, to, DATE);
        assert_eq!(String::from_utf8(out).unwrap(), expected_head);
        assert_eq!(written, expected, "{headers:?} {to:?}");
    }
}
