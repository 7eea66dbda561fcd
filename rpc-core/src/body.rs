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

/// Reads a whole body of at most `limit` bytes. A declared `Content-Length`
/// over the limit is refused before a byte is read.
///
/// With a `budget`, the bytes beyond the first [`FREE_BYTES`] are taken
/// from it as they arrive (a declared length up front) and held by the
/// returned permit; when it has no room, `NoBudget` at once (nothing is
/// waited for: the caller answers "busy"). Ordinary calls (a few hundred
/// bytes) never touch the budget, so bulk bodies cannot crowd them out;
/// the connection caps bound what they hold together.
pub(crate) async fn read_limited<B>(
    headers: &HeaderMap,
    body: B,
    limit: usize,
    budget: Option<&ByteBudget>,
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
    let Some(budget) = budget else {
        return match Limited::new(body, limit).collect().await {
            Ok(collected) => Ok((collected.to_bytes(), None)),
            Err(e) if e.is::<LengthLimitError>() => Err(ReadError::TooLarge),
            Err(e) => Err(ReadError::Failed(e)),
        };
    };
    let mut held = budget.empty();
    if let Some(n) = declared {
        if !held.try_grow((n as usize).saturating_sub(FREE_BYTES)) {
            return Err(ReadError::NoBudget);
        }
    }
    let mut body = std::pin::pin!(body);
    let mut buf = Accum::default();
    while let Some(frame) = body.frame().await {
        let frame = frame.map_err(|e| ReadError::Failed(e.into()))?;
        let Ok(data) = frame.into_data() else {
            continue;
        };
        let len = buf.len() + data.remaining();
        if len > limit {
            return Err(ReadError::TooLarge);
        }
        let owed = len.saturating_sub(FREE_BYTES);
        if owed > held.bytes() && !held.try_grow(owed - held.bytes()) {
            return Err(ReadError::NoBudget);
        }
        buf.push(data);
    }
    Ok((buf.freeze(), Some(held)))
}

/// Reads a whole body of at most `limit` bytes into `budget`, waiting for
/// room as it arrives (the caller bounds the wait with its deadline). A
/// body bigger than the whole budget is `TooLarge`.
#[cfg(feature = "http-backend")]
pub(crate) async fn read_budgeted<B>(
    headers: &HeaderMap,
    body: B,
    limit: usize,
    budget: &ByteBudget,
) -> Result<(Bytes, BytePermit), ReadError>
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
    let mut held = budget.empty();
    let mut body = std::pin::pin!(body);
    let mut buf = Accum::default();
    while let Some(frame) = body.frame().await {
        let frame = frame.map_err(|e| ReadError::Failed(e.into()))?;
        let Ok(data) = frame.into_data() else {
            continue;
        };
        let len = buf.len() + data.remaining();
        if len > limit {
            return Err(ReadError::TooLarge);
        }
        if len > held.bytes() && !held.grow(len - held.bytes()).await {
            return Err(ReadError::TooLarge);
        }
        buf.push(data);
    }
    Ok((buf.freeze(), held))
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
