use std::fmt;
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Duration;

use rpc_core::{Request, Response, RpcError};
use tokio::sync::{broadcast, mpsc, oneshot, OwnedSemaphorePermit, Semaphore};
use tokio::time::Instant;
use tokio_util::sync::PollSemaphore;
use tower::Service;

use crate::config::{BuildError, Config, TlsVerify};
use crate::worker::{self, Command, Notification, Shared, CONNECTED, CONNECTING, DISCONNECTED};
use crate::TipBoard;

/// An Electrum server as a [`JsonRpcService`](rpc_core::JsonRpcService):
/// newline-delimited JSON-RPC 2.0 over one long-lived TCP or TLS connection,
/// owned by a worker task and shared by every clone.
///
/// * Many calls are in flight at once on the connection; ids are rewritten
///   to internal numbers and the caller's id is restored.
/// * `poll_ready` applies backpressure: at most `max_in_flight` calls.
/// * Every (re)connect negotiates the protocol (`server.version`, 1.4 to 1.6
///   by default) and re-establishes subscriptions; `server.ping` keeps the
///   connection alive and a silent server (a frozen process, a dropped
///   network) is declared dead after `ping_interval + ping_timeout`.
/// * When the connection drops, calls in flight fail at once with
///   [`RpcError::ConnectionClosed`] (maybe delivered); while it is down or
///   being re-established, calls fail at once with [`RpcError::Connect`] (not
///   sent), so a failover group moves on. Only calls made before the very
///   first connection wait for it. Reconnects back off exponentially with
///   jitter.
/// * Every call has a deadline: the request's [`Deadline`](rpc_core::Deadline)
///   or `request_timeout`, whichever is sooner.
/// * A `blockchain.transaction.get` answer must hash to the txid asked
///   (raw or verbose; segwit without its witness): another transaction is
///   refused as [`RpcError::InvalidResponse`] and the server is
///   [distrusted](ElectrumBackend::distrust) for `distrust_period`, so a
///   failover group asks another server and leaves this one out.
/// * Every answer carries the server's tip as [`ChainHead`](rpc_core::ChainHead)
///   (followed through header notifications), so a head-tracking failover
///   group learns each server's head from live traffic, without probes.
///
/// | setting | default |
/// |---|---|
/// | [`client_name`](ElectrumBackendBuilder::client_name) | `rpc-electrum/<version>` |
/// | [`protocol`](ElectrumBackendBuilder::protocol) | `1.4` to `1.6` |
/// | [`connect_timeout`](ElectrumBackendBuilder::connect_timeout) | 5 s (TCP, TLS and handshake) |
/// | [`request_timeout`](ElectrumBackendBuilder::request_timeout) | 10 s |
/// | [`ping_interval`](ElectrumBackendBuilder::ping_interval) / [`ping_timeout`](ElectrumBackendBuilder::ping_timeout) | 5 s / 5 s |
/// | [`backoff`](ElectrumBackendBuilder::backoff) | 250 ms doubling to 4 s, with jitter; back to 250 ms once a connection has worked |
/// | [`max_line`](ElectrumBackendBuilder::max_line) | 8 MiB |
/// | [`max_in_flight`](ElectrumBackendBuilder::max_in_flight) | 1024 |
/// | [`tls`](ElectrumBackendBuilder::tls) | `tls://`: web PKI roots; `tcp://`: none |
/// | [`distrust_period`](ElectrumBackendBuilder::distrust_period) | 10 min |
///
/// ```no_run
/// use rpc_core::{Id, Request};
/// use rpc_electrum::{ElectrumBackend, TlsVerify};
/// use tower::ServiceExt;
///
/// # #[tokio::main] async fn main() -> Result<(), Box<dyn std::error::Error>> {
/// let server = ElectrumBackend::builder("fulcrum-1", "tls://electrum.example.org:50002")
///     .tls(TlsVerify::Pinned("4f:2a:...".into()))
///     .build()?;
/// let tip = server
///     .clone()
///     .oneshot(Request::new("blockchain.headers.subscribe").with_id(Id::from(1u64)))
///     .await?;
/// # let _ = tip; Ok(()) }
/// ```
pub struct ElectrumBackend {
    shared: Arc<Shared>,
    tx: mpsc::UnboundedSender<Command>,
    semaphore: PollSemaphore,
    permit: Option<OwnedSemaphorePermit>,
    request_timeout: Duration,
    distrust_period: Duration,
    stale: Option<(TipBoard, u64)>,
}

impl Clone for ElectrumBackend {
    fn clone(&self) -> Self {
        ElectrumBackend {
            shared: self.shared.clone(),
            tx: self.tx.clone(),
            semaphore: self.semaphore.clone(),
            permit: None,
            request_timeout: self.request_timeout,
            distrust_period: self.distrust_period,
            stale: self.stale.clone(),
        }
    }
}

impl fmt::Debug for ElectrumBackend {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ElectrumBackend")
            .field("name", &self.shared.name)
            .field("connected", &self.is_connected())
            .finish_non_exhaustive()
    }
}

/// A request extension: send even to a server marked
/// [distrusted](ElectrumBackend::set_distrusted) or behind the pool's tip
/// (a verifier re-examining it). Not for client calls.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Unchecked;

/// Builds an [`ElectrumBackend`]; see its table of defaults.
#[derive(Debug)]
pub struct ElectrumBackendBuilder {
    config: Result<Config, BuildError>,
}

impl ElectrumBackend {
    /// A backend named `name` (for logs, errors and metrics; never the
    /// address) at `tcp://host:port` or `tls://host:port`.
    pub fn builder(name: impl Into<Arc<str>>, address: &str) -> ElectrumBackendBuilder {
        ElectrumBackendBuilder {
            config: Config::parse(name.into(), address),
        }
    }

    /// Whether the connection is up now.
    pub fn is_connected(&self) -> bool {
        self.shared.state.load(Ordering::Acquire) == CONNECTED
    }

    /// The backend's name.
    pub fn name(&self) -> &str {
        &self.shared.name
    }

    /// How many times the connection has been (re)established.
    pub fn connects(&self) -> u64 {
        self.shared.connects.load(Ordering::Relaxed)
    }

    /// Down: waiting out a backoff, or trying to reconnect after having been
    /// connected. Only calls made before the very first connection wait for
    /// it; later ones fail fast, so a pool never waits on a server that is
    /// being reconnected (a connect can hang up to `connect_timeout`).
    fn is_down(&self) -> bool {
        match self.shared.state.load(Ordering::Acquire) {
            DISCONNECTED => true,
            CONNECTING => self.connects() > 0,
            _ => false,
        }
    }

    /// The server's tip height, once known (it is followed from the first
    /// connection on).
    pub fn tip(&self) -> Option<u64> {
        match self.shared.tip.load(Ordering::Relaxed) {
            0 => None,
            h => Some(h),
        }
    }

    /// How far this server is behind the best tip on its [`TipBoard`], when
    /// that is more than allowed.
    fn blocks_behind(&self) -> Option<u64> {
        let (board, max) = self.stale.as_ref()?;
        let behind = board.best().saturating_sub(self.tip()?);
        (behind > *max).then_some(behind)
    }

    /// Marks the server as not trusted, and why (`None` clears it). While
    /// it is, calls fail at once as not sent (`RpcError::Connect`, "not
    /// trusted: …"), so a failover group takes the server out of rotation
    /// and its health checks keep it out — except calls carrying
    /// [`Unchecked`] (a verifier's own, re-examining the server).
    /// [`ChainVerifier`](crate::chain::ChainVerifier) sets it for a server
    /// whose headers do not verify, and clears only marks it set, when the
    /// server's tip is on the verified chain again.
    pub fn set_distrusted(&self, why: Option<&str>) {
        if let Ok(mut d) = self.shared.distrust.lock() {
            *d = why.map(|w| (Arc::from(w), None));
        }
    }

    /// Distrusts the server for its `distrust_period` (10 min by default):
    /// for a provably false answer found outside a verifier (a transaction
    /// that does not hash to its txid, a confirmation no proof holds). The
    /// mark lapses by itself, so a server that was lied through (a man in
    /// the middle, a bad restart) gets another chance; a liar is caught
    /// again at its next lie.
    pub fn distrust(&self, why: &str) {
        let until = Instant::now() + self.distrust_period;
        if let Ok(mut d) = self.shared.distrust.lock() {
            *d = Some((Arc::from(why), Some(until)));
        }
    }

    /// The address the server was last reached at (what its host name
    /// resolved to), once connected.
    pub fn peer_addr(&self) -> Option<std::net::SocketAddr> {
        self.shared.peer.lock().ok().and_then(|p| *p)
    }

    /// The server's [`NetworkGroup`](crate::NetworkGroup) (its /16 or
    /// /48; `None` before the first connection).
    pub fn network_group(&self) -> Option<crate::NetworkGroup> {
        self.peer_addr().map(crate::NetworkGroup::of)
    }

    /// Why the last connection attempt failed or the last connection was
    /// lost (a refused certificate, another network's genesis, a timeout),
    /// until a connection succeeds again.
    pub fn last_failure(&self) -> Option<Arc<str>> {
        self.shared.last_failure.lock().ok().and_then(|f| f.clone())
    }

    /// Why the server is not trusted, if it is not.
    pub fn distrusted(&self) -> Option<Arc<str>> {
        let mut d = self.shared.distrust.lock().ok()?;
        match &*d {
            Some((_, Some(until))) if Instant::now() >= *until => {
                *d = None;
                None
            }
            other => other.as_ref().map(|(why, _)| why.clone()),
        }
    }

    /// How many subscriptions this backend keeps on its server (and
    /// re-establishes after a reconnect): the headers subscription and one
    /// per subscribed script hash, until unsubscribed.
    pub fn subscriptions(&self) -> usize {
        self.shared.subscription_count()
    }

    /// Stops keeping the script hash subscription `params` names (it is not
    /// re-established after a reconnect); the server is told separately
    /// with `blockchain.scripthash.unsubscribe`.
    pub(crate) fn forget_subscription(&self, params: &rpc_core::RawJson) {
        self.shared
            .forget_subscription("blockchain.scripthash.subscribe", Some(params));
    }

    /// The server's software and negotiated protocol version, from the last
    /// handshake.
    pub fn server_version(&self) -> Option<(String, String)> {
        self.shared.server.lock().ok().and_then(|s| s.clone())
    }

    /// Notifications from the server: `blockchain.headers.subscribe` (new
    /// tips) and `blockchain.scripthash.subscribe` (status changes) for the
    /// subscriptions made through this backend, plus any other notification.
    ///
    /// Subscriptions are re-established after a reconnect; if a status changed
    /// while disconnected, a notification with the new status is delivered,
    /// so a subscriber never silently misses an update. A receiver that falls
    /// more than 1024 notifications behind gets `Lagged` and should re-query.
    pub fn notifications(&self) -> broadcast::Receiver<Notification> {
        self.shared.notifications.subscribe()
    }
}

impl ElectrumBackendBuilder {
    fn set(mut self, f: impl FnOnce(&mut Config)) -> Self {
        if let Ok(c) = &mut self.config {
            f(c);
        }
        self
    }

    /// How a `tls://` server is verified (default: web PKI roots). Has no
    /// effect on `tcp://`.
    pub fn tls(self, verify: TlsVerify) -> Self {
        self.set(|c| {
            if c.tls.is_some() {
                c.tls = Some(verify);
            }
        })
    }

    /// The client name sent in `server.version`.
    pub fn client_name(self, name: impl Into<String>) -> Self {
        let name = name.into();
        self.set(|c| c.client_name = name)
    }

    /// The protocol range offered in `server.version`.
    pub fn protocol(self, min: impl Into<String>, max: impl Into<String>) -> Self {
        let (min, max) = (min.into(), max.into());
        self.set(|c| {
            c.protocol_min = min;
            c.protocol_max = max;
        })
    }

    /// Time for TCP connect, TLS and the version handshake together.
    pub fn connect_timeout(self, d: Duration) -> Self {
        self.set(|c| c.connect_timeout = d)
    }

    /// The longest a call waits for its answer (a request `Deadline` can
    /// shorten it).
    pub fn request_timeout(self, d: Duration) -> Self {
        self.set(|c| c.request_timeout = d)
    }

    /// After this long without a byte from the server, send `server.ping`.
    pub fn ping_interval(self, d: Duration) -> Self {
        self.set(|c| c.ping_interval = d)
    }

    /// A ping unanswered for this long (and nothing else received) means the
    /// server is gone.
    pub fn ping_timeout(self, d: Duration) -> Self {
        self.set(|c| c.ping_timeout = d)
    }

    /// Reconnect backoff: first wait and cap (each wait is jittered 50–100 %).
    /// The wait doubles after each failed connect and after each connection
    /// lost within 2 s of being made; a connection that worked longer (the
    /// server answered) starts over from `min`. The cap is how late a
    /// restarted server may be noticed (default 4 s).
    pub fn backoff(self, min: Duration, max: Duration) -> Self {
        self.set(|c| {
            c.backoff_min = min;
            c.backoff_max = max.max(min);
        })
    }

    /// The longest line accepted from the server (and sent to it).
    pub fn max_line(self, bytes: usize) -> Self {
        self.set(|c| c.max_line = bytes.max(1024))
    }

    /// How long [`distrust`](ElectrumBackend::distrust) keeps the server
    /// out (a false transaction found by this backend, or a caller's
    /// finding).
    pub fn distrust_period(self, d: Duration) -> Self {
        self.set(|c| c.distrust_period = d)
    }

    /// Refuse a server on another network: after each handshake,
    /// `server.features` must report this genesis block hash (hex), or the
    /// connection is dropped and retried later, and calls fail as not sent.
    pub fn expect_genesis(self, hash: impl Into<String>) -> Self {
        let hash = hash.into();
        self.set(|c| c.expect_genesis = Some(hash))
    }

    /// Compare this server's tip with the others posting to `board`: while it
    /// is more than `max_behind` blocks behind the best believed tip (a
    /// server whose node stopped still answers pings; one that rolled back),
    /// calls fail at once as not sent, so a failover group uses another
    /// server and takes this one out of service. No single server moves the
    /// board's tip (see [`TipBoard`]).
    pub fn tip_board(self, board: TipBoard, max_behind: u64) -> Self {
        self.set(|c| c.tip_board = Some((board, max_behind)))
    }

    /// Calls in flight at once before `poll_ready` waits.
    pub fn max_in_flight(self, n: usize) -> Self {
        self.set(|c| c.max_in_flight = n.max(1))
    }

    /// Starts the connection's worker task and returns the backend.
    ///
    /// Must be called inside a Tokio runtime (the worker is spawned on it);
    /// the first connection is made in the background, and calls made before
    /// it is up wait for it (bounded by their deadline).
    pub fn build(self) -> Result<ElectrumBackend, BuildError> {
        let config = self.config?;
        let handle = tokio::runtime::Handle::try_current().map_err(|_| BuildError::NoRuntime)?;
        let tls = match &config.tls {
            Some(v) => Some(crate::tls::client_config(v)?),
            None => None,
        };
        let board = config.tip_board.as_ref().map(|(b, _)| b.clone());
        let max_behind = config.tip_board.as_ref().map(|(_, n)| *n);
        let shared = Arc::new(Shared::new(
            config.name.clone(),
            board.as_ref().map(TipBoard::slot),
        ));
        let (tx, rx) = mpsc::unbounded_channel();
        let semaphore = PollSemaphore::new(Arc::new(Semaphore::new(config.max_in_flight)));
        let request_timeout = config.request_timeout;
        let distrust_period = config.distrust_period;
        handle.spawn(worker::run(config, tls, shared.clone(), rx));
        Ok(ElectrumBackend {
            shared,
            tx,
            semaphore,
            permit: None,
            request_timeout,
            distrust_period,
            stale: board.zip(max_behind),
        })
    }
}

impl Service<Request> for ElectrumBackend {
    type Response = Response;
    type Error = RpcError;
    type Future = ResponseFuture;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), RpcError>> {
        if self.permit.is_none() {
            match self.semaphore.poll_acquire(cx) {
                Poll::Pending => return Poll::Pending,
                Poll::Ready(Some(p)) => self.permit = Some(p),
                Poll::Ready(None) => {
                    return Poll::Ready(Err(RpcError::Internal("semaphore closed".into())))
                }
            }
        }
        Poll::Ready(Ok(()))
    }

    fn call(&mut self, request: Request) -> ResponseFuture {
        let name = self.shared.name.clone();
        let permit = self.permit.take();
        let not_sent = |name: &Arc<str>, why: &str| RpcError::Connect {
            backend: name.clone(),
            source: why.to_owned().into(),
        };
        let unchecked = request.extensions().get::<Unchecked>().is_some();
        let early = if permit.is_none() {
            Some(RpcError::Overloaded)
        } else if self.is_down() {
            Some(not_sent(&name, "not connected (reconnecting)"))
        } else if let Some(why) = self.distrusted().filter(|_| !unchecked) {
            Some(not_sent(&name, &format!("not trusted: {why}")))
        } else {
            self.blocks_behind().filter(|_| !unchecked).map(|behind| {
                not_sent(
                    &name,
                    &format!("stale tip: {behind} blocks behind the pool"),
                )
            })
        };
        let started = Instant::now();
        let deadline = match request.deadline() {
            Some(d) => d.min(started + self.request_timeout),
            None => started + self.request_timeout,
        };
        // The txid a transaction answer must hash to.
        let want_txid = (request.method() == "blockchain.transaction.get")
            .then(|| asked_txid(&request))
            .flatten();
        let (reply, answer) = oneshot::channel();
        let sent = early.is_none() && self.tx.send(Command { request, reply }).is_ok();
        let shared = self.shared.clone();
        let this = want_txid.map(|_| self.clone());
        ResponseFuture::new(async move {
            let _permit = permit;
            if let Some(err) = early {
                return Err(err);
            }
            if !sent {
                return Err(not_sent(&name, "the connection worker has stopped"));
            }
            match tokio::time::timeout_at(deadline, answer).await {
                Ok(Ok(Ok(response)))
                    if want_txid.is_some_and(|want| !is_transaction(&response, &want)) =>
                {
                    let why = format!(
                        "its answer to blockchain.transaction.get is not transaction {}",
                        crate::chain::hash_to_hex(&want_txid.unwrap_or_default())
                    );
                    if let Some(this) = this {
                        tracing::warn!(backend = %name, why, "electrum server distrusted");
                        this.distrust(&why);
                    }
                    Err(RpcError::InvalidResponse {
                        backend: name,
                        reason: why,
                    })
                }
                Ok(Ok(result)) => result.map(|mut response| {
                    // The server's tip as of this answer (followed through
                    // header notifications), for head trackers above.
                    match shared.head_block() {
                        Some(block) => {
                            response
                                .extensions_mut()
                                .insert(rpc_core::ChainHead(block.number));
                            response.extensions_mut().insert(block);
                        }
                        None => {
                            let tip = shared.tip.load(Ordering::Relaxed);
                            if tip != 0 {
                                response.extensions_mut().insert(rpc_core::ChainHead(tip));
                            }
                        }
                    }
                    response
                }),
                Ok(Err(_)) => Err(RpcError::ConnectionClosed {
                    backend: name,
                    source: "the connection worker stopped".into(),
                }),
                Err(_) => Err(RpcError::Timeout {
                    backend: Some(name),
                    elapsed: started.elapsed(),
                }),
            }
        })
    }
}

/// `blockchain.transaction.get`'s first param as a hash (internal order).
fn asked_txid(request: &Request) -> Option<crate::chain::Hash> {
    let params = request.params()?;
    let (txid,): (&str,) = serde_json::from_slice::<(&str,)>(params.as_bytes())
        .ok()
        .or_else(|| {
            serde_json::from_slice::<(&str, serde::de::IgnoredAny)>(params.as_bytes())
                .ok()
                .map(|(t, _)| (t,))
        })?;
    crate::chain::hash_from_hex(txid)
}

/// Whether a `blockchain.transaction.get` answer is transaction `want`:
/// raw hex, or a verbose object whose `hex` is. An error answer (no such
/// transaction) is not this check's business.
fn is_transaction(response: &Response, want: &crate::chain::Hash) -> bool {
    #[derive(serde::Deserialize)]
    struct Verbose<'a> {
        #[serde(borrow)]
        hex: std::borrow::Cow<'a, str>,
    }
    let rpc_core::Payload::Result(raw) = response.payload() else {
        return true;
    };
    let hex = match serde_json::from_slice::<std::borrow::Cow<'_, str>>(raw.as_bytes()) {
        Ok(hex) => hex,
        Err(_) => match serde_json::from_slice::<Verbose<'_>>(raw.as_bytes()) {
            Ok(v) => v.hex,
            Err(_) => return false,
        },
    };
    crate::chain::hex_bytes(&hex)
        .and_then(|bytes| crate::tx::txid(&bytes).ok())
        .is_some_and(|got| got == *want)
}

/// The future of an [`ElectrumBackend`] call.
pub type ResponseFuture = rpc_core::BoxedResponseFuture;

impl rpc_core::Named for ElectrumBackend {
    fn name(&self) -> &str {
        &self.shared.name
    }
}
