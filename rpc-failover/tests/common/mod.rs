//! The scripted member of these tests: rpc-core's `test_util::MockBackend`
//! (paused tokio time), and a member made of it.
#![allow(dead_code, unreachable_pub, unused_imports)]

pub use rpc_core::test_util::{request as req, result_text as result_of, slow, Step};
use rpc_failover::Member;

pub type Mock = rpc_core::test_util::MockBackend;

/// A group member of a mock, named after it.
pub trait MemberOf {
    fn member(&self) -> Member<Mock>;
}

impl MemberOf for Mock {
    fn member(&self) -> Member<Mock> {
        Member::named(self.clone())
    }
}
