use std::sync::Arc;
use std::task::{Context, Poll};

use tower::Service;

use super::{MethodFilter, ResponseFuture};
use std::convert::Infallible;

use crate::batch::{answer_in_place, Batch, BatchAnswers, JsonRpcBatchService, PassOrBoxed};
use crate::{Request, Response, RpcError};

/// The service built by [`MethodFilterLayer`](super::MethodFilterLayer).
#[derive(Debug, Clone)]
pub struct MethodFilterService<S> {
    inner: S,
    filter: Arc<MethodFilter>,
}

impl<S> MethodFilterService<S> {
    pub(crate) fn new(inner: S, filter: Arc<MethodFilter>) -> Self {
        MethodFilterService { inner, filter }
    }

    /// The wrapped service.
    pub fn get_ref(&self) -> &S {
        &self.inner
    }
}

impl<S> Service<Request> for MethodFilterService<S>
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
        if self.filter.permits(req.method()) {
            ResponseFuture::inner(self.inner.call(req))
        } else {
            ResponseFuture::rejected(self.filter.rejection())
        }
    }
}

impl<S> Service<Batch> for MethodFilterService<S>
where
    S: JsonRpcBatchService,
{
    type Response = BatchAnswers;
    type Error = Infallible;
    type Future = PassOrBoxed<<S as Service<Batch>>::Future>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Infallible>> {
        Service::<Batch>::poll_ready(&mut self.inner, cx)
    }

    /// Refusals answered in place; the permitted calls go on as one batch.
    fn call(&mut self, batch: Batch) -> Self::Future {
        let filter = self.filter.clone();
        answer_in_place(&mut self.inner, batch, move |call| {
            (!filter.permits(call.method())).then(|| Err(filter.rejection()))
        })
    }
}
