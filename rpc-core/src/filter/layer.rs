use std::sync::Arc;

use tower::Layer;

use super::{MethodFilter, MethodFilterService};

/// Wraps a service so that only permitted methods reach it.
///
/// See the [module docs](super) for the rules and an example.
#[derive(Debug, Clone)]
pub struct MethodFilterLayer {
    filter: Arc<MethodFilter>,
}

impl MethodFilterLayer {
    /// A layer applying `filter`.
    pub fn new(filter: MethodFilter) -> Self {
        MethodFilterLayer {
            filter: Arc::new(filter),
        }
    }
}

impl<S> Layer<S> for MethodFilterLayer {
    type Service = MethodFilterService<S>;

    fn layer(&self, inner: S) -> Self::Service {
        MethodFilterService::new(inner, self.filter.clone())
    }
}
