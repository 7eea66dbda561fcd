//! The connection: open (TCP or TLS), negotiate the version, check the
//! network, and read newline-delimited frames with a bound on their length.

use super::*;

pub(super) type Reader = Box<dyn AsyncRead + Unpin + Send>;

pub(super) type Writer = Box<dyn AsyncWrite + Unpin + Send>;

/// Newline-delimited frames with a bound on their length.
pub(super) struct Lines {
    pub(super) reader: Reader,
    pub(super) buf: BytesMut,
    pub(super) scanned: usize,
    pub(super) max: usize,
}

impl Lines {
    /// The next line without its `\n` (cancel-safe: state lives in `buf`).
    pub(super) async fn next(&mut self) -> Result<Option<Bytes>, String> {
        loop {
            if let Some(pos) = self.buf[self.scanned..].iter().position(|b| *b == b'\n') {
                let end = self.scanned + pos;
                let line = self.buf.split_to(end + 1).freeze();
                self.scanned = 0;
                return Ok(Some(line.slice(..end)));
            }
            self.scanned = self.buf.len();
            if self.buf.len() > self.max {
                return Err(format!("a line longer than {} bytes", self.max));
            }
            self.buf.reserve(16 * 1024);
            match self.reader.read_buf(&mut self.buf).await {
                Ok(0) => return Ok(None),
                Ok(_) => {}
                Err(e) => return Err(e.to_string()),
            }
        }
    }
}

pub(super) async fn open(
    config: &Config,
    tls: Option<&Arc<rustls::ClientConfig>>,
    shared: &super::Shared,
) -> Result<(Reader, Writer), String> {
    let tcp = tokio::net::TcpStream::connect((config.host.as_str(), config.port))
        .await
        .map_err(|e| e.to_string())?;
    let _ = tcp.set_nodelay(true);
    if let (Ok(peer), Ok(mut p)) = (tcp.peer_addr(), shared.peer.lock()) {
        *p = Some(peer);
    }
    match tls {
        None => {
            let (r, w) = tcp.into_split();
            Ok((Box::new(r), Box::new(w)))
        }
        Some(tls) => {
            let server = rustls::pki_types::ServerName::try_from(config.host.clone())
                .map_err(|e| e.to_string())?;
            let stream = tokio_rustls::TlsConnector::from(tls.clone())
                .connect(server, tcp)
                .await
                .map_err(|e| format!("TLS: {e}"))?;
            let (r, w) = tokio::io::split(stream);
            Ok((Box::new(r), Box::new(w)))
        }
    }
}

/// Connects and negotiates the protocol version, within the connect timeout.
pub(super) async fn connect(
    config: &Config,
    tls: Option<&Arc<rustls::ClientConfig>>,
    shared: &Shared,
) -> Result<(Lines, Writer), String> {
    let attempt = async {
        let (reader, mut writer) = open(config, tls, shared).await?;
        let mut lines = Lines {
            reader,
            buf: BytesMut::with_capacity(16 * 1024),
            scanned: 0,
            max: config.max_line,
        };
        let hello = serde_json::json!({
            "jsonrpc": "2.0", "id": 0, "method": "server.version",
            "params": [config.client_name, [config.protocol_min, config.protocol_max]],
        });
        let mut line = serde_json::to_vec(&hello).map_err(|e| e.to_string())?;
        line.push(b'\n');
        writer.write_all(&line).await.map_err(|e| e.to_string())?;
        loop {
            let Some(line) = lines.next().await? else {
                return Err("closed during the version handshake".to_owned());
            };
            match parse_response(&line, &Id::from(0u64)) {
                Ok(rpc_core::Payload::Result(raw)) => {
                    let (software, protocol): (String, String) = raw
                        .deserialize()
                        .map_err(|e| format!("server.version answer: {e}"))?;
                    if let Ok(mut s) = shared.server.lock() {
                        *s = Some((software, protocol));
                    }
                    if let Some(want) = &config.expect_genesis {
                        check_genesis(&mut lines, &mut writer, want).await?;
                    }
                    return Ok((lines, writer));
                }
                Ok(rpc_core::Payload::Error(e)) => {
                    return Err(format!(
                        "server.version refused: {} {}",
                        e.code(),
                        e.message()
                    ));
                }
                // A notification or noise before the answer: keep reading.
                Err(_) => continue,
            }
        }
    };
    match timeout(config.connect_timeout, attempt).await {
        Ok(r) => r,
        Err(_) => Err(format!(
            "no connection and handshake within {:?}",
            config.connect_timeout
        )),
    }
}

/// Asks `server.features` and refuses a server on another network.
pub(super) async fn check_genesis(
    lines: &mut Lines,
    writer: &mut Writer,
    want: &str,
) -> Result<(), String> {
    const ID: u64 = u64::MAX;
    let ask = format!(
        "{{\"jsonrpc\":\"2.0\",\"id\":{ID},\"method\":\"server.features\",\"params\":[]}}\n"
    );
    writer
        .write_all(ask.as_bytes())
        .await
        .map_err(|e| e.to_string())?;
    loop {
        let Some(line) = lines.next().await? else {
            return Err("closed while asking server.features".to_owned());
        };
        let Ok(rpc_core::Payload::Result(raw)) = parse_response(&line, &Id::from(ID)) else {
            continue;
        };
        #[derive(serde::Deserialize)]
        struct Features {
            genesis_hash: String,
        }
        let got: Features = raw
            .deserialize()
            .map_err(|e| format!("server.features: {e}"))?;
        if !got.genesis_hash.eq_ignore_ascii_case(want) {
            return Err(format!(
                "wrong network: genesis {} (expected {want})",
                got.genesis_hash
            ));
        }
        return Ok(());
    }
}

pub(super) async fn write(
    config: &Config,
    writer: &mut Writer,
    bytes: &[u8],
) -> Result<(), String> {
    match timeout(config.ping_timeout, writer.write_all(bytes)).await {
        Ok(Ok(())) => Ok(()),
        Ok(Err(e)) => Err(e.to_string()),
        Err(_) => Err("the server stopped reading".to_owned()),
    }
}
