//! The name index: which file names of the output are taken (folded as the file system folds
//! them: case and Unicode normal form), which bytes are saved where, and the `-2`, `-3`, ...
//! suffixes that keep two images from sharing a name. Pure: the caller says what is on disk.
//! The crawl's DiskWriter and `imgcrawl check` name files with it alike.

use std::collections::{HashMap, HashSet};
use std::hash::{BuildHasher, Hasher};
use std::path::{Path, PathBuf};

use sha2::{Digest, Sha256};

use crate::paths::{hash_folded, with_suffix};

/// The first 16 bytes of a SHA-256, the key of a saved file's bytes (a collision between two
/// different images is as unlikely as in the seen sets: 2^-64 at four billion images).
pub type ShaKey = [u8; 16];

/// The key of the hex SHA-256 `hex`. A value that is not hex (a hand-edited manifest) is hashed
/// instead, so it still names one set of bytes.
pub fn sha_key(hex: &str) -> ShaKey {
    let mut key = [0u8; 16];
    let decoded = hex.len() >= 32
        && key.iter_mut().enumerate().all(|(i, b)| {
            hex.get(2 * i..2 * i + 2)
                .and_then(|pair| u8::from_str_radix(pair, 16).ok())
                .map(|v| *b = v)
                .is_some()
        });
    if !decoded {
        key.copy_from_slice(&Sha256::digest(hex.as_bytes())[..16]);
    }
    key
}

/// Saved files by content, and the names in use, kept small: about 100 bytes per saved image
/// (the key, the path once, and a 64-bit fingerprint of it) rather than three copies of the path
/// and the hex hash.
#[derive(Debug, Default)]
pub struct Index {
    /// Saved files by content.
    pub by_sha: HashMap<ShaKey, Box<Path>>,
    /// Every path in use, as a fingerprint. Two paths with the same fingerprint only cost the
    /// second a suffix it did not need.
    taken: HashSet<u64>,
    /// Files an earlier crawl in this directory saved, by content, when this one started over
    /// (`--fresh`): the first image with the same bytes takes the file over instead of a copy.
    pub reusable: HashMap<ShaKey, Box<Path>>,
    /// For a wanted path (its fingerprint) whose plain name is taken, the first suffix not known
    /// to be taken (all below it are), so that thousands of images with one caption do not each
    /// search from `-2` again. Names that got their plain form have no entry.
    next_suffix: HashMap<u64, u32>,
    /// The fingerprints' key, random per crawl, so that no page can aim at a collision.
    keys: std::collections::hash_map::RandomState,
}

impl Index {
    /// A file path's fingerprint, of its folded form: names one file system would take for one
    /// (`Cat.jpg`, `cat.jpg`; NFC and NFD) are one name.
    fn fingerprint(&self, path: &Path) -> u64 {
        let mut h = self.keys.build_hasher();
        hash_folded(path, &mut h);
        h.finish()
    }

    /// A directory's fingerprint (a file and a directory cannot share a name either), derived
    /// from the file fingerprint of the same name.
    fn dir_of(file_fingerprint: u64) -> u64 {
        file_fingerprint.rotate_left(29) ^ 0x9e37_79b9_7f4a_7c15
    }

    fn dir_fingerprint(&self, path: &Path) -> u64 {
        Self::dir_of(self.fingerprint(path))
    }

    /// Whether `path` is taken, as a file or as a directory.
    pub fn is_taken(&self, path: &Path) -> bool {
        let f = self.fingerprint(path);
        self.taken.contains(&f) || self.taken.contains(&Self::dir_of(f))
    }

    /// Whether `path` is taken by a file.
    pub fn is_taken_file(&self, path: &Path) -> bool {
        self.taken.contains(&self.fingerprint(path))
    }

    /// Whether `path` is a directory this crawl made or found.
    pub fn is_known_dir(&self, path: &Path) -> bool {
        self.taken.contains(&self.dir_fingerprint(path))
    }

    /// Marks `path` as a directory.
    pub fn take_dir(&mut self, path: &Path) {
        let f = self.dir_fingerprint(path);
        self.taken.insert(f);
    }

    /// Marks `path` as a file.
    pub fn take(&mut self, path: &Path) {
        let f = self.fingerprint(path);
        self.taken.insert(f);
    }

    /// Frees the file name `path` (its file was never written).
    pub fn give_back(&mut self, path: &Path) {
        let f = self.fingerprint(path);
        self.taken.remove(&f);
    }

    /// The first suffix of `wanted` not known to be taken (1: the plain name).
    pub fn hint(&self, wanted: &Path) -> u32 {
        self.next_suffix
            .get(&self.fingerprint(wanted))
            .copied()
            .unwrap_or(1)
    }

    /// Remembers the first suffix of `wanted` not known to be taken.
    pub fn set_hint(&mut self, wanted: &Path, hint: u32) {
        let f = self.fingerprint(wanted);
        if hint > 1 {
            self.next_suffix.insert(f, hint);
        } else {
            self.next_suffix.remove(&f);
        }
    }

    /// Takes the first free name for a file wanted at `wanted`: the plain name, else `-2`, `-3`,
    /// ... A name is free when the index does not hold it and `occupied` (what is on disk) says
    /// nothing has it. Answers the name and its suffix number (1 for the plain name).
    pub fn pick(&mut self, wanted: &Path, occupied: impl Fn(&Path) -> bool) -> (PathBuf, u32) {
        let mut n = self.hint(wanted);
        let mut rel = if n > 1 {
            with_suffix(wanted, n)
        } else {
            wanted.to_path_buf()
        };
        while self.is_taken(&rel) || occupied(&rel) {
            n += 1;
            rel = with_suffix(wanted, n);
        }
        self.take(&rel);
        // The hint only skips names that are all taken: a gap (a file that is not ours, or one an
        // earlier crawl saved and this one may still claim) is looked at again next time.
        let name = |k: u32| {
            if k == 1 {
                wanted.to_path_buf()
            } else {
                with_suffix(wanted, k)
            }
        };
        let mut hint = self.hint(wanted);
        while self.is_taken(&name(hint)) {
            hint += 1;
        }
        self.set_hint(wanted, hint);
        (rel, n)
    }

    /// Gives back a name [`pick`](Self::pick) answered (`n` its suffix number) whose file could
    /// not be written, so that the next image wanted there can have it.
    pub fn unpick(&mut self, wanted: &Path, rel: &Path, n: u32) {
        self.give_back(rel);
        let hint = self.hint(wanted).min(n);
        self.set_hint(wanted, hint);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn content_keys_come_from_the_hex_hash_or_from_hashing_what_is_not_hex() {
        let hex = "9f86d081884c7d659a2feaa0c55ad015a3bf4f1b2b0b822cd15d6c15b0f00a08";
        assert_eq!(
            sha_key(hex),
            [
                0x9f, 0x86, 0xd0, 0x81, 0x88, 0x4c, 0x7d, 0x65, 0x9a, 0x2f, 0xea, 0xa0, 0xc5, 0x5a,
                0xd0, 0x15
            ]
        );
        assert_eq!(sha_key(&hex.to_uppercase()), sha_key(hex));
        let odd = "not a hash at all, but long enough to be cut";
        assert_eq!(sha_key(odd), sha_key(odd));
        assert_ne!(
            sha_key(odd),
            sha_key("another one, also long enough to be cut")
        );
        assert_ne!(
            sha_key("é"),
            [0; 16],
            "short or non-ASCII text is hashed too"
        );
    }

    #[test]
    fn the_name_index_remembers_taken_paths_and_suffix_hints() {
        let mut index = Index::default();
        let a = Path::new("host/a.png");
        assert!(!index.is_taken(a));
        index.take(a);
        assert!(index.is_taken(a));
        assert!(!index.is_taken(Path::new("host/b.png")));
        assert_eq!(index.hint(a), 1);
        index.set_hint(a, 3);
        assert_eq!(index.hint(a), 3);
        index.set_hint(a, 1);
        assert!(
            index.next_suffix.is_empty(),
            "a plain-name hint keeps no entry"
        );
        index.give_back(a);
        assert!(!index.is_taken(a));
    }

    #[test]
    fn names_get_suffixes_in_order_and_fold_case_and_unicode_forms() {
        let mut index = Index::default();
        let wanted = Path::new("site/Cat.jpg");
        let nothing = |_: &Path| false;
        assert_eq!(
            index.pick(wanted, nothing),
            (PathBuf::from("site/Cat.jpg"), 1)
        );
        assert_eq!(
            index.pick(wanted, nothing),
            (PathBuf::from("site/Cat-2.jpg"), 2)
        );
        // One name for a file system that folds case, or one that folds NFC and NFD.
        let lower = index.pick(Path::new("site/cat.jpg"), nothing);
        assert_eq!(lower, (PathBuf::from("site/cat-3.jpg"), 3));
        index.pick(Path::new("site/caf\u{e9}.jpg"), nothing);
        let nfd = index.pick(Path::new("site/cafe\u{301}.jpg"), nothing);
        assert_eq!(nfd.1, 2, "{nfd:?}");
        // Something on disk that the index does not know of is not overwritten.
        let on_disk = |p: &Path| p == Path::new("site/dog.jpg");
        assert_eq!(index.pick(Path::new("site/dog.jpg"), on_disk).1, 2);
    }

    #[test]
    fn a_name_given_back_is_picked_again() {
        let mut index = Index::default();
        let wanted = Path::new("a.png");
        let nothing = |_: &Path| false;
        index.pick(wanted, nothing);
        let (second, n) = index.pick(wanted, nothing);
        assert_eq!(second, PathBuf::from("a-2.png"));
        index.unpick(wanted, &second, n);
        assert_eq!(index.pick(wanted, nothing), (PathBuf::from("a-2.png"), 2));
        assert_eq!(index.pick(wanted, nothing), (PathBuf::from("a-3.png"), 3));
    }
}
