//! Why a backend could not be built.

use std::sync::Arc;

/// Why a backend (`HttpBackend`, `WsBackend`) could not be built. Never
/// contains the URL.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum BuildError {
    /// The name is empty.
    #[error("backend name is empty")]
    EmptyName,
    /// The URL does not parse, or is not http/https.
    #[error("backend `{backend}`: invalid URL: {reason}")]
    InvalidUrl {
        /// The backend's name.
        backend: Arc<str>,
        /// What is wrong (without the URL itself).
        reason: &'static str,
    },
    /// A header name or value is not valid HTTP.
    #[error("backend `{backend}`: invalid header `{header}`")]
    InvalidHeader {
        /// The backend's name.
        backend: Arc<str>,
        /// The header's name as given.
        header: String,
    },
    /// The TLS set-up failed.
    #[error("backend `{backend}`: TLS set-up failed: {reason}")]
    Tls {
        /// The backend's name.
        backend: Arc<str>,
        /// The error.
        reason: String,
    },
}
