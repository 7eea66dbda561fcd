//! The connection budget: every open client connection is registered, with
//! a global cap and a per-address cap. When a cap is reached, the longest
//! idle connection (one that never sent a request first) makes room; when
//! none is idle, the new connection is refused at once. Idle connections are
//! closed after the idle timeout.

use std::collections::HashMap;
use std::net::IpAddr;
use std::sync::atomic::{AtomicBool, AtomicU32, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use tokio::sync::Notify;
use tokio::time::Instant;

use super::client_ip::TrustedProxies;

/// Metric: connections refused by the connection budget, by `reason`.
pub(crate) const REFUSED: &str = "rpc_connections_refused_total";
/// Metric: client connections open.
pub(crate) const OPEN: &str = "rpc_connections_open";
/// Metric: connections closed to make room or for idling, by `reason`.
pub(crate) const CLOSED: &str = "rpc_connections_closed_total";

/// Why a connection was refused.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Refusal {
    /// The process-wide cap, with no idle connection to close.
    Global,
    /// The per-address cap, with no idle connection of that address.
    PerIp,
}

impl Refusal {
    fn as_str(self) -> &'static str {
        match self {
            Refusal::Global => "max_connections",
            Refusal::PerIp => "max_connections_per_ip",
        }
    }
}

/// One client connection's activity.
pub(crate) struct Conn {
    ip: IpAddr,
    /// Requests being answered on it now.
    busy: AtomicU32,
    /// Milliseconds since the registry's base of its last activity.
    last_active: AtomicU64,
    /// It has sent at least one request.
    used: AtomicBool,
    /// Asked to close (made room, idled out, draining).
    pub(crate) close: Notify,
}

/// A request in progress on a connection (ends on drop).
pub(crate) struct Busy(Arc<Conn>, Arc<Registry>);

impl Drop for Busy {
    fn drop(&mut self) {
        self.0.busy.fetch_sub(1, Ordering::AcqRel);
        self.0.last_active.store(self.1.ms(), Ordering::Relaxed);
        self.1.busy.fetch_sub(1, Ordering::AcqRel);
    }
}

impl Conn {
    /// Waits until no request is in progress (a WebSocket session counts
    /// as one for its whole life).
    pub(crate) async fn until_idle(&self) {
        while self.busy.load(Ordering::Acquire) > 0 {
            tokio::time::sleep(std::time::Duration::from_millis(50)).await;
        }
    }

    /// Marks a request in progress.
    pub(crate) fn begin(self: &Arc<Self>, registry: &Arc<Registry>) -> Busy {
        self.used.store(true, Ordering::Relaxed);
        self.busy.fetch_add(1, Ordering::AcqRel);
        registry.busy.fetch_add(1, Ordering::AcqRel);
        Busy(self.clone(), registry.clone())
    }
}

/// A registered connection: leaves the registry on drop.
pub(crate) struct Slot {
    registry: Arc<Registry>,
    id: u64,
    pub(crate) conn: Arc<Conn>,
}

impl Drop for Slot {
    fn drop(&mut self) {
        self.registry.remove(self.id);
    }
}

#[derive(Default)]
struct Inner {
    conns: HashMap<u64, Arc<Conn>>,
    per_ip: HashMap<IpAddr, u32>,
}

/// Every open connection of one server.
pub(crate) struct Registry {
    inner: Mutex<Inner>,
    max: usize,
    per_ip: usize,
    exempt: TrustedProxies,
    base: Instant,
    /// Requests in progress on all connections.
    busy: AtomicU32,
    /// Refusals since the last log line, and when that was.
    refused: AtomicU64,
    logged_at: AtomicU64,
}

impl Registry {
    pub(crate) fn new(max: usize, per_ip: usize, exempt: TrustedProxies) -> Arc<Self> {
        Arc::new(Registry {
            inner: Mutex::new(Inner::default()),
            max: max.max(1),
            per_ip: per_ip.max(1),
            exempt,
            base: Instant::now(),
            busy: AtomicU32::new(0),
            refused: AtomicU64::new(0),
            logged_at: AtomicU64::new(0),
        })
    }

    fn ms(&self) -> u64 {
        u64::try_from(self.base.elapsed().as_millis()).unwrap_or(u64::MAX)
    }

    /// Requests in progress on all connections.
    pub(crate) fn busy(&self) -> u32 {
        self.busy.load(Ordering::Acquire)
    }

    /// Connections open.
    pub(crate) fn open(&self) -> usize {
        self.inner.lock().map(|i| i.conns.len()).unwrap_or(0)
    }

    /// Registers a new connection from `ip`, closing an idle one if a cap
    /// is reached; `Err` if there is no room.
    pub(crate) fn admit(self: &Arc<Self>, id: u64, ip: IpAddr) -> Result<Slot, Refusal> {
        let Ok(mut inner) = self.inner.lock() else {
            return Err(Refusal::Global);
        };
        let capped = !self.exempt.contains(ip);
        if capped
            && inner.per_ip.get(&ip).copied().unwrap_or(0) as usize >= self.per_ip
            && !self.evict(&mut inner, Some(ip))
        {
            drop(inner);
            return Err(self.refuse(Refusal::PerIp));
        }
        if inner.conns.len() >= self.max && !self.evict(&mut inner, None) {
            drop(inner);
            return Err(self.refuse(Refusal::Global));
        }
        let conn = Arc::new(Conn {
            ip,
            busy: AtomicU32::new(0),
            last_active: AtomicU64::new(self.ms()),
            used: AtomicBool::new(false),
            close: Notify::new(),
        });
        inner.conns.insert(id, conn.clone());
        *inner.per_ip.entry(ip).or_insert(0) += 1;
        metrics::gauge!(OPEN).set(inner.conns.len() as f64);
        Ok(Slot {
            registry: self.clone(),
            id,
            conn,
        })
    }

    /// Closes the idle connection that has waited longest (one that never
    /// sent a request first), of `ip` or of anyone; `false` if none is idle.
    fn evict(&self, inner: &mut Inner, ip: Option<IpAddr>) -> bool {
        let victim = inner
            .conns
            .iter()
            .filter(|(_, c)| ip.is_none_or(|ip| c.ip == ip))
            .filter(|(_, c)| c.busy.load(Ordering::Acquire) == 0)
            .min_by_key(|(_, c)| {
                (
                    c.used.load(Ordering::Relaxed),
                    c.last_active.load(Ordering::Relaxed),
                )
            })
            .map(|(id, _)| *id);
        let Some(id) = victim else { return false };
        if let Some(conn) = Self::take(inner, id) {
            conn.close.notify_one();
            metrics::counter!(CLOSED, "reason" => "make_room").increment(1);
        }
        true
    }

    fn take(inner: &mut Inner, id: u64) -> Option<Arc<Conn>> {
        let conn = inner.conns.remove(&id)?;
        if let Some(n) = inner.per_ip.get_mut(&conn.ip) {
            *n -= 1;
            if *n == 0 {
                inner.per_ip.remove(&conn.ip);
            }
        }
        Some(conn)
    }

    fn remove(&self, id: u64) {
        if let Ok(mut inner) = self.inner.lock() {
            Self::take(&mut inner, id);
            metrics::gauge!(OPEN).set(inner.conns.len() as f64);
        }
    }

    /// Counts a refusal; logs at most once per 10 s, with the count since.
    fn refuse(&self, why: Refusal) -> Refusal {
        metrics::counter!(REFUSED, "reason" => why.as_str()).increment(1);
        let n = self.refused.fetch_add(1, Ordering::Relaxed) + 1;
        let now = self.ms();
        let last = self.logged_at.load(Ordering::Relaxed);
        if (last == 0 || now.saturating_sub(last) >= 10_000)
            && self
                .logged_at
                .compare_exchange(last, now.max(1), Ordering::AcqRel, Ordering::Relaxed)
                .is_ok()
        {
            self.refused.store(0, Ordering::Relaxed);
            tracing::warn!(
                refused = n,
                limit = why.as_str(),
                max_connections = self.max,
                max_connections_per_ip = self.per_ip,
                "connections refused (logged at most every 10 s)"
            );
        }
        why
    }

    /// Closes connections idle (no request in progress) for `idle`, and
    /// those that have not completed a first request within `first` (an h2
    /// connection that sent its preface and nothing more).
    pub(crate) fn reap(&self, idle: Duration, first: Duration) {
        let limit = u64::try_from(idle.as_millis()).unwrap_or(u64::MAX);
        let first = u64::try_from(first.as_millis()).unwrap_or(u64::MAX);
        let now = self.ms();
        let Ok(mut inner) = self.inner.lock() else {
            return;
        };
        let idle: Vec<u64> = inner
            .conns
            .iter()
            .filter(|(_, c)| {
                let allowed = if c.used.load(Ordering::Relaxed) {
                    limit
                } else {
                    first
                };
                c.busy.load(Ordering::Acquire) == 0
                    && now.saturating_sub(c.last_active.load(Ordering::Relaxed)) >= allowed
            })
            .map(|(id, _)| *id)
            .collect();
        for id in idle {
            if let Some(conn) = Self::take(&mut inner, id) {
                conn.close.notify_one();
                metrics::counter!(CLOSED, "reason" => "idle").increment(1);
            }
        }
        metrics::gauge!(OPEN).set(inner.conns.len() as f64);
    }

    /// Asks every connection to close (after its requests in progress).
    pub(crate) fn close_all(&self) {
        if let Ok(inner) = self.inner.lock() {
            for conn in inner.conns.values() {
                conn.close.notify_one();
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ip(s: &str) -> IpAddr {
        s.parse().expect("ip")
    }

    #[tokio::test]
    async fn caps_make_room_from_idle_connections_first() {
        let r = Registry::new(3, 2, TrustedProxies::default());
        let a1 = r.admit(1, ip("10.0.0.1")).expect("room");
        let a2 = r.admit(2, ip("10.0.0.1")).expect("room");
        let _busy = a2.conn.begin(&r);
        // a1 never sent anything: it makes room for a third from 10.0.0.1.
        let a3 = r.admit(3, ip("10.0.0.1")).expect("room made");
        assert_eq!(r.open(), 2);
        drop(a1);
        assert_eq!(r.open(), 2, "the evicted slot was already gone");
        // Per-IP cap: a2 busy, a3 idle -> a3 goes.
        let _a4 = r.admit(4, ip("10.0.0.1")).expect("a3 made room");
        let _b = r.admit(5, ip("10.0.0.2")).expect("another address");
        // Global cap (3): a2 busy, a4 and b idle: the oldest idle goes.
        let _c = r.admit(6, ip("10.0.0.3")).expect("room");
        assert_eq!(r.open(), 3);
        drop(a3);
    }

    #[tokio::test]
    async fn no_idle_connection_means_a_refusal() {
        let r = Registry::new(10, 1, TrustedProxies::default());
        let a = r.admit(1, ip("10.0.0.1")).expect("room");
        let _busy = a.conn.begin(&r);
        assert_eq!(r.admit(2, ip("10.0.0.1")).err(), Some(Refusal::PerIp));
        // A trusted proxy is exempt from the per-address cap.
        let t = Registry::new(10, 1, TrustedProxies::new(["10.0.0.1"]).expect("valid"));
        let a = t.admit(1, ip("10.0.0.1")).expect("room");
        let _busy = a.conn.begin(&t);
        assert!(t.admit(2, ip("10.0.0.1")).is_ok());
    }

    #[tokio::test(start_paused = true)]
    async fn idle_connections_are_reaped() {
        let r = Registry::new(10, 10, TrustedProxies::default());
        let silent = r.admit(1, ip("10.0.0.1")).expect("room");
        let busy = r.admit(2, ip("10.0.0.1")).expect("room");
        let _busy = busy.conn.begin(&r);
        let used = r.admit(3, ip("10.0.0.2")).expect("room");
        drop(used.conn.begin(&r));
        tokio::time::advance(Duration::from_secs(11)).await;
        r.reap(Duration::from_secs(60), Duration::from_secs(10));
        assert_eq!(
            r.open(),
            2,
            "the one that never sent a request is closed first"
        );
        tokio::time::timeout(Duration::from_millis(1), silent.conn.close.notified())
            .await
            .expect("its task is told to close");
        tokio::time::advance(Duration::from_secs(50)).await;
        r.reap(Duration::from_secs(60), Duration::from_secs(10));
        assert_eq!(r.open(), 1, "the idle one was closed, the busy one kept");
    }
}
