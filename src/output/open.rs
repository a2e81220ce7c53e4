//! Opening an output directory: lock it, refuse planted symbolic links, start over (`--fresh`)
//! or carry on, finish the moves a crash interrupted, remove leftover temporary files, re-queue
//! saved images whose file is gone, import the manifest of a directory that has no state.

use std::collections::{HashMap, HashSet};
use std::fs::{self, File};
use std::path::{Path, PathBuf};

use url::Url;

use super::fsio::{
    lock_output, name_max, refuse_symlink, remove_if_there, safe_relative, through_symlink,
};
use super::names::{sha_key, ShaKey};
use super::{manifest, Move, Output, RecordFile, TMP_SPREAD};
use crate::error::Error;
use crate::state::{self, Resume, StateDb};

impl Output {
    /// Prepares the output directory and its state database: creates them (or, with `fresh`,
    /// first removes the state and records of an earlier crawl), finishes the renames a crash
    /// interrupted, removes leftover temporary files, re-queues saved images whose file is gone,
    /// imports the manifest of an output directory that has none, and rewrites `manifest.jsonl`
    /// from the state. `fingerprint` is the crawl's identity (a state of another crawl is
    /// refused); `in_memory` jobs of each kind are read into memory; `update` starts an update
    /// run when the last run finished (see [`StateDb::begin`]). Answers with what the earlier
    /// runs left.
    pub fn open(
        &self,
        fresh: bool,
        update: bool,
        fingerprint: &str,
        in_memory: usize,
    ) -> Result<Resume, Error> {
        self.claim()?;
        let reusable = if fresh {
            self.forget()?
        } else {
            HashMap::new()
        };
        let layout = &self.layout;
        let db_path = layout.state_db();
        let mut db = StateDb::open(&db_path, fingerprint).map_err(|e| Error::Resume {
            dir: self.out_dir.clone(),
            source: e,
        })?;
        let db_err = |e| Error::state("crawl state", &db_path, e);
        let mut took = Phases::default();
        // A move into place can be pending only where its temporary file is still there: after a
        // run that ended normally there is none, and the saved images need no look.
        let present: HashSet<PathBuf> = self
            .temp_files()
            .map_err(|e| Error::io("cannot read", &self.tmp_dir, e))?
            .into_iter()
            .map(|p| {
                p.strip_prefix(&self.out_dir)
                    .map(Path::to_path_buf)
                    .unwrap_or(p)
            })
            .collect();
        if !present.is_empty() {
            self.finish_moves(&db.pending_renames(&present).map_err(db_err)?)?;
            db.clear_temps().map_err(db_err)?;
        }
        took.mark("moves");
        self.name_max.store(
            name_max(&self.out_dir),
            std::sync::atomic::Ordering::Relaxed,
        );
        self.remove_temp_files()?;
        took.mark("temp files");
        db.begin(update).map_err(db_err)?;
        took.mark("begin");
        let mut resume = db.resume(in_memory).map_err(db_err)?;
        took.mark("resume");
        // manifest.jsonl was rewritten at the end of the last run, and nothing changed since:
        // no need to rewrite it now. From here until this run's end it may fall behind.
        let mut clean = present.is_empty() && db.manifest_clean().map_err(db_err)?;
        db.set_manifest_clean(false).map_err(db_err)?;
        if resume.is_empty() {
            clean = false;
            for file in [RecordFile::Errors, RecordFile::Skipped] {
                let path = layout.record(file);
                File::create(&path).map_err(|e| Error::io("cannot write", &path, e))?;
            }
            let imported = manifest::import_ops(manifest::read(layout)?);
            if !imported.is_empty() {
                db.apply(&imported).map_err(db_err)?;
                db.undate_saved().map_err(db_err)?;
                resume = db.resume(in_memory).map_err(db_err)?;
            }
        }
        let lost = self.requeue_missing(&mut db, &resume).map_err(db_err)?;
        took.mark("file check");
        if lost > 0 {
            clean = false;
            log::warn!("{lost} saved images have lost their file; they will be downloaded again");
            // Read again: they wait now, in their place in the queue.
            resume = db.resume(in_memory).map_err(db_err)?;
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
        // Files no saved image owns: old bytes kept as NAME.prev.EXT, which duplicates may name.
        for row in &resume.saved {
            if row.duplicate_on.is_none() {
                if let Some(old) = &row.duplicate_of {
                    index
                        .by_sha
                        .entry(sha_key(&row.sha256))
                        .or_insert_with(|| old.clone().into_boxed_path());
                    index.take(old);
                }
            }
            if let Some(previous) = &row.previous {
                index.take(previous);
            }
        }
        drop(index);
        took.mark("name index");
        *self.state() = Some(db);
        if !clean {
            self.export_manifest()?;
        }
        took.mark("manifest");
        log::debug!("opened {}: {took}", self.out_dir.display());
        Ok(resume)
    }

    /// Makes the output directory and imgcrawl's own directory in it, takes the lock (before
    /// anything is removed or written: another crawl may be working here) and refuses symbolic
    /// links planted where imgcrawl writes its own files.
    fn claim(&self) -> Result<(), Error> {
        let (out, layout) = (&self.out_dir, &self.layout);
        let state_dir = layout.state_dir();
        fs::create_dir_all(out).map_err(|e| Error::io("cannot create output directory", out, e))?;
        refuse_symlink(&state_dir)?;
        fs::create_dir_all(&state_dir)
            .map_err(|e| Error::io("cannot create output directory", &state_dir, e))?;
        let lock = lock_output(out, &layout.lock())?;
        *self.lock.lock().unwrap_or_else(|p| p.into_inner()) = Some(lock);
        refuse_symlink(&self.tmp_dir)?;
        for path in layout.state_db_files() {
            refuse_symlink(&path)?;
        }
        refuse_symlink(&layout.manifest_part())?;
        for file in RecordFile::ALL {
            refuse_symlink(&layout.record(file))?;
        }
        fs::create_dir_all(&self.tmp_dir)
            .map_err(|e| Error::io("cannot create output directory", out, e))
    }

    /// Starts over (`--fresh`): removes the state and records of the earlier crawl, keeping its
    /// image files. Answers the files it saved, by content, that are still intact: the first
    /// image with the same bytes takes one over instead of writing a copy.
    fn forget(&self) -> Result<HashMap<ShaKey, Box<Path>>, Error> {
        let (out, layout) = (&self.out_dir, &self.layout);
        let db_path = layout.state_db();
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
        let mut reusable = HashMap::new();
        for row in saved {
            let intact = safe_relative(&row.path)
                && fs::metadata(out.join(&row.path)).is_ok_and(|f| f.len() == row.bytes);
            if row.duplicate_of.is_none() && intact {
                reusable.insert(sha_key(&row.sha256), row.path.into_boxed_path());
            }
        }
        for path in layout.state_db_files() {
            remove_if_there(&path)?;
        }
        for file in RecordFile::ALL {
            remove_if_there(&layout.record(file))?;
        }
        Ok(reusable)
    }

    /// Finishes the moves of saved images into place that a crash interrupted (committed, not
    /// yet renamed), old files of replaced images first. A recorded move that would leave the
    /// output directory is ignored.
    fn finish_moves(&self, moves: &[(PathBuf, PathBuf, Option<PathBuf>)]) -> Result<(), Error> {
        let out = &self.out_dir;
        for (temp, dest, previous) in moves {
            let inside = |p: &Path| safe_relative(p) && !through_symlink(out, p);
            if !(inside(temp) && inside(dest) && previous.as_deref().is_none_or(inside)) {
                log::warn!(
                    "{}: ignoring a recorded move of {} to {} that leaves the output directory",
                    self.layout.state_db().display(),
                    temp.display(),
                    dest.display()
                );
                continue;
            }
            let m = Move {
                temp: out.join(temp),
                dest: out.join(dest),
                previous: previous.as_ref().map(|p| out.join(p)),
            };
            m.finish()?;
        }
        Ok(())
    }

    /// Removes this and earlier crawls' temporary files.
    fn remove_temp_files(&self) -> Result<(), Error> {
        let tmp_dir = &self.tmp_dir;
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
        let out = &self.out_dir;
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
}

/// How long each phase of opening the output took, for the debug log.
struct Phases {
    /// When the last phase ended.
    last: std::time::Instant,
    /// Each phase and its duration.
    done: Vec<(&'static str, std::time::Duration)>,
}

impl Default for Phases {
    fn default() -> Self {
        Phases {
            last: std::time::Instant::now(),
            done: Vec::new(),
        }
    }
}

impl Phases {
    /// The phase `what` ends now.
    fn mark(&mut self, what: &'static str) {
        let now = std::time::Instant::now();
        self.done.push((what, now - self.last));
        self.last = now;
    }
}

impl std::fmt::Display for Phases {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let total: std::time::Duration = self.done.iter().map(|(_, d)| *d).sum();
        write!(f, "{} ms", total.as_millis())?;
        for (what, d) in &self.done {
            write!(f, ", {what} {} ms", d.as_millis())?;
        }
        Ok(())
    }
}
