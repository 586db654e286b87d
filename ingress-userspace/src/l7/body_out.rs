//! A message body written to an HTTP/1.1 peer, the same way both ways: a
//! request body to an upstream, a response body to a client. Framed by its
//! Content-Length or chunked; what the body has ready goes out in one write
//! with what is already buffered (the head), and whatever is buffered is
//! written as soon as the body has nothing ready, so a slow body never
//! holds back what came before it.

use std::io;

use bytes::Bytes;
use futures::FutureExt;
use http_body_util::BodyExt;
use hyper::body::Body;
use tokio::io::{AsyncWrite, AsyncWriteExt};

use super::h1_wire::{self, LAST_CHUNK};
use super::response::BoxError;

/// Body bytes gathered before they are written out.
const WRITE_BATCH: usize = 16 * 1024;

#[derive(Debug)]
pub(crate) enum BodyOutError {
    Io(io::Error),
    /// The body itself failed.
    Body(BoxError),
    LongerThanDeclared,
    ShorterThanDeclared,
}

/// Writes `body` after what `write` holds, then all of it: exactly `length`
/// bytes when it is declared, else chunked. Trailers and empty frames are
/// not sent on.
pub(crate) async fn write_body<B>(
    stream: &mut (impl AsyncWrite + Unpin),
    write: &mut Vec<u8>,
    body: &mut B,
    length: Option<u64>,
) -> Result<(), BodyOutError>
where
    B: Body<Data = Bytes> + Unpin,
    B::Error: Into<BoxError>,
{
    let mut sent: u64 = 0;
    loop {
        let frame = match body.frame().now_or_never() {
            Some(frame) => frame,
            None => {
                flush(stream, write).await?;
                body.frame().await
            }
        };
        let data = match frame {
            None => break,
            Some(Err(error)) => return Err(BodyOutError::Body(error.into())),
            Some(Ok(frame)) => match frame.into_data() {
                Ok(data) if !data.is_empty() => data,
                _ => continue,
            },
        };
        sent += data.len() as u64;
        if length.is_some_and(|length| sent > length) {
            return Err(BodyOutError::LongerThanDeclared);
        }
        if length.is_none() {
            h1_wire::write_chunk_size(write, data.len());
        }
        if write.len() + data.len() > WRITE_BATCH {
            flush(stream, write).await?;
            stream.write_all(&data).await.map_err(BodyOutError::Io)?;
        } else {
            write.extend_from_slice(&data);
        }
        if length.is_none() {
            write.extend_from_slice(b"\r\n");
        }
    }
    match length {
        Some(length) if sent != length => return Err(BodyOutError::ShorterThanDeclared),
        Some(_) => {}
        None => write.extend_from_slice(LAST_CHUNK),
    }
    flush(stream, write).await
}

/// Writes out and empties `write`.
pub(crate) async fn flush(stream: &mut (impl AsyncWrite + Unpin), write: &mut Vec<u8>) -> Result<(), BodyOutError> {
    if !write.is_empty() {
        stream.write_all(write).await.map_err(BodyOutError::Io)?;
        write.clear();
    }
    Ok(())
}
