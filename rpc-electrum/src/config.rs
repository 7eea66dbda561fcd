use std::sync::Arc;
use std::time::Duration;

/// How a `tls://` server's certificate is checked.
#[derive(Clone, Debug, Default)]
pub enum TlsVerify {
    /// Against the Mozilla root store (`webpki-roots`), with the host name.
    #[default]
    WebPki,
    /// Against these DER-encoded root certificates (a private CA).
    Roots(Vec<Vec<u8>>),
    /// Accept exactly the certificate whose SHA-256 digest (of its DER bytes)
    /// is this; hex, with or without `:` separators. Most public Electrum
    /// servers are self-signed: pinning is the safe way to use them.
    Pinned(String),
    /// Accept any certificate. Encrypts but does not authenticate: a
    /// man in the middle can read and change everything. Explicit on purpose.
    InsecureAcceptAny,
}

impl TlsVerify {
    /// [`Pinned`](Self::Pinned), with the fingerprint checked now rather
    /// than at the first connection.
    ///
    /// ```
    /// use rpc_electrum::TlsVerify;
    /// let pin = "AB:".repeat(31) + "AB";
    /// assert!(TlsVerify::pinned(&pin).is_ok());
    /// assert!(TlsVerify::pinned("ABCD").is_err());
    /// ```
    pub fn pinned(sha256_hex: &str) -> Result<TlsVerify, BuildError> {
        parse_fingerprint(sha256_hex)?;
        Ok(TlsVerify::Pinned(sha256_hex.to_owned()))
    }

    /// [`Roots`](Self::Roots) from a PEM file's text: every `CERTIFICATE`
    /// block (other blocks, such as keys, are skipped); at least one.
    ///
    /// ```
    /// use rpc_electrum::{BuildError, TlsVerify};
    /// let err = TlsVerify::roots_from_pem(b"not a certificate").unwrap_err();
    /// assert!(matches!(err, BuildError::BadRoot(_)));
    /// ```
    pub fn roots_from_pem(pem: &[u8]) -> Result<TlsVerify, BuildError> {
        use rustls::pki_types::pem::PemObject;
        use rustls::pki_types::CertificateDer;
        let mut ders = Vec::new();
        for cert in CertificateDer::pem_slice_iter(pem) {
            let cert = cert.map_err(|e| BuildError::BadRoot(format!("PEM: {e}")))?;
            ders.push(cert.as_ref().to_vec());
        }
        if ders.is_empty() {
            return Err(BuildError::BadRoot(
                "no CERTIFICATE block in the PEM text".to_owned(),
            ));
        }
        // Refused now rather than at the first connection.
        crate::tls::client_config(&TlsVerify::Roots(ders.clone()))?;
        Ok(TlsVerify::Roots(ders))
    }
}

/// Where and how to connect; built by [`ElectrumBackend::builder`](crate::ElectrumBackend::builder).
#[derive(Clone, Debug)]
pub(crate) struct Config {
    pub(crate) name: Arc<str>,
    pub(crate) host: String,
    pub(crate) port: u16,
    pub(crate) tls: Option<TlsVerify>,
    pub(crate) client_name: String,
    pub(crate) protocol_min: String,
    pub(crate) protocol_max: String,
    pub(crate) connect_timeout: Duration,
    pub(crate) request_timeout: Duration,
    pub(crate) ping_interval: Duration,
    pub(crate) ping_timeout: Duration,
    pub(crate) backoff_min: Duration,
    pub(crate) backoff_max: Duration,
    pub(crate) max_line: usize,
    pub(crate) max_in_flight: usize,
    pub(crate) expect_genesis: Option<String>,
    pub(crate) distrust_period: Duration,
    pub(crate) tip_board: Option<(crate::TipBoard, u64)>,
}

/// Errors building an [`ElectrumBackend`](crate::ElectrumBackend).
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum BuildError {
    /// The address is not `tcp://host:port` or `tls://host:port`.
    #[error("`{0}` is not tcp://host:port or tls://host:port")]
    BadAddress(String),
    /// A pinned fingerprint that is not 32 bytes of hex.
    #[error("a SHA-256 fingerprint is 64 hex digits (`:` separators allowed)")]
    BadFingerprint,
    /// A root certificate rustls refused.
    #[error("root certificate refused: {0}")]
    BadRoot(String),
    /// `build()` was called outside a Tokio runtime (the worker needs one).
    #[error("ElectrumBackend::build must be called inside a Tokio runtime")]
    NoRuntime,
}

impl Config {
    pub(crate) fn parse(name: Arc<str>, address: &str) -> Result<Config, BuildError> {
        let bad = || BuildError::BadAddress(address.to_owned());
        let (tls, rest) = if let Some(r) = address.strip_prefix("tcp://") {
            (None, r)
        } else if let Some(r) = address
            .strip_prefix("tls://")
            .or_else(|| address.strip_prefix("ssl://"))
        {
            (Some(TlsVerify::default()), r)
        } else {
            return Err(bad());
        };
        let rest = rest.trim_end_matches('/');
        let (host, port) = rest.rsplit_once(':').ok_or_else(bad)?;
        let host = host.trim_start_matches('[').trim_end_matches(']');
        let port: u16 = port.parse().map_err(|_| bad())?;
        if host.is_empty() || port == 0 {
            return Err(bad());
        }
        Ok(Config {
            name,
            host: host.to_owned(),
            port,
            tls,
            client_name: concat!("rpc-electrum/", env!("CARGO_PKG_VERSION")).to_owned(),
            protocol_min: "1.4".to_owned(),
            protocol_max: "1.6".to_owned(),
            connect_timeout: Duration::from_secs(5),
            request_timeout: Duration::from_secs(10),
            ping_interval: Duration::from_secs(5),
            ping_timeout: Duration::from_secs(5),
            backoff_min: Duration::from_millis(250),
            backoff_max: Duration::from_secs(4),
            max_line: 8 << 20,
            max_in_flight: 1024,
            expect_genesis: None,
            distrust_period: Duration::from_secs(600),
            tip_board: None,
        })
    }
}

/// Parses a hex SHA-256 fingerprint (colons allowed).
pub(crate) fn parse_fingerprint(hex: &str) -> Result<[u8; 32], BuildError> {
    let digits: Vec<u8> = hex.bytes().filter(|b| *b != b':').collect();
    if digits.len() != 64 {
        return Err(BuildError::BadFingerprint);
    }
    let mut out = [0u8; 32];
    for (i, pair) in digits.chunks(2).enumerate() {
        let s = std::str::from_utf8(pair).map_err(|_| BuildError::BadFingerprint)?;
        out[i] = u8::from_str_radix(s, 16).map_err(|_| BuildError::BadFingerprint)?;
    }
    Ok(out)
}
