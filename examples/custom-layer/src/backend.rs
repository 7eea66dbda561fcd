//! A backend adapter: anything that turns a [`Request`] into a [`Response`]
//! (or an [`RpcError`] when no answer could be had) is a backend.

use std::collections::HashMap;
use std::future::{ready, Ready};
use std::sync::Arc;
use std::task::{Context, Poll};

use rpc_core::{codes, ErrorObject, RawJson, Request, Response, RpcError, ServedBy};
use tower::Service;

/// Answers each method from a table; other methods get `-32601`.
///
/// ```
/// use custom_layer::StaticBackend;
/// use rpc_core::RawJson;
///
/// # fn main() -> Result<(), Box<dyn std::error::Error>> {
/// let node = StaticBackend::new("fixture").answer("net_version", RawJson::from_static(r#""1""#)?);
/// # let _ = node;
/// # Ok(()) }
/// ```
#[derive(Clone, Debug)]
pub struct StaticBackend {
    name: Arc<str>,
    answers: Arc<HashMap<Box<str>, RawJson>>,
}

impl StaticBackend {
    /// An empty table called `name` (the name logs and metrics show).
    pub fn new(name: impl Into<Arc<str>>) -> Self {
        StaticBackend {
            name: name.into(),
            answers: Arc::default(),
        }
    }

    /// Answers `method` with `result`.
    pub fn answer(mut self, method: &str, result: RawJson) -> Self {
        Arc::make_mut(&mut self.answers).insert(method.into(), result);
        self
    }
}

impl Service<Request> for StaticBackend {
    type Response = Response;
    type Error = RpcError;
    type Future = Ready<Result<Response, RpcError>>;

    fn poll_ready(&mut self, _cx: &mut Context<'_>) -> Poll<Result<(), RpcError>> {
        Poll::Ready(Ok(()))
    }

    fn call(&mut self, request: Request) -> Self::Future {
        let id = request.id().cloned().unwrap_or_default();
        let mut response = match self.answers.get(request.method()) {
            Some(result) => Response::result(id, result.clone()),
            None => Response::error(
                id,
                ErrorObject::new(codes::METHOD_NOT_FOUND, "method not found"),
            ),
        };
        response
            .extensions_mut()
            .insert(ServedBy(self.name.clone()));
        ready(Ok(response))
    }
}

/// A batch, answered from the table in one go: the shape of an adapter
/// whose node takes batches (one exchange for all the calls).
impl Service<rpc_core::Batch> for StaticBackend {
    type Response = rpc_core::BatchAnswers;
    type Error = std::convert::Infallible;
    type Future = Ready<Result<rpc_core::BatchAnswers, std::convert::Infallible>>;

    fn poll_ready(&mut self, _cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        Poll::Ready(Ok(()))
    }

    fn call(&mut self, batch: rpc_core::Batch) -> Self::Future {
        let answers = batch
            .into_calls()
            .into_iter()
            .map(|request| Some(Service::<Request>::call(self, request).into_inner()))
            .collect();
        ready(Ok(answers))
    }
}
