//! A small bounded cache with a time to live, for Key Vault bundles. Evicted and expired bundles
//! are dropped, which wipes their values.

use crate::secret::SecretBundle;
use std::collections::HashMap;
use std::time::{Duration, Instant};

pub(crate) struct BundleCache {
    ttl: Duration,
    capacity: usize,
    entries: HashMap<String, (Instant, SecretBundle)>,
}

impl BundleCache {
    pub(crate) fn new(ttl: Duration, capacity: usize) -> Self {
        BundleCache {
            ttl,
            capacity,
            entries: HashMap::new(),
        }
    }

    pub(crate) fn get(&mut self, key: &str) -> Option<SecretBundle> {
        let fresh = self.entries.get(key)?.0.elapsed() < self.ttl;
        if fresh {
            self.entries.get(key).map(|(_, bundle)| bundle.clone())
        } else {
            self.entries.remove(key);
            None
        }
    }

    /// Stores `bundle`; when full, drops expired entries first, then the oldest one.
    pub(crate) fn insert(&mut self, key: String, bundle: SecretBundle) {
        if self.capacity == 0 {
            return;
        }
        if !self.entries.contains_key(&key) && self.entries.len() >= self.capacity {
            let ttl = self.ttl;
            self.entries.retain(|_, (at, _)| at.elapsed() < ttl);
        }
        if !self.entries.contains_key(&key) && self.entries.len() >= self.capacity {
            let oldest = self
                .entries
                .iter()
                .min_by_key(|(_, (at, _))| *at)
                .map(|(k, _)| k.clone());
            if let Some(oldest) = oldest {
                self.entries.remove(&oldest);
            }
        }
        self.entries.insert(key, (Instant::now(), bundle));
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::secret::{BundleName, SecretValue};

    fn bundle(v: &str) -> SecretBundle {
        let mut b = SecretBundle::default();
        b.insert(BundleName::parse("K").unwrap(), SecretValue::new(v.into()));
        b
    }

    #[test]
    fn evicts_the_oldest_when_full() {
        let mut cache = BundleCache::new(Duration::from_secs(60), 2);
        cache.insert("a".into(), bundle("1"));
        cache.insert("b".into(), bundle("2"));
        cache.insert("c".into(), bundle("3"));
        assert!(cache.get("a").is_none());
        assert_eq!(cache.get("b"), Some(bundle("2")));
        assert_eq!(cache.get("c"), Some(bundle("3")));
        assert_eq!(cache.entries.len(), 2);
    }

    #[test]
    fn expires_after_ttl() {
        let mut cache = BundleCache::new(Duration::from_millis(20), 4);
        cache.insert("a".into(), bundle("1"));
        assert!(cache.get("a").is_some());
        std::thread::sleep(Duration::from_millis(30));
        assert!(cache.get("a").is_none());
        assert!(cache.entries.is_empty());
    }

    #[test]
    fn zero_capacity_caches_nothing() {
        let mut cache = BundleCache::new(Duration::from_secs(60), 0);
        cache.insert("a".into(), bundle("1"));
        assert!(cache.get("a").is_none());
    }
}
