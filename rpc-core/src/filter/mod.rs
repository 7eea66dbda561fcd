//! Method allow- and deny-lists, applied before any cost is paid.
//!
//! [`MethodFilterLayer`] answers a refused call with `-32601` (HTTP 403 for a
//! single call) without touching the inner service. Patterns are exact names
//! (`eth_call`) or prefixes ending in `*` (`eth_*`, `debug_*`, or `*` for all).
//!
//! A method passes when it matches the allow-list (if there is one) and does
//! not match the deny-list: the deny-list wins.
//!
//! ```
//! use rpc_core::filter::{MethodFilter, MethodFilterLayer};
//!
//! let filter = MethodFilter::allow(["eth_*", "net_version"])
//!     .unwrap()
//!     .deny(["eth_sendRawTransaction"])
//!     .unwrap()
//!     .message("rpc method is not whitelisted");
//! assert!(filter.permits("eth_call"));
//! assert!(!filter.permits("eth_sendRawTransaction"));
//! assert!(!filter.permits("debug_traceTransaction"));
//! let layer = MethodFilterLayer::new(filter);
//! # drop(layer);
//! ```

mod future;
mod layer;
mod service;

use std::sync::Arc;

use crate::protocol::MethodSet;

pub use future::ResponseFuture;
pub use layer::MethodFilterLayer;
pub use service::MethodFilterService;

/// Re-exported from [`protocol`](crate::protocol), where the pattern table lives.
pub use crate::protocol::PatternError;

/// The default message for a refused method.
pub const DEFAULT_MESSAGE: &str = "method not allowed";

/// Which methods may pass, and what a refused caller is told.
///
/// Defaults: no allow-list (everything passes), an empty deny-list, and the
/// message [`DEFAULT_MESSAGE`].
#[derive(Debug, Clone)]
pub struct MethodFilter {
    allow: Option<MethodSet>,
    deny: MethodSet,
    message: Arc<str>,
}

impl Default for MethodFilter {
    fn default() -> Self {
        MethodFilter {
            allow: None,
            deny: MethodSet::new(),
            message: Arc::from(DEFAULT_MESSAGE),
        }
    }
}

impl MethodFilter {
    /// A filter that lets every method pass (add a deny-list with [`deny`](Self::deny)).
    pub fn allow_all() -> Self {
        Self::default()
    }

    /// A filter that lets only the given methods pass.
    pub fn allow<I, P>(patterns: I) -> Result<Self, PatternError>
    where
        I: IntoIterator<Item = P>,
        P: AsRef<str>,
    {
        Ok(MethodFilter {
            allow: Some(MethodSet::parse(patterns)?),
            ..Self::default()
        })
    }

    /// Adds patterns to the deny-list, which wins over the allow-list.
    pub fn deny<I, P>(mut self, patterns: I) -> Result<Self, PatternError>
    where
        I: IntoIterator<Item = P>,
        P: AsRef<str>,
    {
        for p in patterns {
            self.deny.insert(p.as_ref(), ())?;
        }
        Ok(self)
    }

    /// Sets the message a refused caller sees.
    pub fn message(mut self, message: impl Into<Arc<str>>) -> Self {
        self.message = message.into();
        self
    }

    /// Whether `method` may pass.
    pub fn permits(&self, method: &str) -> bool {
        self.allow.as_ref().is_none_or(|a| a.matches(method)) && !self.deny.matches(method)
    }

    pub(crate) fn rejection(&self) -> crate::RpcError {
        crate::RpcError::MethodNotAllowed {
            message: self.message.clone(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn patterns() {
        let f = MethodFilter::allow(["eth_*", "net_version", "web3_clientVersion"]).expect("ok");
        assert!(f.permits("eth_call"));
        assert!(f.permits("eth_"));
        assert!(f.permits("net_version"));
        assert!(!f.permits("net_peerCount"));
        assert!(!f.permits("debug_traceCall"));
        assert!(!f.permits("Eth_call"));

        let f = MethodFilter::allow_all()
            .deny(["debug_*", "admin_*"])
            .expect("ok");
        assert!(f.permits("eth_call"));
        assert!(!f.permits("debug_traceCall"));

        let f = MethodFilter::allow(["*"])
            .expect("ok")
            .deny(["eth_sendRawTransaction"])
            .expect("ok");
        assert!(f.permits("anything"));
        assert!(!f.permits("eth_sendRawTransaction"));

        assert_eq!(MethodFilter::allow([""]).unwrap_err(), PatternError::Empty);
        assert!(matches!(
            MethodFilter::allow(["eth_*_x"]).unwrap_err(),
            PatternError::InnerWildcard(_)
        ));
        let empty: [&str; 0] = [];
        assert!(!MethodFilter::allow(empty).expect("ok").permits("eth_call"));
    }
}
