use std::fmt;
use std::sync::Arc;
use std::task::{Context, Poll};

use rpc_core::batch::{Batch, BatchAnswers, BoxedBatchFuture, JsonRpcBatchService};
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

    /// Takes over what `previous` (the group this one replaces, on a
    /// configuration reload) learned about the members both share by name
    /// and `keep` accepts — pass the names whose node and settings did not
    /// change. Health (out of service until when, failures in a row,
    /// latency, the adaptive concurrency limit), heads and suspicions (a
    /// member caught lying stays out of rotation), and the agreed head,
    /// finalized block and reorganisation count (the chain view never goes
    /// back across a reload). Call it on a group just built, before it
    /// serves or is cloned; returns how many members inherited (0 if the
    /// group was already shared).
    ///
    /// ```
    /// use rpc_core::test_util::{MockBackend, Step};
    /// use rpc_failover::{FailoverLayer, Member};
    ///
    /// let node = |name: &str| Member::new(name, MockBackend::new(name, |_| Step::Ok("\"0x1\"")));
    /// let old = FailoverLayer::new().build(vec![node("a"), node("b")]).unwrap();
    /// // `b` changed its URL: only `a` keeps its state.
    /// let new = FailoverLayer::new().build(vec![node("a"), node("b"), node("c")]).unwrap();
    /// let (new, inherited) = new.inherit(&old, |name| name != "b");
    /// assert_eq!(inherited, 1);
    /// # drop(new);
    /// ```
    pub fn inherit<T>(
        mut self,
        previous: &Failover<T>,
        keep: impl Fn(&str) -> bool,
    ) -> (Self, usize) {
        let n = Core::inherit_shared(&mut self.core, &previous.core, &keep);
        (self, n)
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
        // `run` boxes the chosen path's future itself.
        super::future::run(self.core.clone(), self.hedge.clone(), request)
    }
}

impl<S: JsonRpcBatchService> Service<Batch> for Failover<S> {
    type Response = BatchAnswers;
    type Error = std::convert::Infallible;
    type Future = BoxedBatchFuture;

    fn poll_ready(&mut self, _cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        Poll::Ready(Ok(()))
    }

    /// The calls that need nothing of their own (no pin, no safe or
    /// finalized head, no hedging or broadcast) go to one member as one
    /// attempt, as a batch: a member with the heads they need, the member's
    /// health recorded once for the attempt. The calls whose answer says
    /// "try elsewhere" (a failure that may move on, an answer below the
    /// head the call needs, a suspect member) move on together to the next
    /// member. The others go as single calls.
    fn call(&mut self, batch: Batch) -> BoxedBatchFuture {
        self.core.ensure_prober();
        super::future::run_batch(self.clone(), batch)
    }
}
