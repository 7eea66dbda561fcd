//! A rate limit per transaction sender (cargo feature `tx-sender`).
//!
//! [`SenderLimitLayer`] recovers the sender of each signed transaction a
//! client broadcasts (`eth_sendRawTransaction` and its conditional / sync
//! variants; any method whose first param is a raw transaction) and charges
//! it to that address's budget, whoever sends it and from wherever: a bot
//! spamming from many IPs or keys with one account is held to the
//! account's rate. Decoding and recovery are alloy's (`TxEnvelope`, EIP-2718:
//! legacy, 2930, 1559, 4844, 7702; secp256k1 recovery with `k256`). A
//! refused call gets `-32017` and HTTP 429 with `Retry-After`
//! ([`RpcError::SenderLimited`]); in a batch, that call alone.
//!
//! A transaction that does not decode (not hex, an unknown type, a bad
//! signature) is passed on unlimited: the node refuses it with its own
//! words, and per-IP / per-key limits above bound what it costs
//! (`rpc_sender_unrecognized_total` counts them). Budgets are per process;
//! state is kept for senders seen recently and swept as the table grows.
//!
//! ```
//! use rpc_core::ratelimit::{Limit, SenderLimitLayer};
//!
//! // One transaction per second per sender, bursts of 5.
//! let layer = SenderLimitLayer::new(Limit::per_second(1).burst(5));
//! # drop(layer);
//! ```

use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::Arc;
use std::task::{Context, Poll};

use alloy_consensus::transaction::SignerRecoverable;
use alloy_consensus::TxEnvelope;
use alloy_eips::eip2718::Decodable2718;
use governor::clock::{Clock, DefaultClock};
use governor::DefaultKeyedRateLimiter;
use tower::{Layer, Service};

use super::Limit;
use crate::{Request, Response, RpcError};

/// Metric: broadcasts refused for their sender's budget.
pub const SENDER_LIMITED: &str = "rpc_sender_limited_total";
/// Metric: broadcasts whose transaction could not be decoded (passed on).
pub const SENDER_UNRECOGNIZED: &str = "rpc_sender_unrecognized_total";

/// The methods whose first param is a signed raw transaction, by default.
pub const RAW_TRANSACTION_METHODS: &[&str] = &[
    "eth_sendRawTransaction",
    "eth_sendRawTransactionConditional",
    "eth_sendRawTransactionSync",
];

/// Limits broadcasts per sender (see the [module docs](self)).
#[derive(Clone, Debug)]
pub struct SenderLimitLayer {
    limit: Limit,
    methods: Arc<[Arc<str>]>,
}

impl SenderLimitLayer {
    /// `limit` per sender on [`RAW_TRANSACTION_METHODS`].
    pub fn new(limit: Limit) -> Self {
        SenderLimitLayer {
            limit,
            methods: RAW_TRANSACTION_METHODS
                .iter()
                .map(|m| Arc::from(*m))
                .collect(),
        }
    }

    /// The methods whose first param is a raw transaction (replaces the
    /// default list).
    pub fn methods<I, M>(mut self, methods: I) -> Self
    where
        I: IntoIterator<Item = M>,
        M: Into<Arc<str>>,
    {
        self.methods = methods.into_iter().map(Into::into).collect();
        self
    }
}

impl<S> Layer<S> for SenderLimitLayer {
    type Service = SenderLimit<S>;

    fn layer(&self, inner: S) -> Self::Service {
        SenderLimit {
            inner,
            state: Arc::new(State {
                limiter: DefaultKeyedRateLimiter::dashmap(self.limit.quota()),
                methods: self.methods.clone(),
                clock: DefaultClock::default(),
                calls: AtomicU32::new(0),
            }),
        }
    }
}

struct State {
    limiter: DefaultKeyedRateLimiter<[u8; 20]>,
    methods: Arc<[Arc<str>]>,
    clock: DefaultClock,
    calls: AtomicU32,
}

impl std::fmt::Debug for State {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("State")
            .field("senders", &self.limiter.len())
            .field("methods", &self.methods)
            .finish()
    }
}

impl State {
    fn check(&self, sender: &[u8; 20]) -> Result<(), RpcError> {
        let n = self.calls.fetch_add(1, Ordering::Relaxed);
        if n % 4096 == 4095 && self.limiter.len() > 1024 {
            // Senders whose budget is full again: forgetting them changes
            // nothing.
            self.limiter.retain_recent();
            self.limiter.shrink_to_fit();
        }
        self.limiter
            .check_key(sender)
            .map_err(|not_until| RpcError::SenderLimited {
                retry_after: Some(not_until.wait_time_from(self.clock.now())),
            })
    }
}

/// The service of [`SenderLimitLayer`]. Clones share the budgets.
#[derive(Clone, Debug)]
pub struct SenderLimit<S> {
    inner: S,
    state: Arc<State>,
}

impl<S> Service<Request> for SenderLimit<S>
where
    S: Service<Request, Response = Response, Error = RpcError>,
{
    type Response = Response;
    type Error = RpcError;
    type Future = crate::filter::ResponseFuture<S::Future>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, req: Request) -> Self::Future {
        if self.state.methods.iter().any(|m| **m == *req.method()) {
            match sender_of_call(&req) {
                Some(sender) => {
                    if let Err(e) = self.state.check(&sender) {
                        metrics::counter!(SENDER_LIMITED).increment(1);
                        return crate::filter::ResponseFuture::rejected(e);
                    }
                }
                None => metrics::counter!(SENDER_UNRECOGNIZED).increment(1),
            }
        }
        crate::filter::ResponseFuture::inner(self.inner.call(req))
    }
}

impl<S> Service<crate::batch::Batch> for SenderLimit<S>
where
    S: crate::batch::JsonRpcBatchService,
{
    type Response = crate::batch::BatchAnswers;
    type Error = std::convert::Infallible;
    type Future = crate::batch::PassOrBoxed<<S as Service<crate::batch::Batch>>::Future>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        Service::<crate::batch::Batch>::poll_ready(&mut self.inner, cx)
    }

    /// Each sender's budget checked in the batch's order, refusals
    /// answered in place; the other calls go on as one batch.
    fn call(&mut self, batch: crate::batch::Batch) -> Self::Future {
        let state = self.state.clone();
        crate::batch::answer_in_place(&mut self.inner, batch, move |call| {
            if !state.methods.iter().any(|m| **m == *call.method()) {
                return None;
            }
            match sender_of_call(call) {
                Some(sender) => match state.check(&sender) {
                    Ok(()) => None,
                    Err(e) => {
                        metrics::counter!(SENDER_LIMITED).increment(1);
                        Some(Err(e))
                    }
                },
                None => {
                    metrics::counter!(SENDER_UNRECOGNIZED).increment(1);
                    None
                }
            }
        })
    }
}

/// The sender of the raw transaction in a call's first param, if it
/// decodes and its signature recovers.
fn sender_of_call(req: &Request) -> Option<[u8; 20]> {
    let params: Vec<serde_json::Value> = req.params()?.deserialize().ok()?;
    sender_of(params.first()?.as_str()?)
}

/// The sender (20-byte address) of a signed raw transaction given as hex
/// (`0x`-prefixed or not), if it decodes (EIP-2718) and its signature
/// recovers.
///
/// ```
/// // Not a transaction: no sender.
/// assert_eq!(rpc_core::ratelimit::sender_of("0x00"), None);
/// ```
pub fn sender_of(raw_hex: &str) -> Option<[u8; 20]> {
    let hex_digits = raw_hex.strip_prefix("0x").unwrap_or(raw_hex);
    let bytes = hex::decode(hex_digits).ok()?;
    let envelope = TxEnvelope::decode_2718(&mut bytes.as_slice()).ok()?;
    let sender = envelope.recover_signer().ok()?;
    Some(sender.into_array())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::{BoxJsonRpcService, Id, RawJson};
    use alloy_consensus::{SignableTransaction, TxEip1559};
    use alloy_eips::eip2718::Encodable2718;
    use alloy_primitives::{Address, TxKind, U256};
    use tower::{service_fn, ServiceExt};

    /// A transfer signed by `key` (a secp256k1 secret), as `0x` hex.
    pub(crate) fn signed(key: &[u8; 32], nonce: u64) -> (String, [u8; 20]) {
        let signer = k256::ecdsa::SigningKey::from_slice(key).expect("a valid key");
        let tx = TxEip1559 {
            chain_id: 31337,
            nonce,
            gas_limit: 21_000,
            max_fee_per_gas: 2_000_000_000,
            max_priority_fee_per_gas: 1,
            to: TxKind::Call(Address::ZERO),
            value: U256::from(1),
            ..Default::default()
        };
        let (sig, recid) = signer
            .sign_prehash_recoverable(tx.signature_hash().as_slice())
            .expect("sign");
        let signature =
            alloy_primitives::Signature::from_signature_and_parity(sig, recid.is_y_odd());
        let envelope: TxEnvelope = tx.into_signed(signature).into();
        let from = Address::from_public_key(signer.verifying_key());
        (
            format!("0x{}", hex::encode(envelope.encoded_2718())),
            from.into_array(),
        )
    }

    fn ok_service() -> BoxJsonRpcService {
        BoxJsonRpcService::new(service_fn(|req: Request| async move {
            Ok::<_, RpcError>(Response::result(
                req.id().cloned().unwrap_or_default(),
                RawJson::NULL,
            ))
        }))
    }

    fn send(raw: &str) -> Request {
        Request::new("eth_sendRawTransaction")
            .with_id(Id::from(1u64))
            .with_params(RawJson::from_bytes(format!("[\"{raw}\"]")).expect("json"))
    }

    #[test]
    fn the_sender_is_recovered_from_the_signature() {
        let (raw, from) = signed(&[7u8; 32], 0);
        assert_eq!(sender_of(&raw), Some(from));
        assert_eq!(sender_of(raw.trim_start_matches("0x")), Some(from));
        assert_eq!(sender_of("0xzz"), None);
        // One byte changed in the signature: another sender, or none.
        let mut tampered = raw.clone().into_bytes();
        let at = tampered.len() - 4;
        tampered[at] = if tampered[at] == b'1' { b'2' } else { b'1' };
        let tampered = String::from_utf8(tampered).expect("ascii");
        assert_ne!(sender_of(&tampered), Some(from));
    }

    #[tokio::test]
    async fn each_sender_has_its_own_budget_whoever_sends() {
        let svc = SenderLimitLayer::new(Limit::per_second(1).burst(2)).layer(ok_service());
        let (a, b) = ([1u8; 32], [2u8; 32]);
        for nonce in 0..2 {
            svc.clone()
                .oneshot(send(&signed(&a, nonce).0))
                .await
                .expect("within the burst");
        }
        let err = svc
            .clone()
            .oneshot(send(&signed(&a, 2).0))
            .await
            .expect_err("over the burst");
        assert!(
            matches!(
                err,
                RpcError::SenderLimited {
                    retry_after: Some(_)
                }
            ),
            "{err:?}"
        );
        assert_eq!(err.to_error_object().code(), -32017);
        assert_eq!(err.http_status(), http::StatusCode::TOO_MANY_REQUESTS);
        // Another sender is not charged; a transaction that does not decode
        // is passed on (the node refuses it); other methods too.
        svc.clone()
            .oneshot(send(&signed(&b, 0).0))
            .await
            .expect("another sender");
        for _ in 0..5 {
            svc.clone().oneshot(send("0x00")).await.expect("passed on");
        }
        svc.clone()
            .oneshot(Request::new("eth_chainId").with_id(Id::from(2u64)))
            .await
            .expect("not a broadcast");
    }
}
