//! A named member of a group.

use std::fmt;
use std::sync::Arc;

use rpc_core::{BoxJsonRpcService, JsonRpcService};

/// One backend in a group: a name (for logs, errors and metrics; never a
/// URL), the service, and a priority.
///
/// Members with a lower priority number are tried first. Members of equal
/// priority are tried in the order given, unless the group spreads load among
/// them ([`Spread`](crate::Spread)). The default priority is 0.
///
/// Mix backend types in one group by boxing them with
/// [`Member::boxed`]; a group is itself a service, so a member can be a group.
///
/// ```
/// use rpc_core::HttpBackend;
/// use rpc_failover::Member;
///
/// # fn main() -> Result<(), rpc_core::BuildError> {
/// let members = vec![
///     Member::new("primary", HttpBackend::builder("primary", "http://127.0.0.1:8545").build()?),
///     Member::new("backup", HttpBackend::builder("backup", "http://127.0.0.1:8546").build()?)
///         .priority(1),
/// ];
/// # let _ = members;
/// # Ok(())
/// # }
/// ```
#[derive(Clone)]
pub struct Member<S> {
    pub(crate) name: Arc<str>,
    pub(crate) service: S,
    pub(crate) priority: u32,
}

impl<S> Member<S> {
    /// A member with priority 0.
    pub fn new(name: impl Into<Arc<str>>, service: S) -> Self {
        Member {
            name: name.into(),
            service,
            priority: 0,
        }
    }

    /// Sets the priority: lower numbers are tried first.
    pub fn priority(mut self, priority: u32) -> Self {
        self.priority = priority;
        self
    }

    /// The member's name.
    pub fn name(&self) -> &str {
        &self.name
    }

    /// The wrapped service.
    pub fn service(&self) -> &S {
        &self.service
    }
}

impl<S: JsonRpcService> Member<S> {
    /// Erases the service type, so different backend types share one group.
    pub fn boxed(self) -> Member<BoxJsonRpcService> {
        Member {
            name: self.name,
            service: BoxJsonRpcService::new(self.service),
            priority: self.priority,
        }
    }
}

impl<S> fmt::Debug for Member<S> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Member")
            .field("name", &self.name)
            .field("priority", &self.priority)
            .finish_non_exhaustive()
    }
}
