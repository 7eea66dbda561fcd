//! Bounded label values.

use std::collections::{HashMap, HashSet};
use std::sync::Mutex;

use metrics::SharedString;
use rpc_core::protocol::Protocol;

/// The label for methods outside the known set.
pub(crate) const OTHER: &str = "other";

/// Which method names become label values; every other method is counted as
/// `other`, so a client sending random method names cannot grow the number
/// of series.
#[derive(Clone, Debug)]
pub struct MethodLabels {
    known: HashSet<SharedString>,
}

impl Default for MethodLabels {
    /// The methods [`Protocol::ethereum`] and [`Protocol::electrum`] name.
    fn default() -> Self {
        MethodLabels::none()
            .protocol(&Protocol::ethereum())
            .protocol(&Protocol::electrum())
    }
}

impl MethodLabels {
    /// No method is labelled by name: everything is `other`.
    pub fn none() -> Self {
        MethodLabels {
            known: HashSet::new(),
        }
    }

    /// Also label every method `protocol` names exactly (its prefixes, such
    /// as `trace_*`, stay `other`: their names are not bounded).
    pub fn protocol(mut self, protocol: &Protocol) -> Self {
        self.known.extend(
            protocol
                .methods()
                .exact_names()
                .map(|m| SharedString::from_shared(std::sync::Arc::from(m))),
        );
        self
    }

    /// Also label these methods by name (the methods a filter allows, a
    /// private API).
    pub fn with(mut self, methods: impl IntoIterator<Item = impl Into<String>>) -> Self {
        self.known.extend(
            methods
                .into_iter()
                .map(|m| SharedString::from_shared(m.into().into())),
        );
        self
    }

    /// The label value for `method`: itself if known, else `other`
    /// (a shared string: cloning it allocates nothing).
    pub fn label(&self, method: &str) -> SharedString {
        match self.known.get(method) {
            Some(known) => known.clone(),
            None => SharedString::const_str(OTHER),
        }
    }

    pub(crate) fn names(&self) -> impl Iterator<Item = &SharedString> {
        self.known.iter()
    }
}

/// Error codes seen so far; at most `MAX` distinct ones are labelled, the
/// rest are `other` (a misbehaving backend cannot grow the series without
/// bound). Touched only on error paths.
pub(crate) struct CodeLabels {
    seen: Mutex<HashMap<i64, SharedString>>,
}

impl CodeLabels {
    const MAX: usize = 64;

    pub(crate) fn new() -> Self {
        CodeLabels {
            seen: Mutex::new(HashMap::new()),
        }
    }

    pub(crate) fn label(&self, code: i64) -> SharedString {
        let Ok(mut seen) = self.seen.lock() else {
            return SharedString::const_str(OTHER);
        };
        if let Some(l) = seen.get(&code) {
            return l.clone();
        }
        if seen.len() >= Self::MAX {
            return SharedString::const_str(OTHER);
        }
        let l = SharedString::from(code.to_string());
        seen.insert(code, l.clone());
        l
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn unknown_methods_are_other() {
        let l = MethodLabels::default().with(["myco_quote"]);
        assert_eq!(&*l.label("eth_call"), "eth_call");
        assert_eq!(
            &*l.label("blockchain.transaction.get"),
            "blockchain.transaction.get"
        );
        assert_eq!(&*l.label("myco_quote"), "myco_quote");
        assert_eq!(&*l.label("x".repeat(10_000).as_str()), OTHER);
        assert_eq!(&*MethodLabels::none().label("eth_call"), OTHER);
    }

    #[test]
    fn at_most_64_distinct_codes() {
        let c = CodeLabels::new();
        for code in 0..64 {
            assert_eq!(&*c.label(code), code.to_string());
        }
        assert_eq!(&*c.label(1000), OTHER);
        assert_eq!(&*c.label(5), "5", "codes seen before keep their label");
    }
}
