//! DiskWriter: the only place that touches the file system, run as a `SyncArbiter` so blocking
//! writes never stall an event loop. It owns the output directory: temporary files, the final image
//! files (named from the template, made unique, deduplicated by SHA-256) and the record files.
//!
//! Takes: [`OpenOutput`], [`AppendTemp`], [`WriteImage`], [`DiscardTemp`], [`CommitState`],
//! [`ExportManifest`], [`CloseOutput`], [`AppendRecords`], [`WriteFileAtomic`]. Answers each caller directly;
//! reports to nobody else. Its handlers run in parallel on `writers` threads; they share the index
//! of saved files behind one mutex, held only to pick a name, and the state database behind
//! another (one commit at a time).
//!
//! The order of truth for an image: its bytes are written whole to a temporary file, the batch
//! that records it is synced and committed, and only then is the file renamed to its final name.
//! A crash before the commit leaves a temporary file (removed at the next start, the image is
//! fetched again); a crash between commit and rename is finished at the next start.
//!
//! A `SyncArbiter` mailbox is unbounded: callers bound what they send by awaiting each `send`.

use std::collections::{HashMap, HashSet};
use std::fs::{self, File, OpenOptions};
use std::hash::{BuildHasher, Hasher};
use std::io::{self, BufRead, BufReader, Write};
use std::os::unix::fs::OpenOptionsExt;
use std::panic::{catch_unwind, AssertUnwindSafe};
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, RwLock};

use actix::prelude::*;
use bytes::Bytes;
use sha2::{Digest, Sha256};
use url::Url;

use crate::error::{Error, Failure, FailureKind};
use crate::paths::{hash_folded, shorten_component, with_suffix, FilenameTemplate, NameFields};
use crate::records::ManifestRow;
use crate::state::{self, LoadSpilled, Loaded, Resume, StateDb, StateOp, STATE_DB};
use crate::Kind;

/// Subdirectories of the temporary directory the temporary files are spread over.
const TMP_SPREAD: u64 = 16;

/// Name of the manifest file in `out_dir`.
pub const MANIFEST_FILE: &str = "manifest.jsonl";
/// Name of the error records file in `out_dir`.
pub const ERRORS_FILE: &str = "errors.jsonl";
/// Name of the skipped-URL records file in `out_dir`.
pub const SKIPPED_FILE: &str = "skipped.jsonl";
/// Name of the statistics file in `out_dir`.
pub const STATS_FILE: &str = "stats.json";
/// imgcrawl's own directory inside `out_dir` (state and temporary files).
pub const STATE_DIR: &str = ".imgcrawl";

/// Prepares `out_dir` and its state database: creates them (or, with `fresh`, first removes the
/// state and records of an earlier crawl), finishes the renames a crash interrupted, removes
/// leftover temporary files, re-queues saved images whose file is gone, imports the manifest of an
/// output directory that has none, and rewrites `manifest.jsonl` from the state. Answers with what
/// the earlier runs left.
#[derive(Debug, Message)]
#[rtype(result = "Result<Resume, Error>")]
pub struct OpenOutput {
    /// Start over: forget the earlier crawl's state and records (image files are kept).
    pub fresh: bool,
    /// The crawl's identity (see [`state::fingerprint`]); a state of another crawl is refused.
    pub fingerprint: String,
    /// Waiting jobs of each kind to read into memory; the others stay spilled in the database.
    pub in_memory: usize,
}

/// Makes a batch of state changes durable: syncs the new files, commits the batch in one
/// transaction, then moves the saved images' files into place. Then reads back the spilled jobs
/// asked for (in the same turn, so that the batch's own spilled jobs are there to read); answers
/// with them.
#[derive(Debug, Message)]
#[rtype(result = "Result<Loaded, Error>")]
pub struct CommitState {
    /// The changes, in order.
    pub ops: Vec<StateOp>,
    /// Spilled pages to read back.
    pub load_pages: LoadSpilled,
    /// Spilled images to read back.
    pub load_images: LoadSpilled,
}

/// The crawl has ended: close the state database, stop writing temporary files and remove this
/// crawl's (downloads abandoned at a stop or after a disk error, whose state was never committed).
#[derive(Debug, Message)]
#[rtype(result = "()")]
pub struct CloseOutput;

/// Rewrites `manifest.jsonl` from the state database; answers with the number of rows.
#[derive(Debug, Message)]
#[rtype(result = "Result<usize, Error>")]
pub struct ExportManifest;

/// Appends bytes to the temporary file `tmp` (created on first use). Used for large downloads.
#[derive(Debug, Message)]
#[rtype(result = "Result<(), Failure>")]
pub struct AppendTemp {
    /// Temporary file id, unique within the crawl.
    pub tmp: u64,
    /// Bytes to append, in order: the chunks as they arrived, so that they are never copied
    /// into one buffer.
    pub data: Vec<Bytes>,
}

/// Removes the temporary file `tmp`, if any (an abandoned download).
#[derive(Debug, Message)]
#[rtype(result = "()")]
pub struct DiscardTemp {
    /// Temporary file id.
    pub tmp: u64,
}

/// Everything needed to name an image file.
#[derive(Debug, Clone)]
pub struct ImageName {
    /// The image's host.
    pub host: String,
    /// The host of the page it was found on.
    pub page_host: String,
    /// The human name.
    pub name: String,
    /// The URL's file stem.
    pub stem: String,
    /// The URL's directory (see [`crate::urls::dir_path`]).
    pub dir: String,
    /// The extension of the real type.
    pub ext: &'static str,
}

/// Stores a complete, verified download: writes the last bytes to its temporary file, then either
/// renames it to a unique final name or, if the same bytes are already saved, drops it.
#[derive(Debug, Message)]
#[rtype(result = "Result<Stored, Failure>")]
pub struct WriteImage {
    /// Temporary file id.
    pub tmp: u64,
    /// Bytes not yet appended (for small images: all of them), in order, as they arrived.
    pub data: Vec<Bytes>,
    /// Hex SHA-256 of all the bytes.
    pub sha256: String,
    /// How to name the file.
    pub name: ImageName,
}

/// Where a stored image ends up.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Stored {
    /// The file holding the bytes, relative to `out_dir`.
    pub path: PathBuf,
    /// Whether those bytes were already there (saved earlier under another URL).
    pub duplicate: bool,
    /// The complete temporary file (relative to `out_dir`) that [`CommitState`] moves to `path`
    /// once the image's state is committed; `None` when no file has to move.
    pub temp: Option<PathBuf>,
}

/// Which record file to append to.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RecordFile {
    /// `manifest.jsonl`.
    Manifest,
    /// `errors.jsonl`.
    Errors,
    /// `skipped.jsonl`.
    Skipped,
}

/// Appends complete lines to a record file.
#[derive(Debug, Message)]
#[rtype(result = "Result<(), Error>")]
pub struct AppendRecords {
    /// The file.
    pub file: RecordFile,
    /// One or more complete lines, each ending in `\n`.
    pub text: String,
}

/// Replaces a file in `out_dir` atomically (write a temporary file, then rename).
#[derive(Debug, Message)]
#[rtype(result = "Result<(), Error>")]
pub struct WriteFileAtomic {
    /// File name relative to `out_dir`.
    pub name: &'static str,
    /// New contents.
    pub contents: String,
}

/// What the writer threads share: where things go, and which files already hold which bytes.
#[derive(Debug)]
struct Shared {
    /// The output directory.
    out_dir: PathBuf,
    /// Where temporary files live (inside `out_dir`, so renames stay on one file system).
    tmp_dir: PathBuf,
    /// Distinguishes this crawl's temporary files from those of another process.
    token: String,
    /// The `output.filename` template.
    template: FilenameTemplate,
    /// Saved files by content hash, and every path taken.
    index: Mutex<Index>,
    /// The state database, opened by [`OpenOutput`].
    state: Mutex<Option<StateDb>>,
    /// Set by [`CloseOutput`]: no temporary file is written any more.
    temp_gate: RwLock<bool>,
    /// Directories this crawl created or found.
    dirs: Mutex<Dirs>,
    /// Longest file name the output's file system takes, in bytes (`pathconf`; 255 when unknown).
    name_max: std::sync::atomic::AtomicUsize,
    /// `.imgcrawl/lock`, locked while this crawl runs so that no second crawl works in the same
    /// output directory (released when closed, by [`CloseOutput`] or the process's end).
    lock: Mutex<Option<File>>,
}

/// Directories this crawl created or found, so that each is created once.
#[derive(Debug, Default)]
struct Dirs {
    /// Each directory, and whether this crawl created it.
    made: HashMap<PathBuf, bool>,
}

/// The first 16 bytes of a SHA-256, the key of a saved file's bytes (a collision between two
/// different images is as unlikely as in the seen sets: 2^-64 at four billion images).
type ShaKey = [u8; 16];

/// The key of the hex SHA-256 `hex`. A value that is not hex (a hand-edited manifest) is hashed
/// instead, so it still names one set of bytes.
fn sha_key(hex: &str) -> ShaKey {
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
struct Index {
    /// Saved files by content.
    by_sha: HashMap<ShaKey, Box<Path>>,
    /// Every path in use, as a fingerprint. Two paths with the same fingerprint only cost the
    /// second a suffix it did not need.
    taken: HashSet<u64>,
    /// Files an earlier crawl in this directory saved, by content, when this one started over
    /// (`--fresh`): the first image with the same bytes takes the file over instead of a copy.
    reusable: HashMap<ShaKey, Box<Path>>,
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

    fn is_taken(&self, path: &Path) -> bool {
        let f = self.fingerprint(path);
        self.taken.contains(&f) || self.taken.contains(&Self::dir_of(f))
    }

    fn is_taken_file(&self, path: &Path) -> bool {
        self.taken.contains(&self.fingerprint(path))
    }

    fn is_known_dir(&self, path: &Path) -> bool {
        self.taken.contains(&self.dir_fingerprint(path))
    }

    fn take_dir(&mut self, path: &Path) {
        let f = self.dir_fingerprint(path);
        self.taken.insert(f);
    }

    fn take(&mut self, path: &Path) {
        let f = self.fingerprint(path);
        self.taken.insert(f);
    }

    fn give_back(&mut self, path: &Path) {
        let f = self.fingerprint(path);
        self.taken.remove(&f);
    }

    /// The first suffix of `wanted` not known to be taken (1: the plain name).
    fn hint(&self, wanted: &Path) -> u32 {
        self.next_suffix
            .get(&self.fingerprint(wanted))
            .copied()
            .unwrap_or(1)
    }

    fn set_hint(&mut self, wanted: &Path, hint: u32) {
        let f = self.fingerprint(wanted);
        if hint > 1 {
            self.next_suffix.insert(f, hint);
        } else {
            self.next_suffix.remove(&f);
        }
    }
}

/// One DiskWriter thread's actor; all threads share the same state (names taken, hashes stored).
#[derive(Debug, Clone)]
pub struct DiskWriter {
    shared: Arc<Shared>,
}

impl DiskWriter {
    /// A writer for `out_dir`, naming files with `template`. Clone it into the SyncArbiter factory.
    pub fn new(out_dir: PathBuf, template: FilenameTemplate) -> Self {
        let token = format!(
            "{}-{:x}",
            std::process::id(),
            std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .map_or(0, |d| d.as_nanos())
        );
        DiskWriter {
            shared: Arc::new(Shared {
                tmp_dir: out_dir.join(STATE_DIR).join("tmp"),
                out_dir,
                token,
                template,
                index: Mutex::new(Index::default()),
                state: Mutex::new(None),
                temp_gate: RwLock::new(false),
                dirs: Mutex::new(Dirs::default()),
                name_max: std::sync::atomic::AtomicUsize::new(255),
                lock: Mutex::new(None),
            }),
        }
    }

    /// Where the temporary file `tmp` goes: spread over [`TMP_SPREAD`] subdirectories, so that the
    /// writer threads do not all create and rename files in one directory (its lock was the
    /// busiest spot in the kernel in the benchmark).
    fn tmp_path(&self, tmp: u64) -> PathBuf {
        self.shared
            .tmp_dir
            .join((tmp % TMP_SPREAD).to_string())
            .join(format!("{}-{tmp}.part", self.shared.token))
    }

    /// Creates `dir` and its parents unless this crawl already did.
    fn ensure_dir(&self, dir: &Path) -> io::Result<()> {
        let mut dirs = self.shared.dirs.lock().unwrap_or_else(|p| p.into_inner());
        if !dirs.made.contains_key(dir) {
            let existed = dir.is_dir();
            fs::create_dir_all(dir)?;
            dirs.made.insert(dir.to_path_buf(), !existed);
        }
        Ok(())
    }

    /// Whether this crawl created `dir` (rather than finding it).
    fn created_here(&self, dir: &Path) -> bool {
        let dirs = self.shared.dirs.lock().unwrap_or_else(|p| p.into_inner());
        dirs.made.get(dir).copied().unwrap_or(false)
    }

    /// Every temporary file in the temporary directory and its subdirectories.
    fn temp_files(&self) -> io::Result<Vec<PathBuf>> {
        let mut files = Vec::new();
        for entry in fs::read_dir(&self.shared.tmp_dir)? {
            let path = entry?.path();
            if fs::symlink_metadata(&path)?.file_type().is_symlink() {
                // Planted: never followed, and not ours to remove.
                continue;
            }
            if path.is_dir() {
                for inner in fs::read_dir(&path)? {
                    files.push(inner?.path());
                }
            } else {
                files.push(path);
            }
        }
        files.retain(|p| p.extension().is_some_and(|e| e == "part"));
        Ok(files)
    }

    fn index(&self) -> std::sync::MutexGuard<'_, Index> {
        // A poisoned lock means another writer panicked mid-update; the index itself (two maps
        // updated together after the rename) is still usable.
        self.shared.index.lock().unwrap_or_else(|p| p.into_inner())
    }

    fn state(&self) -> std::sync::MutexGuard<'_, Option<StateDb>> {
        self.shared.state.lock().unwrap_or_else(|p| p.into_inner())
    }

    fn open_output(&self, m: &OpenOutput) -> Result<Resume, Error> {
        let out = &self.shared.out_dir;
        let state_dir = out.join(STATE_DIR);
        fs::create_dir_all(out).map_err(|e| Error::io("cannot create output directory", out, e))?;
        refuse_symlink(&state_dir)?;
        fs::create_dir_all(&state_dir)
            .map_err(|e| Error::io("cannot create output directory", &state_dir, e))?;
        // Before anything is removed or written: another crawl may be working here.
        *self.shared.lock.lock().unwrap_or_else(|p| p.into_inner()) = Some(lock_output(out)?);
        refuse_symlink(&self.shared.tmp_dir)?;
        for name in [
            STATE_DB,
            "state.db-wal",
            "state.db-shm",
            "manifest.jsonl.part",
        ] {
            refuse_symlink(&state_dir.join(name))?;
        }
        for name in [MANIFEST_FILE, ERRORS_FILE, SKIPPED_FILE, STATS_FILE] {
            refuse_symlink(&out.join(name))?;
        }
        fs::create_dir_all(&self.shared.tmp_dir)
            .map_err(|e| Error::io("cannot create output directory", out, e))?;
        let db_path = state_dir.join(STATE_DB);
        let mut reusable = HashMap::new();
        if m.fresh {
            // A state that cannot be read (corrupt) is simply replaced: only the files it names
            // are lost as candidates for reuse.
            let saved = if db_path.exists() {
                state::read_saved(&db_path).unwrap_or_else(|e| {
                    log::warn!("starting over without reading the old state: {e}");
                    Vec::new()
                })
            } else {
                Vec::new()
            };
            for row in saved {
                let intact = safe_relative(&row.path)
                    && fs::metadata(out.join(&row.path)).is_ok_and(|f| f.len() == row.bytes);
                if row.duplicate_of.is_none() && intact {
                    reusable.insert(sha_key(&row.sha256), row.path.into_boxed_path());
                }
            }
            for name in [STATE_DB, "state.db-wal", "state.db-shm"] {
                remove_if_there(&state_dir.join(name))?;
            }
            for name in [MANIFEST_FILE, ERRORS_FILE, SKIPPED_FILE, STATS_FILE] {
                remove_if_there(&out.join(name))?;
            }
        }
        let mut db = StateDb::open(&db_path, &m.fingerprint).map_err(|why| {
            Error::Resume(format!(
                "{} cannot be resumed: {why}. Run with --fresh to start over there, or choose another output directory",
                out.display()
            ))
        })?;
        let db_err =
            |e: rusqlite::Error| Error::State(format!("crawl state {}: {e}", db_path.display()));
        for (temp, dest) in db.pending_renames().map_err(db_err)? {
            if !(safe_relative(&temp) && safe_relative(&dest))
                || through_symlink(out, &temp)
                || through_symlink(out, &dest)
            {
                log::warn!(
                    "{}: ignoring a recorded move of {} to {} that leaves the output directory",
                    db_path.display(),
                    temp.display(),
                    dest.display()
                );
                continue;
            }
            let (temp, dest) = (out.join(temp), out.join(dest));
            if !dest.exists() && temp.exists() {
                if let Some(parent) = dest.parent() {
                    fs::create_dir_all(parent)
                        .map_err(|e| Error::io("cannot create directory", parent, e))?;
                }
                fs::rename(&temp, &dest)
                    .map_err(|e| Error::io("cannot move file into place", &dest, e))?;
            }
        }
        db.clear_temps().map_err(db_err)?;
        self.shared
            .name_max
            .store(name_max(out), std::sync::atomic::Ordering::Relaxed);
        self.remove_temp_files()?;
        let mut resume = db.resume(m.in_memory).map_err(db_err)?;
        if resume.is_empty() {
            for name in [ERRORS_FILE, SKIPPED_FILE] {
                File::create(out.join(name))
                    .map_err(|e| Error::io("cannot write", out.join(name), e))?;
            }
            let imported = import_ops(self.read_manifest()?);
            if !imported.is_empty() {
                db.apply(&imported).map_err(db_err)?;
                resume = db.resume(m.in_memory).map_err(db_err)?;
            }
        }
        let lost = self.requeue_missing(&mut db, &resume).map_err(db_err)?;
        if lost > 0 {
            log::warn!("{lost} saved images have lost their file; they will be downloaded again");
            // Read again: they wait now, in their place in the queue.
            resume = db.resume(m.in_memory).map_err(db_err)?;
        }
        let mut index = self.index();
        index.reusable = reusable;
        for row in &resume.saved {
            if row.duplicate_of.is_none() {
                index
                    .by_sha
                    .insert(sha_key(&row.sha256), row.path.clone().into_boxed_path());
                index.take(&row.path);
            }
        }
        drop(index);
        *self.state() = Some(db);
        self.export_manifest()?;
        Ok(resume)
    }

    /// Removes this and earlier crawls' temporary files.
    fn remove_temp_files(&self) -> Result<(), Error> {
        let tmp_dir = &self.shared.tmp_dir;
        for path in self
            .temp_files()
            .map_err(|e| Error::io("cannot read", tmp_dir, e))?
        {
            fs::remove_file(&path)
                .map_err(|e| Error::io("cannot remove leftover temporary file", &path, e))?;
        }
        for k in 0..TMP_SPREAD {
            let dir = tmp_dir.join(k.to_string());
            self.ensure_dir(&dir)
                .map_err(|e| Error::io("cannot create directory", &dir, e))?;
        }
        Ok(())
    }

    /// Saved images whose file is missing or has another size (deleted by hand, or a rename lost
    /// with a power cut) go back to waiting, so that they are downloaded again. Rows whose bytes
    /// another process of a shared crawl holds have no file here to check.
    fn requeue_missing(&self, db: &mut StateDb, resume: &Resume) -> rusqlite::Result<usize> {
        let out = &self.shared.out_dir;
        let lost: Vec<Url> = resume
            .saved
            .iter()
            .filter(|row| row.duplicate_on.is_none())
            .filter(|row| {
                !(safe_relative(&row.path)
                    && fs::metadata(out.join(&row.path)).is_ok_and(|m| m.len() == row.bytes))
            })
            .filter_map(|row| Url::parse(&row.url).ok())
            .collect();
        db.requeue_images(&lost)?;
        Ok(lost.len())
    }

    fn export_manifest(&self) -> Result<usize, Error> {
        match self.state().as_ref() {
            Some(db) => db.write_manifest(&self.shared.out_dir),
            None => Err(Error::State("the state database is not open".into())),
        }
    }

    fn commit_state(&self, m: &CommitState) -> Result<Loaded, Error> {
        let out = &self.shared.out_dir;
        let moves: Vec<(PathBuf, PathBuf)> = m
            .ops
            .iter()
            .filter_map(|op| match op {
                StateOp::ImageSaved {
                    row, temp: Some(t), ..
                } => Some((out.join(t), out.join(&row.path))),
                _ => None,
            })
            .collect();
        if !moves.is_empty() {
            sync_files(out, moves.iter().map(|(t, _)| t.as_path()))?;
        }
        let mut state = self.state();
        let db = state
            .as_mut()
            .ok_or_else(|| Error::State("the state database is not open".into()))?;
        let db_path = out.join(STATE_DIR).join(STATE_DB);
        db.apply(&m.ops).map_err(|e| {
            Error::State(format!(
                "cannot commit the crawl state in {}: {e}",
                db_path.display()
            ))
        })?;
        let read = |e: rusqlite::Error| {
            Error::State(format!(
                "cannot read waiting jobs from {}: {e}",
                db_path.display()
            ))
        };
        let mut loaded = db.load_spilled(Kind::Page, m.load_pages).map_err(read)?;
        loaded.images = db
            .load_spilled(Kind::Image, m.load_images)
            .map_err(read)?
            .images;
        drop(state);
        for (temp, dest) in moves {
            if let Some(parent) = dest.parent() {
                self.ensure_dir(parent)
                    .map_err(|e| Error::io("cannot create directory", parent, e))?;
            }
            fs::rename(&temp, &dest)
                .map_err(|e| Error::io("cannot move file into place", &dest, e))?;
        }
        Ok(loaded)
    }

    /// Rows of an earlier manifest whose file is still there with its recorded size.
    fn read_manifest(&self) -> Result<Vec<ManifestRow>, Error> {
        let path = self.shared.out_dir.join(MANIFEST_FILE);
        let file = match File::open(&path) {
            Ok(f) => f,
            Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(Vec::new()),
            Err(e) => return Err(Error::io("cannot read", &path, e)),
        };
        let mut rows = Vec::new();
        for (n, line) in BufReader::new(file).lines().enumerate() {
            let line = line.map_err(|e| Error::io("cannot read", &path, e))?;
            match serde_json::from_str::<ManifestRow>(&line) {
                Ok(row) if safe_relative(&row.path) => {
                    let on_disk = fs::metadata(self.shared.out_dir.join(&row.path));
                    if on_disk.is_ok_and(|m| m.len() == row.bytes) {
                        rows.push(row);
                    }
                }
                _ if line.trim().is_empty() => {}
                _ => log::warn!(
                    "{}: line {} is not a manifest row; ignored",
                    path.display(),
                    n + 1
                ),
            }
        }
        Ok(rows)
    }

    fn append_temp(&self, tmp: u64, data: &[Bytes]) -> io::Result<()> {
        // Held while writing, so that CloseOutput never misses a file being written.
        let closed = self
            .shared
            .temp_gate
            .read()
            .unwrap_or_else(|p| p.into_inner());
        if *closed {
            return Err(io::Error::other("the crawl has ended"));
        }
        let mut f = OpenOptions::new()
            .create(true)
            .append(true)
            .custom_flags(libc::O_NOFOLLOW)
            .open(self.tmp_path(tmp))?;
        write_all_chunks(&mut f, data)
    }

    fn write_image(&self, m: &WriteImage) -> Result<Stored, Failure> {
        let tmp = self.tmp_path(m.tmp);
        let wanted = self.shared.template.render(&NameFields {
            host: &m.name.host,
            page_host: &m.name.page_host,
            name: &m.name.name,
            stem: &m.name.stem,
            dir: &m.name.dir,
            sha256: &m.sha256,
            ext: m.name.ext,
        });
        let key = sha_key(&m.sha256);
        let mut index = self.index();
        // Copies are recognised before anything is written: their bytes never touch the disk.
        if let Some(existing) = index.by_sha.get(&key) {
            let path = existing.to_path_buf();
            drop(index);
            let _ = fs::remove_file(&tmp);
            return Ok(Stored {
                path,
                duplicate: true,
                temp: None,
            });
        }
        if let Some(path) = index.reusable.remove(&key) {
            // The file an earlier crawl (started over with --fresh) saved with these bytes.
            index.by_sha.insert(key, path.clone());
            drop(index);
            let _ = fs::remove_file(&tmp);
            return Ok(Stored {
                path: path.into_path_buf(),
                duplicate: false,
                temp: None,
            });
        }
        let wanted = match self.place(&mut index, &wanted, &m.sha256, m.name.ext) {
            Ok(w) => w,
            Err(failure) => {
                drop(index);
                let _ = fs::remove_file(&tmp);
                return Err(failure);
            }
        };
        // A directory this crawl created holds only files it knows of (all in `taken`), so the
        // names in it need no look at the disk.
        let known_dir = wanted
            .parent()
            .is_some_and(|dir| self.created_here(&self.shared.out_dir.join(dir)));
        let mut rel = wanted.clone();
        let mut n = index.hint(&wanted);
        if n > 1 {
            rel = with_suffix(&wanted, n);
        }
        while index.is_taken(&rel) || (!known_dir && self.occupied(&rel)) {
            n += 1;
            rel = with_suffix(&wanted, n);
        }
        index.take(&rel);
        index.by_sha.insert(key, rel.clone().into_boxed_path());
        // The hint only skips names that are all taken: a gap (a file that is not ours, or one an
        // earlier crawl saved and this one may still claim) is looked at again next time.
        let name = |k: u32| {
            if k == 1 {
                wanted.clone()
            } else {
                with_suffix(&wanted, k)
            }
        };
        let mut hint = index.hint(&wanted);
        while index.is_taken(&name(hint)) {
            hint += 1;
        }
        index.set_hint(&wanted, hint);
        drop(index);
        // Written outside the index lock, so the other writer threads name files meanwhile.
        if let Err(e) = self.append_temp(m.tmp, &m.data) {
            let mut index = self.index();
            index.give_back(&rel);
            index.by_sha.remove(&key);
            let first_free = if rel == wanted { 1 } else { n };
            let hint = index.hint(&wanted).min(first_free);
            index.set_hint(&wanted, hint);
            drop(index);
            let _ = fs::remove_file(&tmp);
            return Err(Failure::new(
                FailureKind::Disk,
                format!("cannot write temporary file: {e}"),
            ));
        }
        let temp = Some(
            tmp.strip_prefix(&self.shared.out_dir)
                .map(Path::to_path_buf)
                .unwrap_or(tmp),
        );
        Ok(Stored {
            path: rel,
            duplicate: false,
            temp,
        })
    }

    /// Whether something (a file, a directory, a symbolic link, even a dangling one) has the
    /// name `rel` in `out_dir`.
    fn occupied(&self, rel: &Path) -> bool {
        fs::symlink_metadata(self.shared.out_dir.join(rel)).is_ok()
    }

    /// Where an image wanted at `wanted` can go: every component shortened to what the file system
    /// takes, and its directories made (or found) as real directories. A directory component that
    /// cannot be one (a file of this crawl or another has that name, a symbolic link, a directory
    /// that cannot be written, a name too long) gets `-2`, `-3`, ... instead; when nothing works,
    /// the image goes to `_unplaced/` under a name from its hash. Fails only that image when even
    /// that cannot be made, and the crawl (disk full or read-only) when the disk is the trouble.
    fn place(
        &self,
        index: &mut Index,
        wanted: &Path,
        sha256: &str,
        ext: &str,
    ) -> Result<PathBuf, Failure> {
        let max = self
            .shared
            .name_max
            .load(std::sync::atomic::Ordering::Relaxed)
            .saturating_sub(12)
            .clamp(16, crate::paths::MAX_COMPONENT_BYTES);
        let short: PathBuf = wanted
            .components()
            .map(|c| shorten_component(&c.as_os_str().to_string_lossy(), max))
            .collect();
        let file = short.file_name().map(Path::new).unwrap_or(Path::new("_"));
        let mut why = String::new();
        if let Some(dir) =
            self.make_dirs(index, short.parent().unwrap_or(Path::new("")), &mut why)?
        {
            return Ok(dir.join(file));
        }
        let hash = &sha256[..sha256.len().min(16)];
        let fallback = Path::new("_unplaced");
        if let Some(dir) = self.make_dirs(index, fallback, &mut why)? {
            log::warn!(
                "cannot make a directory for {} ({why}); saving it as {}",
                wanted.display(),
                dir.join(format!("{hash}.{ext}")).display()
            );
            return Ok(dir.join(format!("{hash}.{ext}")));
        }
        Err(Failure::new(
            FailureKind::Name,
            format!("no usable name for {}: {why}", wanted.display()),
        ))
    }

    /// Makes (or finds) the directories of `rel`, giving a component that cannot be a directory
    /// a suffix; `None` when some component cannot be made at all (the reason goes to `why`).
    fn make_dirs(
        &self,
        index: &mut Index,
        rel: &Path,
        why: &mut String,
    ) -> Result<Option<PathBuf>, Failure> {
        let mut dir = PathBuf::new();
        for comp in rel.components() {
            let comp = comp.as_os_str().to_string_lossy();
            let mut found = None;
            for n in 1..=20u32 {
                let candidate = if n == 1 {
                    dir.join(comp.as_ref())
                } else {
                    dir.join(format!("{comp}-{n}"))
                };
                if self.usable_dir(index, &candidate, why)? {
                    found = Some(candidate);
                    break;
                }
            }
            match found {
                Some(d) => dir = d,
                None => return Ok(None),
            }
        }
        Ok(Some(dir))
    }

    /// Whether `rel` is, or can now be made, a real directory of this crawl's output that can be
    /// written: not a file of this crawl, not a symbolic link, not something else on disk.
    fn usable_dir(&self, index: &mut Index, rel: &Path, why: &mut String) -> Result<bool, Failure> {
        if index.is_taken_file(rel) {
            *why = format!("{} is a file", rel.display());
            return Ok(false);
        }
        if index.is_known_dir(rel) {
            return Ok(true);
        }
        let full = self.shared.out_dir.join(rel);
        match fs::symlink_metadata(&full) {
            Ok(m) if m.file_type().is_symlink() => {
                *why = format!("{} is a symbolic link, never followed", rel.display());
                Ok(false)
            }
            Ok(m) if m.is_dir() => {
                if writable(&full) {
                    index.take_dir(rel);
                    self.note_dir(&full, false);
                    Ok(true)
                } else {
                    *why = format!("{} cannot be written", rel.display());
                    Ok(false)
                }
            }
            Ok(_) => {
                *why = format!("{} is a file", rel.display());
                Ok(false)
            }
            Err(_) => match fs::create_dir(&full) {
                Ok(()) => {
                    index.take_dir(rel);
                    self.note_dir(&full, true);
                    Ok(true)
                }
                Err(e) if is_disk_trouble(&e) => Err(Failure::new(
                    FailureKind::Disk,
                    format!("cannot create directory {}: {e}", full.display()),
                )),
                Err(e) => {
                    *why = format!("cannot create {}: {e}", rel.display());
                    Ok(false)
                }
            },
        }
    }

    /// Remembers a directory as made (or found) by this crawl.
    fn note_dir(&self, dir: &Path, created: bool) {
        let mut dirs = self.shared.dirs.lock().unwrap_or_else(|p| p.into_inner());
        dirs.made.entry(dir.to_path_buf()).or_insert(created);
    }

    fn append_records(&self, m: &AppendRecords) -> Result<(), Error> {
        let name = match m.file {
            RecordFile::Manifest => MANIFEST_FILE,
            RecordFile::Errors => ERRORS_FILE,
            RecordFile::Skipped => SKIPPED_FILE,
        };
        let path = self.shared.out_dir.join(name);
        let mut f = OpenOptions::new()
            .create(true)
            .append(true)
            .custom_flags(libc::O_NOFOLLOW)
            .open(&path)
            .map_err(|e| Error::io("cannot open", &path, e))?;
        f.write_all(m.text.as_bytes())
            .map_err(|e| Error::io("cannot write", &path, e))
    }

    fn write_atomic(&self, m: &WriteFileAtomic) -> Result<(), Error> {
        let path = self.shared.out_dir.join(m.name);
        let tmp = self
            .shared
            .tmp_dir
            .join(format!("{}-{}.part", self.shared.token, m.name));
        let mut f = OpenOptions::new()
            .write(true)
            .create(true)
            .truncate(true)
            .custom_flags(libc::O_NOFOLLOW)
            .open(&tmp)
            .map_err(|e| Error::io("cannot write", &tmp, e))?;
        f.write_all(m.contents.as_bytes())
            .map_err(|e| Error::io("cannot write", &tmp, e))?;
        f.sync_all()
            .map_err(|e| Error::io("cannot sync", &tmp, e))?;
        fs::rename(&tmp, &path).map_err(|e| Error::io("cannot replace", &path, e))
    }
}

/// Writes `chunks` in order with as few system calls as the kernel allows (one `writev` for a
/// typical image), going on after a partial write.
fn write_all_chunks(f: &mut File, chunks: &[Bytes]) -> io::Result<()> {
    let mut slices: Vec<io::IoSlice<'_>> = chunks
        .iter()
        .filter(|c| !c.is_empty())
        .map(|c| io::IoSlice::new(c))
        .collect();
    let mut rest = &mut slices[..];
    while !rest.is_empty() {
        match f.write_vectored(rest) {
            Ok(0) => return Err(io::ErrorKind::WriteZero.into()),
            Ok(n) => io::IoSlice::advance_slices(&mut rest, n),
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(e) => return Err(e),
        }
    }
    Ok(())
}

/// Refuses a symbolic link where imgcrawl writes its own files: it is never followed.
fn refuse_symlink(path: &Path) -> Result<(), Error> {
    match fs::symlink_metadata(path) {
        Ok(m) if m.file_type().is_symlink() => Err(Error::Resume(format!(
            "{} is a symbolic link; imgcrawl never writes through one inside its output directory. Remove it, or choose another output directory",
            path.display()
        ))),
        _ => Ok(()),
    }
}

/// Whether some directory on the way from `out` to `rel` is a symbolic link.
fn through_symlink(out: &Path, rel: &Path) -> bool {
    let mut p = out.to_path_buf();
    let Some(parent) = rel.parent() else {
        return false;
    };
    parent.components().any(|c| {
        p.push(c);
        fs::symlink_metadata(&p).is_ok_and(|m| m.file_type().is_symlink())
    })
}

/// Locks `out` for this crawl: `.imgcrawl/lock` is held with `flock` for as long as the crawl
/// runs (the kernel lets it go when the process ends, even by `kill -9`) and holds its PID, so a
/// second crawl started on the same directory stops at once and names the first.
fn lock_output(out: &Path) -> Result<File, Error> {
    use std::io::Read;
    use std::os::fd::AsRawFd;
    let path = out.join(STATE_DIR).join("lock");
    let mut f = OpenOptions::new()
        .read(true)
        .write(true)
        .create(true)
        .truncate(false)
        .custom_flags(libc::O_NOFOLLOW)
        .open(&path)
        .map_err(|e| Error::io("cannot open", &path, e))?;
    // SAFETY: flock only uses the descriptor, which `f` keeps open for the call.
    if unsafe { libc::flock(f.as_raw_fd(), libc::LOCK_EX | libc::LOCK_NB) } != 0 {
        let e = io::Error::last_os_error();
        if e.raw_os_error() != Some(libc::EWOULDBLOCK) {
            return Err(Error::io("cannot lock", &path, e));
        }
        let mut pid = String::new();
        let _ = f.read_to_string(&mut pid);
        let pid = pid.trim();
        let who = if pid.is_empty() {
            "another imgcrawl crawl".to_string()
        } else {
            format!("another imgcrawl crawl (PID {pid})")
        };
        return Err(Error::Resume(format!(
            "{} is in use by {who}; wait for it to end, or choose another output directory",
            out.display()
        )));
    }
    f.set_len(0)
        .and_then(|()| f.write_all(format!("{}\n", std::process::id()).as_bytes()))
        .map_err(|e| Error::io("cannot write", &path, e))?;
    Ok(f)
}

/// `path` as a C string for a libc call (`None` if it holds a NUL, which no real path does).
fn c_path(path: &Path) -> Option<std::ffi::CString> {
    use std::os::unix::ffi::OsStrExt;
    std::ffi::CString::new(path.as_os_str().as_bytes()).ok()
}

/// Whether this process may create files in the directory `dir`.
fn writable(dir: &Path) -> bool {
    let Some(c) = c_path(dir) else {
        return false;
    };
    // SAFETY: access only reads the NUL-terminated path, which `c` keeps alive for the call.
    unsafe { libc::access(c.as_ptr(), libc::W_OK | libc::X_OK) == 0 }
}

/// The longest file name the file system holding `dir` takes, in bytes (255 when it does not say).
fn name_max(dir: &Path) -> usize {
    let Some(c) = c_path(dir) else {
        return 255;
    };
    // SAFETY: pathconf only reads the NUL-terminated path, which `c` keeps alive for the call.
    let n = unsafe { libc::pathconf(c.as_ptr(), libc::_PC_NAME_MAX) };
    if n > 0 {
        n as usize
    } else {
        255
    }
}

/// Whether an error means the output's disk as a whole cannot be written (full, read-only, out of
/// quota, failing), which ends the crawl, rather than one name that cannot be made.
fn is_disk_trouble(e: &io::Error) -> bool {
    matches!(
        e.raw_os_error(),
        Some(libc::ENOSPC | libc::EROFS | libc::EDQUOT | libc::EIO)
    )
}

/// Removes a file if it exists.
fn remove_if_there(path: &Path) -> Result<(), Error> {
    match fs::remove_file(path) {
        Err(e) if e.kind() != io::ErrorKind::NotFound => Err(Error::io("cannot remove", path, e)),
        _ => Ok(()),
    }
}

/// Makes the data of `files` durable before their state is committed: one `syncfs` of the file
/// system holding `out_dir` on Linux (one flush for the whole batch), else one `fsync` per file.
fn sync_files<'a>(out_dir: &Path, files: impl Iterator<Item = &'a Path>) -> Result<(), Error> {
    #[cfg(target_os = "linux")]
    {
        use std::os::fd::AsRawFd;
        let _ = files;
        let dir = File::open(out_dir).map_err(|e| Error::io("cannot open", out_dir, e))?;
        // SAFETY: syncfs only reads the descriptor, which `dir` keeps open for the call.
        if unsafe { libc::syncfs(dir.as_raw_fd()) } != 0 {
            return Err(Error::io(
                "cannot sync",
                out_dir,
                io::Error::last_os_error(),
            ));
        }
        Ok(())
    }
    #[cfg(not(target_os = "linux"))]
    {
        let _ = out_dir;
        for path in files {
            File::open(path)
                .and_then(|f| f.sync_all())
                .map_err(|e| Error::io("cannot sync", path, e))?;
        }
        Ok(())
    }
}

/// State changes that record the rows of an old `manifest.jsonl` as saved images (an output
/// directory written before the state database existed).
fn import_ops(rows: Vec<ManifestRow>) -> Vec<StateOp> {
    let mut ops = Vec::new();
    for row in rows {
        let (Ok(url), Ok(page)) = (Url::parse(&row.url), Url::parse(&row.page)) else {
            continue;
        };
        ops.push(StateOp::ImageQueued {
            url: url.clone(),
            page,
            name: Some(row.name.clone()),
            redirected_from: Vec::new(),
            spilled: false,
        });
        ops.push(StateOp::ImageSaved {
            url,
            row,
            temp: None,
        });
    }
    ops
}

/// Whether a path read from a manifest stays inside `out_dir` (manifests can be edited by hand).
fn safe_relative(p: &Path) -> bool {
    p.components()
        .all(|c| matches!(c, std::path::Component::Normal(_)))
        && p.components().next().is_some()
}

/// Runs a handler body, turning a panic into a failure so that the writer thread survives (a
/// SyncArbiter thread that panics is gone for good).
fn guarded<T>(what: &str, f: impl FnOnce() -> Result<T, Failure>) -> Result<T, Failure> {
    catch_unwind(AssertUnwindSafe(f))
        .unwrap_or_else(|_| Err(Failure::new(FailureKind::Disk, format!("{what} panicked"))))
}

impl Actor for DiskWriter {
    type Context = SyncContext<Self>;
}

impl Handler<OpenOutput> for DiskWriter {
    type Result = Result<Resume, Error>;
    fn handle(&mut self, m: OpenOutput, _: &mut SyncContext<Self>) -> Self::Result {
        self.open_output(&m)
    }
}

impl Handler<CommitState> for DiskWriter {
    type Result = Result<Loaded, Error>;
    fn handle(&mut self, m: CommitState, _: &mut SyncContext<Self>) -> Self::Result {
        catch_unwind(AssertUnwindSafe(|| self.commit_state(&m)))
            .unwrap_or_else(|_| Err(Error::State("committing the crawl state panicked".into())))
    }
}

impl Handler<CloseOutput> for DiskWriter {
    type Result = ();
    fn handle(&mut self, _: CloseOutput, _: &mut SyncContext<Self>) {
        let mut closed = self
            .shared
            .temp_gate
            .write()
            .unwrap_or_else(|p| p.into_inner());
        *closed = true;
        // Closing the database checkpoints its write-ahead log into state.db and removes it.
        self.state().take();
        let prefix = format!("{}-", self.shared.token);
        for path in self.temp_files().unwrap_or_default() {
            if path
                .file_name()
                .is_some_and(|n| n.to_string_lossy().starts_with(&prefix))
            {
                let _ = fs::remove_file(path);
            }
        }
        // Last: the next crawl may start here once this one has written and removed everything.
        self.shared
            .lock
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .take();
    }
}

impl Handler<ExportManifest> for DiskWriter {
    type Result = Result<usize, Error>;
    fn handle(&mut self, _: ExportManifest, _: &mut SyncContext<Self>) -> Self::Result {
        self.export_manifest()
    }
}

impl Handler<AppendTemp> for DiskWriter {
    type Result = Result<(), Failure>;
    fn handle(&mut self, m: AppendTemp, _: &mut SyncContext<Self>) -> Self::Result {
        guarded("append", || {
            self.append_temp(m.tmp, &m.data).map_err(|e| {
                Failure::new(
                    FailureKind::Disk,
                    format!("cannot write temporary file: {e}"),
                )
            })
        })
    }
}

impl Handler<DiscardTemp> for DiskWriter {
    type Result = ();
    fn handle(&mut self, m: DiscardTemp, _: &mut SyncContext<Self>) {
        let _ = fs::remove_file(self.tmp_path(m.tmp));
    }
}

impl Handler<WriteImage> for DiskWriter {
    type Result = Result<Stored, Failure>;
    fn handle(&mut self, m: WriteImage, _: &mut SyncContext<Self>) -> Self::Result {
        let result = guarded("write", || self.write_image(&m));
        if result.is_err() {
            let _ = fs::remove_file(self.tmp_path(m.tmp));
        }
        result
    }
}

impl Handler<AppendRecords> for DiskWriter {
    type Result = Result<(), Error>;
    fn handle(&mut self, m: AppendRecords, _: &mut SyncContext<Self>) -> Self::Result {
        self.append_records(&m)
    }
}

impl Handler<WriteFileAtomic> for DiskWriter {
    type Result = Result<(), Error>;
    fn handle(&mut self, m: WriteFileAtomic, _: &mut SyncContext<Self>) -> Self::Result {
        self.write_atomic(&m)
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
}
