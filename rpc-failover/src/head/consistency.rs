use std::future::Future;
use std::hash::{BuildHasher, Hash};
use std::num::NonZeroUsize;
use std::pin::Pin;
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll};

use lru::LruCache;
use pin_project_lite::pin_project;
use rpc_core::{ChainHead, ConnectionId, MinHead, Request, Response, RpcError, SessionId};
use tower::{Layer, Service};

/// Read-your-head consistency: once a session has seen head N, its later
/// calls carry [`MinHead`]`(N)`, so a head-tracking group (see the
/// [module docs](super)) answers them only from members at N or above.
///
/// A session is the client-named [`SessionId`] (from the header set with
/// `ServerConfig::session_header`, e.g. `x-session-id`: the way a client opts
/// in across connections), else, with [`per_connection`](Self::per_connection)
/// (on by default), the HTTP connection the call came on
/// ([`ConnectionId`]). Calls with neither pass through untouched.
///
/// What a session has seen is the [`ChainHead`] of its answers (set by the
/// group from the answering member's head). Sessions are kept in a bounded
/// LRU table (default 100 000); a forgotten session simply starts again.
///
/// Place it above the cache and the group, below the HTTP front:
///
/// ```
/// use rpc_failover::{ConsistencyLayer, FailoverLayer, HeadPolicy, Member};
/// use rpc_core::HttpBackend;
/// use tower::ServiceBuilder;
///
/// # #[tokio::main(flavor = "current_thread")]
/// # async fn main() -> Result<(), Box<dyn std::error::Error>> {
/// let group = FailoverLayer::new()
///     .head_tracking(HeadPolicy::ethereum())
///     .build(vec![
///         Member::new("a", HttpBackend::builder("a", "http://127.0.0.1:8545").build()?),
///         Member::new("b", HttpBackend::builder("b", "http://127.0.0.1:8546").build()?),
///     ])?;
/// let service = ServiceBuilder::new()
///     .layer(ConsistencyLayer::new())
///     .service(group);
/// # drop(service); Ok(()) }
/// ```
#[derive(Clone, Debug)]
pub struct ConsistencyLayer {
    per_connection: bool,
    max_sessions: usize,
    #[cfg(feature = "redis")]
    shared: Option<(rpc_core::redis::RedisLink, std::time::Duration)>,
}

impl Default for ConsistencyLayer {
    fn default() -> Self {
        Self::new()
    }
}

impl ConsistencyLayer {
    /// Sessions by [`SessionId`] and by connection, up to 100 000 kept.
    pub fn new() -> Self {
        ConsistencyLayer {
            per_connection: true,
            max_sessions: 100_000,
            #[cfg(feature = "redis")]
            shared: None,
        }
    }

    /// Whether a connection is a session when the call names none (default
    /// on). Off: only clients that send a session id are consistent.
    pub fn per_connection(mut self, on: bool) -> Self {
        self.per_connection = on;
        self
    }

    /// The most sessions remembered (least recently used forgotten first;
    /// default 100 000).
    pub fn max_sessions(mut self, n: usize) -> Self {
        self.max_sessions = n.max(SHARDS);
        self
    }
}

#[cfg(feature = "redis")]
#[cfg_attr(docsrs, doc(cfg(feature = "redis")))]
impl ConsistencyLayer {
    /// Keeps **named** sessions' heads ([`SessionId`]) in Redis too, so a
    /// client whose calls land on several replicas never sees the chain go
    /// backwards: a call of a named session reads the session's head from
    /// Redis (one round trip within the link's deadline, taken with the
    /// local one, whichever is higher), and an answer that raises it is
    /// written back before the client has it (a script that only raises).
    /// A session is forgotten after `idle` without a raise (default, with
    /// [`shared`](Self::shared): 1 hour). Connections are sessions of one
    /// replica only and stay local.
    ///
    /// When Redis cannot be asked, the local head is used (per-replica
    /// consistency, counted in `rpc_redis_fallbacks_total{feature="session"}`).
    ///
    /// ```no_run
    /// use rpc_core::redis::{RedisConfig, RedisLink};
    /// use rpc_failover::ConsistencyLayer;
    ///
    /// let link = RedisLink::new(RedisConfig::new("redis://127.0.0.1:6379"))?;
    /// let layer = ConsistencyLayer::new().shared(link);
    /// # drop(layer); Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    pub fn shared(mut self, link: rpc_core::redis::RedisLink) -> Self {
        self.shared = Some((link, std::time::Duration::from_secs(3600)));
        self
    }

    /// How long a shared session is kept without a raise (default 1 hour).
    pub fn session_idle(mut self, idle: std::time::Duration) -> Self {
        if let Some((_, d)) = &mut self.shared {
            *d = idle.max(std::time::Duration::from_secs(1));
        }
        self
    }
}

impl<S> Layer<S> for ConsistencyLayer {
    type Service = Consistency<S>;

    fn layer(&self, inner: S) -> Self::Service {
        let per_shard =
            NonZeroUsize::new(self.max_sessions.div_ceil(SHARDS)).unwrap_or(NonZeroUsize::MIN);
        Consistency {
            inner,
            state: Arc::new(Sessions {
                per_connection: self.per_connection,
                shards: (0..SHARDS)
                    .map(|_| Mutex::new(LruCache::new(per_shard)))
                    .collect(),
                hasher: std::collections::hash_map::RandomState::new(),
                #[cfg(feature = "redis")]
                shared: self
                    .shared
                    .as_ref()
                    .map(|(link, idle)| shared::SharedSessions::new(link.clone(), *idle)),
            }),
        }
    }
}

const SHARDS: usize = 16;

#[derive(Clone, Debug, PartialEq, Eq, Hash)]
enum SessionKey {
    Named(Arc<str>),
    Connection(u64),
}

struct Sessions {
    per_connection: bool,
    shards: Box<[Mutex<LruCache<SessionKey, u64>>]>,
    hasher: std::collections::hash_map::RandomState,
    #[cfg(feature = "redis")]
    shared: Option<shared::SharedSessions>,
}

impl std::fmt::Debug for Sessions {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Sessions")
            .field("per_connection", &self.per_connection)
            .finish_non_exhaustive()
    }
}

impl Sessions {
    fn key(&self, req: &Request) -> Option<SessionKey> {
        if let Some(SessionId(id)) = req.extensions().get::<SessionId>() {
            return Some(SessionKey::Named(id.clone()));
        }
        if self.per_connection {
            return req
                .extensions()
                .get::<ConnectionId>()
                .map(|c| SessionKey::Connection(c.0));
        }
        None
    }

    fn shard(&self, key: &SessionKey) -> &Mutex<LruCache<SessionKey, u64>> {
        let h = self.hasher.hash_one(key);
        &self.shards[(h as usize) % SHARDS]
    }

    fn seen(&self, key: &SessionKey) -> Option<u64> {
        self.shard(key).lock().ok()?.get(key).copied()
    }

    fn saw(&self, key: SessionKey, head: u64) {
        if let Ok(mut shard) = self.shard(&key).lock() {
            match shard.get_mut(&key) {
                Some(h) => *h = (*h).max(head),
                None => {
                    shard.put(key, head);
                }
            }
        }
    }
}

/// The service built by [`ConsistencyLayer`].
#[derive(Clone, Debug)]
pub struct Consistency<S> {
    inner: S,
    state: Arc<Sessions>,
}

impl<S> Service<Request> for Consistency<S>
where
    S: Service<Request, Response = Response, Error = RpcError> + Clone + Send + 'static,
    S::Future: Send + 'static,
{
    type Response = Response;
    type Error = RpcError;
    type Future = ResponseFuture<S::Future>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), RpcError>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, mut req: Request) -> Self::Future {
        let key = self.state.key(&req);
        #[cfg(feature = "redis")]
        if let (Some(SessionKey::Named(id)), Some(_)) = (&key, &self.state.shared) {
            // The inner service was made ready for this call: it goes with
            // it; this one keeps a fresh clone.
            let clone = self.inner.clone();
            let inner = std::mem::replace(&mut self.inner, clone);
            let (id, state) = (id.clone(), self.state.clone());
            return ResponseFuture {
                kind: Kind::Shared {
                    future: Box::pin(shared::call(inner, state, id, req)),
                },
            };
        }
        if let Some(seen) = key.as_ref().and_then(|k| self.state.seen(k)) {
            raise_need(&mut req, seen);
        }
        ResponseFuture {
            kind: Kind::Local {
                inner: self.inner.call(req),
                key,
                state: self.state.clone(),
            },
        }
    }
}

impl<S> Service<rpc_core::batch::Batch> for Consistency<S>
where
    S: rpc_core::batch::JsonRpcBatchService,
{
    type Response = rpc_core::batch::BatchAnswers;
    type Error = std::convert::Infallible;
    type Future = rpc_core::batch::PassOrBoxed<<S as Service<rpc_core::batch::Batch>>::Future>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        Service::<rpc_core::batch::Batch>::poll_ready(&mut self.inner, cx)
    }

    /// Calls of a session go as single calls (each raises the session's
    /// head from its answer); the others go on as one batch.
    fn call(&mut self, batch: rpc_core::batch::Batch) -> Self::Future {
        let (this, state) = (self.clone(), self.state.clone());
        rpc_core::batch::split_apart(this, &mut self.inner, batch, move |call| {
            state.key(call).is_some()
        })
    }
}

/// Raises the head `req` needs to at least `seen`.
fn raise_need(req: &mut Request, seen: u64) {
    let need = req
        .extensions()
        .get::<MinHead>()
        .map_or(0, |m| m.0)
        .max(seen);
    req.extensions_mut().insert(MinHead(need));
}

pin_project! {
    /// The future of [`Consistency`]: the inner call, then the session's head
    /// raised to what the answer showed.
    pub struct ResponseFuture<F> {
        #[pin]
        kind: Kind<F>,
    }
}

pin_project! {
    #[project = KindProj]
    enum Kind<F> {
        Local {
            #[pin]
            inner: F,
            key: Option<SessionKey>,
            state: Arc<Sessions>,
        },
        Shared {
            future: futures_util::future::BoxFuture<'static, Result<Response, RpcError>>,
        },
    }
}

impl<F> Future for ResponseFuture<F>
where
    F: Future<Output = Result<Response, RpcError>>,
{
    type Output = Result<Response, RpcError>;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        match self.project().kind.project() {
            KindProj::Local { inner, key, state } => {
                let result = std::task::ready!(inner.poll(cx));
                if let (Ok(resp), Some(key)) = (&result, key.take()) {
                    if let Some(ChainHead(h)) = resp.extensions().get::<ChainHead>() {
                        state.saw(key, *h);
                    }
                }
                Poll::Ready(result)
            }
            KindProj::Shared { future } => future.as_mut().poll(cx),
        }
    }
}

/// Named sessions kept in Redis (cargo feature `redis`).
#[cfg(feature = "redis")]
mod shared {
    use super::*;
    use redis::Script;
    use rpc_core::redis::{secret_id, RedisLink};
    use std::time::Duration;

    /// Raises a session's head, never lowers it; refreshes its expiry.
    const RAISE: &str = r"
local cur = tonumber(redis.call('GET', KEYS[1]) or '0')
if tonumber(ARGV[1]) > cur then
  redis.call('SET', KEYS[1], ARGV[1], 'PX', ARGV[2])
  return tonumber(ARGV[1])
end
redis.call('PEXPIRE', KEYS[1], ARGV[2])
return cur
";

    pub(super) struct SharedSessions {
        link: RedisLink,
        idle: Duration,
        raise: Script,
    }

    impl SharedSessions {
        pub(super) fn new(link: RedisLink, idle: Duration) -> Self {
            SharedSessions {
                link,
                idle,
                raise: Script::new(RAISE),
            }
        }

        fn key(&self, id: &str) -> String {
            // Session names are the client's: kept out of Redis as such.
            format!("{}s:{}", self.link.prefix(), secret_id(id))
        }

        async fn get(&self, key: &str) -> Option<u64> {
            let got: Result<Option<u64>, _> = self
                .link
                .run("session_get", |mut conn| async move {
                    redis::cmd("GET").arg(key).query_async(&mut conn).await
                })
                .await;
            got.unwrap_or_else(|_| {
                RedisLink::fell_back("session");
                None
            })
        }

        async fn raise(&self, key: &str, head: u64) {
            let done: Result<u64, _> = self
                .link
                .run("session_raise", |mut conn| {
                    let mut call = self.raise.key(key);
                    call.arg(head).arg(self.idle.as_millis() as u64);
                    async move { call.invoke_async(&mut conn).await }
                })
                .await;
            if done.is_err() {
                RedisLink::fell_back("session");
            }
        }
    }

    /// A named session's call: its head from here and from Redis, the
    /// call, and a raise written back before the answer is returned.
    pub(super) async fn call<S>(
        mut inner: S,
        state: Arc<Sessions>,
        id: Arc<str>,
        mut req: Request,
    ) -> Result<Response, RpcError>
    where
        S: Service<Request, Response = Response, Error = RpcError>,
    {
        let Some(shared) = &state.shared else {
            return inner.call(req).await;
        };
        let local_key = SessionKey::Named(id.clone());
        let redis_key = shared.key(&id);
        let local = state.seen(&local_key);
        let fleet = shared.get(&redis_key).await;
        let seen = local.max(fleet);
        if let Some(seen) = seen {
            raise_need(&mut req, seen);
        }
        let result = inner.call(req).await;
        if let Ok(resp) = &result {
            if let Some(ChainHead(h)) = resp.extensions().get::<ChainHead>() {
                state.saw(local_key, *h);
                if seen.is_none_or(|s| *h > s) {
                    shared.raise(&redis_key, *h).await;
                }
            }
        }
        result
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use rpc_core::{Id, RawJson};
    use std::sync::atomic::{AtomicU64, Ordering};
    use tower::{service_fn, ServiceExt};

    /// Answers with `ChainHead(head)` and records the `MinHead` it was given.
    fn node(
        head: Arc<AtomicU64>,
        asked: Arc<AtomicU64>,
    ) -> impl Service<Request, Response = Response, Error = RpcError, Future = impl Send> + Clone
    {
        service_fn(move |req: Request| {
            let (head, asked) = (head.clone(), asked.clone());
            async move {
                asked.store(
                    req.extensions().get::<MinHead>().map_or(0, |m| m.0),
                    Ordering::SeqCst,
                );
                let mut resp = Response::result(Id::from(1u64), RawJson::NULL);
                resp.extensions_mut()
                    .insert(ChainHead(head.load(Ordering::SeqCst)));
                Ok::<_, RpcError>(resp)
            }
        })
    }

    fn call(conn: Option<u64>, session: Option<&str>) -> Request {
        let mut req = Request::new("eth_getBalance").with_id(Id::from(1u64));
        if let Some(c) = conn {
            req.extensions_mut().insert(ConnectionId(c));
        }
        if let Some(s) = session {
            req.extensions_mut().insert(SessionId(Arc::from(s)));
        }
        req
    }

    #[tokio::test]
    async fn a_session_asks_for_the_highest_head_it_has_seen() {
        let (head, asked) = (Arc::new(AtomicU64::new(100)), Arc::new(AtomicU64::new(0)));
        let svc = ConsistencyLayer::new().layer(node(head.clone(), asked.clone()));
        svc.clone().oneshot(call(Some(1), None)).await.unwrap();
        assert_eq!(asked.load(Ordering::SeqCst), 0, "nothing seen yet");
        svc.clone().oneshot(call(Some(1), None)).await.unwrap();
        assert_eq!(asked.load(Ordering::SeqCst), 100);
        // An answer from a lower head never lowers what the session needs.
        head.store(90, Ordering::SeqCst);
        svc.clone().oneshot(call(Some(1), None)).await.unwrap();
        svc.clone().oneshot(call(Some(1), None)).await.unwrap();
        assert_eq!(asked.load(Ordering::SeqCst), 100);
        // Another connection is another session.
        svc.clone().oneshot(call(Some(2), None)).await.unwrap();
        assert_eq!(asked.load(Ordering::SeqCst), 0);
    }

    #[tokio::test]
    async fn a_named_session_spans_connections_and_per_connection_can_be_off() {
        let (head, asked) = (Arc::new(AtomicU64::new(7)), Arc::new(AtomicU64::new(0)));
        let svc = ConsistencyLayer::new()
            .per_connection(false)
            .layer(node(head, asked.clone()));
        svc.clone()
            .oneshot(call(Some(1), Some("alice")))
            .await
            .unwrap();
        svc.clone()
            .oneshot(call(Some(2), Some("alice")))
            .await
            .unwrap();
        assert_eq!(
            asked.load(Ordering::SeqCst),
            7,
            "same session, new connection"
        );
        svc.clone().oneshot(call(Some(1), None)).await.unwrap();
        svc.clone().oneshot(call(Some(1), None)).await.unwrap();
        assert_eq!(
            asked.load(Ordering::SeqCst),
            0,
            "connections are not sessions when off"
        );
    }

    #[tokio::test]
    async fn sessions_are_bounded() {
        let (head, asked) = (Arc::new(AtomicU64::new(5)), Arc::new(AtomicU64::new(0)));
        let svc = ConsistencyLayer::new()
            .max_sessions(16)
            .layer(node(head, asked.clone()));
        for c in 0..1000 {
            svc.clone().oneshot(call(Some(c), None)).await.unwrap();
        }
        let kept: usize = svc
            .state
            .shards
            .iter()
            .map(|s| s.lock().unwrap().len())
            .sum();
        assert!(kept <= 16, "{kept} sessions kept");
    }
}
