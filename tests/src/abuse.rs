//! Pure helpers of the HTTP abuse tests (`tests/tests/http_abuse.rs`): raw
//! HTTP/2 frames (the abuse needs frames no well-behaved client library
//! sends), what a raw HTTP/1 exchange answered, and latency percentiles.

use std::time::Duration;

/// The client connection preface (RFC 9113 3.4).
pub const H2_PREFACE: &[u8] = b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n";
pub const FRAME_HEADERS: u8 = 0x1;
pub const FRAME_RST_STREAM: u8 = 0x3;
pub const FRAME_SETTINGS: u8 = 0x4;
pub const FRAME_GOAWAY: u8 = 0x7;
pub const FRAME_CONTINUATION: u8 = 0x9;
pub const FLAG_END_STREAM: u8 = 0x1;
pub const FLAG_END_HEADERS: u8 = 0x4;
pub const CANCEL: u32 = 0x8;
/// The largest frame payload a peer must accept without a SETTINGS change.
pub const DEFAULT_MAX_FRAME: usize = 16_384;

/// One frame: 24-bit length, type, flags, 31-bit stream id, payload.
pub fn h2_frame(kind: u8, flags: u8, stream: u32, payload: &[u8]) -> Vec<u8> {
    let length = u32::try_from(payload.len()).expect("a frame payload fits 24 bits");
    assert!(length < 1 << 24, "a frame payload fits 24 bits");
    let mut frame = length.to_be_bytes()[1..].to_vec();
    frame.extend_from_slice(&[kind, flags]);
    frame.extend_from_slice(&(stream & 0x7fff_ffff).to_be_bytes());
    frame.extend_from_slice(payload);
    frame
}

/// The HPACK block of `GET http://{authority}/`: static-table indexes for
/// the method, scheme and path, the authority as a literal without indexing.
pub fn h2_get_block(authority: &str) -> Vec<u8> {
    let length = u8::try_from(authority.len()).ok().filter(|length| *length < 0x7f).expect("a short authority");
    let mut block = vec![0x82, 0x86, 0x84, 0x01, length];
    block.extend_from_slice(authority.as_bytes());
    block
}

/// `count` copies of the header `x: y` (a literal without indexing, new
/// name): valid HPACK, so a decoder can only refuse it for its size.
pub fn h2_filler_headers(count: usize) -> Vec<u8> {
    [0x00, 0x01, b'x', 0x01, b'y'].repeat(count)
}

/// A frame header as read: (payload length, type, flags, stream id).
pub fn parse_frame_header(header: [u8; 9]) -> (usize, u8, u8, u32) {
    let length = u32::from_be_bytes([0, header[0], header[1], header[2]]);
    let stream = u32::from_be_bytes([header[5], header[6], header[7], header[8]]) & 0x7fff_ffff;
    (length as usize, header[3], header[4], stream)
}

/// The status codes of the HTTP/1 responses in `answer`, in order.
pub fn response_statuses(answer: &[u8]) -> Vec<u16> {
    let text = String::from_utf8_lossy(answer);
    let starts = text.match_indices("HTTP/1.").map(|(index, _)| &text[index..]);
    let codes = starts.filter_map(|response| response.get(9..12)?.parse().ok());
    codes.collect()
}

/// The nearest-rank percentile (`fraction` in 0..=1) of unsorted samples.
pub fn percentile(samples: &[Duration], fraction: f64) -> Duration {
    assert!(!samples.is_empty(), "a percentile of no samples");
    let mut sorted = samples.to_vec();
    sorted.sort_unstable();
    let rank = (fraction * sorted.len() as f64).ceil() as usize;
    sorted[rank.clamp(1, sorted.len()) - 1]
}

/// The middle of unsorted values (the upper one of an even count).
pub fn median(values: &[Duration]) -> Duration {
    let mut sorted = values.to_vec();
    sorted.sort_unstable();
    sorted[sorted.len() / 2]
}

/// `VmRSS` from a `/proc/<pid>/status` text, in KiB.
pub fn vm_rss_kib(status: &str) -> Option<u64> {
    let line = status.lines().find(|line| line.starts_with("VmRSS:"))?;
    line.split_whitespace().nth(1)?.parse().ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn frames_are_encoded_as_rfc_9113_lays_them_out() {
        let frame = h2_frame(FRAME_RST_STREAM, 0, 3, &CANCEL.to_be_bytes());
        assert_eq!(frame, [0, 0, 4, 3, 0, 0, 0, 0, 3, 0, 0, 0, 8]);
        let header: [u8; 9] = frame[..9].try_into().unwrap();
        assert_eq!(parse_frame_header(header), (4, FRAME_RST_STREAM, 0, 3));
        assert_eq!(h2_get_block("a.example"), [&[0x82, 0x86, 0x84, 0x01, 9][..], b"a.example"].concat());
    }

    #[test]
    fn statuses_are_read_from_every_response() {
        let answer = b"HTTP/1.1 200 OK\r\ncontent-length: 2\r\n\r\nokHTTP/1.1 400 Bad Request\r\n\r\n";
        assert_eq!(response_statuses(answer), [200, 400]);
        assert_eq!(response_statuses(b""), Vec::<u16>::new());
    }

    #[test]
    fn percentiles_are_nearest_rank() {
        let samples: Vec<_> = (1..=100).rev().map(Duration::from_millis).collect();
        assert_eq!(percentile(&samples, 0.99), Duration::from_millis(99));
        assert_eq!(percentile(&samples, 0.5), Duration::from_millis(50));
        assert_eq!(percentile(&samples[..1], 0.99), Duration::from_millis(100));
        assert_eq!(median(&[3, 1, 2].map(Duration::from_millis)), Duration::from_millis(2));
    }

    #[test]
    fn rss_is_read_from_proc_status() {
        assert_eq!(vm_rss_kib("Name:\tx\nVmRSS:\t   12345 kB\nThreads: 2\n"), Some(12345));
        assert_eq!(vm_rss_kib("Name:\tx\n"), None);
    }
}
