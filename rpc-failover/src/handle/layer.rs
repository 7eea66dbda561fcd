use std::sync::Arc;
use std::time::Duration;

use rpc_core::protocol::{Handle, MethodTable, Protocol};
use tower::Layer;

use super::service::{Handles, Table};

/// Pins node-side handles to their node; see the [module docs](super).
///
/// | setting | default |
/// |---|---|
/// | [`ttl`](Self::ttl) | 5 minutes unused |
/// | [`max_handles`](Self::max_handles) | 100 000 |
#[derive(Clone, Debug)]
pub struct HandleLayer {
    roles: Arc<MethodTable<Handle>>,
    ttl: Duration,
    max: usize,
}

impl HandleLayer {
    /// The methods `protocol` marks as creating, using or removing handles.
    pub fn new(protocol: &Protocol) -> Self {
        let mut roles = MethodTable::new();
        for (pattern, facts) in protocol.methods().iter() {
            if let Some(role) = facts.handle {
                roles.insert_pattern(pattern, role);
            }
        }
        HandleLayer {
            roles: Arc::new(roles),
            ttl: Duration::from_secs(300),
            max: 100_000,
        }
    }

    /// How long an unused handle is remembered.
    pub fn ttl(mut self, ttl: Duration) -> Self {
        self.ttl = ttl;
        self
    }

    /// How many handles are remembered at most (the least recently used
    /// go first).
    pub fn max_handles(mut self, n: usize) -> Self {
        self.max = n.max(1);
        self
    }
}

impl<S> Layer<S> for HandleLayer {
    type Service = Handles<S>;

    fn layer(&self, inner: S) -> Handles<S> {
        Handles::new(
            inner,
            self.roles.clone(),
            Arc::new(Table::new(self.ttl, self.max)),
        )
    }
}
