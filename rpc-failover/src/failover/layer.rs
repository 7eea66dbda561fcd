use std::sync::Arc;
use std::time::Duration;

use super::Failover;
use crate::classify::{Classifier, FailureRules};
use crate::deadline::AttemptDeadline;
use crate::group::{GroupError, GroupPolicy, HealthCheck, Spread, WhenAllDown};
use crate::head::HeadPolicy;
use crate::hedge::HedgePolicy;
use crate::member::Member;
use crate::retry::RetryBudget;

/// The settings of a [`Failover`] group, and its builder:
/// [`build`](Self::build) takes the [`Member`]s and returns the group or a
/// [`GroupError`] (too many members, a name given twice); nothing panics.
/// Groups are services, so they nest (a group can be a member).
///
/// Every setting has a documented default (see the [module](crate::failover)).
///
/// ```
/// use std::time::Duration;
/// use rpc_core::HttpBackend;
/// use rpc_failover::{FailoverLayer, Member, MethodRules, Spread};
///
/// # fn main() -> Result<(), Box<dyn std::error::Error>> {
/// let members = vec![
///     Member::new("a", HttpBackend::builder("a", "http://127.0.0.1:8545").build()?),
///     Member::new("b", HttpBackend::builder("b", "http://127.0.0.1:8546").build()?),
/// ];
/// let group = FailoverLayer::new()
///     .out_of_service(Duration::from_secs(10))
///     .spread(Spread::RoundRobin)
///     .classifier(MethodRules::ethereum())
///     .build(members)?;
/// assert_eq!(group.members().count(), 2);
/// # Ok(())
/// # }
/// ```
#[derive(Clone, Debug, Default)]
pub struct FailoverLayer {
    pub(crate) policy: GroupPolicy,
    pub(crate) hedge: Option<HedgePolicy>,
}

impl FailoverLayer {
    /// A layer with the defaults.
    pub fn new() -> Self {
        FailoverLayer::default()
    }

    /// Consecutive failures that take a member out of service (default 2;
    /// 0 is treated as 1). A failed trial call after the window takes it out
    /// again at once.
    pub fn failure_threshold(mut self, n: u32) -> Self {
        self.policy.failure_threshold = n.max(1);
        self
    }

    /// How long a failing member is out of service before a trial call
    /// (default 5 s).
    pub fn out_of_service(mut self, window: Duration) -> Self {
        self.policy.out_of_service = window;
        self
    }

    /// What to do when every member is out of service (default: try the one
    /// due back soonest).
    pub fn when_all_down(mut self, policy: WhenAllDown) -> Self {
        self.policy.when_all_down = policy;
        self
    }

    /// How to spread calls among healthy members of equal priority (default:
    /// off, the first healthy member takes every call).
    pub fn spread(mut self, spread: Spread) -> Self {
        self.policy.spread = spread;
        self
    }

    /// Which methods may be repeated (default: [`MethodRules::ethereum`](crate::MethodRules::ethereum)).
    pub fn classifier(mut self, classifier: impl Classifier) -> Self {
        self.policy.classifier = Arc::new(classifier);
        self
    }

    /// Which error objects count against a backend (default:
    /// [`FailureRules::default`]).
    pub fn failure_rules(mut self, rules: FailureRules) -> Self {
        self.policy.failure_rules = Arc::new(rules);
        self
    }

    /// Hedge reads: race a slow member against the next one (default: off).
    /// See [`hedge`](crate::hedge).
    pub fn hedge(mut self, policy: HedgePolicy) -> Self {
        self.hedge = Some(policy);
        self
    }

    /// Sends each broadcast — a call that changes state but may be repeated
    /// ([`Idempotent`](crate::Idempotency::Idempotent):
    /// `eth_sendRawTransaction`, `blockchain.transaction.broadcast`) — to
    /// every member in rotation at once, so that a transaction reaches
    /// every node's pool however the nodes gossip (proxyd's multicall).
    /// The first member to accept it answers the client; the others run to
    /// their own end in the background (their answers feed their health
    /// like any attempt), and one saying the transaction is already known
    /// is not a failure. When none accepts it, the client gets an
    /// "already known" answer if a member gave one (the transaction is in
    /// a pool), else the last answer or error. Default: off (a broadcast
    /// goes to one member, failing over like any idempotent call).
    /// Counted in `rpc_multicalls_total`.
    ///
    /// ```
    /// use rpc_failover::FailoverLayer;
    ///
    /// let layer = FailoverLayer::new().multicall(true);
    /// # drop(layer);
    /// ```
    pub fn multicall(mut self, on: bool) -> Self {
        self.policy.multicall = on;
        self
    }

    /// Tracks each member's chain head and keeps lagging or frozen members
    /// out of rotation, routes explicit-block calls to members that have the
    /// block, and honours [`MinHead`](rpc_core::MinHead) for read-your-head
    /// consistency (default: off). See [`head`](crate::head).
    pub fn head_tracking(mut self, policy: HeadPolicy) -> Self {
        self.policy.head = Some(policy);
        self
    }

    /// When an attempt counts as a stall (default:
    /// [`AttemptDeadline::adaptive`]: learned per member and method). See
    /// [`deadline`](crate::deadline).
    pub fn attempt_deadline(mut self, deadline: AttemptDeadline) -> Self {
        self.policy.deadline = deadline;
        self
    }

    /// The budget for extra calls: hedges, and moving a call to another
    /// member after a failure that may have reached the first (default: a
    /// [`RetryBudget::default`] of the group's own). Give the same budget to
    /// the [`RetryLayer`](crate::RetryLayer) above so retries draw from it
    /// too.
    pub fn budget(mut self, budget: RetryBudget) -> Self {
        self.policy.budget = Some(budget);
        self
    }

    /// Background health checks and re-tests of members out of service
    /// (default: re-tests only with head tracking, by head probe). Without
    /// a method and without head tracking, a member out of service comes
    /// back through a client call (its trial) after its window.
    pub fn health_check(mut self, check: HealthCheck) -> Self {
        self.policy.health = check;
        self
    }

    /// Calls that may wait for a member under its
    /// [concurrency limit](crate::ConcurrencyLimit) (default 1024), and the
    /// longest wait (default 5 s; a call's deadline ends it sooner). A call
    /// beyond the queue fails at once with
    /// [`RpcError::Overloaded`](rpc_core::RpcError::Overloaded).
    pub fn queue(mut self, max_len: usize, max_wait: Duration) -> Self {
        self.policy.max_queue = max_len;
        self.policy.max_queue_wait = max_wait;
        self
    }

    /// Builds the group, or says why it cannot be built (more than
    /// [`MAX_MEMBERS`](crate::MAX_MEMBERS) members, duplicate names).
    pub fn build<S>(&self, members: Vec<Member<S>>) -> Result<Failover<S>, GroupError> {
        Failover::new(members, self.clone())
    }
}
