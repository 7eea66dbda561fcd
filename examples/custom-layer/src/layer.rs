//! A layer in tower's layout: the layer (configuration), the service, and
//! its future (here the inner future itself, or a ready rejection).

use std::future::Future;
use std::pin::Pin;
use std::task::{Context, Poll};

use rpc_core::{Request, Response, RpcError};
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
        let len = request.params().map_or(0, |p| p.as_bytes().len());
        if len > self.max_bytes {
            let max = self.max_bytes;
            return Box::pin(async move {
                Err(RpcError::InvalidParams {
                    message: format!("params of {len} bytes; at most {max} accepted"),
                })
            });
        }
        Box::pin(self.inner.call(request))
    }
}
