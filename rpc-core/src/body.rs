//! Reading HTTP bodies under a size limit (shared by the front and the backend).

use bytes::Bytes;
use http::header::CONTENT_LENGTH;
use http::HeaderMap;
use http_body_util::{BodyExt, LengthLimitError, Limited};

use crate::BoxError;

/// Why a body could not be read.
pub(crate) enum ReadError {
    /// Over the limit, by its `Content-Length` or while reading.
    TooLarge,
    /// The stream failed (connection reset, client gone).
    Failed(BoxError),
}

/// Reads a whole body of at most `limit` bytes. A declared `Content-Length`
/// over the limit is refused before a byte is read.
pub(crate) async fn read_limited<B>(
    headers: &HeaderMap,
    body: B,
    limit: usize,
) -> Result<Bytes, ReadError>
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
    match Limited::new(body, limit).collect().await {
        Ok(collected) => Ok(collected.to_bytes()),
        Err(e) if e.is::<LengthLimitError>() => Err(ReadError::TooLarge),
        Err(e) => Err(ReadError::Failed(e)),
    }
}
