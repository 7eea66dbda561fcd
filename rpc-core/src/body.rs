//! Reading HTTP bodies under a size limit (shared by the front and the backend).

use bytes::{Buf, BufMut, Bytes, BytesMut};
use http::header::CONTENT_LENGTH;
use http::HeaderMap;
use http_body_util::{BodyExt, LengthLimitError, Limited};

use crate::{BoxError, ByteBudget, BytePermit};

/// Why a body could not be read.
pub(crate) enum ReadError {
    /// Over the limit, by its `Content-Length` or while reading.
    TooLarge,
    /// The shared byte budget has no room for it now.
    NoBudget,
    /// The stream failed (connection reset, client gone).
    Failed(#[cfg_attr(not(feature = "http-backend"), allow(dead_code))] BoxError),
}

/// The first bytes of every request body, not counted in the budget.
pub(crate) const FREE_BYTES: usize = 64 * 1024;

/// How a body's bytes are accounted while it is read.
#[derive(Clone, Copy)]
pub(crate) enum Budget<'a> {
    /// Not at all (the size limit alone bounds it).
    #[cfg_attr(not(feature = "http-backend"), allow(dead_code))]
    None,
    /// The bytes beyond the first [`FREE_BYTES`] are taken from the budget
    /// as they arrive (a declared length up front); when it has no room,
    /// `NoBudget` at once — the caller answers "busy". Request bodies:
    /// ordinary calls never touch the budget, so bulk ones cannot crowd
    /// them out; the connection caps bound what they hold together.
    #[cfg_attr(not(feature = "server"), allow(dead_code))]
    FailFast(&'a ByteBudget),
    /// Every byte is taken from the budget, waiting for room (the caller
    /// bounds the wait with its deadline; the kernel's flow control holds
    /// the rest back meanwhile). A body bigger than the whole budget is
    /// `TooLarge`. Backend answers.
    #[cfg_attr(not(feature = "http-backend"), allow(dead_code))]
    Wait(&'a ByteBudget),
}

/// Reads a whole body of at most `limit` bytes. A declared `Content-Length`
/// over the limit is refused before a byte is read. The permit (with a
/// budget) holds the body's bytes until it is dropped.
pub(crate) async fn read_body<B>(
    headers: &HeaderMap,
    body: B,
    limit: usize,
    budget: Budget<'_>,
) -> Result<(Bytes, Option<BytePermit>), ReadError>
where
    B: http_body::Body,
    B::Error: Into<BoxError>,
{
    let declared = headers
        .get(CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse::<u64>().ok());
    if declared.is_some_and(|n| n > limit as u64) {
        return Err(ReadError::TooLarge);
    }
    let (budget, free, wait) = match budget {
        Budget::None => {
            return match Limited::new(body, limit).collect().await {
                Ok(collected) => Ok((collected.to_bytes(), None)),
                Err(e) if e.is::<LengthLimitError>() => Err(ReadError::TooLarge),
                Err(e) => Err(ReadError::Failed(e)),
            };
        }
        Budget::FailFast(b) => (b, FREE_BYTES, false),
        Budget::Wait(b) => (b, 0, true),
    };
    let mut held = budget.empty();
    if let (Some(n), false) = (declared, wait) {
        if !held.try_grow((n as usize).saturating_sub(free)) {
            return Err(ReadError::NoBudget);
        }
    }
    let mut body = std::pin::pin!(body);
    let mut buf = Accum::default();
    loop {
        // The frame's error is dealt with before any other await (a body's
        // error type need not be `Send`).
        let data = match body.frame().await {
            None => break,
            Some(Err(e)) => return Err(ReadError::Failed(e.into())),
            Some(Ok(frame)) => match frame.into_data() {
                Ok(data) => data,
                Err(_) => continue,
            },
        };
        let len = buf.len() + data.remaining();
        if len > limit {
            return Err(ReadError::TooLarge);
        }
        let owed = len.saturating_sub(free);
        if owed > held.bytes() {
            let more = owed - held.bytes();
            if wait {
                if !held.grow(more).await {
                    return Err(ReadError::TooLarge);
                }
            } else if !held.try_grow(more) {
                return Err(ReadError::NoBudget);
            }
        }
        buf.push(data);
    }
    Ok((buf.freeze(), Some(held)))
}

/// A body being collected: the first chunk kept as it is (most bodies are
/// one chunk: no copy), later ones appended.
#[derive(Default)]
struct Accum {
    first: Option<Bytes>,
    rest: Option<BytesMut>,
}

impl Accum {
    fn len(&self) -> usize {
        self.first.as_ref().map_or(0, Bytes::len) + self.rest.as_ref().map_or(0, BytesMut::len)
    }

    fn push(&mut self, mut data: impl Buf) {
        let n = data.remaining();
        if self.first.is_none() && self.rest.is_none() {
            self.first = Some(data.copy_to_bytes(n));
            return;
        }
        let rest = self.rest.get_or_insert_with(|| {
            let first = self.first.take().unwrap_or_default();
            let mut b = BytesMut::with_capacity(first.len() + n);
            b.extend_from_slice(&first);
            b
        });
        rest.put(data);
    }

    fn freeze(self) -> Bytes {
        match (self.first, self.rest) {
            (_, Some(rest)) => rest.freeze(),
            (Some(first), None) => first,
            (None, None) => Bytes::new(),
        }
    }
}
