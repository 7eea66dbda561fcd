use std::fmt;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Duration;

use futures_util::stream::{FuturesUnordered, StreamExt};
use rpc_core::{JsonRpcService, Payload, QuorumVote, Request, Response, RpcError};
use tokio::time::Instant;
use tower::Service;

use super::QuorumLayer;
use crate::classify::Idempotency;
use crate::failover::future::{launch, run_sequential};
use crate::failover::ResponseFuture;
use crate::group::{Core, GroupError, MemberStatus, Outcome, Spread};
use crate::member::Member;

/// A quorum group: itself a [`JsonRpcService`]. Built by [`QuorumLayer`];
/// clones share one health state.
pub struct Quorum<S> {
    core: Arc<Core<S>>,
    k: usize,
    n: usize,
    timeout: Option<Duration>,
}

impl<S> Quorum<S> {
    pub(crate) fn new(members: Vec<Member<S>>, layer: &QuorumLayer) -> Result<Self, GroupError> {
        let count = members.len();
        let n = layer.n.unwrap_or(count);
        let (k, n) = (layer.k, n);
        if k == 0 || k > n || n > count {
            return Err(GroupError::BadQuorum { k, n });
        }
        let mut policy = layer.group.policy.clone();
        policy.spread = Spread::Off;
        Ok(Quorum {
            core: Arc::new(Core::new(members, policy)?),
            k,
            n,
            timeout: layer.timeout,
        })
    }

    /// Each member's health now, in priority order.
    pub fn members(&self) -> impl Iterator<Item = MemberStatus> + '_ {
        self.core.status()
    }

    /// Takes over what `previous` learned about the members both share by
    /// name and `keep` accepts, like
    /// [`Failover::inherit`](crate::Failover::inherit); call it on a group
    /// just built. Returns how many members inherited.
    pub fn inherit<T>(
        mut self,
        previous: &Quorum<T>,
        keep: impl Fn(&str) -> bool,
    ) -> (Self, usize) {
        let n = Core::inherit_shared(&mut self.core, &previous.core, &keep);
        (self, n)
    }

    /// Whether a quorum can be reached now: at least `k` members can take a
    /// call (in service, or due for their trial). For a readiness check.
    pub fn can_serve(&self) -> bool {
        self.core.available() >= self.k
    }
}

impl<S> Clone for Quorum<S> {
    fn clone(&self) -> Self {
        Quorum {
            core: self.core.clone(),
            k: self.k,
            n: self.n,
            timeout: self.timeout,
        }
    }
}

impl<S> fmt::Debug for Quorum<S> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Quorum")
            .field("k", &self.k)
            .field("n", &self.n)
            .field("timeout", &self.timeout)
            .field("members", &self.core.status().collect::<Vec<_>>())
            .finish()
    }
}

impl<S: JsonRpcService> Service<Request> for Quorum<S> {
    type Response = Response;
    type Error = RpcError;
    type Future = ResponseFuture;

    fn poll_ready(&mut self, _cx: &mut Context<'_>) -> Poll<Result<(), RpcError>> {
        Poll::Ready(Ok(()))
    }

    fn call(&mut self, request: Request) -> ResponseFuture {
        ResponseFuture::new(run(self.clone(), request))
    }
}

impl<S: JsonRpcService> Service<rpc_core::batch::Batch> for Quorum<S> {
    type Response = rpc_core::batch::BatchAnswers;
    type Error = std::convert::Infallible;
    type Future = rpc_core::batch::BoxedBatchFuture;

    fn poll_ready(&mut self, _cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        Poll::Ready(Ok(()))
    }

    /// Each call is asked of the members and voted on as a single call.
    fn call(&mut self, batch: rpc_core::batch::Batch) -> Self::Future {
        rpc_core::batch::BoxedBatchFuture::new(rpc_core::batch::per_call(self.clone(), batch))
    }
}

/// Whether two answers agree: byte-equal results, or equal error objects.
fn same_answer(a: &Response, b: &Response) -> bool {
    match (a.payload(), b.payload()) {
        (Payload::Result(x), Payload::Result(y)) => x.as_bytes() == y.as_bytes(),
        (Payload::Error(x), Payload::Error(y)) => {
            x.code() == y.code()
                && x.message() == y.message()
                && x.data().map(|d| d.as_bytes()) == y.data().map(|d| d.as_bytes())
        }
        _ => false,
    }
}

/// A short description of an answer for the disagreement report.
fn describe(outcome: &Outcome) -> String {
    const MAX: usize = 66;
    match outcome {
        Outcome::Answer(r) | Outcome::Refused(r) => match r.payload() {
            Payload::Result(raw) => {
                let bytes = raw.as_bytes();
                let shown = String::from_utf8_lossy(&bytes[..bytes.len().min(MAX)]);
                if bytes.len() > MAX {
                    format!("result {shown}… ({} bytes)", bytes.len())
                } else {
                    format!("result {shown}")
                }
            }
            Payload::Error(e) => format!("error {}: {}", e.code(), e.message()),
        },
        Outcome::Failed(err) | Outcome::Stalled(err) => format!("failed: {err}"),
        Outcome::Busy => "not ready".to_owned(),
    }
}

async fn run<S: JsonRpcService>(q: Quorum<S>, request: Request) -> Result<Response, RpcError> {
    let core = &*q.core;
    let class = core.classify(&request);
    if class == Idempotency::Unsafe {
        return run_sequential(core, request, false).await;
    }
    let started = Instant::now();
    let deadline = match (request.deadline(), q.timeout) {
        (Some(d), Some(t)) => Some(d.min(started + t)),
        (d, None) => d,
        (None, Some(t)) => Some(started + t),
    };

    let mut in_flight = FuturesUnordered::new();
    let mut tried = 0u64;
    for _ in 0..q.n {
        let Some(pick) = core.pick(tried) else { break };
        tried |= 1 << pick.index;
        in_flight.push(launch(
            core,
            core.reserve(pick),
            request.clone(),
            Some(started),
            false,
        ));
    }
    let asked = in_flight.len();
    if asked < q.k {
        return Err(RpcError::QuorumNotReached {
            reason: format!("only {asked} member(s) available, {} must agree", q.k),
            votes: Vec::new(),
        });
    }

    // (answer, votes for it); a handful of entries at most.
    let mut tallies: Vec<(Response, usize)> = Vec::with_capacity(asked);
    let mut votes: Vec<(usize, String)> = Vec::with_capacity(asked);
    loop {
        let next = match deadline {
            Some(d) => match tokio::time::timeout_at(d, in_flight.next()).await {
                Ok(next) => next,
                Err(_) => break,
            },
            None => in_flight.next().await,
        };
        let Some((pick, outcome, _)) = next else {
            break;
        };
        votes.push((pick.index, describe(&outcome)));
        if let Outcome::Answer(response) = outcome {
            match tallies.iter_mut().find(|(r, _)| same_answer(r, &response)) {
                Some((_, count)) => {
                    *count += 1;
                    if *count >= q.k {
                        return Ok(response);
                    }
                }
                None if q.k == 1 => return Ok(response),
                None => tallies.push((response, 1)),
            }
        }
        let best = tallies.iter().map(|(_, c)| *c).max().unwrap_or(0);
        if best + in_flight.len() < q.k {
            break;
        }
    }

    // No agreement: report every member asked, including those cut off.
    let answered = votes.iter().fold(0u64, |m, (i, _)| m | 1 << i);
    let mut report: Vec<QuorumVote> = votes
        .into_iter()
        .map(|(i, answer)| QuorumVote {
            backend: core.name(i).clone(),
            answer,
        })
        .collect();
    for i in (0..core.len()).filter(|&i| tried & (1 << i) != 0 && answered & (1 << i) == 0) {
        report.push(QuorumVote {
            backend: core.name(i).clone(),
            answer: "no answer".to_owned(),
        });
    }
    let best = tallies.iter().map(|(_, c)| *c).max().unwrap_or(0);
    tracing::warn!(
        k = q.k,
        asked,
        best,
        method = request.method(),
        "quorum not reached"
    );
    Err(RpcError::QuorumNotReached {
        reason: format!("{best} of {asked} agreed, {} needed", q.k),
        votes: report,
    })
}
