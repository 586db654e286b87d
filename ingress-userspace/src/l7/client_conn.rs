//! The client side of an HTTP/1.1 connection, served by the proxy itself
//! for the requests most clients send (no body, no protocol switch: see
//! `client_wire`): the head is parsed from the connection's own buffer, the
//! request routed and answered as any other, and the answer's head and
//! ready body go out in one write. The first request the fast path does not
//! serve hands the connection, with everything read and not yet taken, to
//! hyper's server for the rest of its life, so bodies, `Expect`, upgrades,
//! HTTP/1.0 and malformed heads get hyper's handling. hyper's own server
//! cost more per request than routing and forwarding together (`bench_l7`,
//! keep-alive pods).

use std::cell::RefCell;
use std::sync::Arc;
use std::time::{SystemTime, UNIX_EPOCH};

use bytes::{Bytes, BytesMut};
use http_body_util::Empty;
use hyper::Method;
use hyper::body::Body;
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use tokio::time::Instant;

use super::body_out::{self, BodyOutError};
use super::client_wire::{self, AnswerTo, BodyFraming, NextRequest, Written};
use super::forward::Client;
use super::misdirected::TlsSession;
use super::proxy::Proxy;
use super::response::ProxyBody;

/// What one read asks room for at least.
const READ_SIZE: usize = 4096;
/// What a connection's write buffer starts with: a usual answer's head and
/// a small body fit.
const WRITE_CAPACITY: usize = 2048;

impl Proxy {
    /// Serves requests from `buffer` (which holds a complete first head)
    /// and then from `io` until the client closes, idles out, asks to
    /// close, or sends what only hyper serves.
    pub(crate) async fn serve_http1<IO>(self: Arc<Self>, mut io: IO, mut buffer: BytesMut, client: Arc<Client>, tls: Option<Arc<TlsSession>>)
    where
        IO: AsyncRead + AsyncWrite + Unpin + Send + 'static,
    {
        let (max_head, idle_timeout) = (self.options.max_header_bytes, self.options.client_idle_timeout);
        let mut write = Vec::with_capacity(WRITE_CAPACITY);
        // One timer for the connection's life, moved only when it fires
        // before the deadline it stands for: resetting it for every request
        // cost a timer-wheel update each.
        let idle = tokio::time::sleep(idle_timeout);
        tokio::pin!(idle);
        loop {
            // hyper times a head and an idle keep-alive connection alike.
            let deadline = Instant::now() + idle_timeout;
            let (request, asked_close) = loop {
                match client_wire::take_request(&mut buffer, max_head) {
                    NextRequest::Ready { request, close } => break (request, close),
                    NextRequest::Partial if buffer.len() <= max_head => {}
                    NextRequest::Partial | NextRequest::HandOver => {
                        return self.serve_with_hyper(io, buffer.freeze(), client, tls).await;
                    }
                }
                buffer.reserve(READ_SIZE);
                tokio::select! {
                    biased;
                    read = io.read_buf(&mut buffer) => match read {
                        Ok(count) if count > 0 => {}
                        // Closed or failed: nothing to answer.
                        _ => return,
                    },
                    () = &mut idle => {
                        if Instant::now() >= deadline {
                            return;
                        }
                        idle.as_mut().reset(deadline);
                    }
                }
            };
            let head_request = request.method() == Method::HEAD;
            let request = request.map(|()| Empty::<Bytes>::new());
            let Ok(response) = self.clone().handle(request, client.clone(), tls.clone()).await else {
                return;
            };
            let close = match write_response(&mut io, &mut write, response, head_request, asked_close).await {
                Ok(close) => close,
                Err(_) => return tracing::debug!(peer = %client.addr, "L7 client connection ended while answering"),
            };
            if close {
                let _ = io.shutdown().await;
                return;
            }
        }
    }
}

/// Writes the whole response, its head batched with the body that is
/// ready; `Ok(true)`: the connection closes after it.
async fn write_response(
    io: &mut (impl AsyncWrite + Unpin),
    write: &mut Vec<u8>,
    response: hyper::Response<ProxyBody>,
    head_request: bool,
    asked_close: bool,
) -> Result<bool, BodyOutError> {
    let (parts, mut body) = response.into_parts();
    let to = AnswerTo { head_request, exact_length: body.size_hint().exact(), asked_close };
    write.clear();
    let Written { framing, close } = with_date(|date| client_wire::write_response_head(write, parts.status, &parts.headers, to, date));
    let length = match framing {
        // Dropped unread: an upstream's body that is complete hands its
        // connection back to the pool as it drops.
        BodyFraming::None => return body_out::flush(io, write).await.map(|()| close),
        BodyFraming::Length { length, .. } => Some(length),
        BodyFraming::Chunked => None,
    };
    body_out::write_body(io, write, &mut body, length).await.map(|()| close)
}

/// The `Date` of a response as hyper renders it, once a second per thread.
fn with_date<R>(write: impl FnOnce(&[u8]) -> R) -> R {
    thread_local! {
        static DATE: RefCell<(u64, String)> = const { RefCell::new((u64::MAX, String::new())) };
    }
    let now = SystemTime::now();
    let second = now.duration_since(UNIX_EPOCH).map_or(0, |since| since.as_secs());
    DATE.with_borrow_mut(|(at, text)| {
        if *at != second {
            *at = second;
            *text = httpdate::fmt_http_date(now);
        }
        write(text.as_bytes())
    })
}
