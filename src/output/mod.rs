//! The output directory, owned here and nowhere else: its layout (every path and file name in it:
//! [`Layout`]), the image files (named by the [`names`] index, placed in real directories, never
//! through a symbolic link), the temporary files they are written to, the record files, and the
//! state database's files. The DiskWriter actor's threads call into an [`Output`]; nothing else
//! writes in the output directory.
//!
//! The order of truth for an image: its bytes are written whole to a temporary file, the batch
//! that records it is synced and committed, and only then is the file renamed to its final name
//! and its manifest row appended. A crash before the commit leaves a temporary file (removed at the
//! next start, the image is fetched again); a crash between commit and rename is finished at the
//! next start, and `manifest.jsonl` is rewritten from the state then.

mod fsio;
pub mod manifest;
pub mod names;
mod open;
mod place;

use std::collections::HashMap;
use std::fs::{self, File, OpenOptions};
use std::io::{self, Write};
use std::os::unix::fs::OpenOptionsExt;
use std::path::{Path, PathBuf};
use std::sync::{Mutex, RwLock};

use bytes::Bytes;

use crate::error::Error;
use crate::paths::FilenameTemplate;
use crate::state::{LoadSpilled, Loaded, SavedImage, StateDb, StateOp};
use crate::Kind;
use fsio::{sync_files, write_all_chunks};
use names::Index;

pub use fsio::safe_relative;

/// Subdirectories of the temporary directory the temporary files are spread over.
const TMP_SPREAD: u64 = 16;

/// A record file in the output directory.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RecordFile {
    /// `manifest.jsonl`: one row per saved image.
    Manifest,
    /// `errors.jsonl`: one row per URL that failed for good.
    Errors,
    /// `skipped.jsonl`: one row per URL left out on purpose.
    Skipped,
    /// `stats.json`: the crawl's counters, rewritten as it goes.
    Stats,
}

impl RecordFile {
    /// Every record file.
    pub const ALL: [RecordFile; 4] = [
        RecordFile::Manifest,
        RecordFile::Errors,
        RecordFile::Skipped,
        RecordFile::Stats,
    ];

    /// Its name in the output directory.
    pub fn file_name(self) -> &'static str {
        match self {
            RecordFile::Manifest => "manifest.jsonl",
            RecordFile::Errors => "errors.jsonl",
            RecordFile::Skipped => "skipped.jsonl",
            RecordFile::Stats => "stats.json",
        }
    }
}

/// Where everything goes in an output directory: image files anywhere below it (by the filename
/// template), the record files at its top, imgcrawl's own files in `.imgcrawl/`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Layout {
    /// The output directory.
    root: PathBuf,
}

impl Layout {
    /// The layout of the output directory `root`.
    pub fn new(root: impl Into<PathBuf>) -> Self {
        Layout { root: root.into() }
    }

    /// The output directory.
    pub fn root(&self) -> &Path {
        &self.root
    }

    /// A record file.
    pub fn record(&self, file: RecordFile) -> PathBuf {
        self.root.join(file.file_name())
    }

    /// imgcrawl's own directory (state, temporary files, lock).
    pub fn state_dir(&self) -> PathBuf {
        self.root.join(".imgcrawl")
    }

    /// The state database.
    pub fn state_db(&self) -> PathBuf {
        self.state_dir().join("state.db")
    }

    /// The state database and the files SQLite keeps beside it.
    pub fn state_db_files(&self) -> [PathBuf; 3] {
        let dir = self.state_dir();
        ["state.db", "state.db-wal", "state.db-shm"].map(|n| dir.join(n))
    }

    /// Where `manifest.jsonl` is rewritten before it replaces the old one.
    pub fn manifest_part(&self) -> PathBuf {
        self.state_dir().join("manifest.jsonl.part")
    }

    /// Where temporary files live (inside the output, so renames stay on one file system).
    pub fn tmp_dir(&self) -> PathBuf {
        self.state_dir().join("tmp")
    }

    /// The lock held while a crawl runs here, holding its PID.
    pub fn lock(&self) -> PathBuf {
        self.state_dir().join("lock")
    }
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

/// Where a stored image ends up.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Stored {
    /// The file holding the bytes, relative to `out_dir`.
    pub path: PathBuf,
    /// Whether those bytes were already there (saved earlier under another URL).
    pub duplicate: bool,
    /// The complete temporary file (relative to `out_dir`) that [`Output::commit`] moves to
    /// `path` once the image's state is committed; `None` when no file has to move.
    pub temp: Option<PathBuf>,
    /// For new bytes of an image saved before: the file holding its old bytes. When `path` is
    /// the old file's own name, [`Output::commit`] moves the old file here first.
    pub previous: Option<PathBuf>,
}

/// A saved image's file to move into place once its state is committed (or, after a crash, when
/// the output is opened again).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Move {
    /// Its complete temporary file.
    pub temp: PathBuf,
    /// Where it goes.
    pub dest: PathBuf,
    /// For new bytes of an image saved before: where its old bytes are kept. When it takes the
    /// old file's own name, the old file moves here first.
    pub previous: Option<PathBuf>,
}

impl Move {
    /// Moves the old file out of the new one's way, to `previous`, unless it is gone from `dest`
    /// already or something is at `previous` (then this step was done before a crash: the old
    /// bytes are never overwritten).
    fn displace(&self) -> Result<(), Error> {
        let Some(previous) = &self.previous else {
            return Ok(());
        };
        let there = |p: &Path| fs::symlink_metadata(p).is_ok();
        if there(&self.dest) && !there(previous) {
            fs::rename(&self.dest, previous)
                .map_err(|e| Error::io("cannot keep the earlier file as", previous, e))?;
        }
        Ok(())
    }

    /// Does what is left of this move after a crash: nothing when the temporary file is gone
    /// (it was moved), else the old file out of the way (if it is still in it), then the new one
    /// into place, unless something is there (never overwritten: the temporary file is then
    /// removed with the others).
    fn finish(&self) -> Result<(), Error> {
        if !self.temp.exists() {
            return Ok(());
        }
        self.displace()?;
        if self.dest.exists() {
            return Ok(());
        }
        if let Some(parent) = self.dest.parent() {
            fs::create_dir_all(parent)
                .map_err(|e| Error::io("cannot create directory", parent, e))?;
        }
        fs::rename(&self.temp, &self.dest)
            .map_err(|e| Error::io("cannot move file into place", &self.dest, e))
    }
}

/// The output directory of one crawl, shared by the DiskWriter threads: where things go, which
/// names are taken and which files already hold which bytes, and the state database.
#[derive(Debug)]
pub struct Output {
    /// The output directory.
    out_dir: PathBuf,
    /// Where everything in it goes.
    layout: Layout,
    /// Where temporary files live (inside `out_dir`, so renames stay on one file system).
    tmp_dir: PathBuf,
    /// Distinguishes this crawl's temporary files from those of another process.
    token: String,
    /// The `output.filename` template.
    template: FilenameTemplate,
    /// Saved files by content hash, and every path taken.
    index: Mutex<Index>,
    /// The state database, opened by [`Output::open`].
    state: Mutex<Option<StateDb>>,
    /// Set by [`Output::close`]: no temporary file is written any more.
    temp_gate: RwLock<bool>,
    /// Directories this crawl created or found.
    dirs: Mutex<Dirs>,
    /// Longest file name the output's file system takes, in bytes (`pathconf`; 255 when unknown).
    name_max: std::sync::atomic::AtomicUsize,
    /// `.imgcrawl/lock`, locked while this crawl runs so that no second crawl works in the same
    /// output directory (released when closed, by [`Output::close`] or the process's end).
    lock: Mutex<Option<File>>,
}

/// Directories this crawl created or found, so that each is created once.
#[derive(Debug, Default)]
struct Dirs {
    /// Each directory, and whether this crawl created it.
    made: HashMap<PathBuf, bool>,
}

impl Output {
    /// The output directory `out_dir`, naming files with `template`. Nothing is touched before
    /// [`open`](Self::open).
    pub fn new(out_dir: PathBuf, template: FilenameTemplate) -> Self {
        let token = format!(
            "{}-{:x}",
            std::process::id(),
            std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .map_or(0, |d| d.as_nanos())
        );
        let layout = Layout::new(&out_dir);
        Output {
            tmp_dir: layout.tmp_dir(),
            layout,
            out_dir,
            token,
            template,
            index: Mutex::new(Index::default()),
            state: Mutex::new(None),
            temp_gate: RwLock::new(false),
            dirs: Mutex::new(Dirs::default()),
            name_max: std::sync::atomic::AtomicUsize::new(255),
            lock: Mutex::new(None),
        }
    }

    /// Where the temporary file `tmp` goes: spread over [`TMP_SPREAD`] subdirectories, so that the
    /// writer threads do not all create and rename files in one directory (its lock was the
    /// busiest spot in the kernel in the benchmark).
    pub(crate) fn tmp_path(&self, tmp: u64) -> PathBuf {
        self.tmp_dir
            .join((tmp % TMP_SPREAD).to_string())
            .join(format!("{}-{tmp}.part", self.token))
    }

    /// Creates `dir` and its parents unless this crawl already did.
    fn ensure_dir(&self, dir: &Path) -> io::Result<()> {
        let mut dirs = self.dirs.lock().unwrap_or_else(|p| p.into_inner());
        if !dirs.made.contains_key(dir) {
            let existed = dir.is_dir();
            fs::create_dir_all(dir)?;
            dirs.made.insert(dir.to_path_buf(), !existed);
        }
        Ok(())
    }

    /// Whether this crawl created `dir` (rather than finding it).
    fn created_here(&self, dir: &Path) -> bool {
        let dirs = self.dirs.lock().unwrap_or_else(|p| p.into_inner());
        dirs.made.get(dir).copied().unwrap_or(false)
    }

    /// Every temporary file in the temporary directory and its subdirectories.
    fn temp_files(&self) -> io::Result<Vec<PathBuf>> {
        let mut files = Vec::new();
        for entry in fs::read_dir(&self.tmp_dir)? {
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
        self.index.lock().unwrap_or_else(|p| p.into_inner())
    }

    fn state(&self) -> std::sync::MutexGuard<'_, Option<StateDb>> {
        self.state.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Makes a batch of state changes durable: syncs the new files, commits the batch in one
    /// transaction, then moves the saved images' files into place and appends their manifest
    /// rows. Then reads back the spilled jobs asked for (in the same turn, so that the batch's
    /// own spilled jobs are there to read).
    pub fn commit(
        &self,
        ops: &[StateOp],
        load_pages: LoadSpilled,
        load_images: LoadSpilled,
    ) -> Result<Loaded, Error> {
        let out = &self.out_dir;
        let moves: Vec<Move> = ops
            .iter()
            .filter_map(|op| match op {
                StateOp::ImageSaved {
                    row, temp: Some(t), ..
                } => Some(Move {
                    temp: out.join(t),
                    dest: out.join(&row.path),
                    previous: row.previous.as_ref().map(|p| out.join(p)),
                }),
                _ => None,
            })
            .collect();
        if !moves.is_empty() {
            sync_files(out, moves.iter().map(|m| m.temp.as_path()))?;
        }
        let mut state = self.state();
        let db = state.as_mut().ok_or(Error::NotOpen)?;
        let db_path = self.layout.state_db();
        let rows = db
            .apply(ops)
            .map_err(|e| Error::state("cannot commit the crawl state in", &db_path, e))?;
        let read = |e| Error::state("cannot read waiting jobs from", &db_path, e);
        let mut loaded = db.load_spilled(Kind::Page, load_pages).map_err(read)?;
        loaded.images = db
            .load_spilled(Kind::Image, load_images)
            .map_err(read)?
            .images;
        drop(state);
        for m in moves {
            if let Some(parent) = m.dest.parent() {
                self.ensure_dir(parent)
                    .map_err(|e| Error::io("cannot create directory", parent, e))?;
            }
            m.displace()?;
            fs::rename(&m.temp, &m.dest)
                .map_err(|e| Error::io("cannot move file into place", &m.dest, e))?;
        }
        // Last: a row names a file that is in place and a state that says it is saved.
        if !rows.is_empty() {
            self.append_records(RecordFile::Manifest, &rows)?;
        }
        Ok(loaded)
    }

    /// Appends bytes to the temporary file `tmp` (created on first use).
    pub fn append_temp(&self, tmp: u64, data: &[Bytes]) -> io::Result<()> {
        // Held while writing, so that CloseOutput never misses a file being written.
        let closed = self.temp_gate.read().unwrap_or_else(|p| p.into_inner());
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

    /// Appends complete lines to a record file.
    pub fn append_records(&self, file: RecordFile, text: &str) -> Result<(), Error> {
        let path = self.layout.record(file);
        let mut f = OpenOptions::new()
            .create(true)
            .append(true)
            .custom_flags(libc::O_NOFOLLOW)
            .open(&path)
            .map_err(|e| Error::io("cannot open", &path, e))?;
        f.write_all(text.as_bytes())
            .map_err(|e| Error::io("cannot write", &path, e))
    }

    /// Replaces a record file atomically (write a temporary file, then rename).
    pub fn write_atomic(&self, file: RecordFile, contents: &str) -> Result<(), Error> {
        let path = self.layout.record(file);
        let tmp = self
            .tmp_dir
            .join(format!("{}-{}.part", self.token, file.file_name()));
        let mut f = OpenOptions::new()
            .write(true)
            .create(true)
            .truncate(true)
            .custom_flags(libc::O_NOFOLLOW)
            .open(&tmp)
            .map_err(|e| Error::io("cannot write", &tmp, e))?;
        f.write_all(contents.as_bytes())
            .map_err(|e| Error::io("cannot write", &tmp, e))?;
        f.sync_all()
            .map_err(|e| Error::io("cannot sync", &tmp, e))?;
        fs::rename(&tmp, &path).map_err(|e| Error::io("cannot replace", &path, e))
    }

    /// Rewrites `manifest.jsonl` from the state database; answers with the number of rows.
    /// What the pages `urls` held when a run last fetched them, as kept in the state (for an
    /// update that found them unchanged), in the same order.
    pub fn load_found(&self, urls: &[url::Url]) -> Result<Vec<Option<String>>, Error> {
        let state = self.state();
        let db = state.as_ref().ok_or(Error::NotOpen)?;
        let err = |e| Error::state("cannot read a page's links from", self.layout.state_db(), e);
        db.found(urls).map_err(err)
    }

    /// The saved image at `url`, with its validators, for an update asking for it again.
    pub fn saved_image(&self, url: &url::Url) -> Result<Option<SavedImage>, Error> {
        let state = self.state();
        let db = state.as_ref().ok_or(Error::NotOpen)?;
        db.saved_image(url)
            .map_err(|e| Error::state("cannot read a saved image from", self.layout.state_db(), e))
    }

    /// Marks the run being recorded finished (its frontier ran dry).
    pub fn finish_run(&self) -> Result<(), Error> {
        let mut state = self.state();
        let db = state.as_mut().ok_or(Error::NotOpen)?;
        db.finish_run()
            .map_err(|e| Error::state("cannot record the run's end in", self.layout.state_db(), e))
    }

    /// Rewrites `manifest.jsonl` at the end of a run (see [`Output::export_manifest`]) and notes
    /// that it agrees with the state, so that the next run need not rewrite it at its start.
    pub fn export_final_manifest(&self) -> Result<usize, Error> {
        let rows = self.export_manifest()?;
        if let Some(db) = self.state().as_ref() {
            db.set_manifest_clean(true).map_err(|e| {
                Error::state("cannot record the manifest in", self.layout.state_db(), e)
            })?;
        }
        Ok(rows)
    }

    /// Rewrites `manifest.jsonl` whole from the state database; answers with the number of rows.
    pub fn export_manifest(&self) -> Result<usize, Error> {
        let started = std::time::Instant::now();
        let rows = match self.state().as_ref() {
            Some(db) => manifest::rewrite(&self.layout, db),
            None => Err(Error::NotOpen),
        }?;
        let ms = started.elapsed().as_millis();
        log::debug!("wrote manifest.jsonl: {rows} rows in {ms} ms");
        Ok(rows)
    }

    /// Removes the temporary file `tmp`, if any (an abandoned download).
    pub fn discard_temp(&self, tmp: u64) {
        let _ = fs::remove_file(self.tmp_path(tmp));
    }

    /// The crawl has ended: close the state database, stop writing temporary files and remove this
    /// crawl's (downloads abandoned at a stop or after a disk error, whose state was never
    /// committed), then let the output directory go.
    pub fn close(&self) {
        let mut closed = self.temp_gate.write().unwrap_or_else(|p| p.into_inner());
        *closed = true;
        // Closing the database checkpoints its write-ahead log into state.db and removes it.
        self.state().take();
        let prefix = format!("{}-", self.token);
        for path in self.temp_files().unwrap_or_default() {
            if path
                .file_name()
                .is_some_and(|n| n.to_string_lossy().starts_with(&prefix))
            {
                let _ = fs::remove_file(path);
            }
        }
        // Last: the next crawl may start here once this one has written and removed everything.
        self.lock.lock().unwrap_or_else(|p| p.into_inner()).take();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A replacement of `dir/cat.png` by new bytes, at the stage a crash left it: the files that
    /// exist (`old` at the name, `old` already kept as `.prev`, `new` still temporary).
    fn staged(dir: &Path, at_name: Option<&str>, at_prev: Option<&str>) -> Move {
        let m = Move {
            temp: dir.join("tmp.part"),
            dest: dir.join("site/cat.png"),
            previous: Some(dir.join("site/cat.prev.png")),
        };
        fs::create_dir_all(dir.join("site")).unwrap();
        fs::write(&m.temp, "new").unwrap();
        if let Some(text) = at_name {
            fs::write(&m.dest, text).unwrap();
        }
        if let Some(text) = at_prev {
            fs::write(m.previous.as_ref().unwrap(), text).unwrap();
        }
        m
    }

    #[test]
    fn a_replacement_interrupted_anywhere_ends_with_both_versions_kept() {
        // Before the old file moved; after it moved but before the new one did.
        for (at_name, at_prev) in [(Some("old"), None), (None, Some("old"))] {
            let dir = tempfile::tempdir().unwrap();
            let m = staged(dir.path(), at_name, at_prev);
            m.finish().unwrap();
            assert_eq!(fs::read_to_string(&m.dest).unwrap(), "new");
            assert_eq!(
                fs::read_to_string(m.previous.as_ref().unwrap()).unwrap(),
                "old"
            );
            assert!(!m.temp.exists());
            // Done again (a second crash), it changes nothing.
            m.finish().unwrap();
            assert_eq!(fs::read_to_string(&m.dest).unwrap(), "new");
        }
    }

    #[test]
    fn a_file_already_at_the_previous_name_is_never_overwritten() {
        let dir = tempfile::tempdir().unwrap();
        let m = staged(dir.path(), Some("old"), Some("someone else's"));
        m.finish().unwrap();
        assert_eq!(fs::read_to_string(&m.dest).unwrap(), "old");
        let previous = m.previous.as_ref().unwrap();
        assert_eq!(fs::read_to_string(previous).unwrap(), "someone else's");
        // The new bytes stay in the temporary file, which is removed with the others.
        assert!(m.temp.exists());
    }

    #[test]
    fn new_bytes_under_a_new_name_leave_the_old_file_where_it_is() {
        let dir = tempfile::tempdir().unwrap();
        let mut m = staged(dir.path(), None, None);
        fs::write(dir.path().join("site/old.png"), "old").unwrap();
        m.previous = Some(dir.path().join("site/old.png"));
        m.displace().unwrap();
        m.finish().unwrap();
        assert_eq!(fs::read_to_string(&m.dest).unwrap(), "new");
        assert_eq!(
            fs::read_to_string(dir.path().join("site/old.png")).unwrap(),
            "old"
        );
    }
}
