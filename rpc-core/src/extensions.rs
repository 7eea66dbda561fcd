//! Per-call context: [`Extensions`], the type map of a [`Request`](crate::Request)
//! and a [`Response`](crate::Response).

use std::any::Any;
use std::fmt;

use crate::batch::BatchItem;
use crate::budget::HeldBytes;
use crate::ext::{
    AgreedChain, ApiKey, Attempts, BatchPosition, CacheStatus, ChainHead, ConnectionId, MinHead,
    ServedBy, SessionId,
};
use crate::request::{Deadline, RemoteAddr};

macro_rules! slots {
    ($( $(#[$doc:meta])* $field:ident: $ty:ty, )*) => {
        /// A type map of per-call context, with the same methods as
        /// [`http::Extensions`]: `insert`, `get`, `get_mut`, `remove`,
        /// `clear`, `is_empty`, `len`, `extend`.
        ///
        /// The types the library's own layers write and read on every call
        /// ([`Deadline`], [`RemoteAddr`], [`ConnectionId`], [`ApiKey`],
        /// [`SessionId`], [`BatchPosition`], [`BatchItem`], [`MinHead`] on
        /// a call; [`ServedBy`], [`Attempts`], [`CacheStatus`],
        /// [`ChainHead`], [`AgreedChain`] on an answer) live in typed slots
        /// inside the value: putting one in allocates nothing and finding
        /// one is a type comparison the compiler resolves. Any other type
        /// (your own layers' facts) goes into an `http::Extensions` map, as
        /// before. Which slot a type uses is invisible: `get::<T>()` finds a
        /// value wherever `insert` put it.
        ///
        /// ```
        /// use rpc_core::{Deadline, Extensions};
        /// use std::time::Duration;
        ///
        /// #[derive(Clone, Debug, PartialEq)]
        /// struct Tenant(&'static str);
        ///
        /// let mut ext = Extensions::new();
        /// assert!(ext.is_empty());
        /// let deadline = Deadline::after(Duration::from_secs(1));
        /// assert_eq!(ext.insert(deadline), None);
        /// ext.insert(Tenant("blue"));
        /// assert_eq!(ext.get::<Deadline>(), Some(&deadline));
        /// assert_eq!(ext.get::<Tenant>(), Some(&Tenant("blue")));
        /// assert_eq!(ext.len(), 2);
        /// assert_eq!(ext.remove::<Tenant>(), Some(Tenant("blue")));
        /// assert_eq!(ext.len(), 1);
        /// ```
        #[derive(Clone, Default)]
        pub struct Extensions {
            $( $(#[$doc])* $field: Option<$ty>, )*
            other: http::Extensions,
        }

        impl Extensions {
            /// An empty map (allocates nothing).
            pub fn new() -> Self {
                Self::default()
            }

            /// Puts `val` in, returning the value of the same type it
            /// replaces.
            pub fn insert<T: Clone + Send + Sync + 'static>(&mut self, val: T) -> Option<T> {
                $(
                    if let Some(slot) = (&mut self.$field as &mut dyn Any).downcast_mut::<Option<T>>() {
                        return slot.replace(val);
                    }
                )*
                self.other.insert(val)
            }

            /// The value of type `T`, if there is one.
            pub fn get<T: Send + Sync + 'static>(&self) -> Option<&T> {
                $(
                    if let Some(slot) = (&self.$field as &dyn Any).downcast_ref::<Option<T>>() {
                        return slot.as_ref();
                    }
                )*
                self.other.get::<T>()
            }

            /// The value of type `T`, mutable, if there is one.
            pub fn get_mut<T: Send + Sync + 'static>(&mut self) -> Option<&mut T> {
                $(
                    if let Some(slot) = (&mut self.$field as &mut dyn Any).downcast_mut::<Option<T>>() {
                        return slot.as_mut();
                    }
                )*
                self.other.get_mut::<T>()
            }

            /// Takes the value of type `T` out, if there is one.
            pub fn remove<T: Send + Sync + 'static>(&mut self) -> Option<T> {
                $(
                    if let Some(slot) = (&mut self.$field as &mut dyn Any).downcast_mut::<Option<T>>() {
                        return slot.take();
                    }
                )*
                self.other.remove::<T>()
            }

            /// Removes every value.
            pub fn clear(&mut self) {
                $( self.$field = None; )*
                self.other.clear();
            }

            /// Whether there is no value at all.
            pub fn is_empty(&self) -> bool {
                self.len() == 0
            }

            /// How many values there are.
            pub fn len(&self) -> usize {
                0 $( + usize::from(self.$field.is_some()) )* + self.other.len()
            }

            /// Moves every value of `other` in, replacing values of the
            /// same types.
            pub fn extend(&mut self, other: Self) {
                $(
                    if other.$field.is_some() {
                        self.$field = other.$field;
                    }
                )*
                self.other.extend(other.other);
            }
        }
    };
}

slots! {
    deadline: Deadline,
    remote: RemoteAddr,
    connection: ConnectionId,
    api_key: ApiKey,
    session: SessionId,
    batch_position: BatchPosition,
    batch_item: BatchItem,
    min_head: MinHead,
    served_by: ServedBy,
    attempts: Attempts,
    cache_status: CacheStatus,
    chain_head: ChainHead,
    agreed_chain: AgreedChain,
    held: HeldBytes,
}

impl Extensions {
    /// An empty map that lives for the whole program: what a request or an
    /// answer without extensions shows.
    pub(crate) fn empty() -> &'static Extensions {
        static EMPTY: std::sync::OnceLock<Extensions> = std::sync::OnceLock::new();
        EMPTY.get_or_init(Extensions::new)
    }
}

impl fmt::Debug for Extensions {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        // Values are not required to be `Debug` (as with `http::Extensions`).
        f.debug_struct("Extensions")
            .field("len", &self.len())
            .finish_non_exhaustive()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::Arc;
    use std::time::Duration;

    #[derive(Clone, Debug, PartialEq)]
    struct Mine(u32);

    #[test]
    fn slots_and_the_map_behave_alike() {
        let mut ext = Extensions::new();
        assert!(ext.is_empty());
        assert_eq!(ext.insert(ServedBy(Arc::from("a"))), None);
        assert_eq!(
            ext.insert(ServedBy(Arc::from("b"))),
            Some(ServedBy(Arc::from("a")))
        );
        assert_eq!(ext.insert(Mine(1)), None);
        assert_eq!(ext.insert(Mine(2)), Some(Mine(1)));
        assert_eq!(ext.len(), 2);
        ext.get_mut::<Mine>().unwrap().0 += 1;
        ext.get_mut::<ServedBy>().unwrap().0 = Arc::from("c");
        assert_eq!(ext.get::<Mine>(), Some(&Mine(3)));
        assert_eq!(ext.get::<ServedBy>(), Some(&ServedBy(Arc::from("c"))));
        assert_eq!(ext.get::<Attempts>(), None);
        assert_eq!(ext.get_mut::<Attempts>(), None);
        assert_eq!(ext.remove::<Attempts>(), None);

        let mut more = Extensions::new();
        more.insert(Attempts(2));
        more.insert(Mine(9));
        more.insert(Deadline::after(Duration::from_secs(1)));
        let cloned = more.clone();
        ext.extend(more);
        assert_eq!(ext.len(), 4);
        assert_eq!(ext.get::<Mine>(), Some(&Mine(9)));
        assert_eq!(ext.get::<Attempts>(), Some(&Attempts(2)));
        assert_eq!(ext.get::<ServedBy>(), Some(&ServedBy(Arc::from("c"))));
        assert_eq!(cloned.len(), 3);

        assert_eq!(ext.remove::<ServedBy>(), Some(ServedBy(Arc::from("c"))));
        assert_eq!(ext.remove::<Mine>(), Some(Mine(9)));
        assert_eq!(ext.len(), 2);
        ext.clear();
        assert!(ext.is_empty());
        assert_eq!(format!("{ext:?}"), "Extensions { len: 0, .. }");
    }
}
