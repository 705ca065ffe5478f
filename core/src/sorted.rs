//! Stable sorting through one compiled sort, and B-tree maps built without one.
//!
//! The standard library's stable sort is generic over the element and the comparison, so
//! every call site with its own element type or closure compiles another copy of it (some
//! 3 KiB of WebAssembly each, paid by every isolate that loads the worker). Here the sort runs
//! once, over positions, with the comparison behind `dyn`; the elements are then moved into
//! place. The inputs are small (an object's members, an inbox's events, a consumer's origins),
//! so the extra allocation costs nothing measurable. `collect` into a `BTreeMap` sorts its
//! items first, with another copy of the sort (and of the bulk build) per key and value type:
//! [`map_of`] inserts them one by one instead, and small sets are sorted lists ([`Set`]).

use alloc::collections::BTreeMap;
use alloc::vec::Vec;
use core::cmp::Ordering;

/// Sorts `items` by `compare`, keeping equal items in their order (like `slice::sort_by`).
pub(crate) fn sort_by<T>(items: &mut Vec<T>, compare: impl Fn(&T, &T) -> Ordering) {
    let order = {
        let items: &[T] = items;
        positions_in_order(items.len(), &|a, b| match (items.get(a), items.get(b)) {
            (Some(a), Some(b)) => compare(a, b),
            _ => Ordering::Equal,
        })
    };
    let mut slots: Vec<Option<T>> = items.drain(..).map(Some).collect();
    items.extend(
        order
            .into_iter()
            .filter_map(|position| slots.get_mut(position).and_then(Option::take)),
    );
}

/// Sorts `items` by the key `key` gives, keeping equal items in their order (like
/// `slice::sort_by_key`).
pub(crate) fn sort_by_key<T, K: Ord>(items: &mut Vec<T>, key: impl Fn(&T) -> K) {
    sort_by(items, |a, b| key(a).cmp(&key(b)));
}

/// A small set kept as a sorted list, in place of a `BTreeSet`: the B-tree's insertion,
/// removal and bulk build are compiled once per element type, a few KiB of the upload each,
/// where a list's binary search and `Vec::insert` are a few hundred bytes. Only for sets of a
/// handful to a hundred or so elements (an alias's events, an event's held copies, the erased
/// subjects of a reconciler's page), where a list's O(n) insertion costs nothing; it iterates
/// in order, as a `BTreeSet` does.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) struct Set<T>(Vec<T>);

impl<T> Default for Set<T> {
    fn default() -> Self {
        Self(Vec::new())
    }
}

impl<T: Ord> Set<T> {
    /// Adds `item` if it is not there yet.
    pub(crate) fn insert(&mut self, item: T) {
        if let Err(at) = self.0.binary_search(&item) {
            self.0.insert(at, item);
        }
    }

    pub(crate) fn remove(&mut self, item: &T) {
        if let Ok(at) = self.0.binary_search(item) {
            self.0.remove(at);
        }
    }

    pub(crate) fn contains(&self, item: &T) -> bool {
        self.0.binary_search(item).is_ok()
    }

    pub(crate) fn is_empty(&self) -> bool {
        self.0.is_empty()
    }

    /// The elements, in order.
    pub(crate) fn iter(&self) -> core::slice::Iter<'_, T> {
        self.0.iter()
    }
}

impl<T: Ord> Extend<T> for Set<T> {
    fn extend<I: IntoIterator<Item = T>>(&mut self, items: I) {
        for item in items {
            self.insert(item);
        }
    }
}

/// The map of `pairs`, a later pair replacing an earlier one with the same key (as `collect`
/// does).
pub(crate) fn map_of<K: Ord, V>(pairs: impl IntoIterator<Item = (K, V)>) -> BTreeMap<K, V> {
    let mut map = BTreeMap::new();
    for (key, value) in pairs {
        map.insert(key, value);
    }
    map
}

/// The positions `0..len` in the order `compare` puts them, ties in position order. The one
/// instantiation of the standard library's sort.
fn positions_in_order(len: usize, compare: &dyn Fn(usize, usize) -> Ordering) -> Vec<usize> {
    let mut order: Vec<usize> = (0..len).collect();
    order.sort_by(|&a, &b| compare(a, b));
    order
}

#[cfg(test)]
mod tests {
    use super::*;
    use alloc::vec;
    #[cfg(target_arch = "wasm32")]
    use wasm_bindgen_test::wasm_bindgen_test as test;

    #[test]
    fn a_set_holds_each_item_once_in_order_like_a_btree_set() {
        let items = [5, 1, 9, 1, 3, 5, 7, 0, 9];
        let mut set = Set::default();
        set.extend(items);
        let btree: alloc::collections::BTreeSet<i32> = items.into_iter().collect();
        assert!(set.iter().eq(btree.iter()));
        assert!(set.contains(&7) && !set.contains(&4));
        set.remove(&7);
        set.remove(&4);
        assert!(set.iter().copied().eq([0, 1, 3, 5, 9]));
        for item in [0, 1, 3, 5, 9] {
            set.remove(&item);
        }
        assert!(set.is_empty());
    }

    #[test]
    fn sorts_stably_like_the_standard_sort() {
        let items = vec![(3, 'a'), (1, 'b'), (3, 'c'), (2, 'd'), (1, 'e'), (0, 'f')];
        let mut ours = items.clone();
        sort_by_key(&mut ours, |item| item.0);
        let mut std = items;
        std.sort_by_key(|item| item.0);
        assert_eq!(ours, std);
        assert_eq!(
            ours,
            [(0, 'f'), (1, 'b'), (1, 'e'), (2, 'd'), (3, 'a'), (3, 'c')]
        );
    }

    #[test]
    fn maps_are_what_collect_makes() {
        let pairs = vec![("b", 1), ("a", 2), ("b", 3)];
        assert_eq!(
            map_of(pairs.clone()),
            pairs.into_iter().collect::<BTreeMap<_, _>>()
        );
    }

    #[test]
    fn sorts_empty_and_single_lists() {
        let mut empty: Vec<u8> = Vec::new();
        sort_by(&mut empty, Ord::cmp);
        assert!(empty.is_empty());
        let mut one = vec![7];
        sort_by(&mut one, Ord::cmp);
        assert_eq!(one, [7]);
    }
}
