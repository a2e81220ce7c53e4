//! DiskWriter: the only actor that touches the file system, run as a `SyncArbiter` so that blocking
//! writes never stall an event loop. Its handlers unpack a message and call the crate's
//! [`Output`], which owns the output directory; every handler is guarded the same way, so that a
//! panic fails one request and the writer thread lives on (a SyncArbiter thread that panics is
//! gone for good).
//!
//! Takes: [`OpenOutput`], [`LoadFound`], [`LoadSaved`], [`FinishRun`], [`AppendTemp`], [`WriteImage`], [`DiscardTemp`], [`CommitState`],
//! [`ExportManifest`], [`CloseOutput`], [`AppendRecords`], [`WriteFileAtomic`]. Answers each
//! caller directly; reports to nobody else. Its handlers run in parallel on `writers` threads;
//! they share the name index behind one mutex, held only to pick a name, and the state database
//! behind another (one commit at a time).
//!
//! A `SyncArbiter` mailbox is unbounded: callers bound what they send by awaiting each `send`.

use std::panic::{catch_unwind, AssertUnwindSafe};
use std::path::PathBuf;
use std::sync::Arc;

use actix::prelude::*;
use bytes::Bytes;

use crate::error::{Error, Failure, FailureKind};
use crate::output::{ImageName, Output, RecordFile, Stored};
use crate::paths::FilenameTemplate;
use crate::records::ManifestRow;
use crate::state::{LoadSpilled, Loaded, Resume, SavedImage, StateOp};

/// Prepares the output directory and its state database (see [`Output::open`]); answers with
/// what the earlier runs left.
#[derive(Debug, Message)]
#[rtype(result = "Result<Resume, Error>")]
pub struct OpenOutput {
    /// Start over: forget the earlier crawl's state and records (image files are kept).
    pub fresh: bool,
    /// The crawl's identity (see [`crate::state::fingerprint`]); a state of another crawl is
    /// refused.
    pub fingerprint: String,
    /// Waiting jobs of each kind to read into memory; the others stay spilled in the database.
    pub in_memory: usize,
    /// Start an update run if the last run finished.
    pub update: bool,
}

/// Reads what pages held when a run last fetched them (for an update that found them
/// unchanged); answers, in the same order, each in the form of
/// [`crate::extract::Extracted::encode`], `None` where nothing is kept.
#[derive(Debug, Message)]
#[rtype(result = "Result<Vec<Option<String>>, Error>")]
pub struct LoadFound(pub Vec<url::Url>);

/// The crawl's frontier ran dry: mark the run finished, so that the next run without `--update`
/// knows there is nothing to do.
#[derive(Debug, Message)]
#[rtype(result = "Result<(), Error>")]
pub struct FinishRun;

/// Makes a batch of state changes durable and moves the saved images into place (see
/// [`Output::commit`]); answers with the spilled jobs read back.
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

/// The crawl has ended: close the output (see [`Output::close`]).
#[derive(Debug, Message)]
#[rtype(result = "()")]
pub struct CloseOutput;

/// Rewrites `manifest.jsonl` from the state database at the end of a run; answers with the
/// number of rows.
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

/// Stores a complete, verified download (see [`Output::write_image`]).
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
    /// The row of the image's earlier bytes, when an update found them changed.
    pub replaces: Option<Box<ManifestRow>>,
}

/// Reads what is saved of an image (its row and validators), for an update asking for it again;
/// `None` when it is not saved.
#[derive(Debug, Message)]
#[rtype(result = "Result<Option<SavedImage>, Failure>")]
pub struct LoadSaved(pub url::Url);

/// Appends complete lines to a record file (`errors.jsonl`, `skipped.jsonl`).
#[derive(Debug, Message)]
#[rtype(result = "Result<(), Error>")]
pub struct AppendRecords {
    /// The file.
    pub file: RecordFile,
    /// One or more complete lines, each ending in `\n`.
    pub text: String,
}

/// Replaces a record file atomically (write a temporary file, then rename).
#[derive(Debug, Message)]
#[rtype(result = "Result<(), Error>")]
pub struct WriteFileAtomic {
    /// The file.
    pub file: RecordFile,
    /// New contents.
    pub contents: String,
}

/// One DiskWriter thread's actor; all threads share one [`Output`].
#[derive(Debug, Clone)]
pub struct DiskWriter {
    /// The output directory.
    output: Arc<Output>,
}

impl DiskWriter {
    /// A writer for `out_dir`, naming files with `template`. Clone it into the SyncArbiter factory.
    pub fn new(out_dir: PathBuf, template: FilenameTemplate) -> Self {
        DiskWriter {
            output: Arc::new(Output::new(out_dir, template)),
        }
    }
}

/// Runs a handler's body; a panic becomes the error `on_panic` makes of what was being done.
fn guarded<T, E>(
    what: &str,
    on_panic: fn(String) -> E,
    f: impl FnOnce() -> Result<T, E>,
) -> Result<T, E> {
    catch_unwind(AssertUnwindSafe(f)).unwrap_or_else(|_| {
        log::error!("the disk writer panicked while it was {what}");
        Err(on_panic(format!("{what} panicked")))
    })
}

/// A panic as a crawl-ending error.
fn fatal(why: String) -> Error {
    Error::aborted("the disk writer", std::io::Error::other(why))
}

/// A panic as the failure of one image.
fn failure(why: String) -> Failure {
    Failure::new(FailureKind::Disk, why)
}

impl Actor for DiskWriter {
    type Context = SyncContext<Self>;
}

impl Handler<OpenOutput> for DiskWriter {
    type Result = Result<Resume, Error>;
    fn handle(&mut self, m: OpenOutput, _: &mut SyncContext<Self>) -> Self::Result {
        guarded("opening the output", fatal, || {
            self.output
                .open(m.fresh, m.update, &m.fingerprint, m.in_memory)
        })
    }
}

impl Handler<LoadFound> for DiskWriter {
    type Result = Result<Vec<Option<String>>, Error>;
    fn handle(&mut self, m: LoadFound, _: &mut SyncContext<Self>) -> Self::Result {
        guarded("reading a page's links", fatal, || {
            self.output.load_found(&m.0)
        })
    }
}

impl Handler<LoadSaved> for DiskWriter {
    type Result = Result<Option<SavedImage>, Failure>;
    fn handle(&mut self, m: LoadSaved, _: &mut SyncContext<Self>) -> Self::Result {
        guarded("reading a saved image", failure, || {
            self.output
                .saved_image(&m.0)
                .map_err(|e| Failure::new(FailureKind::Disk, e.to_string()))
        })
    }
}

impl Handler<FinishRun> for DiskWriter {
    type Result = Result<(), Error>;
    fn handle(&mut self, _: FinishRun, _: &mut SyncContext<Self>) -> Self::Result {
        guarded("recording the run's end", fatal, || {
            self.output.finish_run()
        })
    }
}

impl Handler<CommitState> for DiskWriter {
    type Result = Result<Loaded, Error>;
    fn handle(&mut self, m: CommitState, _: &mut SyncContext<Self>) -> Self::Result {
        guarded("committing the crawl state", fatal, || {
            self.output.commit(&m.ops, m.load_pages, m.load_images)
        })
    }
}

impl Handler<CloseOutput> for DiskWriter {
    type Result = ();
    fn handle(&mut self, _: CloseOutput, _: &mut SyncContext<Self>) {
        let _ = guarded("closing the output", fatal, || {
            self.output.close();
            Ok(())
        });
    }
}

impl Handler<ExportManifest> for DiskWriter {
    type Result = Result<usize, Error>;
    fn handle(&mut self, _: ExportManifest, _: &mut SyncContext<Self>) -> Self::Result {
        guarded("writing the manifest", fatal, || {
            self.output.export_final_manifest()
        })
    }
}

impl Handler<AppendTemp> for DiskWriter {
    type Result = Result<(), Failure>;
    fn handle(&mut self, m: AppendTemp, _: &mut SyncContext<Self>) -> Self::Result {
        guarded("appending to a temporary file", failure, || {
            self.output.append_temp(m.tmp, &m.data).map_err(|e| {
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
        let _ = guarded("removing a temporary file", failure, || {
            self.output.discard_temp(m.tmp);
            Ok(())
        });
    }
}

impl Handler<WriteImage> for DiskWriter {
    type Result = Result<Stored, Failure>;
    fn handle(&mut self, m: WriteImage, _: &mut SyncContext<Self>) -> Self::Result {
        let result = guarded("writing an image", failure, || {
            self.output
                .write_image(m.tmp, &m.data, &m.sha256, &m.name, m.replaces.as_deref())
        });
        if result.is_err() {
            self.output.discard_temp(m.tmp);
        }
        result
    }
}

impl Handler<AppendRecords> for DiskWriter {
    type Result = Result<(), Error>;
    fn handle(&mut self, m: AppendRecords, _: &mut SyncContext<Self>) -> Self::Result {
        guarded("appending records", fatal, || {
            self.output.append_records(m.file, &m.text)
        })
    }
}

impl Handler<WriteFileAtomic> for DiskWriter {
    type Result = Result<(), Error>;
    fn handle(&mut self, m: WriteFileAtomic, _: &mut SyncContext<Self>) -> Self::Result {
        guarded("replacing a record file", fatal, || {
            self.output.write_atomic(m.file, &m.contents)
        })
    }
}
