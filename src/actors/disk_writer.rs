//! DiskWriter: the only place that touches the file system, run as a `SyncArbiter` so blocking
//! writes never stall an event loop. It owns the output directory: temporary files, the final image
//! files (named from the template, made unique, deduplicated by SHA-256) and the record files.
//!
//! Takes: [`OpenOutput`], [`AppendTemp`], [`WriteImage`], [`DiscardTemp`], [`AppendRecords`],
//! [`WriteFileAtomic`]. Answers each caller directly; reports to nobody else. Its handlers run in
//! parallel on `writers` threads; they share the index of saved files behind one mutex, held only
//! to pick a name and rename.
//!
//! A `SyncArbiter` mailbox is unbounded: callers bound what they send by awaiting each `send`.

use std::collections::{HashMap, HashSet};
use std::fs::{self, File, OpenOptions};
use std::io::{self, BufRead, BufReader, Write};
use std::panic::{catch_unwind, AssertUnwindSafe};
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};

use actix::prelude::*;
use bytes::Bytes;

use crate::error::{Error, Failure, FailureKind};
use crate::paths::{with_suffix, FilenameTemplate, NameFields};
use crate::records::ManifestRow;

/// Name of the manifest file in `out_dir`.
pub const MANIFEST_FILE: &str = "manifest.jsonl";
/// Name of the error records file in `out_dir`.
pub const ERRORS_FILE: &str = "errors.jsonl";
/// Name of the statistics file in `out_dir`.
pub const STATS_FILE: &str = "stats.json";
/// imgcrawl's own directory inside `out_dir` (state and temporary files).
pub const STATE_DIR: &str = ".imgcrawl";

/// Prepares `out_dir`: creates it, removes leftover temporary files, starts a new `errors.jsonl`, and
/// reads the manifest of earlier runs. Answers with the rows whose files are still intact.
#[derive(Debug, Message)]
#[rtype(result = "Result<Vec<ManifestRow>, Error>")]
pub struct OpenOutput;

/// Appends bytes to the temporary file `tmp` (created on first use). Used for large downloads.
#[derive(Debug, Message)]
#[rtype(result = "Result<(), Failure>")]
pub struct AppendTemp {
    /// Temporary file id, unique within the crawl.
    pub tmp: u64,
    /// Bytes to append.
    pub data: Bytes,
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
    /// Bytes not yet appended (for small images: all of them).
    pub data: Bytes,
    /// Hex SHA-256 of all the bytes.
    pub sha256: String,
    /// How to name the file.
    pub name: ImageName,
}

/// Where a stored image ended up.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Stored {
    /// The file holding the bytes, relative to `out_dir`.
    pub path: PathBuf,
    /// Whether those bytes were already there (saved earlier under another URL).
    pub duplicate: bool,
}

/// Which record file to append to.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RecordFile {
    /// `manifest.jsonl`.
    Manifest,
    /// `errors.jsonl`.
    Errors,
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
}

#[derive(Debug, Default)]
struct Index {
    /// Saved files by hex SHA-256.
    by_sha: HashMap<String, PathBuf>,
    /// Every path in use.
    taken: HashSet<PathBuf>,
    /// For a wanted path, the suffix to try next, so that thousands of images with one caption
    /// do not each search from `-2` again.
    next_suffix: HashMap<PathBuf, u32>,
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
            }),
        }
    }

    fn tmp_path(&self, tmp: u64) -> PathBuf {
        self.shared
            .tmp_dir
            .join(format!("{}-{tmp}.part", self.shared.token))
    }

    fn index(&self) -> std::sync::MutexGuard<'_, Index> {
        // A poisoned lock means another writer panicked mid-update; the index itself (two maps
        // updated together after the rename) is still usable.
        self.shared.index.lock().unwrap_or_else(|p| p.into_inner())
    }

    fn open_output(&self) -> Result<Vec<ManifestRow>, Error> {
        let out = &self.shared.out_dir;
        fs::create_dir_all(&self.shared.tmp_dir)
            .map_err(|e| Error::io("cannot create output directory", out, e))?;
        for entry in fs::read_dir(&self.shared.tmp_dir)
            .map_err(|e| Error::io("cannot read", &self.shared.tmp_dir, e))?
        {
            let path = entry
                .map_err(|e| Error::io("cannot read", &self.shared.tmp_dir, e))?
                .path();
            if path.extension().is_some_and(|e| e == "part") {
                fs::remove_file(&path)
                    .map_err(|e| Error::io("cannot remove leftover temporary file", &path, e))?;
            }
        }
        let errors = out.join(ERRORS_FILE);
        File::create(&errors).map_err(|e| Error::io("cannot write", &errors, e))?;
        let rows = self.read_manifest()?;
        let mut index = self.index();
        for row in &rows {
            if row.duplicate_of.is_none() {
                index.by_sha.insert(row.sha256.clone(), row.path.clone());
                index.taken.insert(row.path.clone());
            }
        }
        Ok(rows)
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

    fn append_temp(&self, tmp: u64, data: &[u8]) -> io::Result<()> {
        let mut f = OpenOptions::new()
            .create(true)
            .append(true)
            .open(self.tmp_path(tmp))?;
        f.write_all(data)
    }

    fn write_image(&self, m: &WriteImage) -> Result<Stored, Failure> {
        let disk =
            |what: &str, e: io::Error| Failure::new(FailureKind::Disk, format!("{what}: {e}"));
        let tmp = self.tmp_path(m.tmp);
        self.append_temp(m.tmp, &m.data)
            .map_err(|e| disk("cannot write temporary file", e))?;
        let wanted = self.shared.template.render(&NameFields {
            host: &m.name.host,
            page_host: &m.name.page_host,
            name: &m.name.name,
            stem: &m.name.stem,
            sha256: &m.sha256,
            ext: m.name.ext,
        });
        let mut index = self.index();
        if let Some(existing) = index.by_sha.get(&m.sha256) {
            let path = existing.clone();
            drop(index);
            let _ = fs::remove_file(&tmp);
            return Ok(Stored {
                path,
                duplicate: true,
            });
        }
        let mut rel = wanted.clone();
        let mut n = index.next_suffix.get(&wanted).copied().unwrap_or(1);
        if n > 1 {
            rel = with_suffix(&wanted, n);
        }
        while index.taken.contains(&rel) || self.shared.out_dir.join(&rel).exists() {
            n += 1;
            rel = with_suffix(&wanted, n);
        }
        index.next_suffix.insert(wanted, n + 1);
        let dest = self.shared.out_dir.join(&rel);
        if let Some(parent) = dest.parent() {
            fs::create_dir_all(parent).map_err(|e| disk("cannot create directory", e))?;
        }
        fs::rename(&tmp, &dest).map_err(|e| disk("cannot move file into place", e))?;
        index.taken.insert(rel.clone());
        index.by_sha.insert(m.sha256.clone(), rel.clone());
        Ok(Stored {
            path: rel,
            duplicate: false,
        })
    }

    fn append_records(&self, m: &AppendRecords) -> Result<(), Error> {
        let name = match m.file {
            RecordFile::Manifest => MANIFEST_FILE,
            RecordFile::Errors => ERRORS_FILE,
        };
        let path = self.shared.out_dir.join(name);
        let mut f = OpenOptions::new()
            .create(true)
            .append(true)
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
        let mut f = File::create(&tmp).map_err(|e| Error::io("cannot write", &tmp, e))?;
        f.write_all(m.contents.as_bytes())
            .map_err(|e| Error::io("cannot write", &tmp, e))?;
        f.sync_all()
            .map_err(|e| Error::io("cannot sync", &tmp, e))?;
        fs::rename(&tmp, &path).map_err(|e| Error::io("cannot replace", &path, e))
    }
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
    type Result = Result<Vec<ManifestRow>, Error>;
    fn handle(&mut self, _: OpenOutput, _: &mut SyncContext<Self>) -> Self::Result {
        self.open_output()
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
