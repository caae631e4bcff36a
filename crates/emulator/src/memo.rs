//! A small most-recently-used cache of generated collections, so paging through one
//! window (a callRecords list, a log function call) generates it once, not once per page.
//! Generation runs outside the lock: concurrent pagers of other windows never wait on it.
//! Touches only its own memory.

use std::collections::VecDeque;
use std::sync::{Arc, Mutex};

/// The last `capacity` results by key.
pub struct Memo<K, V> {
    capacity: usize,
    entries: Mutex<VecDeque<(K, Arc<V>)>>,
}

impl<K: PartialEq, V> Memo<K, V> {
    pub fn new(capacity: usize) -> Self {
        Self {
            capacity,
            entries: Mutex::new(VecDeque::with_capacity(capacity)),
        }
    }

    /// The result for `key`, made by `make` on a miss (and then remembered).
    pub fn get_or_make(&self, key: K, make: impl FnOnce() -> V) -> Arc<V> {
        {
            let mut entries = self.lock();
            if let Some(at) = entries.iter().position(|(known, _)| *known == key) {
                let entry = entries.remove(at).expect("position is in range");
                let value = entry.1.clone();
                entries.push_front(entry);
                return value;
            }
        }
        let value = Arc::new(make());
        let mut entries = self.lock();
        // Another request may have made the same result meanwhile; keep one copy.
        if !entries.iter().any(|(known, _)| *known == key) {
            if entries.len() == self.capacity {
                entries.pop_back();
            }
            entries.push_front((key, value.clone()));
        }
        value
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, VecDeque<(K, Arc<V>)>> {
        self.entries
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn remembers_the_most_recent_results() {
        let memo = Memo::new(2);
        let mut made = 0;
        for key in [1, 2, 1, 3, 1, 2] {
            memo.get_or_make(key, || {
                made += 1;
                key * 10
            });
        }
        // 1, 2 made; 1 hit; 3 made (evicts 2); 1 hit; 2 made again (evicts 3).
        assert_eq!(made, 4);
        assert_eq!(*memo.get_or_make(1, || 0), 10);
        assert_eq!(*memo.get_or_make(3, || 0), 0);
    }
}
