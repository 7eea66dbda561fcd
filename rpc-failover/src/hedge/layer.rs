use tower::Layer;

use super::HedgePolicy;
use crate::failover::{Failover, FailoverLayer};
use crate::group::GroupError;
use crate::member::Member;

/// A failover group that hedges reads: shorthand for
/// [`FailoverLayer::hedge`]. The group settings (out-of-service window,
/// classifier, ...) come from [`HedgeLayer::group`].
///
/// ```
/// use std::time::Duration;
/// use rpc_failover::{FailoverLayer, HedgeLayer, HedgePolicy};
///
/// let layer = HedgeLayer::new(HedgePolicy::fixed(Duration::from_millis(150)))
///     .group(FailoverLayer::new().out_of_service(Duration::from_secs(10)));
/// # let _ = layer;
/// ```
#[derive(Clone, Debug)]
pub struct HedgeLayer {
    policy: HedgePolicy,
    group: FailoverLayer,
}

impl HedgeLayer {
    /// Hedges with `policy` over a group with the default settings.
    pub fn new(policy: HedgePolicy) -> Self {
        HedgeLayer {
            policy,
            group: FailoverLayer::new(),
        }
    }

    /// The group's settings (any hedge set on it is replaced by this layer's).
    pub fn group(mut self, group: FailoverLayer) -> Self {
        self.group = group;
        self
    }

    /// Builds the hedged group, or says why it cannot be built.
    pub fn build<S>(&self, members: Vec<Member<S>>) -> Result<Failover<S>, GroupError> {
        self.group.clone().hedge(self.policy.clone()).build(members)
    }
}

impl<S> Layer<Vec<Member<S>>> for HedgeLayer {
    type Service = Failover<S>;

    /// # Panics
    ///
    /// If the members cannot form a group (see [`HedgeLayer::build`]).
    fn layer(&self, members: Vec<Member<S>>) -> Failover<S> {
        match self.build(members) {
            Ok(group) => group,
            Err(e) => panic!("HedgeLayer: {e}"),
        }
    }
}
