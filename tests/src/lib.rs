//! Helpers for the cross-crate integration tests: the shipped binaries started
//! as processes, real peers (anvil), and a small HTTP upstream that injects the
//! faults a real node cannot produce on demand.
//!
//! Every helper has a deadline: a process that does not come up in time fails
//! the test with its captured output instead of hanging it.

/// The README's code examples, compiled as doctests so they stay true.
#[doc = include_str!("../../README.md")]
mod readme {}

mod anvil;
mod calls;
mod chunked;
mod electrumx;
mod fault;
mod lying;
mod node;
mod process;
mod redis;

pub use anvil::*;
pub use calls::*;
pub use chunked::*;
pub use electrumx::*;
pub use fault::*;
pub use lying::*;
pub use node::*;
pub use process::*;
pub use redis::*;
