//! What the benchmark rig's load generators share (`freeze-load`,
//! `count-load`): one keep-alive HTTP/1.1 exchange over a plain socket.

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

/// Writes `request` (a whole HTTP/1.1 request) and reads the answer to the
/// end of its `content-length` body into `buf`: `Some(ok)` — `ok` when the
/// status is 200 and the body holds no JSON-RPC `"error":` — or `None` when
/// the connection failed or closed (it cannot be reused).
pub async fn exchange(stream: &mut TcpStream, request: &[u8], buf: &mut Vec<u8>) -> Option<bool> {
    stream.write_all(request).await.ok()?;
    buf.clear();
    let mut chunk = [0u8; 16 * 1024];
    loop {
        let n = stream.read(&mut chunk).await.ok()?;
        if n == 0 {
            return None;
        }
        buf.extend_from_slice(&chunk[..n]);
        let Some(end) = buf.windows(4).position(|w| w == b"\r\n\r\n") else {
            continue;
        };
        let head = std::str::from_utf8(&buf[..end]).ok()?;
        let length: usize = head
            .lines()
            .find_map(|l| {
                let (k, v) = l.split_once(':')?;
                k.eq_ignore_ascii_case("content-length")
                    .then(|| v.trim().parse().ok())?
            })
            .unwrap_or(0);
        if buf.len() >= end + 4 + length {
            let body = &buf[end + 4..end + 4 + length];
            let ok =
                head.starts_with("HTTP/1.1 200") && !body.windows(8).any(|w| w == b"\"error\":");
            return Some(ok);
        }
    }
}
