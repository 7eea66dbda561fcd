//! A pool's verified chain: every server's tip checked against headers that
//! verify, liars out of rotation, and merkle proofs for confirmations.

use std::sync::{Arc, Mutex, RwLock};
use std::time::Duration;

use rpc_core::{Deadline, Id, Payload, RawJson, Request};
use tokio::time::Instant;
use tower::ServiceExt;

use super::header::{hash_from_hex, hex_bytes, Hash, Header};
use super::params::ChainParams;
use super::spv::{verify_merkle, SpvError};
use super::store::{ChainError, Connected, HeaderChain};
use crate::{ElectrumBackend, Unchecked};

/// At most this many headers per `blockchain.block.headers` call
/// (ElectrumX's own maximum).
const CHUNK: u32 = 2016;
/// How far below the verified tip a server's branch is looked for.
const FORK_DEPTH: u32 = 144;

/// What the verifier concluded about one server.
#[derive(Clone, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub enum Verdict {
    /// Not examined yet (no tip seen, or its headers not fetched yet).
    Unknown,
    /// Its tip is on the verified chain (at or below its tip).
    OnChain,
    /// Its tip is on a valid branch with less work, since this instant: out
    /// of rotation at once (its answers are about another chain), and
    /// [`Lied`](Self::Lied) after the fork grace.
    Fork {
        /// When it was first seen off the chain.
        since: Instant,
    },
    /// It served headers that do not verify (or contradict the
    /// checkpoint): out of rotation until it reports a tip on the chain.
    Lied(String),
}

/// One server as the verifier sees it.
#[derive(Clone, Debug)]
pub struct ServerView {
    /// The server's name.
    pub name: Arc<str>,
    /// Its last reported tip: height and hash.
    pub tip: Option<(u32, Hash)>,
    /// The verdict.
    pub verdict: Verdict,
}

/// Why a confirmation could not be verified.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum VerifyError {
    /// The height is above the verified (agreed) tip, or at or below the
    /// checkpoint: there is no verified header to check against.
    #[error("no verified header at height {0}")]
    NoHeader(u32),
    /// The server did not answer with a proof.
    #[error("no merkle proof: {0}")]
    Call(String),
    /// The server's proof does not hold.
    #[error(transparent)]
    Proof(#[from] SpvError),
    /// The txid is not a 32-byte hash in hex.
    #[error("not a transaction id")]
    BadTxid,
}

/// The verified chain of a pool of [`ElectrumBackend`]s.
///
/// Each server's tip (from `blockchain.headers.subscribe`, followed through
/// its notifications) is checked: a tip on the verified [`HeaderChain`] is
/// fine; otherwise the server's headers are fetched
/// (`blockchain.block.headers`, in chunks of 2 016, from up to 144 blocks
/// below the verified tip) and connected. Headers that do not verify make
/// the server [`Lied`](Verdict::Lied): it is
/// [distrusted](ElectrumBackend::set_distrusted) at once, so a failover
/// group takes it out of rotation. A valid branch with less work is a
/// [`Fork`](Verdict::Fork): out of rotation at once too (what it says about
/// confirmations is about another chain), reported as a lie after the fork
/// grace (default 5 minutes: a stale-block race ends within a block). A
/// server reporting a tip on the chain again is trusted again.
///
/// The **agreed tip** is the highest height that `agree` servers (default
/// 2, or every server of a smaller pool) report on the verified chain;
/// [`verify_tx`](Self::verify_tx) checks confirmations against verified
/// headers up to it.
#[derive(Clone)]
pub struct ChainVerifier {
    inner: Arc<Inner>,
}

struct Inner {
    chain: RwLock<HeaderChain>,
    servers: Vec<Server>,
    agree: usize,
    fork_grace: Duration,
    call_timeout: Duration,
    /// One header sync at a time (they change the chain).
    sync: tokio::sync::Mutex<()>,
    /// The verified headers on disk, when configured.
    file: Mutex<Option<super::file::HeaderFile>>,
    /// Headers at or below the checkpoint proven against its root.
    old: Mutex<std::collections::HashMap<u32, Header>>,
}

/// Old headers kept at most (a cache: proven again when dropped).
const OLD_HEADERS_KEPT: usize = 10_000;

struct Server {
    backend: ElectrumBackend,
    state: Mutex<(Option<(u32, Hash)>, Verdict)>,
}

impl std::fmt::Debug for ChainVerifier {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ChainVerifier")
            .field("tip", &self.tip_height())
            .field("servers", &self.inner.servers.len())
            .finish_non_exhaustive()
    }
}

/// Builds a [`ChainVerifier`]; every setting has a default.
#[derive(Debug)]
#[must_use]
pub struct ChainVerifierBuilder {
    params: ChainParams,
    servers: Vec<ElectrumBackend>,
    agree: Option<usize>,
    fork_grace: Duration,
    call_timeout: Duration,
    header_file: Option<std::path::PathBuf>,
}

impl ChainVerifierBuilder {
    /// Keep the verified headers in this file (default: memory only): they
    /// are verified again when [`build`](Self::build) loads them, so a
    /// restart fetches only newer headers. A file for another checkpoint
    /// is started over; one that cannot be written is logged and left
    /// alone (the verifier works from memory).
    pub fn header_file(mut self, path: impl Into<std::path::PathBuf>) -> Self {
        self.header_file = Some(path.into());
        self
    }

    /// Servers that must report a height on the verified chain before it is
    /// agreed (default 2; at most the number of servers).
    pub fn agree(mut self, k: usize) -> Self {
        self.agree = Some(k);
        self
    }

    /// How long a server may stay on a branch with less work (out of
    /// rotation meanwhile) before its verdict says it lies (default 5
    /// minutes).
    pub fn fork_grace(mut self, grace: Duration) -> Self {
        self.fork_grace = grace;
        self
    }

    /// The deadline of each call the verifier makes (default 10 s).
    pub fn call_timeout(mut self, timeout: Duration) -> Self {
        self.call_timeout = timeout;
        self
    }

    /// The verifier (not following anything until [`ChainVerifier::start`]).
    pub fn build(self) -> ChainVerifier {
        let n = self.servers.len().max(1);
        let mut chain = HeaderChain::new(self.params);
        let file = self.header_file.and_then(|path| {
            match super::file::HeaderFile::open(&path, &mut chain) {
                Ok((file, loaded)) => {
                    tracing::info!(path = %path.display(), loaded, "verified headers loaded");
                    Some(file)
                }
                Err(e) => {
                    tracing::warn!(path = %path.display(), error = %e, "header file unusable; headers stay in memory");
                    None
                }
            }
        });
        ChainVerifier {
            inner: Arc::new(Inner {
                chain: RwLock::new(chain),
                file: Mutex::new(file),
                servers: self
                    .servers
                    .into_iter()
                    .map(|backend| Server {
                        backend,
                        state: Mutex::new((None, Verdict::Unknown)),
                    })
                    .collect(),
                agree: self.agree.unwrap_or(2).clamp(1, n),
                fork_grace: self.fork_grace,
                call_timeout: self.call_timeout,
                sync: tokio::sync::Mutex::new(()),
                old: Mutex::new(std::collections::HashMap::new()),
            }),
        }
    }
}

impl ChainVerifier {
    /// A verifier of `servers` on the chain `params` describes.
    pub fn builder(params: ChainParams, servers: Vec<ElectrumBackend>) -> ChainVerifierBuilder {
        ChainVerifierBuilder {
            params,
            servers,
            agree: None,
            fork_grace: Duration::from_secs(300),
            call_timeout: Duration::from_secs(10),
            header_file: None,
        }
    }

    /// Starts following every server (one task each, on the current tokio
    /// runtime); they end when the verifier is dropped.
    pub fn start(&self) {
        for i in 0..self.inner.servers.len() {
            let weak = Arc::downgrade(&self.inner);
            tokio::spawn(async move {
                follow(weak, i).await;
            });
        }
    }

    /// The verified chain's tip height.
    pub fn tip_height(&self) -> u32 {
        self.inner.chain.read().map(|c| c.tip_height()).unwrap_or(0)
    }

    /// The highest height `agree` servers report on the verified chain —
    /// servers from `agree` distinct [network groups](crate::NetworkGroup)
    /// (/16, /48) where the pool spans that many, so one operator's
    /// servers in one network cannot agree alone.
    pub fn agreed_tip(&self) -> Option<u32> {
        let on_chain: Vec<(u32, Option<crate::NetworkGroup>)> = self
            .inner
            .servers
            .iter()
            .zip(self.servers())
            .filter(|(_, view)| view.verdict == Verdict::OnChain)
            .filter_map(|(s, view)| view.tip.map(|t| (t.0, s.backend.network_group())))
            .collect();
        let pool_groups =
            crate::netgroup::distinct(self.inner.servers.iter().map(|s| s.backend.network_group()));
        agreed_height(on_chain, self.inner.agree, pool_groups).map(|h| h.min(self.tip_height()))
    }

    /// Where verification starts: the checkpoint (or genesis) block.
    pub fn checkpoint(&self) -> crate::chain::Checkpoint {
        self.inner
            .chain
            .read()
            .map(|c| c.params().checkpoint)
            .unwrap_or_else(|e| e.into_inner().params().checkpoint)
    }

    /// The verified header at `height` (above the checkpoint, at most the
    /// verified tip).
    pub fn header(&self, height: u32) -> Option<Header> {
        self.inner.chain.read().ok()?.header(height)
    }

    /// Every server's tip and verdict.
    pub fn servers(&self) -> Vec<ServerView> {
        self.inner
            .servers
            .iter()
            .map(|s| {
                let (tip, verdict) = s
                    .state
                    .lock()
                    .map(|st| st.clone())
                    .unwrap_or((None, Verdict::Unknown));
                ServerView {
                    name: Arc::from(s.backend.name()),
                    tip,
                    verdict,
                }
            })
            .collect()
    }

    /// Checks that transaction `txid` (hex, as the protocol prints it) is in
    /// the block at `height`: `blockchain.transaction.get_merkle` from
    /// `server`, against the verified header, with the guards of
    /// [`verify_merkle`]. The height must be at most the agreed tip.
    pub async fn verify_tx(
        &self,
        server: &ElectrumBackend,
        txid: &str,
        height: u32,
    ) -> Result<(), VerifyError> {
        // An old height: its header proven first (with a configured root).
        if self.proves_old_headers().is_some_and(|cp| height <= cp) {
            self.prove_old_header(server, height).await?;
        }
        // Checked before any call: a bad id or an unverifiable height costs
        // the server nothing.
        self.header_for(txid, height)?;
        let params = serde_json::json!([txid, height]);
        let answer = call(
            server,
            "blockchain.transaction.get_merkle",
            params,
            self.inner.call_timeout,
        )
        .await
        .map_err(VerifyError::Call)?;
        self.check_proof(txid, height, answer.as_bytes())
    }

    /// Checks a `blockchain.transaction.get_merkle` answer (`{"merkle":
    /// [..], "pos": n, ..}`, raw JSON, fetched any way — through a cached,
    /// retried stack, say) for transaction `txid` at `height` against the
    /// verified header there (at most the agreed tip).
    pub fn check_proof(&self, txid: &str, height: u32, proof: &[u8]) -> Result<(), VerifyError> {
        let (id, header) = self.header_for(txid, height)?;
        #[derive(serde::Deserialize)]
        struct Proof {
            merkle: Vec<String>,
            pos: u64,
        }
        let proof: Proof = serde_json::from_slice(proof)
            .map_err(|e| VerifyError::Call(format!("not a merkle proof: {e}")))?;
        let branch: Vec<&str> = proof.merkle.iter().map(String::as_str).collect();
        verify_merkle(&id, proof.pos, &branch, &header.merkle_root())?;
        Ok(())
    }

    fn header_for(&self, txid: &str, height: u32) -> Result<(Hash, Header), VerifyError> {
        let id = hash_from_hex(txid).ok_or(VerifyError::BadTxid)?;
        let agreed = self.agreed_tip().unwrap_or(0);
        let header = (height <= agreed)
            .then(|| self.header(height))
            .flatten()
            .or_else(|| self.old_header(height))
            .ok_or(VerifyError::NoHeader(height))?;
        Ok((id, header))
    }

    /// A header at or below the checkpoint already proven by
    /// [`prove_old_header`](Self::prove_old_header).
    fn old_header(&self, height: u32) -> Option<Header> {
        self.inner.old.lock().ok()?.get(&height).copied()
    }

    /// Whether headers at or below the checkpoint can be proven (the
    /// checkpoint's root is configured), and up to which height.
    pub fn proves_old_headers(&self) -> Option<u32> {
        let chain = self.inner.chain.read().ok()?;
        let params = chain.params();
        params.checkpoint_root.map(|_| params.checkpoint.height)
    }

    /// Proves the header at `height` (at or below the checkpoint) with
    /// `server`'s `blockchain.block.header(height, cp_height)` proof
    /// against the configured [checkpoint root](ChainParams::checkpoint_root);
    /// proven headers are kept (up to 10 000), so
    /// [`check_proof`](Self::check_proof) and [`verify_tx`](Self::verify_tx)
    /// accept confirmations at that height. A proof that does not lead to
    /// the root is the server's lie ([`VerifyError::Proof`]).
    pub async fn prove_old_header(
        &self,
        server: &ElectrumBackend,
        height: u32,
    ) -> Result<Header, VerifyError> {
        if let Some(h) = self.old_header(height) {
            return Ok(h);
        }
        let (cp, root) = {
            let chain = self
                .inner
                .chain
                .read()
                .map_err(|_| VerifyError::NoHeader(height))?;
            let params = chain.params();
            match params.checkpoint_root {
                Some(root) if height <= params.checkpoint.height => {
                    (params.checkpoint.height, root)
                }
                _ => return Err(VerifyError::NoHeader(height)),
            }
        };
        let answer = call(
            server,
            "blockchain.block.header",
            serde_json::json!([height, cp]),
            self.inner.call_timeout,
        )
        .await
        .map_err(VerifyError::Call)?;
        #[derive(serde::Deserialize)]
        struct CpProof {
            header: String,
            root: String,
            branch: Vec<String>,
        }
        let proof: CpProof = serde_json::from_slice(answer.as_bytes())
            .map_err(|e| VerifyError::Call(format!("not a checkpoint proof: {e}")))?;
        let header = super::hex_bytes(&proof.header)
            .and_then(|b| <[u8; 80]>::try_from(b.as_slice()).ok())
            .map(Header::from_bytes)
            .ok_or_else(|| VerifyError::Call("not an 80-byte header".to_owned()))?;
        if hash_from_hex(&proof.root) != Some(root) {
            return Err(VerifyError::Proof(SpvError::RootMismatch));
        }
        let branch: Vec<&str> = proof.branch.iter().map(String::as_str).collect();
        verify_merkle(&header.hash(), u64::from(height), &branch, &root)?;
        if let Ok(mut old) = self.inner.old.lock() {
            if old.len() >= OLD_HEADERS_KEPT {
                old.clear();
            }
            old.insert(height, header);
        }
        Ok(header)
    }
}

/// One call with a deadline, past a distrust mark; the raw result.
async fn call(
    server: &ElectrumBackend,
    method: &str,
    params: serde_json::Value,
    timeout: Duration,
) -> Result<RawJson, String> {
    let params = RawJson::from_bytes(params.to_string()).map_err(|e| e.to_string())?;
    let mut req = Request::new(method)
        .with_id(Id::from(0u64))
        .with_params(params);
    req.extensions_mut().insert(Unchecked);
    req.extensions_mut().insert(Deadline::after(timeout));
    let answer = tokio::time::timeout(timeout, server.clone().oneshot(req))
        .await
        .map_err(|_| format!("{method}: no answer within {timeout:?}"))?
        .map_err(|e| format!("{method}: {e}"))?;
    match answer.payload() {
        Payload::Result(raw) => Ok(raw.clone()),
        Payload::Error(e) => Err(format!("{method}: {} {}", e.code(), e.message())),
    }
}

/// A `{"height": n, "hex": "..."}` tip.
fn parse_tip(raw: &[u8]) -> Option<(u32, Header)> {
    #[derive(serde::Deserialize)]
    struct Tip {
        height: u32,
        hex: String,
    }
    let t: Tip = serde_json::from_slice(raw).ok()?;
    Some((t.height, Header::from_hex(&t.hex)?))
}

/// Follows server `i`: its tip now, then each new one; re-checks a fork's
/// grace once a second.
async fn follow(weak: std::sync::Weak<Inner>, i: usize) {
    loop {
        let Some(inner) = weak.upgrade() else { return };
        let backend = inner.servers[i].backend.clone();
        let timeout = inner.call_timeout;
        let mut notes = backend.notifications();
        drop(inner);
        match call(
            &backend,
            "blockchain.headers.subscribe",
            serde_json::json!([]),
            timeout,
        )
        .await
        {
            Ok(raw) => match parse_tip(raw.as_bytes()) {
                Some((height, header)) => observe(&weak, i, height, header).await,
                None => lied(&weak, i, "its tip is not a header".to_owned()),
            },
            Err(_) => {
                tokio::time::sleep(Duration::from_secs(1)).await;
                continue;
            }
        }
        let mut tick = tokio::time::interval(Duration::from_secs(1));
        loop {
            tokio::select! {
                note = notes.recv() => match note {
                    Ok(n) if &*n.method == "blockchain.headers.subscribe" => {
                        // params: [{"height": n, "hex": ".."}]
                        let tip = serde_json::from_slice::<Vec<&serde_json::value::RawValue>>(n.params.as_bytes())
                            .ok()
                            .and_then(|p| p.first().and_then(|t| parse_tip(t.get().as_bytes())));
                        if let Some((height, header)) = tip {
                            observe(&weak, i, height, header).await;
                        }
                    }
                    Ok(_) => {}
                    // Missed some: ask the tip again.
                    Err(tokio::sync::broadcast::error::RecvError::Lagged(_)) => break,
                    Err(tokio::sync::broadcast::error::RecvError::Closed) => return,
                },
                _ = tick.tick() => {
                    let Some(inner) = weak.upgrade() else { return };
                    check_grace(&inner, i);
                }
            }
        }
    }
}

fn set(inner: &Inner, i: usize, tip: Option<(u32, Hash)>, verdict: Verdict) {
    let server = &inner.servers[i];
    let why = match &verdict {
        Verdict::Lied(why) => Some(why.clone()),
        Verdict::OnChain => None,
        // Out of rotation at once (its answers are about another chain);
        // back when its tip is on the verified chain, reported as lying
        // after the fork grace.
        Verdict::Fork { .. } => {
            if server.backend.distrusted().is_none() {
                let why = FORK_MARK;
                tracing::warn!(
                    server = server.backend.name(),
                    why,
                    "electrum server out of rotation"
                );
                server.backend.set_distrusted(Some(why));
            }
            return store(server, tip, verdict);
        }
        Verdict::Unknown => return store(server, tip, verdict),
    };
    match &why {
        Some(why) => {
            tracing::warn!(server = server.backend.name(), why = %why, "electrum server distrusted");
            server.backend.set_distrusted(Some(why));
        }
        None => {
            // Clear only a mark this verifier made (a lie about the chain,
            // a fork past its grace); one set elsewhere (a false proof
            // found by the caller) stays.
            let ours = server
                .state
                .lock()
                .map(|st| matches!(st.1, Verdict::Lied(_) | Verdict::Fork { .. }))
                .unwrap_or(false);
            if ours && server.backend.distrusted().is_some() {
                tracing::info!(
                    server = server.backend.name(),
                    "electrum server trusted again: its tip is on the verified chain"
                );
                server.backend.set_distrusted(None);
            }
        }
    }
    store(server, tip, verdict);
}

fn store(server: &Server, tip: Option<(u32, Hash)>, verdict: Verdict) {
    if let Ok(mut st) = server.state.lock() {
        if tip.is_some() {
            st.0 = tip;
        }
        // A fork keeps its first instant (and, past its grace, its lie).
        if !(matches!(verdict, Verdict::Fork { .. })
            && matches!(st.1, Verdict::Fork { .. } | Verdict::Lied(_)))
        {
            st.1 = verdict;
        }
    }
}

fn lied(weak: &std::sync::Weak<Inner>, i: usize, why: String) {
    if let Some(inner) = weak.upgrade() {
        set(&inner, i, None, Verdict::Lied(why));
    }
}

fn check_grace(inner: &Inner, i: usize) {
    let server = &inner.servers[i];
    let since = match server.state.lock() {
        Ok(st) => match st.1 {
            Verdict::Fork { since } => since,
            _ => return,
        },
        Err(_) => return,
    };
    if since.elapsed() >= inner.fork_grace {
        let why = format!(
            "on a branch with less work than the verified chain for {:?}",
            since.elapsed()
        );
        tracing::warn!(server = server.backend.name(), why = %why, "electrum server distrusted");
        server.backend.set_distrusted(Some(&why));
        if let Ok(mut st) = server.state.lock() {
            st.1 = Verdict::Lied(why);
        }
    }
}

/// Checks a tip server `i` reported.
async fn observe(weak: &std::sync::Weak<Inner>, i: usize, height: u32, header: Header) {
    let Some(inner) = weak.upgrade() else { return };
    let hash = header.hash();
    let tip = Some((height, hash));
    let on_chain = |inner: &Inner| {
        inner
            .chain
            .read()
            .map(|c| c.hash_at(height) == Some(hash))
            .unwrap_or(false)
    };
    if on_chain(&inner) {
        return set(&inner, i, tip, Verdict::OnChain);
    }
    let _one = inner.sync.lock().await;
    // Another sync may have brought it in.
    if on_chain(&inner) {
        return set(&inner, i, tip, Verdict::OnChain);
    }
    let (base, chain_tip) = match inner.chain.read() {
        Ok(c) => (c.params().checkpoint.height, c.tip_height()),
        Err(_) => return,
    };
    if height <= base {
        let why = format!("its tip {height} is at or below the checkpoint {base}");
        return set(&inner, i, tip, Verdict::Lied(why));
    }
    let backend = inner.servers[i].backend.clone();
    let mut start = chain_tip
        .min(height)
        .saturating_sub(FORK_DEPTH)
        .max(base + 1);
    while start <= height {
        let count = (height - start + 1).min(CHUNK);
        let answer = call(
            &backend,
            "blockchain.block.headers",
            serde_json::json!([start, count]),
            inner.call_timeout,
        )
        .await;
        let headers = match answer.as_ref().map(|raw| parse_headers(raw.as_bytes())) {
            Ok(Some(h)) if !h.is_empty() => h,
            // An answer it cannot read, or no headers where it claims a tip
            // (a race with its own reorganisation, or an unknown format):
            // nothing learned, not a lie; the next tip tries again.
            Ok(_) => {
                tracing::debug!(server = backend.name(), start, height, "no usable headers");
                return store(&inner.servers[i], tip, Verdict::Unknown);
            }
            // No answer: nothing learned; the next tip tries again.
            Err(_) => return store(&inner.servers[i], tip, Verdict::Unknown),
        };
        let n = headers.len() as u32;
        let result = match inner.chain.write() {
            Ok(mut c) => c.connect(start, &headers),
            Err(_) => return,
        };
        match &result {
            Ok(Connected::Extended { from: changed, .. })
            | Ok(Connected::Reorganized { fork: changed, .. }) => persist(&inner, *changed),
            _ => {}
        }
        match result {
            Ok(Connected::Reorganized {
                fork,
                old_tip,
                new_tip,
            }) => {
                tracing::info!(
                    fork,
                    old_tip,
                    new_tip,
                    server = backend.name(),
                    "verified chain reorganised to more work"
                );
                reassess(&inner, i);
            }
            Ok(_) => {}
            Err(ChainError::LessWork { .. }) => {
                return set(
                    &inner,
                    i,
                    tip,
                    Verdict::Fork {
                        since: Instant::now(),
                    },
                );
            }
            Err(e) => return set(&inner, i, tip, Verdict::Lied(e.to_string())),
        }
        start += n;
    }
    if on_chain(&inner) {
        set(&inner, i, tip, Verdict::OnChain);
    } else {
        // Its headers connected, yet the tip it announced is not among them.
        let why = format!("the tip it announced at {height} is not the header it serves there");
        set(&inner, i, tip, Verdict::Lied(why));
    }
}

/// Why a server on a less-work branch is out of rotation.
const FORK_MARK: &str = "on a branch with less work than the verified chain";

/// Appends what changed from `changed` to the header file, if any.
fn persist(inner: &Inner, changed: u32) {
    let (Ok(chain), Ok(mut file)) = (inner.chain.read(), inner.file.lock()) else {
        return;
    };
    if let Some(f) = file.as_mut() {
        if let Err(e) = f.sync(&chain, changed) {
            tracing::warn!(path = %f.path().display(), error = %e, "header file not written; headers stay in memory");
            *file = None;
        }
    }
}

/// After a reorganisation: servers whose tips were on the replaced branch
/// are on a fork now (the grace starts); the rest stay as they were.
fn reassess(inner: &Inner, except: usize) {
    let Ok(chain) = inner.chain.read() else {
        return;
    };
    for (j, server) in inner.servers.iter().enumerate() {
        if j == except {
            continue;
        }
        if let Ok(mut st) = server.state.lock() {
            if let (Some((height, hash)), Verdict::OnChain) = (st.0, &st.1) {
                if chain.hash_at(height) != Some(hash) {
                    st.1 = Verdict::Fork {
                        since: Instant::now(),
                    };
                    // Out of rotation until its tip is on the chain again,
                    // as a fork seen directly.
                    if server.backend.distrusted().is_none() {
                        server.backend.set_distrusted(Some(
                            "on a branch with less work than the verified chain",
                        ));
                    }
                }
            }
        }
    }
}

/// A `blockchain.block.headers` answer: `{"count": n, "hex": "..."}`
/// (protocol 1.4: the headers concatenated) or `{"count": n, "headers":
/// ["...", ..]}` (protocol 1.6).
fn parse_headers(raw: &[u8]) -> Option<Vec<Header>> {
    #[derive(serde::Deserialize)]
    struct Chunk {
        count: usize,
        hex: Option<String>,
        headers: Option<Vec<String>>,
    }
    let c: Chunk = serde_json::from_slice(raw).ok()?;
    let headers: Vec<Header> = match (c.hex, c.headers) {
        (Some(hex), _) => hex_bytes(&hex)?
            .chunks_exact(80)
            .filter_map(|b| <[u8; 80]>::try_from(b).ok().map(Header::from_bytes))
            .collect(),
        (None, Some(list)) => list
            .iter()
            .map(|h| Header::from_hex(h))
            .collect::<Option<_>>()?,
        (None, None) => return None,
    };
    (headers.len() == c.count).then_some(headers)
}

/// The highest height that `k` of these (height, group) reports reach,
/// from at least `min(k, pool_groups)` distinct groups.
fn agreed_height(
    mut reports: Vec<(u32, Option<crate::NetworkGroup>)>,
    k: usize,
    pool_groups: usize,
) -> Option<u32> {
    let groups_needed = k.min(pool_groups.max(1));
    reports.sort_unstable_by_key(|r| std::cmp::Reverse(r.0));
    (0..reports.len()).find_map(|i| {
        let reached = &reports[..=i];
        let enough = reached.len() >= k
            && crate::netgroup::distinct(reached.iter().map(|r| r.1)) >= groups_needed;
        enough.then_some(reports[i].0)
    })
}

#[cfg(test)]
mod agreement_tests {
    use super::agreed_height;
    use crate::NetworkGroup;

    fn at(s: &str) -> Option<NetworkGroup> {
        Some(NetworkGroup::of(s.parse().expect("address")))
    }

    #[test]
    fn servers_of_one_network_do_not_agree_alone() {
        // Two servers in one /16 claim 110; a third elsewhere is at 100.
        let reports = vec![
            (110, at("8.8.1.1:1")),
            (110, at("8.8.2.2:1")),
            (100, at("9.9.9.9:1")),
        ];
        assert_eq!(agreed_height(reports.clone(), 2, 2), Some(100));
        // From distinct networks, 110 is agreed.
        let mut spread = reports;
        spread[1].1 = at("7.7.7.7:1");
        assert_eq!(agreed_height(spread, 2, 3), Some(110));
    }

    #[test]
    fn a_pool_in_one_network_still_needs_k_servers() {
        let reports = vec![(110, at("8.8.1.1:1")), (105, at("8.8.2.2:1"))];
        assert_eq!(agreed_height(reports.clone(), 2, 1), Some(105));
        assert_eq!(agreed_height(reports[..1].to_vec(), 2, 1), None);
        // Unknown groups (not connected yet) count apart.
        assert_eq!(agreed_height(vec![(5, None), (7, None)], 2, 2), Some(5));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn headers_answers_of_both_protocol_versions_parse() {
        let a = "01".repeat(80);
        let b = "02".repeat(80);
        let v14 = format!(r#"{{"count":2,"hex":"{a}{b}","max":2016}}"#);
        let v16 = format!(r#"{{"count":2,"headers":["{a}","{b}"],"max":2016}}"#);
        for text in [v14, v16] {
            let hs = parse_headers(text.as_bytes()).expect("parses");
            assert_eq!(hs.len(), 2);
            assert_eq!(hs[1].as_bytes(), &[2u8; 80]);
        }
        // A count that does not match, a short header, no headers at all.
        assert!(parse_headers(format!(r#"{{"count":3,"hex":"{a}"}}"#).as_bytes()).is_none());
        assert!(parse_headers(br#"{"count":1,"headers":["0102"]}"#).is_none());
        assert!(parse_headers(br#"{"count":0}"#).is_none());
    }
}
