//! Your own layer and your own backend adapter, on `rpc-core` with
//! `default-features = false`: no hyper, no rustls in the tree
//! (`cargo tree -p custom-layer -e normal`).
//!
//! * [`MaxParamsLayer`]: a layer that refuses calls whose params are larger
//!   than a limit, before any backend sees them (`-32602`, HTTP 400 through
//!   the front).
//! * [`StaticBackend`]: a backend adapter that answers from a table, the
//!   shape of any adapter (a WebSocket client, an in-process node, a test
//!   double): a named `tower::Service<Request>` that never fails, with
//!   `ServedBy` on its answers.
//!
//! They compose with the crate family like the built-in ones:
//!
//! ```
//! use custom_layer::{MaxParamsLayer, StaticBackend};
//! use rpc_core::{Id, RawJson, Request};
//! use rpc_failover::{FailoverLayer, Member};
//! use tower::{ServiceBuilder, ServiceExt};
//!
//! # #[tokio::main(flavor = "current_thread")] async fn main() -> Result<(), Box<dyn std::error::Error>> {
//! let node = StaticBackend::new("table").answer("eth_chainId", RawJson::from_static(r#""0x1""#)?);
//! let group = FailoverLayer::new().build(vec![Member::new("table", node)])?;
//! let svc = ServiceBuilder::new().layer(MaxParamsLayer::new(1024)).service(group);
//! let answer = svc.oneshot(Request::new("eth_chainId").with_id(Id::from(1u64))).await?;
//! assert_eq!(answer.result_json().map(|r| r.as_bytes()), Some(&br#""0x1""#[..]));
//! # Ok(()) }
//! ```

mod backend;
mod layer;

pub use backend::StaticBackend;
pub use layer::{MaxParams, MaxParamsFuture, MaxParamsLayer};
