//! A client's request body as the proxy streams it upstream: a client that
//! stops sending it mid-way (a slow-body attack) is cut after the body read
//! timeout, and whatever went wrong on the client's side is told apart from
//! an upstream failure, so that the client gets 408 or 400, not 502.

use std::fmt;
use std::pin::Pin;
use std::task::{Context, Poll};
use std::time::Duration;

use bytes::Bytes;
use hyper::body::{Body, Frame, SizeHint};
use tokio::time::{Instant, Sleep};

use super::response::BoxError;

/// Why a client's body ended early.
#[derive(Debug)]
pub(crate) enum ClientBodyError {
    /// No byte of it for the body read timeout (nginx's `client_body_timeout`).
    TimedOut(Duration),
    /// Malformed (a bad chunk size, say) or cut by the client.
    Failed(BoxError),
}

impl fmt::Display for ClientBodyError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            ClientBodyError::TimedOut(timeout) => write!(f, "the client sent no request body byte for {timeout:?}"),
            ClientBodyError::Failed(error) => write!(f, "the client's request body failed: {error}"),
        }
    }
}

impl std::error::Error for ClientBodyError {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        match self {
            ClientBodyError::TimedOut(_) => None,
            ClientBodyError::Failed(error) => Some(error.as_ref()),
        }
    }
}

pub(crate) struct ClientBody<B> {
    body: B,
    timeout: Duration,
    /// Restarted by every frame the client sends.
    deadline: Pin<Box<Sleep>>,
}

impl<B> ClientBody<B> {
    pub(crate) fn new(body: B, timeout: Duration) -> ClientBody<B> {
        ClientBody { body, timeout, deadline: Box::pin(tokio::time::sleep(timeout)) }
    }
}

impl<B> Body for ClientBody<B>
where
    B: Body<Data = Bytes> + Unpin,
    B::Error: Into<BoxError>,
{
    type Data = Bytes;
    type Error = ClientBodyError;

    fn poll_frame(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Result<Frame<Bytes>, ClientBodyError>>> {
        match Pin::new(&mut self.body).poll_frame(cx) {
            Poll::Ready(frame) => {
                let next = Instant::now() + self.timeout;
                self.deadline.as_mut().reset(next);
                Poll::Ready(frame.map(|frame| frame.map_err(|error| ClientBodyError::Failed(error.into()))))
            }
            Poll::Pending => match self.deadline.as_mut().poll(cx) {
                Poll::Ready(()) => Poll::Ready(Some(Err(ClientBodyError::TimedOut(self.timeout)))),
                Poll::Pending => Poll::Pending,
            },
        }
    }

    fn is_end_stream(&self) -> bool {
        self.body.is_end_stream()
    }

    fn size_hint(&self) -> SizeHint {
        self.body.size_hint()
    }
}
