//! Subscriptions over a pool of servers: a subscriber keeps receiving
//! updates while servers come and go.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use rpc_core::{Id, RawJson, Request, Response, RpcError};
use tokio::sync::mpsc;
use tower::ServiceExt;

use crate::{ElectrumBackend, Notification};

/// Subscriptions made on every server of a pool, with their notifications
/// merged and de-duplicated.
///
/// Each server keeps its own subscriptions alive across reconnects; the pool
/// subscribes on all of them, so when one dies or freezes the others still
/// deliver, and a subscriber never depends on one server. The same update
/// from several servers is delivered once (by method, subject and status),
/// and a status seen before for a subject (a frozen server thawing and
/// repeating what it had) is not delivered again after a newer one.
/// [`subscribe`](Self::subscribe) answers with the first server's status
/// (a frozen server does not hold it up); [`unsubscribe`](Self::unsubscribe)
/// releases an address on every server.
///
/// ```no_run
/// use rpc_core::RawJson;
/// use rpc_electrum::{ElectrumBackend, PoolSubscriptions};
///
/// # #[tokio::main] async fn main() -> Result<(), Box<dyn std::error::Error>> {
/// let servers = vec![
///     ElectrumBackend::builder("a", "tcp://127.0.0.1:50001").build()?,
///     ElectrumBackend::builder("b", "tcp://127.0.0.1:50003").build()?,
/// ];
/// let mut subs = PoolSubscriptions::new(servers);
/// let tip = subs.subscribe("blockchain.headers.subscribe", RawJson::from_static("[]")?).await?;
/// while let Some(update) = subs.next().await {
///     println!("{} {}", update.method, String::from_utf8_lossy(update.params.as_bytes()));
/// }
/// # let _ = tip; Ok(()) }
/// ```
pub struct PoolSubscriptions {
    servers: Vec<ElectrumBackend>,
    rx: mpsc::Receiver<Notification>,
    seen: Arc<Mutex<HashMap<String, Seen>>>,
    tasks: Vec<tokio::task::JoinHandle<()>>,
}

/// The statuses a subject had, newest last (a few: enough to tell a stale
/// repeat from a change).
#[derive(Debug, Default)]
struct Seen(Vec<Vec<u8>>);

impl Seen {
    const KEEP: usize = 8;

    /// Records `status`; whether it is new (not the current one, nor an
    /// older one repeated).
    fn record(&mut self, status: Vec<u8>) -> bool {
        if self.0.contains(&status) {
            return false;
        }
        if self.0.len() == Self::KEEP {
            self.0.remove(0);
        }
        self.0.push(status);
        true
    }
}

impl std::fmt::Debug for PoolSubscriptions {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PoolSubscriptions")
            .field("servers", &self.servers.len())
            .finish_non_exhaustive()
    }
}

impl Drop for PoolSubscriptions {
    fn drop(&mut self) {
        for t in &self.tasks {
            t.abort();
        }
    }
}

/// What a subscription is about: the method, plus the scripthash (the first
/// param, as JSON text) for address subscriptions. The same for a
/// subscribe call's params and for the server's notification params.
fn subject(method: &str, params: &RawJson) -> String {
    if method != "blockchain.scripthash.subscribe" {
        return method.to_owned();
    }
    let args: Vec<&serde_json::value::RawValue> =
        serde_json::from_slice(params.as_bytes()).unwrap_or_default();
    format!("{method}{}", args.first().map_or("", |a| a.get()))
}

/// The subject and status of a notification, for de-duplication.
fn identity(n: &Notification) -> (String, Vec<u8>) {
    let status = match &*n.method {
        "blockchain.scripthash.subscribe" => {
            let args: Vec<&serde_json::value::RawValue> =
                serde_json::from_slice(n.params.as_bytes()).unwrap_or_default();
            args.get(1)
                .map_or(Vec::new(), |s| s.get().as_bytes().to_vec())
        }
        _ => n.params.as_bytes().to_vec(),
    };
    (subject(&n.method, &n.params), status)
}

impl PoolSubscriptions {
    /// Listens to every server's notifications (must be called inside a
    /// Tokio runtime).
    pub fn new(servers: Vec<ElectrumBackend>) -> Self {
        let (tx, rx) = mpsc::channel(1024);
        let seen: Arc<Mutex<HashMap<String, Seen>>> = Arc::default();
        let tasks = servers
            .iter()
            .map(|s| {
                let mut notes = s.notifications();
                let (tx, seen) = (tx.clone(), seen.clone());
                tokio::spawn(async move {
                    loop {
                        let n = match notes.recv().await {
                            Ok(n) => n,
                            Err(tokio::sync::broadcast::error::RecvError::Lagged(_)) => continue,
                            Err(tokio::sync::broadcast::error::RecvError::Closed) => return,
                        };
                        let (subject, status) = identity(&n);
                        let fresh = match seen.lock() {
                            Ok(mut seen) => seen.entry(subject).or_default().record(status),
                            Err(_) => true,
                        };
                        if fresh && tx.send(n).await.is_err() {
                            return;
                        }
                    }
                })
            })
            .collect();
        PoolSubscriptions {
            servers,
            rx,
            seen,
            tasks,
        }
    }

    /// Subscribes on every server; returns the first server's answer (the
    /// current status) as soon as one answers — the others' calls go on in
    /// the background — or the last error if none answered.
    pub async fn subscribe(&self, method: &str, params: RawJson) -> Result<Response, RpcError> {
        self.subscriber().subscribe(method, params).await
    }

    /// Ends a script hash's subscription on every server (in the
    /// background; each server's backend stops re-establishing it at
    /// once), and forgets its statuses.
    pub fn unsubscribe(&self, scripthash: &str) {
        self.subscriber().unsubscribe(scripthash);
    }

    /// A handle that subscribes and unsubscribes on this pool from another
    /// task (so many subscriptions can be made at once).
    pub fn subscriber(&self) -> Subscriber {
        Subscriber {
            servers: self.servers.clone(),
            seen: self.seen.clone(),
        }
    }

    /// The next new update from any server (`None` once every server's
    /// backend is gone).
    pub async fn next(&mut self) -> Option<Notification> {
        self.rx.recv().await
    }
}

/// Subscribes and unsubscribes on a [`PoolSubscriptions`]' servers from any
/// task; its updates still arrive through the pool's
/// [`next`](PoolSubscriptions::next).
#[derive(Clone, Debug)]
pub struct Subscriber {
    servers: Vec<ElectrumBackend>,
    seen: Arc<Mutex<HashMap<String, Seen>>>,
}

impl Subscriber {
    /// See [`PoolSubscriptions::subscribe`].
    pub async fn subscribe(&self, method: &str, params: RawJson) -> Result<Response, RpcError> {
        let mut calls: futures_util::stream::FuturesUnordered<_> = self
            .servers
            .iter()
            .map(|s| {
                let call = s.clone().oneshot(
                    Request::new(method)
                        .with_id(Id::from(0u64))
                        .with_params(params.clone()),
                );
                // Spawned: a slow server finishes subscribing on its own.
                tokio::spawn(call)
            })
            .collect();
        let mut last_err = RpcError::NoBackendAvailable { retry_after: None };
        let mut response = None;
        while let Some(joined) = futures_util::StreamExt::next(&mut calls).await {
            match joined {
                Ok(Ok(r)) => {
                    response = Some(r);
                    break;
                }
                Ok(Err(e)) => last_err = e,
                Err(e) => last_err = RpcError::Internal(e.to_string()),
            }
        }
        let response = response.ok_or(last_err)?;
        // The current status counts as seen: only changes are delivered.
        if let Some(raw) = response.result_json() {
            let key = subject(method, &params);
            let status = match method {
                "blockchain.headers.subscribe" => {
                    format!("[{}]", String::from_utf8_lossy(raw.as_bytes())).into_bytes()
                }
                _ => raw.as_bytes().to_vec(),
            };
            if let Ok(mut seen) = self.seen.lock() {
                seen.entry(key).or_default().record(status);
            }
        }
        Ok(response)
    }

    /// See [`PoolSubscriptions::unsubscribe`].
    pub fn unsubscribe(&self, scripthash: &str) {
        let Ok(params) = RawJson::from_serialize(&[scripthash]) else {
            return;
        };
        if let Ok(mut seen) = self.seen.lock() {
            seen.remove(&subject("blockchain.scripthash.subscribe", &params));
        }
        for s in &self.servers {
            s.forget_subscription(&params);
            let call = s.clone().oneshot(
                Request::new("blockchain.scripthash.unsubscribe")
                    .with_id(Id::from(0u64))
                    .with_params(params.clone()),
            );
            tokio::spawn(call);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::Seen;

    #[test]
    fn a_status_seen_before_is_not_news_again() {
        let mut seen = Seen::default();
        assert!(seen.record(b"a".to_vec()));
        assert!(seen.record(b"b".to_vec()), "a change");
        assert!(
            !seen.record(b"b".to_vec()),
            "the same again, from another server"
        );
        assert!(
            !seen.record(b"a".to_vec()),
            "a thawed server repeating an older one"
        );
        for i in 0..Seen::KEEP as u8 {
            seen.record(vec![i]);
        }
        assert!(seen.record(b"a".to_vec()), "long forgotten: news");
    }
}
