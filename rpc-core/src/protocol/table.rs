//! The "exact name, else longest prefix" table.

use std::collections::HashMap;
use std::fmt;

/// A malformed method pattern.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum PatternError {
    /// The pattern is empty.
    #[error("empty method pattern")]
    Empty,
    /// A `*` somewhere other than at the end.
    #[error("method pattern `{0}`: `*` is only allowed at the end")]
    InnerWildcard(String),
}

/// One parsed method pattern: an exact name (`eth_call`) or a prefix written
/// with a trailing `*` (`eth_*`, `debug_trace*`; `*` alone matches every
/// method).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Pattern<'a> {
    /// Matches this name only.
    Exact(&'a str),
    /// Matches every name starting with this (without the `*`).
    Prefix(&'a str),
}

impl<'a> Pattern<'a> {
    /// Parses `eth_call` / `eth_*` (surrounding whitespace ignored).
    ///
    /// ```
    /// use rpc_core::protocol::{Pattern, PatternError};
    /// assert_eq!(Pattern::parse("eth_*"), Ok(Pattern::Prefix("eth_")));
    /// assert_eq!(Pattern::parse(" eth_call "), Ok(Pattern::Exact("eth_call")));
    /// assert!(matches!(Pattern::parse("eth_*Call"), Err(PatternError::InnerWildcard(_))));
    /// ```
    pub fn parse(pattern: &'a str) -> Result<Pattern<'a>, PatternError> {
        let pattern = pattern.trim();
        if pattern.is_empty() {
            return Err(PatternError::Empty);
        }
        match pattern.find('*') {
            None => Ok(Pattern::Exact(pattern)),
            Some(i) if i == pattern.len() - 1 => Ok(Pattern::Prefix(&pattern[..i])),
            Some(_) => Err(PatternError::InnerWildcard(pattern.to_owned())),
        }
    }

    /// Whether `method` matches.
    pub fn matches(self, method: &str) -> bool {
        match self {
            Pattern::Exact(name) => name == method,
            Pattern::Prefix(prefix) => method.starts_with(prefix),
        }
    }
}

impl fmt::Display for Pattern<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Pattern::Exact(name) => f.write_str(name),
            Pattern::Prefix(prefix) => write!(f, "{prefix}*"),
        }
    }
}

/// Methods mapped to values: an exact name first, else the longest matching
/// prefix. The one table behind the method filter, the router, failover's
/// `MethodRules`, the cache's rules and [`Protocol`](super::Protocol).
///
/// Lookups do not allocate: one hash lookup, then a scan of the prefixes
/// (longest first, so the first match is the most specific).
///
/// ```
/// use rpc_core::protocol::MethodTable;
///
/// let mut groups = MethodTable::new();
/// groups.insert("eth_*", "main")?;
/// groups.insert("eth_getLogs", "archive")?;
/// groups.insert("debug_trace*", "archive")?;
/// assert_eq!(groups.get("eth_call"), Some(&"main"));
/// assert_eq!(groups.get("eth_getLogs"), Some(&"archive"));
/// assert_eq!(groups.get("debug_traceCall"), Some(&"archive"));
/// assert_eq!(groups.get("net_version"), None);
/// # Ok::<(), rpc_core::protocol::PatternError>(())
/// ```
#[derive(Clone)]
pub struct MethodTable<T> {
    /// Looked up on every call by several layers: a fast seeded hasher
    /// (method names come from clients) instead of SipHash.
    exact: HashMap<Box<str>, T, foldhash::fast::RandomState>,
    /// Longest first; among equal lengths, insertion order.
    prefixes: Vec<(Box<str>, T)>,
}

impl<T> Default for MethodTable<T> {
    fn default() -> Self {
        MethodTable {
            exact: HashMap::default(),
            prefixes: Vec::new(),
        }
    }
}

impl<T: fmt::Debug> fmt::Debug for MethodTable<T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_map()
            .entries(self.iter().map(|(p, v)| (p.to_string(), v)))
            .finish()
    }
}

impl<T> MethodTable<T> {
    /// An empty table.
    pub fn new() -> Self {
        Self::default()
    }

    /// Maps `pattern` (`eth_call`, `eth_*`) to `value`, replacing and
    /// returning what it mapped to before.
    pub fn insert(&mut self, pattern: &str, value: T) -> Result<Option<T>, PatternError> {
        Ok(self.insert_pattern(Pattern::parse(pattern)?, value))
    }

    /// [`insert`](Self::insert) for a parsed pattern.
    pub fn insert_pattern(&mut self, pattern: Pattern<'_>, value: T) -> Option<T> {
        match pattern {
            Pattern::Exact(name) => self.exact.insert(name.into(), value),
            Pattern::Prefix(prefix) => {
                if let Some(slot) = self.prefixes.iter_mut().find(|(p, _)| **p == *prefix) {
                    return Some(std::mem::replace(&mut slot.1, value));
                }
                // Keep longest-first: insert before the first shorter one.
                let at = self
                    .prefixes
                    .iter()
                    .position(|(p, _)| p.len() < prefix.len())
                    .unwrap_or(self.prefixes.len());
                self.prefixes.insert(at, (prefix.into(), value));
                None
            }
        }
    }

    /// Maps `pattern` to `value` unless the pattern is already in the table
    /// (then the first value stays); `true` if it was added.
    pub fn insert_new(&mut self, pattern: &str, value: T) -> Result<bool, PatternError> {
        let parsed = Pattern::parse(pattern)?;
        if self.get_pattern(parsed).is_some() {
            return Ok(false);
        }
        self.insert_pattern(parsed, value);
        Ok(true)
    }

    /// The value for `method`: its exact entry, else its longest matching
    /// prefix.
    pub fn get(&self, method: &str) -> Option<&T> {
        if let Some(v) = self.exact.get(method) {
            return Some(v);
        }
        self.get_by_prefix(method)
    }

    /// The value of the longest prefix matching `method`, ignoring exact
    /// entries.
    pub fn get_by_prefix(&self, method: &str) -> Option<&T> {
        self.prefixes
            .iter()
            .find(|(p, _)| method.starts_with(&**p))
            .map(|(_, v)| v)
    }

    /// The value stored for exactly this pattern (no prefix matching).
    pub fn get_pattern(&self, pattern: Pattern<'_>) -> Option<&T> {
        match pattern {
            Pattern::Exact(name) => self.exact.get(name),
            Pattern::Prefix(prefix) => self
                .prefixes
                .iter()
                .find(|(p, _)| **p == *prefix)
                .map(|(_, v)| v),
        }
    }

    /// Whether any entry matches `method`.
    pub fn matches(&self, method: &str) -> bool {
        self.get(method).is_some()
    }

    /// Every entry: exact names (in no particular order), then prefixes,
    /// longest first.
    pub fn iter(&self) -> impl Iterator<Item = (Pattern<'_>, &T)> {
        self.exact
            .iter()
            .map(|(k, v)| (Pattern::Exact(k), v))
            .chain(self.prefixes.iter().map(|(k, v)| (Pattern::Prefix(k), v)))
    }

    /// The exact names in the table.
    pub fn exact_names(&self) -> impl Iterator<Item = &str> {
        self.exact.keys().map(|k| &**k)
    }

    /// How many patterns the table holds.
    pub fn len(&self) -> usize {
        self.exact.len() + self.prefixes.len()
    }

    /// Whether the table holds no pattern.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// A table with the same patterns and `f` applied to each value.
    pub fn map<U>(&self, mut f: impl FnMut(&T) -> U) -> MethodTable<U> {
        MethodTable {
            exact: self.exact.iter().map(|(k, v)| (k.clone(), f(v))).collect(),
            prefixes: self
                .prefixes
                .iter()
                .map(|(k, v)| (k.clone(), f(v)))
                .collect(),
        }
    }

    /// Keeps only the entries for which `keep` is true.
    pub fn retain(&mut self, mut keep: impl FnMut(Pattern<'_>, &T) -> bool) {
        self.exact.retain(|k, v| keep(Pattern::Exact(k), v));
        self.prefixes.retain(|(k, v)| keep(Pattern::Prefix(k), v));
    }
}

/// A set of method patterns: a [`MethodTable`] with no values.
pub type MethodSet = MethodTable<()>;

impl MethodSet {
    /// A set from patterns (`eth_call`, `eth_*`).
    ///
    /// ```
    /// use rpc_core::protocol::MethodSet;
    /// let set = MethodSet::parse(["eth_*", "net_version"])?;
    /// assert!(set.matches("eth_call") && set.matches("net_version"));
    /// assert!(!set.matches("net_listening"));
    /// # Ok::<(), rpc_core::protocol::PatternError>(())
    /// ```
    pub fn parse<I, P>(patterns: I) -> Result<Self, PatternError>
    where
        I: IntoIterator<Item = P>,
        P: AsRef<str>,
    {
        let mut set = MethodSet::new();
        for p in patterns {
            set.insert(p.as_ref(), ())?;
        }
        Ok(set)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn exact_beats_prefix_and_longest_prefix_wins_whatever_the_order() {
        let mut t = MethodTable::new();
        t.insert("a_*", 1).unwrap();
        t.insert("a_bc", 3).unwrap();
        t.insert("a_b*", 2).unwrap();
        t.insert("*", 0).unwrap();
        assert_eq!(t.get("a_x"), Some(&1));
        assert_eq!(t.get("a_bx"), Some(&2));
        assert_eq!(t.get("a_bc"), Some(&3));
        assert_eq!(t.get("zzz"), Some(&0));
        assert_eq!(t.len(), 4);
    }

    #[test]
    fn insert_replaces_and_insert_new_keeps_the_first() {
        let mut t = MethodTable::new();
        assert_eq!(t.insert("x_*", 1).unwrap(), None);
        assert_eq!(t.insert("x_*", 2).unwrap(), Some(1));
        assert!(!t.insert_new("x_*", 3).unwrap());
        assert!(t.insert_new("x_y", 4).unwrap());
        assert_eq!(t.get("x_z"), Some(&2));
        assert_eq!(t.get("x_y"), Some(&4));
        assert_eq!(t.insert("", 0), Err(PatternError::Empty));
        assert!(t.insert("a*b", 0).is_err());
    }

    #[test]
    fn patterns_print_as_written() {
        let mut t = MethodTable::new();
        t.insert("eth_*", ()).unwrap();
        t.insert("net_version", ()).unwrap();
        let mut shown: Vec<String> = t.iter().map(|(p, _)| p.to_string()).collect();
        shown.sort();
        assert_eq!(shown, ["eth_*", "net_version"]);
    }
}
