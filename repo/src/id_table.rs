//! A compact map from ids to small values, for the millions of blobs one repository or one
//! backup can hold.
//!
//! A hash map of 32-byte ids costs 1.1 to 2.3 times its entries' size (its table is a power of
//! two at most 7/8 full), and both the old and the new table while it grows: the index of 2
//! million blobs took 222 MiB, and 333 MiB at its peak, where its entries are 96 MiB. An
//! [`IdTable`] keeps its entries in one vector sorted by id, with a table of where each
//! two-byte prefix starts (ids are uniformly random, so a lookup searches about `len / 65536`
//! entries), and the entries inserted since the last merge in a small hash map of at most an
//! eighth of the table. Lookups take the map, then the vector; a full map is merged into the
//! vector in place, from its end, without a second copy of the vector.

use crate::Id;
use crate::id::IdMap;

/// Entries kept in the hash map before it is merged, at the least: below this the table stays
/// a hash map, and the vector and prefix table are not built.
const MIN_RECENT: usize = 1 << 14;
/// The sorted vector gets a prefix table from this many entries (the table is 256 KiB).
const PREFIX_FROM: usize = 1 << 16;

/// A map from [`Id`] to a small `Copy` value, about `32 + size_of::<V>()` bytes an entry.
pub struct IdTable<V> {
    /// Entries merged so far, by id.
    sorted: Vec<(Id, V)>,
    /// Where each two-byte id prefix starts in `sorted` (65,537 offsets), once it is large.
    prefix: Vec<u32>,
    /// Entries inserted since the last merge.
    recent: IdMap<V>,
}

impl<V> Default for IdTable<V> {
    fn default() -> Self {
        IdTable {
            sorted: Vec::new(),
            prefix: Vec::new(),
            recent: IdMap::default(),
        }
    }
}

impl<V: Copy> IdTable<V> {
    /// The value of `id`, if the table holds it.
    pub fn get(&self, id: &Id) -> Option<&V> {
        if let Some(v) = self.recent.get(id) {
            return Some(v);
        }
        let run = match self.prefix.as_slice() {
            [] => &self.sorted[..],
            starts => {
                let p = usize::from(u16::from_be_bytes([id.0[0], id.0[1]]));
                &self.sorted[starts[p] as usize..starts[p + 1] as usize]
            }
        };
        run.binary_search_by(|(k, _)| k.cmp(id))
            .ok()
            .map(|i| &run[i].1)
    }

    /// Whether the table holds `id`.
    pub fn contains(&self, id: &Id) -> bool {
        self.get(id).is_some()
    }

    /// Inserts `id` with `value` unless it is already there; true when it was inserted. An
    /// id keeps the value it was first inserted with.
    pub fn insert(&mut self, id: Id, value: V) -> bool {
        if self.contains(&id) {
            return false;
        }
        self.recent.insert(id, value);
        if self.recent.len() > MIN_RECENT.max(self.sorted.len() / 8) {
            self.merge();
        }
        true
    }

    /// Number of entries.
    pub fn len(&self) -> usize {
        self.sorted.len() + self.recent.len()
    }

    /// True when the table holds nothing.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Every entry, in no particular order.
    pub fn iter(&self) -> impl Iterator<Item = (&Id, &V)> + '_ {
        self.sorted
            .iter()
            .map(|(id, v)| (id, v))
            .chain(self.recent.iter())
    }

    /// Moves the recent entries into the sorted vector: sorted among themselves, appended,
    /// and merged backwards, so each entry moves once and no second vector is made.
    fn merge(&mut self) {
        let mut added: Vec<(Id, V)> = self.recent.drain().collect();
        added.sort_unstable_by_key(|entry| entry.0);
        let mut old = self.sorted.len();
        let mut new = added.len();
        self.sorted.extend_from_slice(&added);
        let mut at = self.sorted.len();
        // `recent` never holds an id of `sorted`, so no two ids are equal.
        while new > 0 {
            at -= 1;
            if old > 0 && self.sorted[old - 1].0 > added[new - 1].0 {
                old -= 1;
                self.sorted[at] = self.sorted[old];
            } else {
                new -= 1;
                self.sorted[at] = added[new];
            }
        }
        self.prefix.clear();
        if self.sorted.len() >= PREFIX_FROM {
            self.prefix.reserve_exact(65_537);
            let mut i = 0;
            for p in 0..=u16::MAX {
                while i < self.sorted.len() && prefix_of(&self.sorted[i].0) < p {
                    i += 1;
                }
                self.prefix.push(i as u32);
            }
            self.prefix.push(self.sorted.len() as u32);
        }
    }
}

fn prefix_of(id: &Id) -> u16 {
    u16::from_be_bytes([id.0[0], id.0[1]])
}

#[cfg(test)]
mod tests {
    use super::*;

    fn id(n: u32) -> Id {
        Id::hash(&n.to_le_bytes())
    }

    /// Inserts `count` ids, some twice, and checks every lookup against a hash map: below,
    /// at and above the merge and prefix-table sizes.
    #[test]
    fn agrees_with_a_hash_map_at_every_size() {
        for count in [0, 1, 100, MIN_RECENT, MIN_RECENT + 1, PREFIX_FROM * 2 + 7] {
            let mut table = IdTable::default();
            let mut expected = std::collections::HashMap::new();
            for n in 0..count as u32 {
                assert!(table.insert(id(n), n), "{count}: {n} is new");
                expected.insert(id(n), n);
                if n % 3 == 0 {
                    // A second insert of a known id keeps the first value.
                    assert!(!table.insert(id(n / 2), u32::MAX), "{count}: {n} again");
                }
            }
            assert_eq!(table.len(), count, "{count}");
            assert_eq!(table.is_empty(), count == 0);
            for (k, v) in &expected {
                assert_eq!(table.get(k), Some(v), "{count}");
            }
            for n in count as u32..count as u32 + 1000 {
                assert!(!table.contains(&id(n)), "{count}: {n} was never inserted");
            }
            let mut listed: Vec<(Id, u32)> = table.iter().map(|(k, v)| (*k, *v)).collect();
            listed.sort();
            let mut wanted: Vec<(Id, u32)> = expected.into_iter().collect();
            wanted.sort();
            assert_eq!(listed, wanted, "{count}");
        }
    }

    #[test]
    fn ids_at_the_ends_of_the_prefix_range_are_found() {
        let mut table = IdTable::default();
        let mut edges = Vec::new();
        for (i, first) in [[0u8, 0], [0, 1], [0xff, 0xfe], [0xff, 0xff]]
            .iter()
            .enumerate()
        {
            let mut raw = [i as u8; 32];
            raw[..2].copy_from_slice(first);
            edges.push(Id(raw));
        }
        for id in &edges {
            table.insert(*id, ());
        }
        for n in 0..PREFIX_FROM as u32 + 1 {
            table.insert(id(n), ());
        }
        assert!(!table.prefix.is_empty(), "the prefix table is built");
        for e in &edges {
            assert!(table.contains(e), "{}", e.to_hex());
        }
        let mut absent = [0xffu8; 32];
        absent[31] = 0;
        assert!(!table.contains(&Id(absent)));
    }
}
