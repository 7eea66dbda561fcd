use std::sync::Arc;
use std::task::{Context, Poll};

use futures_util::future::{BoxFuture, Either};
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
            let client = self.limiter.shared_plan(shared, &req);
            let global = self.limiter.global_plan(shared, &req);
            if client.is_some() || global.is_some() {
                // The inner service was made ready for this call: it goes
                // with it; this one keeps a fresh clone.
                let clone = self.inner.clone();
                let mut inner = std::mem::replace(&mut self.inner, clone);
                let limiter = self.limiter.clone();
                return Either::Right(Box::pin(async move {
                    let Some(shared) = &limiter.shared else {
                        return Err(RpcError::Internal("shared limiter lost".into()));
                    };
                    limiter.check_shared(shared, &req, client, global).await?;
                    inner.call(req).await
                }));
            }
        }
        match self.limiter.check(&req) {
            Ok(()) => Either::Left(crate::filter::ResponseFuture::inner(self.inner.call(req))),
            Err(e) => Either::Left(crate::filter::ResponseFuture::rejected(e)),
        }
    }
}

impl<S> Service<crate::batch::Batch> for RateLimit<S>
where
    S: crate::batch::JsonRpcBatchService,
{
    type Response = crate::batch::BatchAnswers;
    type Error = std::convert::Infallible;
    type Future = crate::batch::PassOrBoxed<<S as Service<crate::batch::Batch>>::Future>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        Service::<crate::batch::Batch>::poll_ready(&mut self.inner, cx)
    }

    /// Each call's budgets checked in the batch's order, refusals answered
    /// in place; the other calls go on as one batch. With budgets shared
    /// through Redis (a check is a round trip) the batch is made single
    /// calls.
    fn call(&mut self, batch: crate::batch::Batch) -> Self::Future {
        #[cfg(feature = "redis")]
        if self.limiter.shared.is_some() {
            return Either::Right(crate::batch::BoxedBatchFuture::new(crate::batch::per_call(
                self.clone(),
                batch,
            )));
        }
        let limiter = self.limiter.clone();
        crate::batch::answer_in_place(&mut self.inner, batch, move |call| {
            limiter.check(call).err().map(Err)
        })
    }
}

/// The future of [`RateLimit`]: the inner call or a refusal (the method
/// filter's future), or, with shared budgets, the Redis check and then the
/// inner call.
pub type ResponseFuture<F> =
    Either<crate::filter::ResponseFuture<F>, BoxFuture<'static, Result<Response, RpcError>>>;
