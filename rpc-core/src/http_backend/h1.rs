//! One HTTP/1.1 connection of an [`HttpBackend`](super::HttpBackend), driven
//! by the call that holds it: the request written, the answer's head parsed
//! (with `httparse`, as hyper does) and its body read, all on the caller's
//! task.
//!
//! Why not hyper's `client::conn::http1`: it runs each connection as a task
//! of its own, so every exchange wakes that task to write and wakes the
//! caller again with the answer; it builds a `HeaderMap` per request and per
//! answer, and reads each answer into a fresh 8 KiB buffer (the previous
//! answer's body still shares the old one). A JSON-RPC backend needs one
//! shape of exchange: a POST with a head that is the same on every call
//! (prepared once per backend) and an answer read whole. Done here it costs
//! ≈ 13 000 fewer instructions per call on the forwarding benchmark
//! (`bench/cost.sh`, BENCHMARKS.md). HTTP/2 connections stay with hyper.
//!
//! What it keeps of HTTP/1.1: `Content-Length`, chunked and close-delimited
//! answers, interim 1xx answers skipped, `Connection: close` and HTTP/1.0
//! honoured, an answer with bytes after its end not reused, an answer the
//! server sent before it read the whole request (then closed) taken as the
//! outcome. Bounds: a head
//! of at most [`MAX_HEAD`] bytes and [`MAX_HEADERS`] fields, a body of at
//! most the backend's response limit (a declared length over it is refused
//! before a byte of it is read), every byte held in the response budget
//! when there is one. Deadlines are the caller's: a call that gives up drops
//! the connection mid-exchange, which closes it.

use std::io;
use std::task::{Context, Poll, Waker};
use std::time::Duration;

use bytes::{BufMut, Bytes};
use http::StatusCode;
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt, ReadBuf};

use crate::body::ReadError;
use crate::{ByteBudget, BytePermit};

/// The largest answer head read (status line and header fields).
pub(super) const MAX_HEAD: usize = 64 * 1024;
/// Header fields read per answer; more is an invalid answer.
pub(super) const MAX_HEADERS: usize = 100;
/// What the read buffer grows by (and a connection's first read asks for).
const BUF: usize = 8 * 1024;
/// A read buffer larger than this is not kept for the next exchange.
const KEEP: usize = 4 * BUF;
/// A body buffer is made this large before its bytes arrive, at most
/// (unless the response budget already holds room for all of it).
const EAGER: usize = 1024 * 1024;
/// A chunk-size line (with extensions) longer than this is invalid.
const MAX_CHUNK_LINE: usize = 4 * 1024;

/// Why an exchange failed before the answer's head was read.
#[derive(Debug)]
pub(super) enum SendError {
    /// Not one byte of the request was written: it can go out on another
    /// connection.
    NotWritten(io::Error),
    /// The request may have been sent: the connection failed after, or the
    /// answer was not HTTP.
    Failed(io::Error),
}

/// An answer's head: what the caller needs of it.
#[derive(Debug, PartialEq, Eq)]
pub(super) struct Head {
    pub(super) status: StatusCode,
    /// `Retry-After` in seconds, when it is a number.
    pub(super) retry_after: Option<Duration>,
    framing: Framing,
    keep_alive: bool,
}

/// Where an answer's body ends.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Framing {
    Length(u64),
    Chunked,
    /// No length and not chunked: the body ends when the connection does.
    UntilClose,
}

/// One HTTP/1.1 connection and the bytes read from it and not yet used.
pub(super) struct Conn<Io> {
    io: Io,
    /// The request head being written (kept: no allocation per request).
    head: Vec<u8>,
    buf: Vec<u8>,
    /// `buf[pos..]` is read and not used yet.
    pos: usize,
    /// Whether the last exchange left the connection fit for the next one.
    reusable: bool,
}

impl<Io: AsyncRead + AsyncWrite + Unpin> Conn<Io> {
    pub(super) fn new(io: Io) -> Self {
        Conn {
            io,
            head: Vec::new(),
            buf: Vec::new(),
            pos: 0,
            reusable: true,
        }
    }

    /// Whether the connection can take a new exchange: the last one ended
    /// cleanly, and the server has neither closed it nor sent anything
    /// since (checked without waiting).
    pub(super) fn is_open(&mut self) -> bool {
        if !self.reusable {
            return false;
        }
        let mut probe = [0u8; 1];
        let mut probe = ReadBuf::new(&mut probe);
        let mut cx = Context::from_waker(Waker::noop());
        match std::pin::Pin::new(&mut self.io).poll_read(&mut cx, &mut probe) {
            Poll::Pending => true,
            // Closed, failed, or bytes nobody asked for.
            Poll::Ready(_) => {
                self.reusable = false;
                false
            }
        }
    }

    /// Whether the last exchange's answer was read to its end, and the
    /// server lets the connection stay open.
    pub(super) fn reusable(&self) -> bool {
        self.reusable
    }

    /// Writes the request — the head that `head` writes, ending with the
    /// empty line, then `body` — and reads the answer's head; the body is
    /// read with [`Conn::read_body`].
    pub(super) async fn send(
        &mut self,
        head: impl FnOnce(&mut Vec<u8>),
        body: &[u8],
    ) -> Result<Head, SendError> {
        self.reusable = false;
        // A long head or a chunked answer grew the buffer: not kept for
        // the connection's life.
        if self.buf.capacity() > KEEP {
            self.buf = Vec::new();
        }
        self.buf.clear();
        self.pos = 0;
        self.head.clear();
        head(&mut self.head);
        // A server may answer before it has read the whole request (a 413
        // for a body over its limit) and close: when the write fails part
        // way, an answer that came first is still read, and is the outcome.
        let cut = match write(&mut self.io, &self.head, body).await {
            Ok(()) => None,
            Err(SendError::Failed(e)) => Some(e),
            Err(not_written) => return Err(not_written),
        };
        let failed = |e: SendError, cut: Option<io::Error>| match cut {
            Some(cut) => SendError::Failed(cut),
            None => e,
        };
        loop {
            match parse_head(&self.buf[self.pos..]) {
                Ok(Some((used, parsed))) => {
                    self.pos += used;
                    match parsed {
                        Parsed::Interim => continue,
                        Parsed::Final(mut head) => {
                            // The rest of the request was never written.
                            head.keep_alive &= cut.is_none();
                            return Ok(head);
                        }
                    }
                }
                Ok(None) => {}
                Err(e) => return Err(failed(e, cut)),
            }
            if self.buf.len() - self.pos >= MAX_HEAD {
                let e = invalid(format!("the answer's head is longer than {MAX_HEAD} bytes"));
                return Err(failed(e, cut));
            }
            match self.fill().await {
                Ok(0) => {
                    let e = SendError::Failed(io::Error::new(
                        io::ErrorKind::UnexpectedEof,
                        "the backend closed the connection before answering",
                    ));
                    return Err(failed(e, cut));
                }
                Ok(_) => {}
                Err(e) => return Err(failed(SendError::Failed(e), cut)),
            }
        }
    }

    /// Reads more into the buffer; `Ok(0)` at the end of the stream.
    async fn fill(&mut self) -> io::Result<usize> {
        if self.pos == self.buf.len() {
            self.buf.clear();
            self.pos = 0;
        } else if self.pos > 0 && self.buf.capacity() - self.buf.len() < BUF / 2 {
            self.buf.drain(..self.pos);
            self.pos = 0;
        }
        if self.buf.capacity() - self.buf.len() < BUF / 2 {
            self.buf.reserve(BUF);
        }
        self.io.read_buf(&mut self.buf).await
    }

    /// Reads the body of the answer whose head [`Conn::send`] returned: at
    /// most `limit` bytes, each held in `budget` (when there is one) as it
    /// arrives, waiting for room. The connection is reusable after if the
    /// answer ended cleanly and the server keeps it open.
    pub(super) async fn read_body(
        &mut self,
        head: &Head,
        limit: usize,
        budget: Option<&ByteBudget>,
    ) -> Result<(Bytes, Option<BytePermit>), ReadError> {
        let mut held = Held(budget.map(ByteBudget::empty));
        let body = match head.framing {
            Framing::Length(n) => {
                if n > limit as u64 {
                    return Err(ReadError::TooLarge);
                }
                self.read_length(n as usize, &mut held).await?
            }
            Framing::Chunked => self.read_chunked(limit, &mut held).await?,
            Framing::UntilClose => self.read_until_close(limit, &mut held).await?,
        };
        // Bytes after the answer's end: nothing was asked for them.
        self.reusable =
            head.keep_alive && head.framing != Framing::UntilClose && self.pos == self.buf.len();
        Ok((crate::buffers::freeze(body), held.0))
    }

    async fn read_length(&mut self, n: usize, held: &mut Held) -> Result<Vec<u8>, ReadError> {
        // Exactly its size, so that it becomes `Bytes` without another
        // allocation: up to [`EAGER`] bytes, or whatever size once the
        // budget holds room for all of it. Beyond that, memory follows the
        // bytes that arrive, not the length the server declared.
        let exact = n <= EAGER || held.0.is_some();
        if exact {
            held.cover(n).await?;
        }
        let mut body = crate::buffers::take(if exact { n } else { EAGER });
        let have = (self.buf.len() - self.pos).min(n);
        body.extend_from_slice(&self.buf[self.pos..self.pos + have]);
        self.pos += have;
        held.cover(body.len()).await?;
        while body.len() < n {
            let room = n - body.len();
            match self.io.read_buf(&mut (&mut body).limit(room)).await {
                Ok(0) => return Err(ended_early()),
                Ok(_) => held.cover(body.len()).await?,
                Err(e) => return Err(ReadError::Failed(e.into())),
            }
        }
        Ok(body)
    }

    async fn read_chunked(&mut self, limit: usize, held: &mut Held) -> Result<Vec<u8>, ReadError> {
        let mut body = Vec::new();
        loop {
            let line = self.line(MAX_CHUNK_LINE).await?;
            let size = chunk_size(&self.buf[line.clone()])
                .ok_or_else(|| bad_body("an invalid chunk size"))?;
            if size == 0 {
                // Trailer fields, up to the empty line: read and dropped.
                let mut trailers = 0;
                loop {
                    let line = self.line(MAX_HEAD).await?;
                    if line.is_empty() {
                        return Ok(body);
                    }
                    trailers += line.len();
                    if trailers > MAX_HEAD {
                        return Err(bad_body("trailer fields over the head's limit"));
                    }
                }
            }
            if size > (limit - body.len()) as u64 {
                return Err(ReadError::TooLarge);
            }
            let mut left = size as usize;
            if body.capacity() == 0 {
                // The first chunk: a kept buffer when it is a large one.
                body = crate::buffers::take(left.min(EAGER));
            } else {
                body.reserve(left.min(EAGER));
            }
            while left > 0 {
                if self.pos == self.buf.len() && self.fill().await.map_err(failed)? == 0 {
                    return Err(ended_early());
                }
                let take = left.min(self.buf.len() - self.pos);
                body.extend_from_slice(&self.buf[self.pos..self.pos + take]);
                self.pos += take;
                left -= take;
                held.cover(body.len()).await?;
            }
            if !self.line(0).await?.is_empty() {
                return Err(bad_body("a chunk longer than its size"));
            }
        }
    }

    async fn read_until_close(
        &mut self,
        limit: usize,
        held: &mut Held,
    ) -> Result<Vec<u8>, ReadError> {
        let mut body = self.buf[self.pos..].to_vec();
        self.pos = self.buf.len();
        loop {
            if body.len() > limit {
                return Err(ReadError::TooLarge);
            }
            held.cover(body.len()).await?;
            if body.capacity() - body.len() < BUF / 2 {
                body.reserve(BUF);
            }
            let room = (limit - body.len())
                .saturating_add(1)
                .min(body.capacity() - body.len());
            match self.io.read_buf(&mut (&mut body).limit(room)).await {
                Ok(0) => return Ok(body),
                Ok(_) => {}
                Err(e) => return Err(ReadError::Failed(e.into())),
            }
        }
    }

    /// The next line (without its CRLF) as a range of the buffer, reading
    /// until it is whole; longer than `max` is an invalid body.
    async fn line(&mut self, max: usize) -> Result<std::ops::Range<usize>, ReadError> {
        loop {
            let unread = &self.buf[self.pos..];
            if let Some(at) = unread.windows(2).position(|w| w == b"\r\n") {
                let line = self.pos..self.pos + at;
                self.pos += at + 2;
                return Ok(line);
            }
            if unread.len() > max + 1 {
                return Err(bad_body(
                    "a line of a chunked body is too long, or has no CRLF",
                ));
            }
            if self.fill().await.map_err(failed)? == 0 {
                return Err(ended_early());
            }
        }
    }
}

/// Writes `head` and `body` (one `writev` where the stream takes it).
async fn write<Io: AsyncWrite + Unpin>(
    io: &mut Io,
    head: &[u8],
    body: &[u8],
) -> Result<(), SendError> {
    let total = head.len() + body.len();
    let mut written = 0;
    while written < total {
        let n = if written < head.len() {
            let slices = [io::IoSlice::new(&head[written..]), io::IoSlice::new(body)];
            io.write_vectored(&slices).await
        } else {
            io.write(&body[written - head.len()..]).await
        };
        match n {
            Ok(0) => {
                let e = io::Error::new(io::ErrorKind::WriteZero, "the connection took no bytes");
                return Err(unwritten(written, e));
            }
            Ok(n) => written += n,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(e) => return Err(unwritten(written, e)),
        }
    }
    io.flush().await.map_err(SendError::Failed)
}

/// Bytes of a body held in the response budget, grown as they arrive.
struct Held(Option<BytePermit>);

impl Held {
    async fn cover(&mut self, len: usize) -> Result<(), ReadError> {
        if let Some(held) = &mut self.0 {
            if len > held.bytes() && !held.grow(len - held.bytes()).await {
                // More than the whole budget.
                return Err(ReadError::TooLarge);
            }
        }
        Ok(())
    }
}

enum Parsed {
    /// A 1xx answer before the real one.
    Interim,
    Final(Head),
}

/// Parses an answer's head from the start of `bytes`: `None` until it is
/// whole; the bytes it took and what it says.
fn parse_head(bytes: &[u8]) -> Result<Option<(usize, Parsed)>, SendError> {
    // Left uninitialised: httparse fills what it finds (initialising all
    // of them would cost a few hundred instructions per answer).
    let mut fields =
        [const { std::mem::MaybeUninit::<httparse::Header<'_>>::uninit() }; MAX_HEADERS];
    let mut resp = httparse::Response::new(&mut []);
    let parsed = httparse::ParserConfig::default().parse_response_with_uninit_headers(
        &mut resp,
        bytes,
        &mut fields,
    );
    let used = match parsed {
        Ok(httparse::Status::Complete(used)) => used,
        Ok(httparse::Status::Partial) => return Ok(None),
        Err(e) => return Err(invalid(format!("an invalid HTTP answer: {e}"))),
    };
    let code = resp.code.unwrap_or_default();
    let status =
        StatusCode::from_u16(code).map_err(|_| invalid(format!("an invalid status {code}")))?;
    if status.is_informational() {
        if status == StatusCode::SWITCHING_PROTOCOLS {
            return Err(invalid("101 Switching Protocols to a POST".to_owned()));
        }
        return Ok(Some((used, Parsed::Interim)));
    }
    let mut length: Option<u64> = None;
    let mut chunked = None;
    let mut close = false;
    let mut keep_alive = false;
    let mut retry_after = None;
    for field in resp.headers.iter() {
        let name = field.name;
        if name.eq_ignore_ascii_case("content-length") {
            let n = std::str::from_utf8(field.value)
                .ok()
                .map(str::trim)
                .filter(|v| !v.is_empty() && v.bytes().all(|b| b.is_ascii_digit()))
                .and_then(|v| v.parse::<u64>().ok())
                .ok_or_else(|| invalid("an invalid Content-Length".to_owned()))?;
            if length.is_some_and(|m| m != n) {
                return Err(invalid("two different Content-Length values".to_owned()));
            }
            length = Some(n);
        } else if name.eq_ignore_ascii_case("transfer-encoding") {
            // Chunked only when it is the last coding applied.
            let last = field
                .value
                .rsplit(|&b| b == b',')
                .next()
                .unwrap_or_default();
            chunked = Some(last.trim_ascii().eq_ignore_ascii_case(b"chunked"));
        } else if name.eq_ignore_ascii_case("connection") {
            for token in field.value.split(|&b| b == b',') {
                let token = token.trim_ascii();
                close |= token.eq_ignore_ascii_case(b"close");
                keep_alive |= token.eq_ignore_ascii_case(b"keep-alive");
            }
        } else if name.eq_ignore_ascii_case("retry-after") {
            retry_after = std::str::from_utf8(field.value)
                .ok()
                .and_then(|v| v.trim().parse::<u64>().ok())
                .map(Duration::from_secs);
        }
    }
    let framing = if status == StatusCode::NO_CONTENT || status == StatusCode::NOT_MODIFIED {
        Framing::Length(0)
    } else {
        match (chunked, length) {
            // Transfer-Encoding wins over Content-Length (RFC 9112, 6.3).
            (Some(true), _) => Framing::Chunked,
            (Some(false), _) => Framing::UntilClose,
            (None, Some(n)) => Framing::Length(n),
            (None, None) => Framing::UntilClose,
        }
    };
    // HTTP/1.1 stays open unless told; HTTP/1.0 only when told.
    let keep_alive = !close && (resp.version == Some(1) || keep_alive);
    Ok(Some((
        used,
        Parsed::Final(Head {
            status,
            retry_after,
            framing,
            keep_alive,
        }),
    )))
}

/// A chunk-size line's size (hex digits, then any `;extension`).
fn chunk_size(line: &[u8]) -> Option<u64> {
    let digits = line.split(|&b| b == b';').next()?.trim_ascii();
    if digits.is_empty() || digits.len() > 15 {
        return None;
    }
    let text = std::str::from_utf8(digits).ok()?;
    u64::from_str_radix(text, 16).ok()
}

fn invalid(reason: String) -> SendError {
    SendError::Failed(io::Error::new(io::ErrorKind::InvalidData, reason))
}

fn unwritten(written: usize, e: io::Error) -> SendError {
    if written == 0 {
        SendError::NotWritten(e)
    } else {
        SendError::Failed(e)
    }
}

fn failed(e: io::Error) -> ReadError {
    ReadError::Failed(e.into())
}

fn ended_early() -> ReadError {
    failed(io::Error::new(
        io::ErrorKind::UnexpectedEof,
        "the backend closed the connection in the middle of the answer",
    ))
}

fn bad_body(reason: &'static str) -> ReadError {
    failed(io::Error::new(io::ErrorKind::InvalidData, reason))
}

#[cfg(test)]
mod tests {
    use super::*;
    use tokio::io::{duplex, DuplexStream};

    /// A connection to an in-memory peer that reads one request (`HEAD`
    /// and a two-byte body), answers `answer`, and then keeps the stream
    /// open (`close: false`) or closes it; the request bytes come back from
    /// the task.
    fn peer_with(
        answer: &'static [u8],
        close: bool,
    ) -> (Conn<DuplexStream>, tokio::task::JoinHandle<Vec<u8>>) {
        let (ours, mut theirs) = duplex(64 * 1024);
        let task = tokio::spawn(async move {
            let mut req = vec![0u8; HEAD.len() + 2];
            theirs.read_exact(&mut req).await.unwrap();
            theirs.write_all(answer).await.unwrap();
            if !close {
                let mut rest = Vec::new();
                let _ = theirs.read_to_end(&mut rest).await;
            }
            req
        });
        (Conn::new(ours), task)
    }

    fn peer(answer: &'static [u8]) -> (Conn<DuplexStream>, tokio::task::JoinHandle<Vec<u8>>) {
        peer_with(answer, false)
    }

    /// Sends `HEAD` and a two-byte body on `conn`: the answer's head.
    async fn ask<Io: AsyncRead + AsyncWrite + Unpin>(conn: &mut Conn<Io>) -> Head {
        conn.send(|h| h.extend_from_slice(HEAD), b"{}")
            .await
            .expect("an answer's head")
    }

    const HEAD: &[u8] = b"POST / HTTP/1.1\r\nhost: x\r\ncontent-length: 2\r\n\r\n";

    async fn exchange(answer: &'static [u8]) -> (Result<(Bytes, bool), String>, StatusCode) {
        let (mut conn, _peer) = peer(answer);
        let head = conn
            .send(|h| h.extend_from_slice(HEAD), b"{}")
            .await
            .expect("a head");
        let status = head.status;
        let body = conn
            .read_body(&head, 1 << 20, None)
            .await
            .map(|(b, _)| (b, conn.reusable()))
            .map_err(|e| match e {
                ReadError::TooLarge => "too large".to_owned(),
                ReadError::NoBudget => "no budget".to_owned(),
                ReadError::Failed(e) => e.to_string(),
            });
        (body, status)
    }

    #[tokio::test]
    async fn writes_head_and_body_and_reads_a_length_answer() {
        let (mut conn, peer) = peer(b"HTTP/1.1 200 OK\r\ncontent-length: 5\r\n\r\nhello");
        let head = ask(&mut conn).await;
        assert_eq!(head.status, StatusCode::OK);
        let (body, held) = conn.read_body(&head, 100, None).await.ok().unwrap();
        assert_eq!(&body[..], b"hello");
        assert!(held.is_none());
        assert!(conn.reusable());
        assert!(conn.is_open(), "nothing came after the answer");
        drop(conn);
        let mut sent = HEAD.to_vec();
        sent.extend_from_slice(b"{}");
        assert_eq!(peer.await.unwrap(), sent);
    }

    #[tokio::test]
    async fn reads_a_chunked_answer_with_extensions_and_trailers() {
        let (body, status) = exchange(
            b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n3;x=y\r\nabc\r\nA\r\n0123456789\r\n0\r\nx-t: 1\r\n\r\n",
        )
        .await;
        assert_eq!(status, StatusCode::OK);
        let (body, reusable) = body.unwrap();
        assert_eq!(&body[..], b"abc0123456789");
        assert!(reusable);
    }

    #[tokio::test]
    async fn reads_to_the_end_without_a_length_and_is_not_reused() {
        let (mut conn, _peer) = peer_with(b"HTTP/1.1 200 OK\r\n\r\n{\"a\":1}", true);
        let head = ask(&mut conn).await;
        let (body, _) = conn.read_body(&head, 100, None).await.ok().unwrap();
        assert_eq!(&body[..], b"{\"a\":1}");
        assert!(!conn.reusable());
    }

    #[tokio::test]
    async fn skips_interim_answers() {
        let (body, status) = exchange(
            b"HTTP/1.1 100 Continue\r\n\r\nHTTP/1.1 200 OK\r\ncontent-length: 2\r\n\r\nok",
        )
        .await;
        assert_eq!(status, StatusCode::OK);
        assert_eq!(&body.unwrap().0[..], b"ok");
    }

    #[tokio::test]
    async fn honours_connection_close_and_http_1_0() {
        let (body, _) =
            exchange(b"HTTP/1.1 200 OK\r\nConnection: close\r\ncontent-length: 2\r\n\r\nok").await;
        assert!(!body.unwrap().1, "Connection: close");
        let (body, _) = exchange(b"HTTP/1.0 200 OK\r\ncontent-length: 2\r\n\r\nok").await;
        assert!(!body.unwrap().1, "HTTP/1.0 without keep-alive");
        let (body, _) =
            exchange(b"HTTP/1.0 200 OK\r\nConnection: keep-alive\r\ncontent-length: 2\r\n\r\nok")
                .await;
        assert!(body.unwrap().1, "HTTP/1.0 with keep-alive");
    }

    #[tokio::test]
    async fn bytes_after_the_answer_make_it_not_reusable() {
        let (body, _) = exchange(b"HTTP/1.1 200 OK\r\ncontent-length: 2\r\n\r\nokEXTRA").await;
        let (body, reusable) = body.unwrap();
        assert_eq!(&body[..], b"ok");
        assert!(!reusable);
    }

    #[tokio::test]
    async fn a_declared_length_over_the_limit_is_refused_before_reading() {
        let (mut conn, _peer) = peer(b"HTTP/1.1 200 OK\r\ncontent-length: 1000\r\n\r\n");
        let head = ask(&mut conn).await;
        assert!(matches!(
            conn.read_body(&head, 999, None).await,
            Err(ReadError::TooLarge)
        ));
        assert!(!conn.reusable());
    }

    #[tokio::test]
    async fn chunked_and_close_delimited_bodies_stop_at_the_limit() {
        let (mut conn, _peer) = peer(b"HTTP/1.1 200 OK\r\ntransfer-encoding: chunked\r\n\r\n5\r\nhello\r\n5\r\nworld\r\n0\r\n\r\n");
        let head = ask(&mut conn).await;
        assert!(matches!(
            conn.read_body(&head, 9, None).await,
            Err(ReadError::TooLarge)
        ));
        let (mut conn, _peer) = peer(b"HTTP/1.1 200 OK\r\n\r\n0123456789");
        let head = ask(&mut conn).await;
        assert!(matches!(
            conn.read_body(&head, 9, None).await,
            Err(ReadError::TooLarge)
        ));
    }

    #[tokio::test]
    async fn the_budget_holds_the_body_and_refuses_more_than_it_has() {
        let budget = ByteBudget::new(10);
        let (mut conn, _peer) = peer(b"HTTP/1.1 200 OK\r\ncontent-length: 5\r\n\r\nhello");
        let head = ask(&mut conn).await;
        let (_, held) = conn
            .read_body(&head, 100, Some(&budget))
            .await
            .ok()
            .unwrap();
        assert_eq!(held.as_ref().map(BytePermit::bytes), Some(5));
        assert_eq!(budget.available(), 5);
        drop(held);
        assert_eq!(budget.available(), 10);
        let (mut conn, _peer) = peer(b"HTTP/1.1 200 OK\r\ncontent-length: 11\r\n\r\nhello world");
        let head = ask(&mut conn).await;
        assert!(matches!(
            conn.read_body(&head, 100, Some(&budget)).await,
            Err(ReadError::TooLarge)
        ));
    }

    #[tokio::test]
    async fn invalid_and_cut_answers_are_errors() {
        for answer in [
            &b"HTTP/1.1 200 OK\r\ncontent-length: x\r\n\r\n"[..],
            b"HTTP/1.1 200 OK\r\ncontent-length: 1\r\ncontent-length: 2\r\n\r\n",
            b"SMTP ready\r\n\r\n",
            b"HTTP/1.1 101 Switching Protocols\r\n\r\n",
            // Cut: the peer closes in the middle of the head.
            b"HTTP/1.1 200 O",
        ] {
            let (mut conn, _peer) = peer_with(answer, true);
            let got = conn.send(|h| h.extend_from_slice(HEAD), b"{}").await;
            assert!(
                matches!(got, Err(SendError::Failed(_))),
                "{:?}",
                String::from_utf8_lossy(answer)
            );
        }
        for answer in [
            &b"HTTP/1.1 200 OK\r\ntransfer-encoding: chunked\r\n\r\nzz\r\n"[..],
            b"HTTP/1.1 200 OK\r\ntransfer-encoding: chunked\r\n\r\n2\r\nabc\r\n0\r\n\r\n",
        ] {
            let (body, _) = exchange(answer).await;
            assert!(body.is_err(), "{:?}", String::from_utf8_lossy(answer));
        }
    }

    #[tokio::test]
    async fn a_body_cut_short_is_an_error() {
        let (mut conn, _peer) =
            peer_with(b"HTTP/1.1 200 OK\r\ncontent-length: 10\r\n\r\nhalf", true);
        let head = ask(&mut conn).await;
        match conn.read_body(&head, 100, None).await {
            Err(ReadError::Failed(e)) => {
                assert!(e.to_string().contains("middle of the answer"), "{e}")
            }
            _ => panic!("a cut body must fail"),
        }
    }

    #[tokio::test]
    async fn a_closed_peer_is_seen_before_reuse_and_a_write_to_it_is_not_written() {
        let (ours, theirs) = duplex(1024);
        drop(theirs);
        let mut conn = Conn::new(ours);
        assert!(!conn.is_open());
        let (ours, theirs) = duplex(1024);
        drop(theirs);
        let mut conn = Conn::new(ours);
        assert!(matches!(
            conn.send(|h| h.extend_from_slice(HEAD), b"{}").await,
            Err(SendError::NotWritten(_))
        ));
    }

    #[tokio::test]
    async fn retry_after_and_status_are_read() {
        let (mut conn, _peer) =
            peer(b"HTTP/1.1 429 Too Many Requests\r\nRetry-After: 7\r\ncontent-length: 0\r\n\r\n");
        let head = ask(&mut conn).await;
        assert_eq!(head.status, StatusCode::TOO_MANY_REQUESTS);
        assert_eq!(head.retry_after, Some(Duration::from_secs(7)));
    }

    #[tokio::test]
    async fn a_body_larger_than_the_eager_buffer_is_read_whole() {
        let len = 3 * EAGER + 7;
        let mut answer = format!("HTTP/1.1 200 OK\r\ncontent-length: {len}\r\n\r\n").into_bytes();
        answer.extend((0..len).map(|i| (i % 251) as u8));
        let (mut conn, _peer) = peer(Vec::leak(answer));
        let head = ask(&mut conn).await;
        let (body, _) = conn.read_body(&head, 4 * EAGER, None).await.ok().unwrap();
        assert_eq!(body.len(), len);
        assert!(body.iter().enumerate().all(|(i, &b)| b == (i % 251) as u8));
        assert!(conn.reusable());
    }

    #[tokio::test]
    async fn a_head_longer_than_its_limit_is_an_error() {
        // One field longer than the limit (more than `MAX_HEADERS` fields
        // fail too, as too many).
        let mut answer = b"HTTP/1.1 200 OK\r\nx-filler: ".to_vec();
        answer.resize(MAX_HEAD + 10, b'a');
        answer.extend_from_slice(b"\r\n\r\n");
        let (mut conn, _peer) = peer(Vec::leak(answer));
        match conn.send(|h| h.extend_from_slice(HEAD), b"{}").await {
            Err(SendError::Failed(e)) => assert!(e.to_string().contains("longer than"), "{e}"),
            other => panic!("a head over the limit must fail: {other:?}"),
        }
    }

    /// A stream that hands over one byte per read: every answer split at
    /// every point.
    struct OneByte(DuplexStream);

    impl AsyncRead for OneByte {
        fn poll_read(
            mut self: std::pin::Pin<&mut Self>,
            cx: &mut Context<'_>,
            buf: &mut ReadBuf<'_>,
        ) -> Poll<io::Result<()>> {
            let mut one = [0u8; 1];
            let mut small = ReadBuf::new(&mut one);
            match std::pin::Pin::new(&mut self.0).poll_read(cx, &mut small) {
                Poll::Ready(Ok(())) => {
                    buf.put_slice(small.filled());
                    Poll::Ready(Ok(()))
                }
                other => other,
            }
        }
    }

    impl AsyncWrite for OneByte {
        fn poll_write(
            mut self: std::pin::Pin<&mut Self>,
            cx: &mut Context<'_>,
            buf: &[u8],
        ) -> Poll<io::Result<usize>> {
            std::pin::Pin::new(&mut self.0).poll_write(cx, buf)
        }
        fn poll_flush(
            mut self: std::pin::Pin<&mut Self>,
            cx: &mut Context<'_>,
        ) -> Poll<io::Result<()>> {
            std::pin::Pin::new(&mut self.0).poll_flush(cx)
        }
        fn poll_shutdown(
            mut self: std::pin::Pin<&mut Self>,
            cx: &mut Context<'_>,
        ) -> Poll<io::Result<()>> {
            std::pin::Pin::new(&mut self.0).poll_shutdown(cx)
        }
    }

    #[tokio::test]
    async fn answers_read_one_byte_at_a_time_come_out_whole() {
        for (answer, want, reusable) in [
            (&b"HTTP/1.1 100 Continue\r\n\r\nHTTP/1.1 200 OK\r\ncontent-length: 5\r\n\r\nhello"[..], &b"hello"[..], true),
            (
                b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n2;a=b\r\nhe\r\n3\r\nllo\r\n0\r\nx: y\r\n\r\n",
                b"hello",
                true,
            ),
            (b"HTTP/1.0 200 OK\r\n\r\nhello", b"hello", false),
        ] {
            let (mut conn, _peer) = peer_with(answer, !reusable);
            let mut conn = Conn::new(OneByte(std::mem::replace(&mut conn.io, duplex(1).0)));
            let head = ask(&mut conn).await;
            let (body, _) = conn.read_body(&head, 100, None).await.ok().unwrap();
            assert_eq!(&body[..], want, "{:?}", String::from_utf8_lossy(answer));
            assert_eq!(conn.reusable(), reusable, "{:?}", String::from_utf8_lossy(answer));
        }
    }

    #[tokio::test]
    async fn a_grown_read_buffer_is_not_kept() {
        let mut answer = b"HTTP/1.1 200 OK\r\nx-long: ".to_vec();
        answer.resize(KEEP + KEEP / 2, b'a');
        answer.extend_from_slice(b"\r\ncontent-length: 2\r\n\r\nok");
        let (mut conn, peer) = peer_with(Vec::leak(answer), true);
        let head = ask(&mut conn).await;
        conn.read_body(&head, 100, None).await.ok().unwrap();
        assert!(conn.buf.capacity() > KEEP);
        peer.await.unwrap();
        // The next exchange starts without it (and fails: the peer is gone).
        let _ = conn.send(|h| h.extend_from_slice(HEAD), b"{}").await;
        assert!(conn.buf.capacity() <= KEEP);
    }

    #[tokio::test]
    async fn an_answer_sent_before_the_request_was_read_is_the_outcome() {
        // The peer reads the head only, answers 413 and closes: the rest of
        // a body larger than the pipe cannot be written.
        let (ours, mut theirs) = duplex(16 * 1024);
        tokio::spawn(async move {
            let mut head = vec![0u8; HEAD.len()];
            theirs.read_exact(&mut head).await.unwrap();
            theirs
                .write_all(b"HTTP/1.1 413 Payload Too Large\r\ncontent-length: 7\r\n\r\ntoo big")
                .await
                .unwrap();
        });
        let mut conn = Conn::new(ours);
        let body = vec![b' '; 256 * 1024];
        let head = conn
            .send(|h| h.extend_from_slice(HEAD), &body)
            .await
            .expect("the early answer");
        assert_eq!(head.status, StatusCode::PAYLOAD_TOO_LARGE);
        let (answer, _) = conn.read_body(&head, 100, None).await.ok().unwrap();
        assert_eq!(&answer[..], b"too big");
        assert!(!conn.reusable(), "the request was not written whole");
        // No answer at all: the write's own failure.
        let (ours, mut theirs) = duplex(16 * 1024);
        tokio::spawn(async move {
            let mut head = vec![0u8; HEAD.len()];
            theirs.read_exact(&mut head).await.unwrap();
        });
        let mut conn = Conn::new(ours);
        match conn.send(|h| h.extend_from_slice(HEAD), &body).await {
            Err(SendError::Failed(e)) => assert_eq!(e.kind(), io::ErrorKind::BrokenPipe, "{e}"),
            other => panic!("a write cut short with no answer fails: {other:?}"),
        }
    }

    #[test]
    fn chunk_sizes() {
        assert_eq!(chunk_size(b"1A"), Some(26));
        assert_eq!(chunk_size(b"0"), Some(0));
        assert_eq!(chunk_size(b"ff;name=value"), Some(255));
        assert_eq!(chunk_size(b""), None);
        assert_eq!(chunk_size(b"-1"), None);
        assert_eq!(chunk_size(b"1000000000000000"), None);
    }
}
