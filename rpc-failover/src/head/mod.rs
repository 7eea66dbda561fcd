//! Head tracking: never route to a member that is connected but behind,
//! never believe one member's word about the chain, and never let a client
//! see the chain go backwards.
//!
//! A failover group built with [`FailoverLayer::head_tracking`](crate::FailoverLayer::head_tracking)
//! keeps each member's **current** chain head (block number or height; it
//! can go down: a node restored from an old snapshot, a rollback):
//!
//! * **learned from live answers** first: the result of `eth_blockNumber`
//!   or `blockchain.headers.subscribe` whenever a client calls it, blocks in
//!   `eth_getBlockByNumber` answers (number, hash, parent hash), and the
//!   [`ChainHead`] / [`HeadBlock`] an adapter attaches to its answers (the
//!   Electrum adapter follows header notifications and attaches its tip to
//!   every answer, so an Electrum pool needs no probes while it has traffic);
//! * **probed** only for members live traffic does not cover: a member
//!   whose head was not learned for `probe_interval` is asked, at most
//!   `max_probes_per_second` times a second per member (probing paid
//!   providers costs money). Ethereum probes ask
//!   `eth_getBlockByNumber("latest", false)`, which gives number, hash and
//!   parent hash in one call (members that cannot answer it are asked
//!   `eth_blockNumber` instead); every `finality_interval` a member is also
//!   asked for its `finalized` and `safe` blocks. Probes run in a task
//!   started with the group, which ends when the group is dropped.
//!
//! # The agreed head
//!
//! One member cannot move the group's idea of the chain:
//!
//! * **Agreed head**: the highest head reached by at least `agree` members
//!   (default: 1 in a group of one, 2 otherwise) among those heard from
//!   within `3 × probe_interval`. It only moves up, except when at least
//!   `agree` members are below it (a rollback the group agrees on, counted
//!   as a reorganisation). While fewer members than `agree` are heard from,
//!   it holds still (a group of 1 follows its member).
//! * **Suspects**: a member whose head is more than `max_ahead` blocks
//!   above the agreed head (an implausible jump: `0xffffffff`) is not
//!   believed at once (reason `ahead`); one whose claimed head the agreed
//!   head does not reach within `confirm_within`, although it moves, is not
//!   believed either (reason `unconfirmed`; a node always one block ahead
//!   of the others is fine: each of its claims is reached a block later); one whose block at a
//!   common height differs from what a strict majority of the members that
//!   can compare report is on a minority fork (reason `fork`). An even split
//!   (two members, one block each) has no minority: both stay, and the split
//!   is logged and shown (`rpc_chain_split` 1). Suspects leave rotation, their heads do not
//!   count, and answers from them carry the reference head, never theirs.
//! * **Reference head**: the highest head among believed members (and at
//!   least the agreed head). A member more than `max_lag` blocks below it,
//!   whichever way it moved to get there, or behind it without moving for
//!   `max_stall`, is **lagging**.
//!
//! Lagging and suspect members are out of rotation: calls go to the others,
//! and to them only when no other member can take the call.
//! [`MemberStatus`](crate::MemberStatus) shows each member's head, whether it
//! lags and why it is suspect; the `rpc_backend_head`, `rpc_backend_head_lag`,
//! `rpc_backend_lagging` and `rpc_backend_suspect` gauges follow them.
//!
//! # What the heads steer
//!
//! * **Block-tag awareness.** A call for an explicit block (Ethereum's
//!   `eth_getBlockByNumber("0x10f")`, `eth_call(.., "0x10f")`, Electrum's
//!   `blockchain.block.header(271)`, see [`Classifier::min_head`](crate::Classifier::min_head))
//!   goes only to members that have that block, when one has it; a call for
//!   `safe` or `finalized` only to members at or past the group's agreed
//!   safe / finalized block; `eth_blockNumber` only to members at or above
//!   the agreed head, so its answers never go below it.
//! * **Read-your-head consistency.** A call carrying [`MinHead`] (set by
//!   [`ConsistencyLayer`] from what its session has already seen) goes only
//!   to members at or above that head; if none is, the call waits up to
//!   `consistency_wait` for one (members below are probed at once), then
//!   fails with `-32011` rather than show an older chain.
//!
//! Every answer from a tracked group carries the answering member's head
//! (capped at the reference head) as [`ChainHead`], which
//! [`ConsistencyLayer`] records for the session, and the group's
//! [`AgreedChain`] (agreed head, finalized block, reorganisations), which a
//! cache uses to keep only answers from the agreed chain and to forget
//! answers about replaced blocks.
//!
//! ```
//! use std::time::Duration;
//! use rpc_failover::{FailoverLayer, HeadPolicy};
//!
//! let layer = FailoverLayer::new().head_tracking(
//!     HeadPolicy::ethereum()
//!         .max_lag(3)
//!         .max_stall(Duration::from_secs(30))
//!         .probe_interval(Duration::from_secs(2))
//!         .max_probes_per_second(1.0)
//!         .agree(2)
//!         .max_ahead(1024)
//!         .confirm_within(Duration::from_secs(30)),
//! );
//! # drop(layer);
//! ```

mod consistency;

use std::sync::atomic::{AtomicU64, AtomicU8, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use rpc_core::methods::ethereum_block;
use rpc_core::protocol::HeadSource;
use rpc_core::{AgreedChain, ChainHead, HeadBlock, Id, MinHead, RawJson, Request, Response};
use tokio::sync::Notify;

use crate::classify::BlockTag;
use crate::names;

pub use consistency::{Consistency, ConsistencyLayer};

/// How a group asks a member for its head, and reads the answer.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum HeadProbe {
    /// Ethereum JSON-RPC: probes ask `eth_getBlockByNumber("latest", false)`
    /// (number, hash and parent hash; `eth_blockNumber` for members that
    /// cannot answer it), and `eth_blockNumber` answers teach heads too.
    Ethereum,
    /// `blockchain.headers.subscribe`, answered with `{"height": n, ..}`.
    Electrum,
}

impl HeadProbe {
    /// Where heads come from: the protocol vocabulary's
    /// [`HeadSource`].
    pub fn source(self) -> HeadSource {
        match self {
            HeadProbe::Ethereum => HeadSource::ETHEREUM,
            HeadProbe::Electrum => HeadSource::ELECTRUM,
        }
    }

    /// The method whose answers are a head (`eth_blockNumber`,
    /// `blockchain.headers.subscribe`).
    pub fn method(self) -> &'static str {
        self.source().method
    }

    /// The head in an answer to [`method`](Self::method), if it is one.
    pub fn parse(self, response: &Response) -> Option<u64> {
        self.source().parse(response.result_json()?.as_bytes())
    }
}

/// What a probe asks.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum ProbeKind {
    Head,
    Finalized,
    Safe,
}

fn request_of(method: &'static str, params: &'static str) -> Request {
    let req = Request::new(method).with_id(Id::from(0u64));
    match RawJson::from_static(params) {
        Ok(params) => req.with_params(params),
        Err(_) => req,
    }
}

/// Why a member's word about the chain is not believed.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum Suspicion {
    /// Its head is more than `max_ahead` blocks above the agreed head.
    Ahead,
    /// Its head stayed above the agreed head for `confirm_within` while the
    /// agreed head moved without reaching it.
    Unconfirmed,
    /// Its block at a common height differs from a strict majority's.
    Fork,
}

impl Suspicion {
    /// `ahead`, `unconfirmed` or `fork` (the `reason` label).
    pub fn as_str(self) -> &'static str {
        match self {
            Suspicion::Ahead => "ahead",
            Suspicion::Unconfirmed => "unconfirmed",
            Suspicion::Fork => "fork",
        }
    }

    const ALL: [Suspicion; 3] = [Suspicion::Ahead, Suspicion::Unconfirmed, Suspicion::Fork];

    fn code(s: Option<Suspicion>) -> u8 {
        match s {
            None => 0,
            Some(Suspicion::Ahead) => 1,
            Some(Suspicion::Unconfirmed) => 2,
            Some(Suspicion::Fork) => 3,
        }
    }

    fn from_code(c: u8) -> Option<Suspicion> {
        match c {
            1 => Some(Suspicion::Ahead),
            2 => Some(Suspicion::Unconfirmed),
            3 => Some(Suspicion::Fork),
            _ => None,
        }
    }
}

/// Head-tracking settings of a group (see the [module docs](self)).
///
/// | setting | default | why |
/// |---|---|---|
/// | `max_lag` | 3 blocks | a node a block or two behind is normal |
/// | `max_stall` | 30 s | a node behind that stopped moving is stuck |
/// | `probe_interval` | 2 s | heads older than this are probed |
/// | `max_probes_per_second` | 1 per member | probes cost money on paid plans |
/// | `probe_timeout` | 2 s | |
/// | `consistency_wait` | 2 s | how long a session waits for its head |
/// | `agree` | 1 in a group of one, else 2 | one member cannot move the agreed head |
/// | `max_ahead` | 1 024 blocks | further above the agreed head is not believed at once |
/// | `confirm_within` | 30 s | a claimed head the others never reach is a lie |
/// | `finality_interval` | 30 s (Ethereum; 0 = off) | `finalized` / `safe` move every few minutes |
#[derive(Clone, Debug)]
pub struct HeadPolicy {
    pub(crate) probe: HeadProbe,
    pub(crate) max_lag: u64,
    pub(crate) max_stall: Duration,
    pub(crate) probe_interval: Duration,
    pub(crate) max_probes_per_second: f64,
    pub(crate) probe_timeout: Duration,
    pub(crate) consistency_wait: Duration,
    pub(crate) agree: Option<usize>,
    pub(crate) max_ahead: u64,
    pub(crate) confirm_within: Duration,
    pub(crate) finality_interval: Duration,
}

impl HeadPolicy {
    /// Tracking with `probe`, and the defaults.
    pub fn new(probe: HeadProbe) -> Self {
        HeadPolicy {
            probe,
            max_lag: 3,
            max_stall: Duration::from_secs(30),
            probe_interval: Duration::from_secs(2),
            max_probes_per_second: 1.0,
            probe_timeout: Duration::from_secs(2),
            consistency_wait: Duration::from_secs(2),
            agree: None,
            max_ahead: 1024,
            confirm_within: Duration::from_secs(30),
            finality_interval: match probe {
                HeadProbe::Ethereum => Duration::from_secs(30),
                HeadProbe::Electrum => Duration::ZERO,
            },
        }
    }

    /// Ethereum JSON-RPC members.
    pub fn ethereum() -> Self {
        Self::new(HeadProbe::Ethereum)
    }

    /// Electrum members (`blockchain.headers.subscribe`).
    pub fn electrum() -> Self {
        Self::new(HeadProbe::Electrum)
    }

    /// Blocks a member may be behind the reference head and stay in rotation
    /// (default 3).
    pub fn max_lag(mut self, blocks: u64) -> Self {
        self.max_lag = blocks;
        self
    }

    /// How long a member may stay behind without its head moving before it
    /// is taken out of rotation, however few blocks behind (default 30 s).
    pub fn max_stall(mut self, d: Duration) -> Self {
        self.max_stall = d;
        self
    }

    /// A member whose head was not learned for this long is probed
    /// (default 2 s). A member not heard from for three intervals no longer
    /// counts towards the agreed head.
    pub fn probe_interval(mut self, d: Duration) -> Self {
        self.probe_interval = d.max(Duration::from_millis(10));
        self
    }

    /// The most head probes per second sent to one member (default 1; 0
    /// turns probing off: heads are then learned only from live answers).
    pub fn max_probes_per_second(mut self, n: f64) -> Self {
        self.max_probes_per_second = if n.is_finite() { n.max(0.0) } else { 0.0 };
        self
    }

    /// How long a probe may take (default 2 s).
    pub fn probe_timeout(mut self, d: Duration) -> Self {
        self.probe_timeout = d;
        self
    }

    /// How long a call with a [`MinHead`] no member has reached waits for
    /// one (default 2 s; the call's deadline applies too).
    pub fn consistency_wait(mut self, d: Duration) -> Self {
        self.consistency_wait = d;
        self
    }

    /// How many members must reach a head before it is the agreed head
    /// (default: 1 in a group of one member, 2 otherwise; clamped to the
    /// group's size).
    pub fn agree(mut self, members: usize) -> Self {
        self.agree = Some(members.max(1));
        self
    }

    /// How far above the agreed head a member's head may be and still be
    /// believed before another member confirms it (default 1 024 blocks).
    pub fn max_ahead(mut self, blocks: u64) -> Self {
        self.max_ahead = blocks;
        self
    }

    /// How long the agreed head may take to reach a head a member claimed
    /// above it, while it moves (default 30 s); a claim not reached by then
    /// is not believed.
    pub fn confirm_within(mut self, d: Duration) -> Self {
        self.confirm_within = d;
        self
    }

    /// How often each member is asked for its `finalized` and `safe` blocks
    /// (two calls; default 30 s for Ethereum, `ZERO` = never, as for
    /// Electrum, which has no finality: caches then fall back to their
    /// confirmation depth).
    pub fn finality_interval(mut self, d: Duration) -> Self {
        self.finality_interval = d;
        self
    }

    /// The probe.
    pub fn probe(&self) -> HeadProbe {
        self.probe
    }

    /// The agreement rule for a group of `members`, in words (for start-up
    /// messages and `check`).
    pub fn describe(&self, members: usize) -> String {
        let k = self.agree_of(members);
        format!(
            "agreed head = highest head reached by {k} of {members} member{}; \
             not believed: more than {} blocks above it, or not reached by it \
             within {:?} while it moves, or on a minority fork; lagging: more than {} \
             behind or stalled for {:?}",
            if members == 1 { "" } else { "s" },
            self.max_ahead,
            self.confirm_within,
            self.max_lag,
            self.max_stall,
        )
    }

    fn agree_of(&self, members: usize) -> usize {
        let default = if members <= 1 { 1 } else { 2 };
        self.agree.unwrap_or(default).clamp(1, members.max(1))
    }
}

/// One member's head, in atomics. Heights are stored plus one, so that a
/// chain at genesis (height 0) is not "unknown" (0). Times are group ticks
/// (0 = never).
#[derive(Default)]
struct MemberHead {
    /// Its current head (it can go down).
    head: AtomicU64,
    /// When the reference head first got ahead of its current head.
    passed_at: AtomicU64,
    /// When its head was last learned.
    seen_at: AtomicU64,
    /// When it was last probed for its head.
    probed_at: AtomicU64,
    /// When its head block (hash) was last learned.
    block_at: AtomicU64,
    /// That block's hash fingerprint (0: none): an answer repeating it
    /// changes nothing and takes no lock.
    block_hash: AtomicU64,
    /// When it was last probed for finality.
    finality_at: AtomicU64,
    /// Its oldest head above the agreed head not yet confirmed (+1; 0:
    /// none), and since when: confirmed once the agreed head reaches it.
    claim: AtomicU64,
    claim_at: AtomicU64,
    /// [`Suspicion::code`].
    suspect: AtomicU8,
    /// 1 once it failed to answer a block probe: asked `eth_blockNumber`.
    numbers_only: AtomicU8,
    /// 1 once it failed to answer a finality probe.
    no_finality: AtomicU8,
    finalized: AtomicU64,
    safe: AtomicU64,
}

/// The latest block a member reported, for fork checks.
#[derive(Clone, Copy, Debug, Default)]
struct View {
    number: u64,
    hash: u64,
    parent: u64,
}

const RING: usize = 256;

/// State changed only under the group's head lock (when a head or a block
/// changes, never on a plain call).
struct Book {
    views: Box<[Option<View>]>,
    /// Recent heights and the block a strict majority reported there.
    /// (height + 1, block, how many members reported it).
    ring: Box<[(u64, u64, usize)]>,
    forked: u64,
    /// Members disagree at a common height with no majority (an even split).
    split: bool,
}

/// The heads of a group's members.
pub(crate) struct Heads {
    pub(crate) policy: HeadPolicy,
    members: Box<[MemberHead]>,
    names: Box<[Arc<str>]>,
    agree: usize,
    /// Agreed head (+1).
    agreed: AtomicU64,
    agreed_moved_at: AtomicU64,
    /// Reference head (+1): the highest believed head, at least `agreed`.
    reference: AtomicU64,
    /// Agreed finalized / safe blocks (+1).
    finalized: AtomicU64,
    safe: AtomicU64,
    reorgs: AtomicU64,
    reorg_floor: AtomicU64,
    /// What the group agrees on, published for layers above.
    pub(crate) view: rpc_core::ChainView,
    book: Mutex<Book>,
    /// Woken when any head moves.
    moved: Notify,
    /// Woken when a call needs a head no member has reached (shared with the
    /// prober, which holds the group only weakly).
    pub(crate) wanted: Arc<Notify>,
    /// The highest head a waiting call needs (probes members below it).
    pub(crate) want: AtomicU64,
}

/// What one call needs of a member's head.
#[derive(Clone, Copy, Debug, Default)]
pub(crate) struct Need {
    /// From the session ([`MinHead`]): strict.
    pub(crate) session: u64,
    /// From an explicit block in the params (or, for the head method, the
    /// agreed head): preferred.
    pub(crate) block: u64,
    /// From a `safe` / `finalized` tag: the group's agreed value (+1) that
    /// a member's own must reach; preferred.
    pub(crate) finality: Option<(ProbeKind, u64)>,
}

impl Need {
    /// Raises the session and block heads to `other`'s where it needs
    /// more: what a member must have for both calls (finality is not
    /// joined: calls that need it go alone).
    pub(crate) fn raise_to(&mut self, other: &Need) {
        self.session = self.session.max(other.session);
        self.block = self.block.max(other.block);
    }
}

/// What a live answer can teach of its member's head.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Learn {
    /// Only what the adapter put in its extensions.
    Extensions,
    /// The head method's result too.
    HeadMethod,
    /// The `latest` block in the result too (number, hash, parent).
    LatestBlock,
}

/// How an answer turned out to fall short of what its call needed (the
/// answer itself showed the member's head).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Shortfall {
    /// Below the session's head: must not be served.
    Session,
    /// Below the block the call prefers, which another member has; or
    /// from a member the answer itself showed not to be believed.
    Block,
}

/// Members to leave out, as bit masks.
#[derive(Clone, Copy, Debug, Default)]
pub(crate) struct Masks {
    pub(crate) lagging: u64,
    pub(crate) below_session: u64,
    pub(crate) below_block: u64,
}

impl Heads {
    pub(crate) fn new(policy: HeadPolicy, names: Vec<Arc<str>>) -> Self {
        let n = names.len();
        Heads {
            agree: policy.agree_of(n),
            policy,
            members: names.iter().map(|_| MemberHead::default()).collect(),
            names: names.into_boxed_slice(),
            agreed: AtomicU64::new(0),
            agreed_moved_at: AtomicU64::new(0),
            reference: AtomicU64::new(0),
            finalized: AtomicU64::new(0),
            safe: AtomicU64::new(0),
            reorgs: AtomicU64::new(0),
            reorg_floor: AtomicU64::new(0),
            view: rpc_core::ChainView::new(),
            book: Mutex::new(Book {
                views: vec![None; n].into_boxed_slice(),
                ring: vec![(0, 0, 0); RING].into_boxed_slice(),
                forked: 0,
                split: false,
            }),
            moved: Notify::new(),
            wanted: Arc::new(Notify::new()),
            want: AtomicU64::new(0),
        }
    }

    /// Takes over `from`'s heads for the member pairs `(mine, theirs)` and
    /// the group's agreed values (both groups count time from the same
    /// instant), then recomputes who is believed at `now`. What a member's
    /// last block was (for fork checks) is learned again at its next probe.
    pub(crate) fn inherit(&self, from: &Heads, pairs: &[(usize, usize)], now: u64) {
        let copy =
            |a: &AtomicU64, b: &AtomicU64| a.store(b.load(Ordering::Acquire), Ordering::Release);
        let copy8 =
            |a: &AtomicU8, b: &AtomicU8| a.store(b.load(Ordering::Acquire), Ordering::Release);
        let forked = from.book.lock().map(|b| b.forked).unwrap_or(0);
        let mut mine = 0u64;
        for &(i, j) in pairs {
            let (m, o) = (&self.members[i], &from.members[j]);
            copy(&m.head, &o.head);
            copy(&m.passed_at, &o.passed_at);
            copy(&m.seen_at, &o.seen_at);
            copy(&m.probed_at, &o.probed_at);
            copy(&m.finality_at, &o.finality_at);
            copy(&m.claim, &o.claim);
            copy(&m.claim_at, &o.claim_at);
            copy(&m.finalized, &o.finalized);
            copy(&m.safe, &o.safe);
            copy8(&m.suspect, &o.suspect);
            copy8(&m.numbers_only, &o.numbers_only);
            copy8(&m.no_finality, &o.no_finality);
            if forked & (1 << j) != 0 {
                mine |= 1 << i;
            }
        }
        if let Ok(mut book) = self.book.lock() {
            book.forked |= mine;
        }
        for (a, b) in [
            (&self.agreed, &from.agreed),
            (&self.agreed_moved_at, &from.agreed_moved_at),
            (&self.reference, &from.reference),
            (&self.finalized, &from.finalized),
            (&self.safe, &from.safe),
            (&self.reorgs, &from.reorgs),
            (&self.reorg_floor, &from.reorg_floor),
        ] {
            copy(a, b);
        }
        self.recompute(now);
        self.publish(now);
    }

    /// Member `i`'s current head, once learned.
    pub(crate) fn head(&self, i: usize) -> Option<u64> {
        self.members[i].head.load(Ordering::Relaxed).checked_sub(1)
    }

    /// Why member `i` is not believed, if it is not.
    pub(crate) fn suspicion(&self, i: usize) -> Option<Suspicion> {
        Suspicion::from_code(self.members[i].suspect.load(Ordering::Relaxed))
    }

    /// The agreed head, once enough members reported one.
    pub(crate) fn agreed(&self) -> Option<u64> {
        self.agreed.load(Ordering::Relaxed).checked_sub(1)
    }

    /// The reference head (the highest believed head).
    pub(crate) fn reference(&self) -> Option<u64> {
        self.reference.load(Ordering::Relaxed).checked_sub(1)
    }

    /// The agreed finalized block, when members report one.
    pub(crate) fn finalized(&self) -> Option<u64> {
        self.finalized.load(Ordering::Relaxed).checked_sub(1)
    }

    /// Whether member `i` is known to be at `head` or above, believing it
    /// no further than the reference head.
    fn has(&self, i: usize, head: u64) -> bool {
        let own = self.members[i].head.load(Ordering::Relaxed);
        let cap = match self.reference.load(Ordering::Relaxed) {
            0 => u64::MAX,
            r => r,
        };
        own != 0 && own.min(cap) > head
    }

    fn fresh(&self, m: &MemberHead, now: u64) -> bool {
        let seen = m.seen_at.load(Ordering::Relaxed);
        seen != 0 && now.saturating_sub(seen) <= 3 * duration_ticks(self.policy.probe_interval)
    }

    /// Records that member `i` is at `head` now (at group tick `now`);
    /// `true` if its head changed (and the group's values were recomputed).
    pub(crate) fn observe(&self, i: usize, head: u64, now: u64) -> bool {
        let m = &self.members[i];
        m.seen_at.store(now, Ordering::Relaxed);
        let stored = head.saturating_add(1);
        let prev = m.head.swap(stored, Ordering::Relaxed);
        if stored == prev {
            return false;
        }
        // It moved (either way): its stall clock restarts.
        let reference = self.reference.load(Ordering::Relaxed);
        m.passed_at
            .store(if stored < reference { now } else { 0 }, Ordering::Relaxed);
        if stored < prev {
            tracing::info!(backend = %self.names[i], from = prev - 1, to = head, "backend head went back");
        }
        metrics::gauge!(names::HEAD, "backend" => self.names[i].clone()).set(head as f64);
        self.recompute(now);
        self.publish(now);
        self.moved.notify_waiters();
        true
    }

    /// Records a block member `i` reported as its head.
    pub(crate) fn observe_block(&self, i: usize, block: HeadBlock, now: u64) {
        let m = &self.members[i];
        m.block_at.store(now, Ordering::Relaxed);
        // The common case (every Electrum answer repeats its server's tip):
        // nothing new, no lock.
        if m.block_hash.load(Ordering::Relaxed) == block.hash
            && m.head.load(Ordering::Relaxed) == block.number.saturating_add(1)
        {
            m.seen_at.store(now, Ordering::Relaxed);
            return;
        }
        {
            let Ok(mut book) = self.book.lock() else {
                return;
            };
            book.views[i] = Some(View {
                number: block.number,
                hash: block.hash,
                parent: block.parent,
            });
            self.compare(&mut book, i);
        }
        m.block_hash.store(block.hash, Ordering::Relaxed);
        if !self.observe(i, block.number, now) {
            // Same height, another block: forks and reorganisations may
            // have changed who is believed.
            self.recompute(now);
        }
    }

    /// Records a member's `finalized` or `safe` block.
    pub(crate) fn observe_finality(&self, i: usize, kind: ProbeKind, number: Option<u64>) {
        let m = &self.members[i];
        let Some(n) = number else {
            m.no_finality.store(1, Ordering::Relaxed);
            return;
        };
        let (own, group): (&AtomicU64, &AtomicU64) = match kind {
            ProbeKind::Finalized => (&m.finalized, &self.finalized),
            ProbeKind::Safe => (&m.safe, &self.safe),
            ProbeKind::Head => return,
        };
        own.store(n + 1, Ordering::Relaxed);
        let mut values: Vec<u64> = self
            .members
            .iter()
            .map(|m| match kind {
                ProbeKind::Safe => m.safe.load(Ordering::Relaxed),
                _ => m.finalized.load(Ordering::Relaxed),
            })
            .filter(|&v| v != 0)
            .collect();
        let k = self.agree.min(values.len());
        if k == 0 {
            return;
        }
        values.sort_unstable_by(|a, b| b.cmp(a));
        let candidate = values[k - 1];
        let current = group.load(Ordering::Relaxed);
        if candidate > current {
            group.store(candidate, Ordering::Relaxed);
            self.view.publish(self.agreed_chain());
        } else if candidate < current && values.iter().filter(|&&v| v < current).count() >= k {
            // Enough members say finality went back: only a chain reset
            // (a dev chain reverted) does that. Everything may have changed.
            group.store(candidate, Ordering::Relaxed);
            if kind == ProbeKind::Finalized {
                self.reorg(0, "finalized block went back");
            }
        }
    }

    /// Checks every member's newest block against the others (at its height,
    /// and its parent's), marks members outvoted there (minority forks) and
    /// notices reorganisations: a different block at a height where `agree`
    /// members once agreed on another.
    fn compare(&self, book: &mut Book, changed: usize) {
        let k = self.agree;
        let mut forked = 0u64;
        for (j, v) in book.views.iter().enumerate() {
            let Some(v) = v else { continue };
            let mut out = outvoted(&votes(&book.views, v.number), v.hash, k);
            if !out && v.parent != 0 && v.number > 0 {
                out = outvoted(&votes(&book.views, v.number - 1), v.parent, k);
            }
            if out {
                forked |= 1 << j;
            }
        }
        if forked != book.forked {
            for j in 0..book.views.len() {
                let was = book.forked & (1 << j) != 0;
                let is = forked & (1 << j) != 0;
                if is && !was {
                    tracing::warn!(backend = %self.names[j], "backend is on a minority fork: out of rotation");
                } else if was && !is {
                    tracing::info!(backend = %self.names[j], "backend is back on the majority chain");
                }
            }
            book.forked = forked;
        }
        let Some(v) = book.views[changed] else { return };
        // An even split: blocks differ at the changed member's height with
        // nobody outvoted. Nobody is ejected (no minority), but it is said.
        // Decided only where at least two members vote (members a block
        // apart say nothing either way).
        let here = votes(&book.views, v.number);
        let voters: usize = here.iter().map(|e| e.1).sum();
        let split = here.len() > 1 && forked == 0;
        if voters >= 2 && split != book.split {
            book.split = split;
            metrics::gauge!(names::SPLIT).set(if split { 1.0 } else { 0.0 });
            if split {
                tracing::warn!(
                    height = v.number,
                    blocks = here.len(),
                    "members disagree on the block at one height with no majority: \
                     none is taken out (add members to break ties)"
                );
            } else {
                tracing::info!("members agree on their blocks again");
            }
        }
        let mut replaced: Option<u64> = None;
        for height in [Some(v.number), v.number.checked_sub(1)]
            .into_iter()
            .flatten()
        {
            let Some((hash, count)) = majority(&votes(&book.views, height), k) else {
                continue;
            };
            let slot = (height as usize) % RING;
            let (at, known, support) = book.ring[slot];
            if at == height + 1 && known != hash {
                if count < support {
                    continue;
                }
                replaced = Some(replaced.map_or(height, |f: u64| f.min(height)));
            }
            let support = if at == height + 1 && known == hash {
                support.max(count)
            } else {
                count
            };
            book.ring[slot] = (height + 1, hash, support);
        }
        if let Some(height) = replaced {
            // A replaced parent means the depth is unknown: down to finality
            // if the chain has it, else anything.
            let floor = if height < v.number {
                self.finalized().map_or(0, |f| f + 1)
            } else {
                height
            };
            self.reorg(floor, "a different block at a known height");
        }
    }

    /// The group's agreed values now.
    pub(crate) fn agreed_chain(&self) -> AgreedChain {
        let head = self.agreed().unwrap_or(0);
        AgreedChain {
            head,
            tip: self.reference().unwrap_or(0).max(head),
            finalized: self.finalized(),
            reorgs: self.reorgs.load(Ordering::Acquire),
            reorg_floor: self.reorg_floor.load(Ordering::Relaxed),
        }
    }

    fn reorg(&self, floor: u64, why: &'static str) {
        self.reorg_floor.store(floor, Ordering::Relaxed);
        self.reorgs.fetch_add(1, Ordering::Release);
        self.view.publish(self.agreed_chain());
        metrics::counter!(names::REORGS).increment(1);
        tracing::warn!(floor, why, "chain reorganisation");
    }

    /// Recomputes the agreed and reference heads and who is believed.
    fn recompute(&self, now: u64) {
        let Ok(book) = self.book.lock() else { return };
        let k = self.agree;
        let agreed_before = self.agreed.load(Ordering::Relaxed);
        let mut heads = [0u64; crate::group::MAX_MEMBERS];
        let mut w = 0;
        for (j, m) in self.members.iter().enumerate() {
            let h = m.head.load(Ordering::Relaxed);
            let believable =
                agreed_before == 0 || h <= agreed_before.saturating_add(self.policy.max_ahead);
            if h != 0 && believable && book.forked & (1 << j) == 0 && self.fresh(m, now) {
                heads[w] = h;
                w += 1;
            }
        }
        let mut agreed = self.agreed.load(Ordering::Relaxed);
        if w >= k {
            let heads = &mut heads[..w];
            heads.sort_unstable_by(|a, b| b.cmp(a));
            let candidate = heads[k - 1];
            if candidate > agreed {
                agreed = candidate;
                self.agreed.store(agreed, Ordering::Relaxed);
                self.agreed_moved_at.store(now, Ordering::Relaxed);
            } else if candidate < agreed && heads.iter().filter(|&&h| h < agreed).count() >= k {
                // Enough members went back together: the chain did.
                agreed = candidate;
                self.agreed.store(agreed, Ordering::Relaxed);
                self.agreed_moved_at.store(now, Ordering::Relaxed);
                self.reorg(candidate, "the agreed head went back");
            }
        }
        let moved_at = self.agreed_moved_at.load(Ordering::Relaxed);
        let confirm = duration_ticks(self.policy.confirm_within);
        let mut reference = agreed;
        let mut suspects = [0u8; crate::group::MAX_MEMBERS];
        for (j, m) in self.members.iter().enumerate() {
            let h = m.head.load(Ordering::Relaxed);
            if h == 0 {
                continue;
            }
            let mut reason = None;
            if book.forked & (1 << j) != 0 {
                reason = Some(Suspicion::Fork);
            }
            if agreed != 0 && h > agreed {
                let claim = m.claim.load(Ordering::Relaxed);
                if claim == 0 || claim <= agreed {
                    // No claim, or the last one was confirmed: this head is
                    // the claim the others must now reach.
                    m.claim.store(h, Ordering::Relaxed);
                    m.claim_at.store(now, Ordering::Relaxed);
                }
                if reason.is_none() {
                    let since = m.claim_at.load(Ordering::Relaxed);
                    if h - agreed > self.policy.max_ahead {
                        reason = Some(Suspicion::Ahead);
                    } else if claim > agreed
                        && now.saturating_sub(since) > confirm
                        && moved_at > since
                    {
                        // The agreed head moved since, and never reached it.
                        reason = Some(Suspicion::Unconfirmed);
                    }
                }
            } else {
                m.claim.store(0, Ordering::Relaxed);
            }
            suspects[j] = Suspicion::code(reason);
            if reason.is_none() && self.fresh(m, now) {
                reference = reference.max(h);
            }
        }
        drop(book);
        self.reference.store(reference, Ordering::Relaxed);
        self.view.publish(self.agreed_chain());
        for (j, m) in self.members.iter().enumerate() {
            let code = suspects[j];
            let was = m.suspect.swap(code, Ordering::Relaxed);
            if was != code {
                let name = &self.names[j];
                for s in Suspicion::ALL {
                    metrics::gauge!(names::SUSPECT, "backend" => name.clone(), "reason" => s.as_str())
                        .set(if Suspicion::code(Some(s)) == code { 1.0 } else { 0.0 });
                }
                match Suspicion::from_code(code) {
                    Some(s) => tracing::warn!(
                        backend = %name,
                        reason = s.as_str(),
                        head = m.head.load(Ordering::Relaxed).saturating_sub(1),
                        agreed = agreed.saturating_sub(1),
                        "backend's head not believed: out of rotation"
                    ),
                    None => tracing::info!(backend = %name, "backend's head believed again"),
                }
            }
            let h = m.head.load(Ordering::Relaxed);
            if h != 0 && h < reference {
                let _ = m
                    .passed_at
                    .compare_exchange(0, now, Ordering::Relaxed, Ordering::Relaxed);
            } else {
                m.passed_at.store(0, Ordering::Relaxed);
            }
        }
    }

    /// Whether member `i` is out of rotation for its head: suspect, more
    /// than `max_lag` behind the reference head, or stalled behind it.
    pub(crate) fn lagging(&self, i: usize, now: u64) -> bool {
        self.suspicion(i).is_some() || self.behind(i, now)
    }

    /// Whether member `i` lags the reference head (by blocks or by stalling).
    pub(crate) fn behind(&self, i: usize, now: u64) -> bool {
        let m = &self.members[i];
        let stored = m.head.load(Ordering::Relaxed);
        if stored == 0 {
            // Not known yet: no reason to avoid it.
            return false;
        }
        let lag = self
            .reference
            .load(Ordering::Relaxed)
            .saturating_sub(stored);
        if lag > self.policy.max_lag {
            return true;
        }
        let passed = m.passed_at.load(Ordering::Relaxed);
        lag > 0 && passed != 0 && now.saturating_sub(passed) > duration_ticks(self.policy.max_stall)
    }

    pub(crate) fn masks(&self, now: u64, need: &Need) -> Masks {
        let mut masks = Masks::default();
        for i in 0..self.members.len() {
            if self.lagging(i, now) {
                masks.lagging |= 1 << i;
            }
            if need.session != 0 && !self.has(i, need.session) {
                masks.below_session |= 1 << i;
            }
            if (need.block != 0 && !self.has(i, need.block)) || !self.has_finality(i, need) {
                masks.below_block |= 1 << i;
            }
        }
        masks
    }

    /// Whether member `i`'s own safe / finalized block reaches what the call
    /// needs (members that do not report finality never do).
    fn has_finality(&self, i: usize, need: &Need) -> bool {
        let Some((kind, required)) = need.finality else {
            return true;
        };
        let m = &self.members[i];
        let own = match kind {
            ProbeKind::Safe => m.safe.load(Ordering::Relaxed),
            _ => m.finalized.load(Ordering::Relaxed),
        };
        own >= required
    }

    /// After member `i` answered a call: whether the answer showed it below
    /// what the call needs (its head moved down since it was picked).
    pub(crate) fn shortfall(&self, i: usize, need: &Need, tried: u64) -> Option<Shortfall> {
        if need.session != 0 && !self.has(i, need.session) {
            return Some(Shortfall::Session);
        }
        let untried = |j: usize| tried & (1 << j) == 0;
        if need.block != 0
            && !self.has(i, need.block)
            && (0..self.members.len()).any(|j| untried(j) && self.has(j, need.block))
        {
            return Some(Shortfall::Block);
        }
        // The answer itself showed a lie (a head far above the agreed one):
        // another, believed member answers instead, when there is one.
        if self.suspicion(i).is_some()
            && (0..self.members.len())
                .any(|j| untried(j) && self.suspicion(j).is_none() && self.head(j).is_some())
        {
            return Some(Shortfall::Block);
        }
        None
    }

    /// Publishes the gauges of every member (lag and lagging): when a head
    /// moves, and on every prober tick (a stall is a matter of time).
    pub(crate) fn publish(&self, now: u64) {
        let reference = self.reference.load(Ordering::Relaxed);
        for i in 0..self.members.len() {
            let head = self.members[i].head.load(Ordering::Relaxed);
            if head == 0 {
                continue;
            }
            let name = self.names[i].clone();
            metrics::gauge!(names::HEAD_LAG, "backend" => name.clone())
                .set(reference.saturating_sub(head) as f64);
            metrics::gauge!(names::LAGGING, "backend" => name).set(if self.lagging(i, now) {
                1.0
            } else {
                0.0
            });
        }
    }

    /// A prober tick: time alone can change who is believed (freshness,
    /// unconfirmed leads, stalls).
    pub(crate) fn tick(&self, now: u64) {
        self.recompute(now);
        self.publish(now);
    }

    /// Waits until some member reaches `head`, or `until`; `true` if one did.
    pub(crate) async fn wait_for(&self, head: u64, until: tokio::time::Instant) -> bool {
        self.want.fetch_max(head, Ordering::Relaxed);
        self.wanted.notify_one();
        loop {
            let moved = self.moved.notified();
            tokio::pin!(moved);
            moved.as_mut().enable();
            if (0..self.members.len()).any(|i| self.has(i, head)) {
                return true;
            }
            if tokio::time::timeout_at(until, moved).await.is_err() {
                return (0..self.members.len()).any(|i| self.has(i, head));
            }
        }
    }

    /// Members to probe for their head now: not learned for
    /// `probe_interval` (or below a head a call waits for), and not probed
    /// within the per-member cap.
    pub(crate) fn due(&self, now: u64) -> u64 {
        if self.policy.max_probes_per_second <= 0.0 {
            return 0;
        }
        let interval = duration_ticks(self.policy.probe_interval);
        let gap = (1e9 / self.policy.max_probes_per_second) as u64;
        let want = self.want.load(Ordering::Relaxed);
        let mut due = 0u64;
        let blocks = self.policy.probe == HeadProbe::Ethereum;
        for (i, m) in self.members.iter().enumerate() {
            let seen = m.seen_at.load(Ordering::Relaxed);
            // Numbers learned live (eth_blockNumber) say nothing of forks:
            // a block (hash) is still asked every five intervals.
            let block = m.block_at.load(Ordering::Relaxed);
            let stale = seen == 0
                || now.saturating_sub(seen) >= interval
                || (blocks
                    && m.numbers_only.load(Ordering::Relaxed) == 0
                    && now.saturating_sub(block) >= interval.saturating_mul(5));
            let wanted = want != 0 && !self.has(i, want);
            let probed = m.probed_at.load(Ordering::Relaxed);
            let allowed = probed == 0 || now.saturating_sub(probed) >= gap;
            if (stale || wanted) && allowed {
                m.probed_at.store(now, Ordering::Relaxed);
                due |= 1 << i;
            }
        }
        if want != 0 && (0..self.members.len()).any(|i| self.has(i, want)) {
            let _ = self
                .want
                .compare_exchange(want, 0, Ordering::Relaxed, Ordering::Relaxed);
        }
        due
    }

    /// Members to ask for their finality now (every `finality_interval`;
    /// members that could not answer are asked ten times less often).
    pub(crate) fn finality_due(&self, now: u64) -> u64 {
        let interval = duration_ticks(self.policy.finality_interval);
        if interval == 0 || self.policy.probe != HeadProbe::Ethereum {
            return 0;
        }
        let mut due = 0u64;
        for (i, m) in self.members.iter().enumerate() {
            let every = if m.no_finality.load(Ordering::Relaxed) != 0 {
                interval.saturating_mul(10)
            } else {
                interval
            };
            let at = m.finality_at.load(Ordering::Relaxed);
            if at == 0 || now.saturating_sub(at) >= every {
                m.finality_at.store(now, Ordering::Relaxed);
                due |= 1 << i;
            }
        }
        due
    }

    /// The probe request for member `i`, with a deadline.
    pub(crate) fn probe_request(&self, i: usize, kind: ProbeKind) -> Request {
        let mut req = match (self.policy.probe, kind) {
            (HeadProbe::Electrum, _) => request_of(HeadSource::ELECTRUM.method, "[]"),
            (HeadProbe::Ethereum, ProbeKind::Finalized) => {
                request_of("eth_getBlockByNumber", r#"["finalized",false]"#)
            }
            (HeadProbe::Ethereum, ProbeKind::Safe) => {
                request_of("eth_getBlockByNumber", r#"["safe",false]"#)
            }
            (HeadProbe::Ethereum, ProbeKind::Head) => {
                if self.members[i].numbers_only.load(Ordering::Relaxed) != 0 {
                    request_of(HeadSource::ETHEREUM.method, "[]")
                } else {
                    request_of("eth_getBlockByNumber", r#"["latest",false]"#)
                }
            }
        };
        req.extensions_mut()
            .insert(rpc_core::Deadline::after(self.policy.probe_timeout));
        req
    }

    /// Learns from a probe's answer.
    pub(crate) fn learn_probe(
        &self,
        i: usize,
        kind: ProbeKind,
        method: &str,
        response: &Response,
        now: u64,
    ) {
        match kind {
            ProbeKind::Head => {
                if method == "eth_getBlockByNumber" {
                    match response
                        .result_json()
                        .and_then(|r| ethereum_block(r.as_bytes()))
                    {
                        Some(block) => self.observe_block(i, block, now),
                        None => {
                            // Cannot describe its latest block: ask for the
                            // number only from now on.
                            self.members[i].numbers_only.store(1, Ordering::Relaxed);
                            self.members[i].probed_at.store(0, Ordering::Relaxed);
                        }
                    }
                } else {
                    self.learn(i, Learn::HeadMethod, response, now);
                }
            }
            ProbeKind::Finalized | ProbeKind::Safe => {
                let number = response
                    .result_json()
                    .and_then(|r| ethereum_block(r.as_bytes()))
                    .map(|b| b.number);
                self.observe_finality(i, kind, number);
            }
        }
    }

    /// Whether a live call's answer is worth reading for a head: the head
    /// method, or (Ethereum) the `latest` block, which is the member's head
    /// block (other blocks are not parsed: they can be large).
    pub(crate) fn teaches(&self, request: &Request) -> Learn {
        let method = request.method();
        if method == self.policy.probe.method() {
            Learn::HeadMethod
        } else if self.policy.probe == HeadProbe::Ethereum
            && method == "eth_getBlockByNumber"
            && request
                .params()
                .is_some_and(|p| p.as_bytes().starts_with(br#"["latest""#))
        {
            Learn::LatestBlock
        } else {
            Learn::Extensions
        }
    }

    /// Learns member `i`'s head from a live answer: the adapter's
    /// [`ChainHead`] / [`HeadBlock`], the head method's result, or its
    /// latest block.
    pub(crate) fn learn(&self, i: usize, what: Learn, response: &Response, now: u64) {
        if let Some(block) = response.extensions().get::<HeadBlock>() {
            self.observe_block(i, *block, now);
        } else if let Some(ChainHead(h)) = response.extensions().get::<ChainHead>() {
            self.observe(i, *h, now);
        }
        match what {
            Learn::HeadMethod => {
                if let Some(h) = self.policy.probe.parse(response) {
                    self.observe(i, h, now);
                }
            }
            Learn::LatestBlock => {
                if let Some(block) = response
                    .result_json()
                    .and_then(|r| ethereum_block(r.as_bytes()))
                {
                    self.observe_block(i, block, now);
                }
            }
            Learn::Extensions => {}
        }
    }

    /// Tells the layers above which head an answer from member `i` comes
    /// from (never above the reference head) and what the group agrees on.
    pub(crate) fn stamp(&self, i: usize, response: &mut Response) {
        if let Some(head) = self.head(i) {
            let capped = match self.reference() {
                Some(r) => head.min(r),
                None => head,
            };
            response.extensions_mut().insert(ChainHead(capped));
        }
        response.extensions_mut().insert(self.agreed_chain());
    }

    /// What `request` needs of a member's head.
    pub(crate) fn need_of(&self, request: &Request, classifier: &dyn crate::Classifier) -> Need {
        let (number, tag) = classifier.block(request);
        let mut block = number.unwrap_or(0);
        let mut finality = None;
        match tag {
            Some(BlockTag::Finalized) => {
                let f = self.finalized.load(Ordering::Relaxed);
                finality = (f > 1).then_some((ProbeKind::Finalized, f));
            }
            Some(BlockTag::Safe) => {
                let f = self.safe.load(Ordering::Relaxed);
                finality = (f > 1).then_some((ProbeKind::Safe, f));
            }
            _ if request.method() == self.policy.probe.method() => {
                // Its answers never go below the agreed head.
                block = block.max(self.agreed.load(Ordering::Relaxed).saturating_sub(1));
            }
            _ => {}
        }
        Need {
            session: request.extensions().get::<MinHead>().map_or(0, |m| m.0),
            block,
            finality,
        }
    }
}

/// The distinct blocks members report at `height` (their own block there,
/// or their parent when they are one above), with how many report each.
fn votes(views: &[Option<View>], height: u64) -> Vec<(u64, usize)> {
    let mut out: Vec<(u64, usize)> = Vec::new();
    for v in views.iter().flatten() {
        let hash = if v.number == height {
            v.hash
        } else if v.number == height.saturating_add(1) && v.parent != 0 {
            v.parent
        } else {
            continue;
        };
        match out.iter_mut().find(|(h, _)| *h == hash) {
            Some(e) => e.1 += 1,
            None => out.push((hash, 1)),
        }
    }
    out
}

/// Whether another block has more supporters than `hash`, and at least `k`.
fn outvoted(votes: &[(u64, usize)], hash: u64, k: usize) -> bool {
    let own = votes.iter().find(|(h, _)| *h == hash).map_or(0, |e| e.1);
    votes.iter().any(|&(h, c)| h != hash && c > own && c >= k)
}

/// The block a strict majority (and at least `k`) reports, if any.
fn majority(votes: &[(u64, usize)], k: usize) -> Option<(u64, usize)> {
    let total: usize = votes.iter().map(|e| e.1).sum();
    votes
        .iter()
        .copied()
        .find(|&(_, c)| c * 2 > total && c >= k)
}

pub(crate) fn duration_ticks(d: Duration) -> u64 {
    u64::try_from(d.as_nanos()).unwrap_or(u64::MAX)
}
