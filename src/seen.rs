//! Seen sets: URLs held as fixed-size hashes, so that millions of them fit in memory.

use std::collections::HashSet;

use sha2::{Digest, Sha256};
use url::Url;

/// A set of URLs held as 16-byte hashes (SHA-256 prefixes), so memory per URL is fixed whatever the
/// URL's length. The chance of two URLs colliding is negligible (2^-64 at four billion URLs).
#[derive(Debug, Default)]
pub struct SeenSet {
    hashes: HashSet<[u8; 16]>,
}

impl SeenSet {
    /// The fixed-size key `url` is held as.
    pub fn key(url: &Url) -> [u8; 16] {
        let digest = Sha256::digest(url.as_str().as_bytes());
        let mut key = [0u8; 16];
        key.copy_from_slice(&digest[..16]);
        key
    }

    /// Adds `url`; returns whether it was new.
    pub fn insert(&mut self, url: &Url) -> bool {
        self.hashes.insert(Self::key(url))
    }

    /// Whether `url` was added before.
    pub fn contains(&self, url: &Url) -> bool {
        self.hashes.contains(&Self::key(url))
    }

    /// Number of URLs held.
    pub fn len(&self) -> usize {
        self.hashes.len()
    }

    /// Adds every URL of `other`.
    pub fn merge(&mut self, other: SeenSet) {
        if self.hashes.is_empty() {
            self.hashes = other.hashes;
        } else {
            self.hashes.extend(other.hashes);
        }
    }

    /// This set without the URLs of `other`.
    pub fn without(mut self, other: &SeenSet) -> SeenSet {
        if !other.is_empty() {
            self.hashes.retain(|k| !other.hashes.contains(k));
        }
        self
    }

    /// Whether no URL is held.
    pub fn is_empty(&self) -> bool {
        self.hashes.is_empty()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    #[test]
    fn seen_set_uses_fixed_size_keys() {
        let mut s = SeenSet::default();
        let a = Url::parse("http://a.example/x").unwrap();
        assert!(s.insert(&a));
        assert!(!s.insert(&a));
        assert!(s.contains(&a));
        assert_eq!(s.len(), 1);
    }

    #[test]
    fn seen_sets_merge_and_subtract() {
        let url = |p: &str| Url::parse(&format!("http://a.example/{p}")).unwrap();
        let set = |ps: &[&str]| {
            let mut s = SeenSet::default();
            for p in ps {
                s.insert(&url(p));
            }
            s
        };
        let mut s = set(&["x", "y"]);
        s.merge(set(&["y", "z"]));
        assert_eq!(s.len(), 3);
        let left = s.without(&set(&["x", "w"]));
        assert_eq!(left.len(), 2);
        assert!(!left.contains(&url("x")) && left.contains(&url("y")) && left.contains(&url("z")));
        let mut empty = SeenSet::default();
        empty.merge(left);
        assert_eq!(empty.len(), 2);
    }
}
