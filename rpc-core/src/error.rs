//! Why a call got no answer, and what the client is told.

use std::sync::Arc;
use std::time::Duration;

use http::StatusCode;

use crate::error_object::codes;
use crate::ErrorObject;

/// Whether a failed request may have reached the backend.
///
/// Retrying or failing over a request that *may have been sent* is only safe
/// for methods that can be repeated (reads, transaction broadcasts).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Delivery {
    /// The request certainly did not leave this process: repeating it is safe.
    NotSent,
    /// The request may have reached the backend and may have been executed.
    MaybeSent,
}

/// A boxed error, as tower's stock middleware produce.
pub type BoxError = Box<dyn std::error::Error + Send + Sync + 'static>;

/// Every way a call can end without an answer from a backend.
///
/// A backend that answers with a JSON-RPC error object is *not* an `RpcError`:
/// that is a successful [`Response`](crate::Response). Each variant knows
/// whether the request may have been delivered ([`delivery`](Self::delivery)),
/// whether repeating it can help ([`is_retryable`](Self::is_retryable)), and
/// which single error object and HTTP status the client sees
/// ([`to_error_object`](Self::to_error_object), [`http_status`](Self::http_status)).
///
/// Backends are referred to by name; an `RpcError` never holds a URL, because
/// URLs carry API keys.
///
/// | variant | delivery | retryable | code | HTTP |
/// |---|---|---|---|---|
/// | `Connect` | not sent | yes | -32011 | 503 |
/// | `Timeout` | maybe sent | yes | -32015 | 504 |
/// | `DeadlineExceeded` | not sent | no | -32015 | 504 |
/// | `HttpStatus` | maybe sent | 408, 429, 5xx but 501 | -32011 | 503 |
/// | `ConnectionClosed` | maybe sent | yes | -32011 | 503 |
/// | `InvalidResponse` | maybe sent | yes | -32011 | 503 |
/// | `ResponseTooLarge` | maybe sent | no | -32020 | 502 |
/// | `NoBackendAvailable` | not sent | yes | -32011 | 503 |
/// | `MethodNotAllowed` | not sent | no | -32601 | 403 |
/// | `InvalidParams` | not sent | no | -32602 | 400 |
/// | `RateLimited` | not sent | after `retry_after` | -32016 | 429 |
/// | `SenderLimited` | not sent | after `retry_after` | -32017 | 429 |
/// | `Overloaded` | not sent | yes | -32011 | 503 |
/// | `QuorumNotReached` | maybe sent | no | -32019 | 502 |
/// | `Rejected` | not sent | no | its own | its own |
/// | `Internal` | maybe sent | no | -32603 | 500 |
///
/// ```
/// use http::StatusCode;
/// use rpc_core::{Delivery, RpcError};
///
/// let err = RpcError::Connect { backend: "alchemy".into(), source: "connection refused".into() };
/// assert_eq!(err.delivery(), Delivery::NotSent);
/// assert!(err.is_retryable());
/// assert!(err.is_backend_fault());
/// assert!(!RpcError::DeadlineExceeded.is_backend_fault());
/// assert_eq!(err.clone().to_string(), err.to_string());
/// assert_eq!(err.to_error_object().code(), -32011);
/// assert_eq!(err.http_status(), StatusCode::SERVICE_UNAVAILABLE);
/// assert_eq!(err.to_string(), "backend `alchemy`: connect failed: connection refused");
/// ```
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum RpcError {
    /// The connection to the backend could not be established.
    #[error("backend `{backend}`: connect failed: {source}")]
    Connect {
        /// The backend's name.
        backend: Arc<str>,
        /// The transport error (never includes the URL).
        source: BoxError,
    },

    /// No answer within the backend's timeout.
    #[error("{}: timed out after {elapsed:?}", backend_label(backend))]
    Timeout {
        /// The backend's name, or `None` when the whole stack timed out.
        backend: Option<Arc<str>>,
        /// How long the call waited.
        elapsed: Duration,
    },

    /// The call's [`Deadline`](crate::Deadline) had passed before it could be sent.
    #[error("deadline passed before the call was sent")]
    DeadlineExceeded,

    /// The backend answered with a non-success HTTP status.
    #[error("backend `{backend}`: HTTP status {status}")]
    HttpStatus {
        /// The backend's name.
        backend: Arc<str>,
        /// The HTTP status.
        status: StatusCode,
        /// The backend's `Retry-After`, if it sent one.
        retry_after: Option<Duration>,
    },

    /// The connection closed before a complete answer arrived.
    #[error("backend `{backend}`: connection closed: {source}")]
    ConnectionClosed {
        /// The backend's name.
        backend: Arc<str>,
        /// The transport error.
        source: BoxError,
    },

    /// The backend's answer is not a valid JSON-RPC response to this call.
    #[error("backend `{backend}`: invalid response: {reason}")]
    InvalidResponse {
        /// The backend's name.
        backend: Arc<str>,
        /// What is wrong with it.
        reason: String,
    },

    /// The backend's answer is over the configured size limit.
    #[error("backend `{backend}`: response larger than {limit} bytes")]
    ResponseTooLarge {
        /// The backend's name.
        backend: Arc<str>,
        /// The limit in bytes.
        limit: usize,
    },

    /// No backend in the group can take the call now.
    #[error("no backend available{}", retry_after.map(|d| format!(" (retry in {d:?})")).unwrap_or_default())]
    NoBackendAvailable {
        /// When one is expected back, if known.
        retry_after: Option<Duration>,
    },

    /// A policy (method filter) refused the method.
    #[error("method not allowed: {message}")]
    MethodNotAllowed {
        /// The message the client sees.
        message: Arc<str>,
    },

    /// The params failed one of our own checks.
    #[error("invalid params: {message}")]
    InvalidParams {
        /// What is wrong.
        message: String,
    },

    /// The client is over its rate limit.
    #[error("rate limited")]
    RateLimited {
        /// When the client may try again.
        retry_after: Option<Duration>,
    },

    /// The transaction's sender is over its rate limit (a per-sender limit
    /// on broadcasts: `ratelimit::SenderLimitLayer`).
    #[error("sender rate limited")]
    SenderLimited {
        /// When the sender may try again.
        retry_after: Option<Duration>,
    },

    /// A layer shed the call because the service is at capacity.
    #[error("overloaded")]
    Overloaded,

    /// Not enough backends agreed on an answer.
    #[error("quorum not reached: {reason}{}", format_votes(votes))]
    QuorumNotReached {
        /// What happened (how many answered, how many agreed).
        reason: String,
        /// What each asked backend said, by name (never by URL).
        votes: Vec<QuorumVote>,
    },

    /// A layer (or a member) refused the call with its own error object and
    /// HTTP status: the variant for user layers, which need no other.
    ///
    /// It is *not sent* and not a backend fault, so a member of a failover
    /// group that returns it **declines** the call without blame: the
    /// group moves on to the next member and does not count it against this
    /// one (e.g. an adapter that serves only some methods). When every
    /// member declines, the client gets the last refusal.
    ///
    /// ```
    /// use http::StatusCode;
    /// use rpc_core::{ErrorObject, RpcError};
    ///
    /// let err = RpcError::Rejected {
    ///     error: ErrorObject::new(-32601, "this node serves no traces"),
    ///     status: StatusCode::BAD_REQUEST,
    /// };
    /// assert_eq!(err.to_error_object().code(), -32601);
    /// assert_eq!(err.http_status(), StatusCode::BAD_REQUEST);
    /// assert!(!err.is_backend_fault() && !err.is_retryable());
    /// ```
    #[error("rejected: {}", error.message())]
    Rejected {
        /// The error object the client sees.
        error: ErrorObject,
        /// The HTTP status of a single call that ends this way.
        status: StatusCode,
    },

    /// A bug or an unexpected condition inside the stack.
    #[error("internal error: {0}")]
    Internal(String),
}

/// A transport error's message, standing in for the original in a clone.
#[derive(Debug)]
struct ClonedSource(String);

impl std::fmt::Display for ClonedSource {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.0)
    }
}

impl std::error::Error for ClonedSource {}

fn clone_source(source: &BoxError) -> BoxError {
    Box::new(ClonedSource(source.to_string()))
}

/// Clones share one failure among several waiters (a coalesced cache miss,
/// a hedged call). A transport `source` is cloned as its message: the clone
/// displays the same text but its `source` can no longer be downcast to the
/// original type.
impl Clone for RpcError {
    fn clone(&self) -> Self {
        match self {
            RpcError::Connect { backend, source } => RpcError::Connect {
                backend: backend.clone(),
                source: clone_source(source),
            },
            RpcError::Timeout { backend, elapsed } => RpcError::Timeout {
                backend: backend.clone(),
                elapsed: *elapsed,
            },
            RpcError::DeadlineExceeded => RpcError::DeadlineExceeded,
            RpcError::HttpStatus {
                backend,
                status,
                retry_after,
            } => RpcError::HttpStatus {
                backend: backend.clone(),
                status: *status,
                retry_after: *retry_after,
            },
            RpcError::ConnectionClosed { backend, source } => RpcError::ConnectionClosed {
                backend: backend.clone(),
                source: clone_source(source),
            },
            RpcError::InvalidResponse { backend, reason } => RpcError::InvalidResponse {
                backend: backend.clone(),
                reason: reason.clone(),
            },
            RpcError::ResponseTooLarge { backend, limit } => RpcError::ResponseTooLarge {
                backend: backend.clone(),
                limit: *limit,
            },
            RpcError::NoBackendAvailable { retry_after } => RpcError::NoBackendAvailable {
                retry_after: *retry_after,
            },
            RpcError::MethodNotAllowed { message } => RpcError::MethodNotAllowed {
                message: message.clone(),
            },
            RpcError::InvalidParams { message } => RpcError::InvalidParams {
                message: message.clone(),
            },
            RpcError::RateLimited { retry_after } => RpcError::RateLimited {
                retry_after: *retry_after,
            },
            RpcError::SenderLimited { retry_after } => RpcError::SenderLimited {
                retry_after: *retry_after,
            },
            RpcError::Overloaded => RpcError::Overloaded,
            RpcError::QuorumNotReached { reason, votes } => RpcError::QuorumNotReached {
                reason: reason.clone(),
                votes: votes.clone(),
            },
            RpcError::Rejected { error, status } => RpcError::Rejected {
                error: error.clone(),
                status: *status,
            },
            RpcError::Internal(message) => RpcError::Internal(message.clone()),
        }
    }
}

/// What one backend said in a quorum call that did not reach agreement.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct QuorumVote {
    /// The backend's name.
    pub backend: Arc<str>,
    /// A short description of its answer: `result <first bytes>`,
    /// `error <code>: <message>`, `failed: <reason>` or `no answer`.
    pub answer: String,
}

fn format_votes(votes: &[QuorumVote]) -> String {
    let mut out = String::new();
    for (i, v) in votes.iter().enumerate() {
        out.push_str(if i == 0 { " (" } else { "; " });
        out.push_str(&v.backend);
        out.push_str(": ");
        out.push_str(&v.answer);
    }
    if !out.is_empty() {
        out.push(')');
    }
    out
}

fn backend_label(backend: &Option<Arc<str>>) -> String {
    match backend {
        Some(name) => format!("backend `{name}`"),
        None => "call".to_owned(),
    }
}

impl RpcError {
    /// Whether the request may have reached a backend.
    pub fn delivery(&self) -> Delivery {
        match self {
            RpcError::Connect { .. }
            | RpcError::DeadlineExceeded
            | RpcError::NoBackendAvailable { .. }
            | RpcError::MethodNotAllowed { .. }
            | RpcError::InvalidParams { .. }
            | RpcError::RateLimited { .. }
            | RpcError::SenderLimited { .. }
            | RpcError::Rejected { .. }
            | RpcError::Overloaded => Delivery::NotSent,
            RpcError::Timeout { .. }
            | RpcError::HttpStatus { .. }
            | RpcError::ConnectionClosed { .. }
            | RpcError::InvalidResponse { .. }
            | RpcError::ResponseTooLarge { .. }
            | RpcError::QuorumNotReached { .. }
            | RpcError::Internal(_) => Delivery::MaybeSent,
        }
    }

    /// Whether trying again (later, or on another backend) can succeed.
    ///
    /// This says nothing about whether repeating is *safe*; combine it with
    /// [`delivery`](Self::delivery) and the method's classification.
    pub fn is_retryable(&self) -> bool {
        match self {
            RpcError::Connect { .. }
            | RpcError::Timeout { .. }
            | RpcError::ConnectionClosed { .. }
            | RpcError::InvalidResponse { .. }
            | RpcError::NoBackendAvailable { .. }
            | RpcError::RateLimited { .. }
            | RpcError::SenderLimited { .. }
            | RpcError::Overloaded => true,
            RpcError::HttpStatus { status, .. } => {
                *status == StatusCode::REQUEST_TIMEOUT
                    || *status == StatusCode::TOO_MANY_REQUESTS
                    || (status.is_server_error() && *status != StatusCode::NOT_IMPLEMENTED)
            }
            RpcError::DeadlineExceeded
            | RpcError::ResponseTooLarge { .. }
            | RpcError::MethodNotAllowed { .. }
            | RpcError::InvalidParams { .. }
            | RpcError::QuorumNotReached { .. }
            | RpcError::Rejected { .. }
            | RpcError::Internal(_) => false,
        }
    }

    /// Whether the failure is the backend's fault (it could not be reached,
    /// did not answer in time, or answered with something that is not a
    /// JSON-RPC response), so a failover group counts it against that
    /// backend's health. The call's own problems (`DeadlineExceeded`,
    /// `ResponseTooLarge`, a refused method, bad params), a saturated local
    /// layer (`Overloaded`, `RateLimited`) and bugs (`Internal`) are not.
    ///
    /// A nested group's `NoBackendAvailable` is its fault as seen from the
    /// outer group.
    pub fn is_backend_fault(&self) -> bool {
        matches!(
            self,
            RpcError::Connect { .. }
                | RpcError::Timeout { .. }
                | RpcError::HttpStatus { .. }
                | RpcError::ConnectionClosed { .. }
                | RpcError::InvalidResponse { .. }
                | RpcError::NoBackendAvailable { .. }
        )
    }

    /// How long to wait before trying again, when the cause said so.
    pub fn retry_after(&self) -> Option<Duration> {
        match self {
            RpcError::HttpStatus { retry_after, .. }
            | RpcError::NoBackendAvailable { retry_after }
            | RpcError::RateLimited { retry_after }
            | RpcError::SenderLimited { retry_after } => *retry_after,
            _ => None,
        }
    }

    /// The backend this error concerns, if one.
    pub fn backend(&self) -> Option<&str> {
        match self {
            RpcError::Connect { backend, .. }
            | RpcError::HttpStatus { backend, .. }
            | RpcError::ConnectionClosed { backend, .. }
            | RpcError::InvalidResponse { backend, .. }
            | RpcError::ResponseTooLarge { backend, .. } => Some(backend),
            RpcError::Timeout { backend, .. } => backend.as_deref(),
            _ => None,
        }
    }

    /// The error object the client sees. It never holds a URL; only
    /// `QuorumNotReached` names backends (in `data.votes`), so a client can
    /// see which backends disagreed.
    pub fn to_error_object(&self) -> ErrorObject {
        match self {
            RpcError::Connect { .. } => {
                ErrorObject::new(codes::NO_BACKEND, "upstream unavailable: connect failed")
            }
            RpcError::Timeout { .. } | RpcError::DeadlineExceeded => {
                ErrorObject::new(codes::GATEWAY_TIMEOUT, "gateway timeout")
            }
            RpcError::HttpStatus { status, .. } => ErrorObject::new(
                codes::NO_BACKEND,
                format!("upstream unavailable: HTTP status {}", status.as_u16()),
            ),
            RpcError::ConnectionClosed { .. } => {
                ErrorObject::new(codes::NO_BACKEND, "upstream unavailable: connection closed")
            }
            RpcError::InvalidResponse { .. } => {
                ErrorObject::new(codes::NO_BACKEND, "upstream unavailable: invalid response")
            }
            RpcError::ResponseTooLarge { .. } => {
                ErrorObject::new(codes::RESPONSE_TOO_LARGE, "backend response too large")
            }
            RpcError::NoBackendAvailable { .. } => {
                ErrorObject::new(codes::NO_BACKEND, "no backend available")
            }
            RpcError::MethodNotAllowed { message } => {
                ErrorObject::new(codes::METHOD_NOT_FOUND, message.to_string())
            }
            RpcError::InvalidParams { message } => {
                ErrorObject::new(codes::INVALID_PARAMS, format!("invalid params: {message}"))
            }
            RpcError::RateLimited { .. } => {
                ErrorObject::new(codes::RATE_LIMITED, "over rate limit")
            }
            RpcError::SenderLimited { .. } => ErrorObject::new(
                codes::SENDER_RATE_LIMITED,
                "over rate limit: too many transactions from this sender",
            ),
            RpcError::Overloaded => ErrorObject::new(codes::NO_BACKEND, "server overloaded"),
            RpcError::QuorumNotReached { votes, .. } => {
                let obj = ErrorObject::new(codes::QUORUM_NOT_REACHED, "backends did not agree");
                if votes.is_empty() {
                    return obj;
                }
                #[derive(serde::Serialize)]
                struct Data<'a> {
                    votes: Vec<Vote<'a>>,
                }
                #[derive(serde::Serialize)]
                struct Vote<'a> {
                    backend: &'a str,
                    answer: &'a str,
                }
                let data = Data {
                    votes: votes
                        .iter()
                        .map(|v| Vote {
                            backend: &v.backend,
                            answer: &v.answer,
                        })
                        .collect(),
                };
                match crate::RawJson::from_serialize(&data) {
                    Ok(raw) => obj.with_data(raw),
                    Err(_) => obj,
                }
            }
            RpcError::Rejected { error, .. } => error.clone(),
            RpcError::Internal(_) => ErrorObject::internal_error(),
        }
    }

    /// The HTTP status for a single (non-batch) call that failed this way.
    pub fn http_status(&self) -> StatusCode {
        match self {
            RpcError::Connect { .. }
            | RpcError::HttpStatus { .. }
            | RpcError::ConnectionClosed { .. }
            | RpcError::InvalidResponse { .. }
            | RpcError::NoBackendAvailable { .. }
            | RpcError::Overloaded => StatusCode::SERVICE_UNAVAILABLE,
            RpcError::Timeout { .. } | RpcError::DeadlineExceeded => StatusCode::GATEWAY_TIMEOUT,
            RpcError::ResponseTooLarge { .. } | RpcError::QuorumNotReached { .. } => {
                StatusCode::BAD_GATEWAY
            }
            RpcError::MethodNotAllowed { .. } => StatusCode::FORBIDDEN,
            RpcError::InvalidParams { .. } => StatusCode::BAD_REQUEST,
            RpcError::RateLimited { .. } | RpcError::SenderLimited { .. } => {
                StatusCode::TOO_MANY_REQUESTS
            }
            RpcError::Rejected { status, .. } => *status,
            RpcError::Internal(_) => StatusCode::INTERNAL_SERVER_ERROR,
        }
    }

    /// Converts the boxed error of a stock tower middleware into an `RpcError`,
    /// so stacks such as `ServiceBuilder::new().map_err(RpcError::from_boxed).timeout(..)`
    /// stay [`JsonRpcService`](crate::JsonRpcService)s.
    ///
    /// `tower::timeout::error::Elapsed` becomes [`RpcError::Timeout`],
    /// `tower::load_shed::error::Overloaded` becomes [`RpcError::Overloaded`], an
    /// `RpcError` (boxed or not) is returned as it is, and anything else becomes
    /// [`RpcError::Internal`].
    ///
    /// ```
    /// use rpc_core::RpcError;
    ///
    /// let boxed: rpc_core::BoxError = Box::new(RpcError::Overloaded);
    /// assert!(matches!(RpcError::from_boxed(boxed), RpcError::Overloaded));
    /// ```
    pub fn from_boxed(err: impl Into<BoxError>) -> RpcError {
        let err = match err.into().downcast::<RpcError>() {
            Ok(e) => return *e,
            Err(e) => e,
        };
        if err.is::<tower::timeout::error::Elapsed>() {
            return RpcError::Timeout {
                backend: None,
                elapsed: Duration::ZERO,
            };
        }
        if err.is::<tower::load_shed::error::Overloaded>() {
            return RpcError::Overloaded;
        }
        RpcError::Internal(err.to_string())
    }
}
