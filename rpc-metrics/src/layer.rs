use std::sync::Arc;

use metrics::SharedString;
use tower::Layer;

use crate::service::{Metrics, Scope, State};
use crate::MethodLabels;

/// Records metrics (and, at the client scope, a tracing span) for every call.
///
/// * [`MetricsLayer::client`] goes at the top of a stack, right under the
///   HTTP front: what clients asked and got (`rpc_requests_total`,
///   `rpc_request_duration_seconds`, `rpc_requests_in_flight`,
///   `rpc_response_errors_total`, `rpc_batch_size`, `rpc_cache_requests_total`)
///   and a `rpc.call` span per call.
/// * [`MetricsLayer::backend`] wraps one backend, before grouping: what that
///   backend did (`rpc_backend_*`, labelled with its name, never its URL),
///   and a debug event per attempt inside the client's span.
///
/// Method labels are bounded by [`MethodLabels`] (default: the standard
/// Ethereum and Electrum methods; others are `other`); error-code labels by a
/// cap of 64 distinct codes per layer. The layer never installs a recorder;
/// install one before the first call (handles are registered on first use).
///
/// ```
/// use rpc_core::{HttpBackend, JsonRpcService};
/// use rpc_metrics::{MethodLabels, MetricsLayer};
/// use tower::ServiceBuilder;
///
/// # fn main() -> Result<(), rpc_core::BuildError> {
/// let backend = ServiceBuilder::new()
///     .layer(MetricsLayer::backend("alchemy"))
///     .service(HttpBackend::builder("alchemy", "https://example.invalid/v2/KEY").build()?);
/// let stack = ServiceBuilder::new()
///     .layer(MetricsLayer::client().method_labels(MethodLabels::default().with(["myco_quote"])))
///     .service(backend);
/// # fn check(_: impl JsonRpcService) {}
/// # check(stack);
/// # Ok(())
/// # }
/// ```
#[derive(Clone, Debug)]
pub struct MetricsLayer {
    scope: Scope,
    labels: MethodLabels,
}

impl MetricsLayer {
    /// The client view, for the top of a stack.
    pub fn client() -> Self {
        MetricsLayer {
            scope: Scope::Client,
            labels: MethodLabels::default(),
        }
    }

    /// One backend's view, labelled `backend = name`.
    pub fn backend(name: impl Into<Arc<str>>) -> Self {
        MetricsLayer {
            scope: Scope::Backend(SharedString::from(name.into())),
            labels: MethodLabels::default(),
        }
    }

    /// One backend's view, labelled with the backend's own
    /// [name](rpc_core::Named).
    pub fn backend_of(backend: &impl rpc_core::Named) -> Self {
        Self::backend(backend.name())
    }

    /// Which methods are labelled by name (default:
    /// [`MethodLabels::default`]).
    pub fn method_labels(mut self, labels: MethodLabels) -> Self {
        self.labels = labels;
        self
    }
}

impl<S> Layer<S> for MetricsLayer {
    type Service = Metrics<S>;

    fn layer(&self, inner: S) -> Metrics<S> {
        Metrics::new(
            inner,
            Arc::new(State::new(self.scope.clone(), self.labels.clone())),
        )
    }
}
