//! Per-method routing: each call goes to the service registered for its
//! method, so that, say, `eth_sendRawTransaction` reaches a sequencer group
//! while reads go to a pool of providers.
//!
//! Patterns are the [filter](crate::filter)'s: exact names (`eth_call`) or
//! prefixes ending in `*` (`eth_*`, `debug_*`). An exact name wins over any
//! prefix and a longer prefix over a shorter one, whatever the order routes
//! were added in. A method that matches no route goes to the default service,
//! or, without one, is answered with `-32601` (HTTP 403) without calling
//! anything.
//!
//! [`MethodRouter`] is a service, not a layer: it sits above several stacks
//! (each usually a failover group with its own retry and cache), and layers
//! that should see every call (metrics, filter, rate limit) go above it.
//!
//! ```
//! use rpc_core::route::MethodRouter;
//! use rpc_core::{RawJson, Request, Response, RpcError, BoxJsonRpcService};
//! use tower::{service_fn, ServiceExt};
//!
//! fn answering(text: &'static str) -> BoxJsonRpcService {
//!     BoxJsonRpcService::new(service_fn(move |req: Request| async move {
//!         let result = RawJson::from_bytes(format!("\"{text}\"")).unwrap();
//!         Ok::<_, RpcError>(Response::result(req.id().cloned().unwrap_or_default(), result))
//!     }))
//! }
//!
//! # #[tokio::main(flavor = "current_thread")] async fn main() {
//! let router = MethodRouter::builder()
//!     .route("eth_sendRawTransaction", answering("sequencer"))
//!     .unwrap()
//!     .route("debug_*", answering("archive"))
//!     .unwrap()
//!     .default_service(answering("providers"))
//!     .build();
//!
//! let call = |m: &str| Request::new(m).with_id(1u64.into());
//! let resp = router.clone().oneshot(call("eth_sendRawTransaction")).await.unwrap();
//! assert_eq!(resp.result_json().unwrap().as_bytes(), b"\"sequencer\"");
//! let resp = router.clone().oneshot(call("debug_traceTransaction")).await.unwrap();
//! assert_eq!(resp.result_json().unwrap().as_bytes(), b"\"archive\"");
//! let resp = router.oneshot(call("eth_blockNumber")).await.unwrap();
//! assert_eq!(resp.result_json().unwrap().as_bytes(), b"\"providers\"");
//! # }
//! ```

use std::sync::Arc;
use std::task::{Context, Poll};

use tower::util::Oneshot;
use tower::{Service, ServiceExt};

use std::collections::HashMap;

use crate::batch::{
    call_batch, Batch, BatchAnswers, BoxedBatchFuture, JsonRpcBatchService, PassOrBoxed,
};
use crate::filter::ResponseFuture;
use crate::protocol::{MethodTable, Pattern, PatternError};
use crate::{Request, Response, RouteTo, RpcError};

/// The message of a call no route and no default took.
pub const NO_ROUTE_MESSAGE: &str = "method not supported";

/// Sends each call to the service registered for its method (see the
/// [module docs](self)). Clones share the routing table.
#[derive(Debug)]
pub struct MethodRouter<S> {
    table: Arc<Table<S>>,
}

impl<S> Clone for MethodRouter<S> {
    fn clone(&self) -> Self {
        MethodRouter {
            table: self.table.clone(),
        }
    }
}

#[derive(Debug)]
struct Table<S> {
    services: Vec<S>,
    /// Method pattern → index in `services`.
    routes: MethodTable<usize>,
    default: Option<usize>,
    no_route: Arc<str>,
    /// Group name → index in `services`, for calls that carry [`RouteTo`].
    names: HashMap<Arc<str>, usize>,
}

impl<S> Table<S> {
    fn lookup(&self, method: &str) -> Option<usize> {
        self.routes.get(method).copied().or(self.default)
    }
}

impl<S> MethodRouter<S> {
    /// An empty builder: no routes, no default.
    pub fn builder() -> MethodRouterBuilder<S> {
        MethodRouterBuilder {
            table: Table {
                services: Vec::new(),
                routes: MethodTable::new(),
                default: None,
                no_route: Arc::from(NO_ROUTE_MESSAGE),
                names: HashMap::new(),
            },
        }
    }

    /// The service `method` would be sent to, if any.
    pub fn service_for(&self, method: &str) -> Option<&S> {
        self.table.lookup(method).map(|i| &self.table.services[i])
    }
}

/// Builds a [`MethodRouter`].
#[derive(Debug)]
pub struct MethodRouterBuilder<S> {
    table: Table<S>,
}

impl<S> MethodRouterBuilder<S> {
    /// Sends methods matching `pattern` to `service`. A pattern given twice
    /// keeps its first service.
    pub fn route(self, pattern: &str, service: S) -> Result<Self, PatternError> {
        self.routes([pattern], service)
    }

    /// Sends methods matching any of `patterns` to one `service` (stored
    /// once, so its state is shared by all of them).
    pub fn routes<I, P>(mut self, patterns: I, service: S) -> Result<Self, PatternError>
    where
        I: IntoIterator<Item = P>,
        P: AsRef<str>,
    {
        let index = self.table.services.len();
        // Every pattern is checked before any is added.
        let patterns: Vec<P> = patterns.into_iter().collect();
        let parsed = patterns
            .iter()
            .map(|p| Pattern::parse(p.as_ref()))
            .collect::<Result<Vec<_>, _>>()?;
        for p in parsed {
            if self.table.routes.get_pattern(p).is_none() {
                self.table.routes.insert_pattern(p, index);
            }
        }
        self.table.services.push(service);
        Ok(self)
    }

    /// [`routes`](Self::routes), and names the service: a call carrying
    /// [`RouteTo`] with that name goes to it whatever its method (a client
    /// key bound to a group). `patterns` may be empty (reachable by name
    /// only). A name given twice keeps its first service.
    pub fn routes_named<I, P>(
        mut self,
        name: impl Into<Arc<str>>,
        patterns: I,
        service: S,
    ) -> Result<Self, PatternError>
    where
        I: IntoIterator<Item = P>,
        P: AsRef<str>,
    {
        let index = self.table.services.len();
        self = self.routes(patterns, service)?;
        self.table.names.entry(name.into()).or_insert(index);
        Ok(self)
    }

    /// Sends methods no route matches to `service`. Without a default they are
    /// answered with `-32601`.
    pub fn default_service(mut self, service: S) -> Self {
        self.table.default = Some(self.table.services.len());
        self.table.services.push(service);
        self
    }

    /// The message of the `-32601` answer to a method no route takes
    /// (default [`NO_ROUTE_MESSAGE`]).
    pub fn no_route_message(mut self, message: impl Into<Arc<str>>) -> Self {
        self.table.no_route = message.into();
        self
    }

    /// The router.
    pub fn build(self) -> MethodRouter<S> {
        MethodRouter {
            table: Arc::new(self.table),
        }
    }
}

impl<S> Service<Request> for MethodRouter<S>
where
    S: Service<Request, Response = Response, Error = RpcError> + Clone,
{
    type Response = Response;
    type Error = RpcError;
    type Future = ResponseFuture<Oneshot<S, Request>>;

    fn poll_ready(&mut self, _cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        // The target is known only with the call; it is called through
        // `oneshot`, which waits for its readiness.
        Poll::Ready(Ok(()))
    }

    fn call(&mut self, req: Request) -> Self::Future {
        match self.table.target(&req) {
            Ok(i) => ResponseFuture::inner(self.table.services[i].clone().oneshot(req)),
            Err(e) => ResponseFuture::rejected(e),
        }
    }
}

impl<S> Table<S> {
    /// Each call's [`target`](Self::target), in order. A client batch is
    /// mostly one method: a call with the method of the call before it (and
    /// no [`RouteTo`]) takes that call's target, found once.
    fn targets<'a>(
        &'a self,
        calls: &'a [Request],
    ) -> impl Iterator<Item = Result<usize, RpcError>> + 'a {
        let mut last: Option<(&'a str, Result<usize, RpcError>)> = None;
        calls.iter().map(move |call| {
            if call.extensions().get::<RouteTo>().is_some() {
                return self.target(call);
            }
            match &last {
                Some((method, target)) if *method == call.method() => target.clone(),
                _ => {
                    let target = self.target(call);
                    last = Some((call.method(), target.clone()));
                    target
                }
            }
        })
    }

    /// The service a call goes to, or why none takes it.
    fn target(&self, req: &Request) -> Result<usize, RpcError> {
        let target = match req.extensions().get::<RouteTo>() {
            Some(RouteTo(name)) if !self.names.is_empty() => match self.names.get(name) {
                Some(&i) => Some(i),
                None => {
                    return Err(RpcError::MethodNotAllowed {
                        message: Arc::from(format!("no group named `{name}`")),
                    })
                }
            },
            _ => self.lookup(req.method()),
        };
        target.ok_or_else(|| RpcError::MethodNotAllowed {
            message: self.no_route.clone(),
        })
    }
}

impl<S: JsonRpcBatchService> Service<Batch> for MethodRouter<S> {
    type Response = BatchAnswers;
    type Error = std::convert::Infallible;
    type Future = PassOrBoxed<<S as Service<Batch>>::Future>;

    fn poll_ready(&mut self, _cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        Poll::Ready(Ok(()))
    }

    /// A batch per service its calls go to, sent at once; calls no route
    /// takes are answered in place. A batch whose calls all go to one
    /// service goes on whole.
    fn call(&mut self, batch: Batch) -> Self::Future {
        use futures_util::FutureExt;
        // The common case first: every call to one service, which is ready
        // (ours always are): the batch goes to it as it is.
        let one = {
            let mut calls = self.table.targets(batch.calls());
            match calls.next() {
                Some(Ok(first)) if calls.all(|t| matches!(t, Ok(i) if i == first)) => Some(first),
                _ => None,
            }
        };
        if let Some(first) = one {
            let mut service = self.table.services[first].clone();
            if let Some(Ok(_)) = ServiceExt::<Batch>::ready(&mut service).now_or_never() {
                return futures_util::future::Either::Left(service.call(batch));
            }
        }
        let table = self.table.clone();
        futures_util::future::Either::Right(BoxedBatchFuture::new(async move {
            let targets: Vec<Result<usize, RpcError>> = table.targets(batch.calls()).collect();
            let first = match targets.first() {
                Some(Ok(first)) => Some(*first),
                _ => None,
            };
            if let Some(first) = first {
                if targets.iter().all(|t| matches!(t, Ok(i) if *i == first)) {
                    return call_batch(table.services[first].clone(), batch).await;
                }
            }
            // Calls by service, in the client's order within each.
            let mut by_service: Vec<(usize, Vec<usize>, Vec<Request>)> = Vec::new();
            let mut answers: BatchAnswers = (0..batch.len()).map(|_| None).collect();
            let template = batch.with_calls(Vec::new());
            for (index, (call, target)) in batch.into_calls().into_iter().zip(targets).enumerate() {
                match target {
                    Ok(service) => match by_service.iter_mut().find(|(s, _, _)| *s == service) {
                        Some((_, at, calls)) => {
                            at.push(index);
                            calls.push(call);
                        }
                        None => by_service.push((service, vec![index], vec![call])),
                    },
                    Err(e) => answers[index] = Some(Err(e)),
                }
            }
            let sent = by_service.into_iter().map(|(service, at, calls)| {
                let batch = template.with_calls(calls);
                let service = table.services[service].clone();
                async move { (at, call_batch(service, batch).await) }
            });
            for (at, answered) in futures_util::future::join_all(sent).await {
                for (index, answer) in at.into_iter().zip(answered) {
                    answers[index] = answer;
                }
            }
            answers
        }))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::RawJson;
    use tower::service_fn;

    type Svc = crate::BoxJsonRpcService;

    fn named(name: &'static str) -> Svc {
        Svc::new(service_fn(move |req: Request| async move {
            let result = RawJson::from_bytes(format!("\"{name}\""))
                .map_err(|e| RpcError::Internal(e.to_string()))?;
            Ok::<_, RpcError>(Response::result(
                req.id().cloned().unwrap_or_default(),
                result,
            ))
        }))
    }

    async fn target(router: &MethodRouter<Svc>, method: &str) -> Result<String, RpcError> {
        let resp = router
            .clone()
            .oneshot(Request::new(method).with_id(1u64.into()))
            .await?;
        Ok(resp
            .result_json()
            .map(|r| String::from_utf8_lossy(r.as_bytes()).into_owned())
            .unwrap_or_default())
    }

    #[tokio::test]
    async fn a_call_carrying_route_to_goes_to_that_group_whatever_its_method() {
        let router = MethodRouter::builder()
            .routes_named("main", ["eth_*"], named("main"))
            .unwrap()
            .routes_named("premium", Vec::<&str>::new(), named("premium"))
            .unwrap()
            .build();
        let call = |to: Option<&str>| {
            let mut req = Request::new("eth_call").with_id(1u64.into());
            if let Some(to) = to {
                req.extensions_mut().insert(RouteTo(Arc::from(to)));
            }
            router.clone().oneshot(req)
        };
        let text =
            |r: Response| String::from_utf8_lossy(r.result_json().unwrap().as_bytes()).into_owned();
        assert_eq!(text(call(None).await.unwrap()), "\"main\"");
        assert_eq!(text(call(Some("premium")).await.unwrap()), "\"premium\"");
        let err = call(Some("nowhere")).await.unwrap_err();
        assert!(matches!(err, RpcError::MethodNotAllowed { .. }), "{err:?}");
    }

    #[tokio::test]
    async fn exact_beats_prefix_and_longer_prefix_beats_shorter() {
        let router = MethodRouter::builder()
            .route("eth_*", named("eth"))
            .unwrap()
            .route("eth_get*", named("get"))
            .unwrap()
            .routes(["eth_getLogs", "trace_*"], named("archive"))
            .unwrap()
            .build();
        assert_eq!(target(&router, "eth_call").await.unwrap(), "\"eth\"");
        assert_eq!(target(&router, "eth_getBalance").await.unwrap(), "\"get\"");
        assert_eq!(target(&router, "eth_getLogs").await.unwrap(), "\"archive\"");
        assert_eq!(target(&router, "trace_block").await.unwrap(), "\"archive\"");
        let err = target(&router, "net_version").await.unwrap_err();
        assert!(
            matches!(&err, RpcError::MethodNotAllowed { message } if &**message == NO_ROUTE_MESSAGE),
            "{err:?}"
        );
        assert_eq!(err.to_error_object().code(), -32601);
    }

    #[tokio::test]
    async fn unmatched_methods_go_to_the_default() {
        let router = MethodRouter::builder()
            .route("eth_sendRawTransaction", named("sequencer"))
            .unwrap()
            .default_service(named("providers"))
            .build();
        assert_eq!(
            target(&router, "eth_sendRawTransaction").await.unwrap(),
            "\"sequencer\""
        );
        assert_eq!(
            target(&router, "eth_chainId").await.unwrap(),
            "\"providers\""
        );
        assert!(router.service_for("anything").is_some());
    }

    #[test]
    fn bad_patterns_are_refused() {
        assert!(matches!(
            MethodRouter::<Svc>::builder().route("", named("x")),
            Err(PatternError::Empty)
        ));
        assert!(matches!(
            MethodRouter::<Svc>::builder().route("eth_*Logs", named("x")),
            Err(PatternError::InnerWildcard(_))
        ));
    }
}
