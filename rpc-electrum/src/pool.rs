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
/// from several servers is delivered once (by method, subject and status).
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
    seen: Arc<Mutex<HashMap<String, Vec<u8>>>>,
    tasks: Vec<tokio::task::JoinHandle<()>>,
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
        let seen: Arc<Mutex<HashMap<String, Vec<u8>>>> = Arc::default();
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
                            Ok(mut seen) => {
                                seen.insert(subject, status.clone()).as_ref() != Some(&status)
                            }
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
    /// current status), or the last error if none answered.
    pub async fn subscribe(&self, method: &str, params: RawJson) -> Result<Response, RpcError> {
        let calls = self.servers.iter().map(|s| {
            s.clone().oneshot(
                Request::new(method)
                    .with_id(Id::from(0u64))
                    .with_params(params.clone()),
            )
        });
        let mut first = None;
        let mut last_err = RpcError::NoBackendAvailable { retry_after: None };
        for result in futures_util::future::join_all(calls).await {
            match result {
                Ok(r) if first.is_none() => first = Some(r),
                Ok(_) => {}
                Err(e) => last_err = e,
            }
        }
        let response = first.ok_or(last_err)?;
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
                seen.insert(key, status);
            }
        }
        Ok(response)
    }

    /// The next new update from any server (`None` once every server's
    /// backend is gone).
    pub async fn next(&mut self) -> Option<Notification> {
        self.rx.recv().await
    }
}
