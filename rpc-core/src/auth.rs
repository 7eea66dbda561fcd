//! Client keys: who may call at all, and what each key may do (cargo
//! feature `server`).
//!
//! [`ApiKeys`] is checked by the HTTP front
//! ([`ServerConfig::api_keys`](crate::server::ServerConfig::api_keys))
//! before a request body is read: the key comes from the API-key header
//! ([`ServerConfig::api_key_header`](crate::server::ServerConfig::api_key_header))
//! or from the path (`POST /v1/<key>`, the providers' convention, with
//! [`ApiKeys::path_prefix`]). A request without a key (unless
//! [public](ApiKeys::public) access is on) or with an unknown one is refused
//! with HTTP 401 and a JSON-RPC error (`-32012`), whatever its body; a
//! WebSocket upgrade likewise. A known key's calls carry its **id**
//! ([`ApiKey`] in their extensions), never the secret: rate limits
//! ([`RateLimitLayer::key`](crate::ratelimit::RateLimitLayer::key)), logs
//! and metrics only ever see ids.
//!
//! Keys are kept as SHA-256 digests (given in clear, e.g. from the
//! environment, or already hashed, e.g. from a file of hashed keys,
//! [`ApiKeys::parse_hashed`]); a presented key is hashed and looked up by
//! digest, so comparing never runs over the secret itself.
//!
//! [`KeyPolicyLayer`] then applies what each key may do, call by call:
//! which methods (others get `-32601`, as the method filter answers) and
//! which group its calls go to ([`RouteTo`], honoured by
//! [`MethodRouter`](crate::route::MethodRouter)).
//!
//! ```
//! use rpc_core::auth::{ApiKeys, KeyPolicy, KeyPolicyLayer};
//! use rpc_core::filter::MethodFilter;
//! use rpc_core::server::ServerConfig;
//!
//! let keys = ApiKeys::new()
//!     .key("partner-1", "s3cret-partner-key")
//!     .path_prefix("/v1/");
//! let server = ServerConfig::default()
//!     .api_key_header(http::HeaderName::from_static("x-api-key"))
//!     .api_keys(keys);
//! let policy = KeyPolicyLayer::new().key(
//!     "partner-1",
//!     KeyPolicy::default().methods(MethodFilter::allow(["eth_*"]).unwrap()).route_to("archive"),
//! );
//! # drop((server, policy));
//! ```

use std::collections::HashMap;
use std::sync::Arc;
use std::task::{Context, Poll};

use sha2::Digest;
use tower::{Layer, Service};

use crate::filter::MethodFilter;
use crate::{ApiKey, ErrorObject, Request, Response, RouteTo, RpcError};

/// The JSON-RPC code of a request refused for its key (HTTP 401).
pub const UNAUTHORIZED: i64 = -32012;

/// The message of a call whose key may not call its method (`-32601`).
pub const KEY_METHOD_MESSAGE: &str = "method not allowed for this API key";

/// Why a request's key was refused.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum AuthError {
    /// No key, and public access is off.
    #[error("unauthorized: an API key is required")]
    Missing,
    /// A key no entry has.
    #[error("unauthorized: unknown API key")]
    Unknown,
}

impl AuthError {
    /// The error object answered with HTTP 401.
    pub fn to_error_object(self) -> ErrorObject {
        ErrorObject::new(UNAUTHORIZED, self.to_string())
    }
}

/// A hashed key that could not be read.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("line {line}: {reason}")]
pub struct KeyFileError {
    /// 1-based line of the file.
    pub line: usize,
    /// What is wrong with it.
    pub reason: String,
}

/// The keys that may call (see the [module docs](self)).
#[derive(Clone, Debug, Default)]
pub struct ApiKeys {
    by_digest: HashMap<[u8; 32], ApiKey>,
    public: bool,
    path_prefix: Option<Arc<str>>,
}

impl ApiKeys {
    /// No key yet; public access off; keys only from the header.
    pub fn new() -> Self {
        ApiKeys::default()
    }

    /// Adds a key given in clear (hashed at once) under `id`.
    pub fn key(self, id: &str, secret: &str) -> Self {
        self.hashed(id, digest(secret))
    }

    /// Adds a key by its SHA-256 digest under `id`.
    pub fn hashed(mut self, id: &str, sha256: [u8; 32]) -> Self {
        self.by_digest.insert(sha256, ApiKey(Arc::from(id)));
        self
    }

    /// Adds the keys of a file of hashed keys: one `ID SHA256-HEX` per line
    /// (64 hex digits: `printf %s "$KEY" | sha256sum`), blank lines and
    /// lines starting with `#` ignored.
    pub fn parse_hashed(mut self, text: &str) -> Result<Self, KeyFileError> {
        for (n, line) in text.lines().enumerate() {
            let line = line.trim();
            if line.is_empty() || line.starts_with('#') {
                continue;
            }
            let error = |reason: &str| KeyFileError {
                line: n + 1,
                reason: reason.to_owned(),
            };
            let mut fields = line.split_whitespace();
            let (Some(id), Some(hex_digest), None) = (fields.next(), fields.next(), fields.next())
            else {
                return Err(error("expected `ID SHA256-HEX`"));
            };
            let mut sha = [0u8; 32];
            hex::decode_to_slice(hex_digest, &mut sha)
                .map_err(|_| error("the digest is not 64 hexadecimal digits"))?;
            self = self.hashed(id, sha);
        }
        Ok(self)
    }

    /// Whether requests without a key may call (default: no, 401). They
    /// carry no [`ApiKey`] (rate limits charge their IP). A wrong key is
    /// refused either way.
    pub fn public(mut self, on: bool) -> Self {
        self.public = on;
        self
    }

    /// Also takes the key from the request path: `POST {prefix}<key>`
    /// (e.g. `"/v1/"`); the header wins when both are present.
    pub fn path_prefix(mut self, prefix: impl Into<Arc<str>>) -> Self {
        self.path_prefix = Some(prefix.into());
        self
    }

    /// How many keys there are.
    pub fn len(&self) -> usize {
        self.by_digest.len()
    }

    /// Whether there is none.
    pub fn is_empty(&self) -> bool {
        self.by_digest.is_empty()
    }

    /// The key in `path`, if it has the prefix (the segment after it, up
    /// to the next `/`, `?` excluded).
    pub fn key_in_path<'a>(&self, path: &'a str) -> Option<&'a str> {
        let rest = path.strip_prefix(&**self.path_prefix.as_ref()?)?;
        let key = rest.split('/').next().unwrap_or_default();
        (!key.is_empty()).then_some(key)
    }

    /// Checks a presented key: its id (`None` for public access without a
    /// key), or why it is refused.
    pub fn check(&self, presented: Option<&str>) -> Result<Option<ApiKey>, AuthError> {
        match presented {
            None if self.public => Ok(None),
            None => Err(AuthError::Missing),
            Some(secret) => self
                .by_digest
                .get(&digest(secret))
                .cloned()
                .map(Some)
                .ok_or(AuthError::Unknown),
        }
    }
}

fn digest(secret: &str) -> [u8; 32] {
    sha2::Sha256::digest(secret.as_bytes()).into()
}

/// What one key may do.
#[derive(Clone, Debug, Default)]
pub struct KeyPolicy {
    methods: Option<MethodFilter>,
    route: Option<Arc<str>>,
}

impl KeyPolicy {
    /// Only these methods (default: every method the layers below allow).
    pub fn methods(mut self, filter: MethodFilter) -> Self {
        self.methods = Some(filter);
        self
    }

    /// Every call of the key goes to this group (default: routed by method).
    pub fn route_to(mut self, group: impl Into<Arc<str>>) -> Self {
        self.route = Some(group.into());
        self
    }
}

/// Applies each key's [`KeyPolicy`] to its calls (see the
/// [module docs](self)); calls without a key, or of a key without a
/// policy, pass unchanged.
#[derive(Clone, Debug, Default)]
pub struct KeyPolicyLayer {
    policies: Arc<HashMap<Arc<str>, KeyPolicy>>,
}

impl KeyPolicyLayer {
    /// No policy yet.
    pub fn new() -> Self {
        KeyPolicyLayer::default()
    }

    /// Sets the policy of key `id`.
    pub fn key(mut self, id: &str, policy: KeyPolicy) -> Self {
        Arc::make_mut(&mut self.policies).insert(Arc::from(id), policy);
        self
    }

    /// Whether any key has a policy.
    pub fn is_empty(&self) -> bool {
        self.policies.is_empty()
    }
}

impl<S> Layer<S> for KeyPolicyLayer {
    type Service = KeyPolicyService<S>;

    fn layer(&self, inner: S) -> Self::Service {
        KeyPolicyService {
            inner,
            policies: self.policies.clone(),
        }
    }
}

/// The service of [`KeyPolicyLayer`].
#[derive(Clone, Debug)]
pub struct KeyPolicyService<S> {
    inner: S,
    policies: Arc<HashMap<Arc<str>, KeyPolicy>>,
}

impl<S> Service<Request> for KeyPolicyService<S>
where
    S: Service<Request, Response = Response, Error = RpcError>,
{
    type Response = Response;
    type Error = RpcError;
    type Future = crate::filter::ResponseFuture<S::Future>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, mut req: Request) -> Self::Future {
        let policy = req
            .extensions()
            .get::<ApiKey>()
            .and_then(|k| self.policies.get(&k.0));
        if let Some(policy) = policy {
            if let Some(filter) = &policy.methods {
                if !filter.permits(req.method()) {
                    return crate::filter::ResponseFuture::rejected(RpcError::MethodNotAllowed {
                        message: Arc::from(KEY_METHOD_MESSAGE),
                    });
                }
            }
            if let Some(group) = policy.route.clone() {
                req.extensions_mut().insert(RouteTo(group));
            }
        }
        crate::filter::ResponseFuture::inner(self.inner.call(req))
    }
}

impl<S> Service<crate::batch::Batch> for KeyPolicyService<S>
where
    S: crate::batch::JsonRpcBatchService,
{
    type Response = crate::batch::BatchAnswers;
    type Error = std::convert::Infallible;
    type Future = crate::batch::PassOrBoxed<<S as Service<crate::batch::Batch>>::Future>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        Service::<crate::batch::Batch>::poll_ready(&mut self.inner, cx)
    }

    /// Each call as a single call would be: refused in place, or routed to
    /// its key's group; the others go on as one batch.
    fn call(&mut self, batch: crate::batch::Batch) -> Self::Future {
        let policies = self.policies.clone();
        crate::batch::answer_in_place(&mut self.inner, batch, move |call| {
            let policy = call
                .extensions()
                .get::<ApiKey>()
                .and_then(|k| policies.get(&k.0))?;
            if let Some(filter) = &policy.methods {
                if !filter.permits(call.method()) {
                    return Some(Err(RpcError::MethodNotAllowed {
                        message: Arc::from(KEY_METHOD_MESSAGE),
                    }));
                }
            }
            if let Some(group) = policy.route.clone() {
                call.extensions_mut().insert(RouteTo(group));
            }
            None
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keys_are_found_by_digest_and_refused_otherwise() {
        let hashed = hex::encode(digest("from-a-file"));
        let keys = ApiKeys::new()
            .key("a", "s3cret")
            .parse_hashed(&format!("# comment\n\nb {hashed}\n"))
            .expect("a valid file");
        assert_eq!(keys.len(), 2);
        assert_eq!(keys.check(Some("s3cret")), Ok(Some(ApiKey(Arc::from("a")))));
        assert_eq!(
            keys.check(Some("from-a-file")),
            Ok(Some(ApiKey(Arc::from("b"))))
        );
        assert_eq!(keys.check(Some("s3cre")), Err(AuthError::Unknown));
        assert_eq!(keys.check(None), Err(AuthError::Missing));
        let public = keys.public(true);
        assert_eq!(public.check(None), Ok(None));
        assert_eq!(public.check(Some("nope")), Err(AuthError::Unknown));
    }

    #[test]
    fn a_bad_key_file_names_its_line() {
        let err = ApiKeys::new()
            .parse_hashed("a 00\n")
            .expect_err("short digest");
        assert_eq!(err.line, 1);
        let err = ApiKeys::new()
            .parse_hashed(&format!("\nb {} extra\n", "0".repeat(64)))
            .expect_err("three fields");
        assert_eq!(err.line, 2);
    }

    #[test]
    fn the_key_in_the_path() {
        let keys = ApiKeys::new().path_prefix("/v1/");
        assert_eq!(keys.key_in_path("/v1/abc"), Some("abc"));
        assert_eq!(keys.key_in_path("/v1/abc/"), Some("abc"));
        assert_eq!(keys.key_in_path("/v1/"), None);
        assert_eq!(keys.key_in_path("/v2/abc"), None);
        assert_eq!(ApiKeys::new().key_in_path("/v1/abc"), None);
    }
}
