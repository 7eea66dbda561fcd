use std::time::Duration;

use super::Quorum;
use crate::failover::FailoverLayer;
use crate::group::GroupError;
use crate::member::Member;

/// The settings of a [`Quorum`] group — `k` agreeing answers out of `n`
/// members asked — and its builder: [`build`](Self::build) returns the group
/// or a [`GroupError`]; nothing panics.
///
/// | setting | default |
/// |---|---|
/// | `k` | given to [`new`](Self::new) |
/// | [`of`](Self::of) (`n`) | every member |
/// | [`timeout`](Self::timeout) | none (the call's `Deadline` and the members' own timeouts bound it) |
/// | [`group`](Self::group) | [`FailoverLayer::new`]'s health settings and classifier |
///
/// ```
/// use rpc_failover::{Member, QuorumLayer};
/// # use rpc_core::HttpBackend;
/// # fn main() -> Result<(), Box<dyn std::error::Error>> {
/// # let m = |n: &str| -> Result<_, rpc_core::BuildError> { Ok(Member::new(n, HttpBackend::builder(n, "http://127.0.0.1:1").build()?)) };
/// let members = vec![m("a")?, m("b")?, m("c")?, m("d")?];
/// // Ask the first three healthy members, answer when two agree.
/// let quorum = QuorumLayer::new(2).of(3).build(members)?;
/// # let _ = quorum;
/// # Ok(())
/// # }
/// ```
#[derive(Clone, Debug)]
pub struct QuorumLayer {
    pub(crate) k: usize,
    pub(crate) n: Option<usize>,
    pub(crate) timeout: Option<Duration>,
    pub(crate) group: FailoverLayer,
}

impl QuorumLayer {
    /// `k` agreeing answers are needed.
    pub fn new(k: usize) -> Self {
        QuorumLayer {
            k,
            n: None,
            timeout: None,
            group: FailoverLayer::new(),
        }
    }

    /// Ask `n` members (default: all).
    pub fn of(mut self, n: usize) -> Self {
        self.n = Some(n);
        self
    }

    /// Give up after this long, with the votes so far (default: none).
    pub fn timeout(mut self, timeout: Duration) -> Self {
        self.timeout = Some(timeout);
        self
    }

    /// Health settings and classifier, as for a failover group (hedging and
    /// spreading do not apply).
    pub fn group(mut self, group: FailoverLayer) -> Self {
        self.group = group;
        self
    }

    /// Builds the group, or says why it cannot be built (including
    /// `k` = 0 or `k` > `n`, and `n` > members).
    pub fn build<S>(&self, members: Vec<Member<S>>) -> Result<Quorum<S>, GroupError> {
        Quorum::new(members, self)
    }
}
