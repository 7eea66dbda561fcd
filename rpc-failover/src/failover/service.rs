use std::fmt;
use std::sync::Arc;
use std::task::{Context, Poll};

use rpc_core::{JsonRpcService, Request, Response, RpcError};
use tower::Service;

use super::{FailoverLayer, ResponseFuture};
use crate::group::{Core, GroupError, MemberStatus};
use crate::hedge::LatencyTracker;
use crate::member::Member;

/// A failover group: itself a [`JsonRpcService`], so groups nest.
///
/// Built by [`FailoverLayer`]. Clones share one health state.
///
/// `poll_ready` is always ready: members' readiness is checked per call, and
/// a member that is not ready is skipped while another can take the call.
pub struct Failover<S> {
    pub(crate) core: Arc<Core<S>>,
    pub(crate) hedge: Option<Arc<LatencyTracker>>,
}

impl<S> Failover<S> {
    pub(crate) fn new(members: Vec<Member<S>>, layer: FailoverLayer) -> Result<Self, GroupError> {
        Ok(Failover {
            core: Arc::new(Core::new(members, layer.policy)?),
            hedge: layer
                .hedge
                .filter(|h| h.max_hedges > 0)
                .map(|h| Arc::new(LatencyTracker::new(h))),
        })
    }

    /// Each member's health now, in the order calls try them.
    pub fn members(&self) -> impl Iterator<Item = MemberStatus> + '_ {
        self.core.status()
    }

    /// Whether the group can take a call now: a member is in service, or
    /// out with its window ended (the next call is its trial). For a
    /// readiness check (`rpc_core::server::ServerConfig::readiness`).
    pub fn can_serve(&self) -> bool {
        self.core.available() > 0
    }

    /// What the group agrees on (agreed head, finalized block,
    /// reorganisations), live, with head tracking on: give it to a cache
    /// ([`rpc_cache`'s `CacheLayer::chain_view`]) so that what the group
    /// learns from probes reaches answers kept in memory at once.
    ///
    /// [`rpc_cache`'s `CacheLayer::chain_view`]: https://docs.rs/rpc-cache
    pub fn chain_view(&self) -> Option<rpc_core::ChainView> {
        self.core.heads.as_ref().map(|h| h.view.clone())
    }
}

impl<S: JsonRpcService> Failover<S> {
    /// Starts probing members' heads now rather than at the first call
    /// (with head tracking on; must run inside a Tokio runtime). Idempotent.
    pub fn start_head_probes(&self) {
        self.core.ensure_prober();
    }
}

impl<S> Clone for Failover<S> {
    fn clone(&self) -> Self {
        Failover {
            core: self.core.clone(),
            hedge: self.hedge.clone(),
        }
    }
}

impl<S> fmt::Debug for Failover<S> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Failover")
            .field("members", &self.core.status().collect::<Vec<_>>())
            .field("policy", &self.core.policy)
            .field("hedging", &self.hedge.is_some())
            .finish()
    }
}

impl<S: JsonRpcService> Service<Request> for Failover<S> {
    type Response = Response;
    type Error = RpcError;
    type Future = ResponseFuture;

    fn poll_ready(&mut self, _cx: &mut Context<'_>) -> Poll<Result<(), RpcError>> {
        Poll::Ready(Ok(()))
    }

    fn call(&mut self, request: Request) -> ResponseFuture {
        self.core.ensure_prober();
        ResponseFuture::new(super::future::run(
            self.core.clone(),
            self.hedge.clone(),
            request,
        ))
    }
}
