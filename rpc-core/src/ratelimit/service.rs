use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};

use futures_util::future::BoxFuture;
use pin_project_lite::pin_project;
use tower::Service;

use super::Limiter;
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
    S: Service<Request, Response = Response, Error = RpcError> + Clone + Send + 'static,
    S::Future: Send + 'static,
{
    type Response = Response;
    type Error = RpcError;
    type Future = ResponseFuture<S::Future>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, req: Request) -> Self::Future {
        #[cfg(feature = "redis")]
        if let Some(shared) = &self.limiter.shared {
            if let Some(plan) = self.limiter.shared_plan(shared, &req) {
                // The inner service was made ready for this call: it goes
                // with it; this one keeps a fresh clone.
                let clone = self.inner.clone();
                let mut inner = std::mem::replace(&mut self.inner, clone);
                let limiter = self.limiter.clone();
                return ResponseFuture::shared(Box::pin(async move {
                    let Some(shared) = &limiter.shared else {
                        return Err(RpcError::Internal("shared limiter lost".into()));
                    };
                    limiter.check_shared(shared, &req, plan).await?;
                    inner.call(req).await
                }));
            }
        }
        match self.limiter.check(&req) {
            Ok(()) => ResponseFuture::inner(self.inner.call(req)),
            Err(e) => ResponseFuture::rejected(e),
        }
    }
}

pin_project! {
    /// The future of [`RateLimit`]: the inner call, a refusal, or (with
    /// shared budgets) the Redis check and then the inner call.
    pub struct ResponseFuture<F> {
        #[pin]
        kind: Kind<F>,
    }
}

pin_project! {
    #[project = KindProj]
    enum Kind<F> {
        Inner { #[pin] future: F },
        Rejected { error: Option<RpcError> },
        Shared { future: BoxFuture<'static, Result<Response, RpcError>> },
    }
}

impl<F> ResponseFuture<F> {
    fn inner(future: F) -> Self {
        ResponseFuture {
            kind: Kind::Inner { future },
        }
    }

    fn rejected(error: RpcError) -> Self {
        ResponseFuture {
            kind: Kind::Rejected { error: Some(error) },
        }
    }

    #[cfg(feature = "redis")]
    fn shared(future: BoxFuture<'static, Result<Response, RpcError>>) -> Self {
        ResponseFuture {
            kind: Kind::Shared { future },
        }
    }
}

impl<F> Future for ResponseFuture<F>
where
    F: Future<Output = Result<Response, RpcError>>,
{
    type Output = Result<Response, RpcError>;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        match self.project().kind.project() {
            KindProj::Inner { future } => future.poll(cx),
            KindProj::Rejected { error } => Poll::Ready(Err(error
                .take()
                .unwrap_or_else(|| RpcError::Internal("future polled after completion".into())))),
            KindProj::Shared { future } => future.as_mut().poll(cx),
        }
    }
}
