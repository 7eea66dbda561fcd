use std::sync::Arc;
use std::task::{Context, Poll};

use tower::Service;

use super::Limiter;
use crate::filter::ResponseFuture;
use crate::{Request, Response, RpcError};

/// The service built by [`RateLimitLayer`](super::RateLimitLayer). Clones
/// share the budgets.
#[derive(Debug, Clone)]
pub struct RateLimit<S> {
    inner: S,
    limiter: Arc<Limiter>,
}

impl<S> RateLimit<S> {
    pub(crate) fn new(inner: S, limiter: Arc<Limiter>) -> Self {
        RateLimit { inner, limiter }
    }

    /// The wrapped service.
    pub fn get_ref(&self) -> &S {
        &self.inner
    }
}

impl<S> Service<Request> for RateLimit<S>
where
    S: Service<Request, Response = Response, Error = RpcError>,
{
    type Response = Response;
    type Error = RpcError;
    type Future = ResponseFuture<S::Future>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, req: Request) -> Self::Future {
        match self.limiter.check(&req) {
            Ok(()) => ResponseFuture::inner(self.inner.call(req)),
            Err(e) => ResponseFuture::rejected(e),
        }
    }
}
