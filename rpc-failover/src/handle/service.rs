use std::collections::HashMap;
use std::hash::{BuildHasher, Hasher};
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll};
use std::time::Duration;

use rpc_core::protocol::{Handle, MethodTable};
use rpc_core::{
    BoxedResponseFuture, ErrorObject, JsonRpcService, Payload, RawJson, Request, Response,
    RpcError, ServedBy,
};
use tokio::time::Instant;
use tower::{Service, ServiceExt};

use crate::Pin;

/// One remembered handle.
struct Entry {
    /// The member that holds it.
    member: Arc<str>,
    /// The node's own id (raw JSON, as the node wrote it).
    upstream: RawJson,
    last_used: Instant,
}

/// The handles a layer remembers, by the id given to clients.
pub(crate) struct Table {
    entries: Mutex<HashMap<String, Entry>>,
    ttl: Duration,
    max: usize,
}

impl Table {
    pub(crate) fn new(ttl: Duration, max: usize) -> Self {
        Table {
            entries: Mutex::new(HashMap::new()),
            ttl,
            max,
        }
    }

    fn insert(&self, id: String, entry: Entry) {
        let Ok(mut map) = self.entries.lock() else {
            return;
        };
        if map.len() >= self.max {
            // Expired ones first, then the least recently used.
            let now = Instant::now();
            map.retain(|_, e| now.duration_since(e.last_used) < self.ttl);
            if map.len() >= self.max {
                if let Some(oldest) = map
                    .iter()
                    .min_by_key(|(_, e)| e.last_used)
                    .map(|(k, _)| k.clone())
                {
                    map.remove(&oldest);
                }
            }
        }
        map.insert(id, entry);
        metrics::gauge!("rpc_handles").set(map.len() as f64);
    }

    /// The member and node id of `id`, if remembered and fresh (touched).
    fn lookup(&self, id: &str, remove: bool) -> Option<(Arc<str>, RawJson)> {
        let mut map = self.entries.lock().ok()?;
        let now = Instant::now();
        let fresh = map
            .get(id)
            .is_some_and(|e| now.duration_since(e.last_used) < self.ttl);
        if !fresh {
            map.remove(id);
            return None;
        }
        let found = if remove {
            map.remove(id).map(|e| (e.member, e.upstream))
        } else {
            map.get_mut(id).map(|e| {
                e.last_used = now;
                (e.member.clone(), e.upstream.clone())
            })
        };
        metrics::gauge!("rpc_handles").set(map.len() as f64);
        found
    }
}

/// A new client-facing id: 128 bits from two randomly keyed hashers (the
/// standard library seeds each from the OS), as `0x` and 32 hex digits.
fn new_id() -> String {
    let word = || {
        let mut h = std::collections::hash_map::RandomState::new().build_hasher();
        h.write_u64(0);
        h.finish()
    };
    format!("0x{:016x}{:016x}", word(), word())
}

/// The answer for a handle that is not (or no longer) reachable.
fn not_found(request: &Request) -> Response {
    Response::error(
        request.id().cloned().unwrap_or_default(),
        ErrorObject::new(-32000, "filter not found"),
    )
}

/// Pins handles to the member that made them; see the [module docs](super).
pub struct Handles<S> {
    inner: S,
    roles: Arc<MethodTable<Handle>>,
    table: Arc<Table>,
}

impl<S> Handles<S> {
    pub(crate) fn new(inner: S, roles: Arc<MethodTable<Handle>>, table: Arc<Table>) -> Self {
        Handles {
            inner,
            roles,
            table,
        }
    }
}

impl<S: Clone> Clone for Handles<S> {
    fn clone(&self) -> Self {
        Handles {
            inner: self.inner.clone(),
            roles: self.roles.clone(),
            table: self.table.clone(),
        }
    }
}

impl<S: std::fmt::Debug> std::fmt::Debug for Handles<S> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Handles")
            .field("inner", &self.inner)
            .finish_non_exhaustive()
    }
}

impl<S: JsonRpcService> Service<Request> for Handles<S> {
    type Response = Response;
    type Error = RpcError;
    /// Calls without handles go straight through (no clone, no box).
    type Future = futures_util::future::Either<S::Future, BoxedResponseFuture>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), RpcError>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, mut request: Request) -> Self::Future {
        use futures_util::future::Either;
        let Some(role) = self.roles.get(request.method()).copied() else {
            return Either::Left(self.inner.call(request));
        };
        let inner = self.inner.clone();
        let inner = std::mem::replace(&mut self.inner, inner);
        let table = self.table.clone();
        Either::Right(match role {
            Handle::Creates => BoxedResponseFuture::new(async move {
                let response = inner.oneshot(request).await?;
                let member = response.extensions().get::<ServedBy>().map(|s| s.0.clone());
                if let (Payload::Result(raw), Some(member)) = (response.payload(), member) {
                    let id = new_id();
                    table.insert(
                        id.clone(),
                        Entry {
                            member,
                            upstream: raw.clone(),
                            last_used: Instant::now(),
                        },
                    );
                    let raw = RawJson::from_serialize(&id)
                        .map_err(|e| RpcError::Internal(e.to_string()))?;
                    let (rid, _, extensions) = response.into_parts();
                    let mut fresh = Response::result(rid, raw);
                    *fresh.extensions_mut() = extensions;
                    return Ok(fresh);
                }
                Ok(response)
            }),
            role => BoxedResponseFuture::new(async move {
                let remove = role == Handle::Removes;
                let id = request
                    .params()
                    .and_then(|p| {
                        serde_json::from_slice::<Vec<serde_json::Value>>(p.as_bytes()).ok()
                    })
                    .and_then(|v| v.first().and_then(|x| x.as_str()).map(str::to_owned));
                let Some((member, upstream)) = id.and_then(|id| table.lookup(&id, remove)) else {
                    return Ok(not_found(&request));
                };
                // The node's own id back in the first param.
                let mut params: Vec<serde_json::Value> = request
                    .params()
                    .and_then(|p| serde_json::from_slice(p.as_bytes()).ok())
                    .unwrap_or_default();
                let upstream: serde_json::Value = upstream
                    .deserialize()
                    .map_err(|e| RpcError::Internal(e.to_string()))?;
                if let Some(first) = params.first_mut() {
                    *first = upstream;
                }
                let params = RawJson::from_serialize(&params)
                    .map_err(|e| RpcError::Internal(e.to_string()))?;
                request = request.with_params(params);
                request.extensions_mut().insert(Pin(member));
                match inner.oneshot(request.clone()).await {
                    // No member by that name any more: the filter is gone.
                    Err(RpcError::NoBackendAvailable { retry_after: None }) => {
                        Ok(not_found(&request))
                    }
                    // Unreachable for now: an error like any call's; the
                    // filter is kept for when its node is back.
                    other => other,
                }
            }),
        })
    }
}

impl<S: rpc_core::batch::JsonRpcBatchService> Service<rpc_core::batch::Batch> for Handles<S> {
    type Response = rpc_core::batch::BatchAnswers;
    type Error = std::convert::Infallible;
    type Future = rpc_core::batch::PassOrBoxed<<S as Service<rpc_core::batch::Batch>>::Future>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        Service::<rpc_core::batch::Batch>::poll_ready(&mut self.inner, cx)
    }

    /// Calls that make or use a handle as single calls (pinned to their
    /// member); the others go on as one batch.
    fn call(&mut self, batch: rpc_core::batch::Batch) -> Self::Future {
        let (this, roles) = (self.clone(), self.roles.clone());
        rpc_core::batch::split_apart(this, &mut self.inner, batch, move |call| {
            roles.get(call.method()).is_some()
        })
    }
}
