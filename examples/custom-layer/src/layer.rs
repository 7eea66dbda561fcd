//! A layer in tower's layout: the layer (configuration), the service, and
//! its future (here the inner future itself, or a ready rejection).

use std::future::Future;
use std::pin::Pin;
use std::task::{Context, Poll};

use rpc_core::batch::{answer_in_place, JsonRpcBatchService, PassOrBoxed};
use rpc_core::{Batch, BatchAnswers, Request, Response, RpcError};
use tower::{Layer, Service};

/// Refuses calls whose params are longer than `max_bytes` of JSON text.
///
/// ```
/// use custom_layer::MaxParamsLayer;
///
/// let layer = MaxParamsLayer::new(64 * 1024);
/// # let _ = layer;
/// ```
#[derive(Clone, Copy, Debug)]
pub struct MaxParamsLayer {
    max_bytes: usize,
}

impl MaxParamsLayer {
    /// Params longer than `max_bytes` are refused with
    /// [`RpcError::InvalidParams`].
    pub fn new(max_bytes: usize) -> Self {
        MaxParamsLayer { max_bytes }
    }
}

impl<S> Layer<S> for MaxParamsLayer {
    type Service = MaxParams<S>;

    fn layer(&self, inner: S) -> MaxParams<S> {
        MaxParams {
            inner,
            max_bytes: self.max_bytes,
        }
    }
}

/// The service of [`MaxParamsLayer`].
#[derive(Clone, Debug)]
pub struct MaxParams<S> {
    inner: S,
    max_bytes: usize,
}

/// The inner call, or the rejection (boxed: one allocation per call is
/// noise next to a network round trip; name your own future to avoid it).
pub type MaxParamsFuture = Pin<Box<dyn Future<Output = Result<Response, RpcError>> + Send>>;

impl<S> MaxParams<S> {
    /// The refusal of a call whose params are too long, if it is one.
    fn refusal(&self, request: &Request) -> Option<RpcError> {
        let len = request.params().map_or(0, |p| p.as_bytes().len());
        (len > self.max_bytes).then(|| RpcError::InvalidParams {
            message: format!("params of {len} bytes; at most {} accepted", self.max_bytes),
        })
    }
}

impl<S> Service<Request> for MaxParams<S>
where
    S: Service<Request, Response = Response, Error = RpcError>,
    S::Future: Send + 'static,
{
    type Response = Response;
    type Error = RpcError;
    type Future = MaxParamsFuture;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), RpcError>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, request: Request) -> MaxParamsFuture {
        if let Some(refusal) = self.refusal(&request) {
            return Box::pin(async move { Err(refusal) });
        }
        Box::pin(self.inner.call(request))
    }
}

/// The batch form (what makes the layer a `JsonRpcBatchService` over one):
/// refusals answered in place, the other calls passed on as one batch. A
/// layer that cannot look at a batch's calls in place would instead make
/// single calls of it: `BoxedBatchFuture::new(per_call(self.clone(), batch))`
/// (with `type Future = BoxedBatchFuture`).
impl<S> Service<Batch> for MaxParams<S>
where
    S: JsonRpcBatchService,
{
    type Response = BatchAnswers;
    type Error = std::convert::Infallible;
    type Future = PassOrBoxed<<S as Service<Batch>>::Future>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        Service::<Batch>::poll_ready(&mut self.inner, cx)
    }

    fn call(&mut self, batch: Batch) -> Self::Future {
        let this = MaxParams {
            inner: (),
            max_bytes: self.max_bytes,
        };
        // Nothing to refuse: the batch goes on as it is, with no box.
        answer_in_place(&mut self.inner, batch, move |call| {
            this.refusal(call).map(Err)
        })
    }
}
