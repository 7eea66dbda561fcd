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
    pub(crate) limit: Option<ConcurrencyLimit>,
}

/// How many calls a member may have in flight at once (proxyd's
/// `max_concurrent_rpcs`). Calls beyond it go to another member, or wait in
/// the group's bounded queue (under their deadline) for a slot.
///
/// An adaptive limit starts at `max` and moves AIMD-style: halved (down to
/// `min`) when the member refuses calls (HTTP 429, a rate-limit error
/// object), stalls or times out — at most once per 100 ms — and raised by
/// one after as many successes as the limit.
///
/// ```
/// use rpc_failover::{ConcurrencyLimit, Member};
///
/// let member = Member::new("node", ()).max_concurrency(ConcurrencyLimit::adaptive(64));
/// # let _ = member;
/// ```
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ConcurrencyLimit {
    pub(crate) max: u32,
    pub(crate) min: u32,
    pub(crate) adaptive: bool,
}

impl ConcurrencyLimit {
    /// At most `max` calls in flight (at least 1).
    pub fn fixed(max: u32) -> Self {
        let max = max.max(1);
        ConcurrencyLimit {
            max,
            min: max,
            adaptive: false,
        }
    }

    /// Starts at `max` (at least 1) and adapts between 1 and `max`.
    pub fn adaptive(max: u32) -> Self {
        ConcurrencyLimit {
            max: max.max(1),
            min: 1,
            adaptive: true,
        }
    }

    /// The lowest an adaptive limit goes (default 1; at most `max`).
    pub fn min(mut self, min: u32) -> Self {
        self.min = min.clamp(1, self.max);
        self
    }
}

impl<S> Member<S> {
    /// A member with priority 0.
    pub fn new(name: impl Into<Arc<str>>, service: S) -> Self {
        Self::with_name(name.into(), service)
    }

    /// A member named by its service's own [name](rpc_core::Named) (an
    /// `HttpBackend`, an `ElectrumBackend`, or a layer over one), so the
    /// name is written once.
    ///
    /// ```
    /// use rpc_core::HttpBackend;
    /// use rpc_failover::Member;
    ///
    /// # fn main() -> Result<(), rpc_core::BuildError> {
    /// let backend = HttpBackend::builder("alchemy", "http://127.0.0.1:8545").build()?;
    /// // With metrics: Member::named(MetricsLayer::backend_of(&backend).layer(backend))
    /// let member = Member::named(backend);
    /// assert_eq!(member.name(), "alchemy");
    /// # Ok(())
    /// # }
    /// ```
    pub fn named(service: S) -> Self
    where
        S: rpc_core::Named,
    {
        let name: Arc<str> = Arc::from(service.name());
        Self::with_name(name, service)
    }

    fn with_name(name: Arc<str>, service: S) -> Self {
        Member {
            name,
            service,
            priority: 0,
            limit: None,
        }
    }

    /// Sets the priority: lower numbers are tried first.
    pub fn priority(mut self, priority: u32) -> Self {
        self.priority = priority;
        self
    }

    /// Caps the calls in flight on this member (default: no cap).
    pub fn max_concurrency(mut self, limit: ConcurrencyLimit) -> Self {
        self.limit = Some(limit);
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
            limit: self.limit,
        }
    }
}

impl<S> fmt::Debug for Member<S> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Member")
            .field("name", &self.name)
            .field("priority", &self.priority)
            .field("limit", &self.limit)
            .finish_non_exhaustive()
    }
}
