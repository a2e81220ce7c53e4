//! `manifest.jsonl`, written only here: rows appended as their images are committed, the whole
//! file rewritten from the state database at the start and the end of a crawl, and an old
//! manifest read back into the state of a directory that has none.

use std::collections::HashMap;
use std::fs::{self, File};
use std::io::{self, BufRead, BufReader, Write};

use std::path::Path;

use url::Url;

use super::{safe_relative, Layout, RecordFile};
use crate::error::Error;
use crate::records::ManifestRow;
use crate::state::{SavedRow, StateDb, StateOp};

/// Rows of an earlier manifest whose file is still there with its recorded size.
/// Rows of an earlier manifest whose file is still there with its recorded size.
pub fn read(layout: &Layout) -> Result<Vec<ManifestRow>, Error> {
    let path = layout.record(RecordFile::Manifest);
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
                let on_disk = fs::metadata(layout.root().join(&row.path));
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

/// State changes that record the rows of an old `manifest.jsonl` as saved images (an output
/// directory written before the state database existed).
pub fn import_ops(rows: Vec<ManifestRow>) -> Vec<StateOp> {
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
            row: Box::new(row),
            temp: None,
            validators: Default::default(),
        });
    }
    ops
}

/// When each run of a crawl started, to date manifest rows.
pub struct RunDates {
    /// By run number.
    started: HashMap<i64, String>,
}

impl RunDates {
    /// The runs recorded in `db`.
    pub fn read(db: &StateDb) -> rusqlite::Result<RunDates> {
        let started = db
            .runs()?
            .into_iter()
            .map(|r| (r.id, r.started_text()))
            .collect();
        Ok(RunDates { started })
    }

    /// The manifest row of a saved image as JSON, with when it was first and last seen and
    /// since when its page is gone (a row that does not parse is passed on as it is).
    pub fn row(&self, saved: SavedRow<'_>) -> String {
        let Ok(mut row) = serde_json::from_str::<ManifestRow>(saved.json) else {
            return saved.json.to_string();
        };
        self.date(&mut row, saved);
        serde_json::to_string(&row).expect("a manifest row always serialises")
    }

    /// Sets the dates of `row` from the runs of `saved`.
    pub fn date(&self, row: &mut ManifestRow, saved: SavedRow<'_>) {
        let at = |run: i64| self.started.get(&run).cloned();
        row.first_seen = at(saved.first_run).or(row.first_seen.take());
        row.last_seen = at(saved.last_run).or(row.last_seen.take());
        row.gone_since = saved
            .gone_run
            .filter(|&gone| gone > saved.last_run)
            .and_then(at);
        row.changed = saved.changed_run.and_then(at).or(row.changed.take());
    }
}

/// Rewrites `manifest.jsonl` whole from the state database `db` (its rows in the order the
/// images were saved): written beside it, synced, then renamed over it. Answers with the number
/// of rows.
pub fn rewrite(layout: &Layout, db: &StateDb) -> Result<usize, Error> {
    let target = layout.record(RecordFile::Manifest);
    let tmp = layout.manifest_part();
    let io = |e: io::Error| Error::io("cannot write", &target, e);
    let mut out = io::BufWriter::new(File::create(&tmp).map_err(io)?);
    let mut written = Ok(());
    let dates = RunDates::read(db)
        .map_err(|e| Error::state("cannot read the runs from", layout.state_db(), e))?;
    let n = db
        .each_saved_row(|saved| {
            if written.is_ok() {
                written = out
                    .write_all(dates.row(saved).as_bytes())
                    .and_then(|_| out.write_all(b"\n"));
            }
        })
        .map_err(|e| Error::state("cannot read saved images from", layout.state_db(), e))?;
    written.map_err(io)?;
    let file = out.into_inner().map_err(|e| io(e.into_error()))?;
    file.sync_all().map_err(io)?;
    fs::rename(&tmp, &target).map_err(io)?;
    Ok(n)
}

/// Rewrites `manifest.jsonl` of the output directory `out_dir` from its state (`imgcrawl
/// manifest OUT`), reading the state only, so a crawl may be running there.
pub fn export(out_dir: &Path) -> Result<usize, Error> {
    let layout = Layout::new(out_dir);
    rewrite(&layout, &open_existing(&layout.state_db())?)
}

/// Which saved images `imgcrawl manifest OUT --run/--new` prints: those whose bytes arrived in
/// some runs (first saved, or changed with `--revalidate-images`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Pick {
    /// Those whose bytes arrived in this run.
    Run(i64),
    /// Those whose bytes arrived in the latest run.
    LastRun,
    /// Those whose bytes arrived in runs that started at or after this time (seconds since the
    /// epoch).
    Since(i64),
}

impl Pick {
    /// Reads `--run` (`N` or `last`).
    pub fn run(text: &str) -> Result<Pick, String> {
        match text.trim() {
            "last" => Ok(Pick::LastRun),
            n => n
                .parse::<i64>()
                .ok()
                .filter(|&n| n > 0)
                .map(Pick::Run)
                .ok_or_else(|| {
                    format!("--run takes a run number (1, 2, ...) or \"last\", not `{n}`")
                }),
        }
    }

    /// Reads `--new SINCE`: an RFC 3339 time, a date (midnight UTC), or a span back from `now`
    /// (`2h`, `3days`).
    pub fn since(text: &str, now: i64) -> Result<Pick, String> {
        let text = text.trim();
        let epoch = |t: std::time::SystemTime| {
            t.duration_since(std::time::UNIX_EPOCH)
                .map_or(0, |d| d.as_secs() as i64)
        };
        if let Ok(t) = humantime::parse_rfc3339_weak(text) {
            return Ok(Pick::Since(epoch(t)));
        }
        if let Ok(t) = humantime::parse_rfc3339_weak(&format!("{text} 00:00:00")) {
            return Ok(Pick::Since(epoch(t)));
        }
        if let Ok(span) = humantime::parse_duration(text) {
            return Ok(Pick::Since(now - span.as_secs() as i64));
        }
        Err(format!(
            "--new takes a time (2026-12-05T10:00:00Z), a date (2026-12-05) or a span back from now (2h, 3days), not `{text}`"
        ))
    }
}

/// Calls `each` with the manifest row (JSON, dated) of every image of the crawl in `out_dir`
/// that `pick` selects, reading the state only. Answers how many.
pub fn select(out_dir: &Path, pick: &Pick, mut each: impl FnMut(&str)) -> Result<usize, Error> {
    let layout = Layout::new(out_dir);
    let db_path = layout.state_db();
    let db = open_existing(&db_path)?;
    let err = |e| Error::state("cannot read saved images from", &db_path, e);
    let runs = db.runs().map_err(err)?;
    let wanted: Vec<i64> = match pick {
        Pick::Run(n) => vec![*n],
        Pick::LastRun => runs.last().map(|r| r.id).into_iter().collect(),
        Pick::Since(t) => runs
            .iter()
            .filter(|r| r.started >= *t)
            .map(|r| r.id)
            .collect(),
    };
    let dates = RunDates::read(&db).map_err(err)?;
    let mut n = 0;
    db.each_saved_row(|saved| {
        let changed = saved.changed_run.is_some_and(|r| wanted.contains(&r));
        if wanted.contains(&saved.first_run) || changed {
            each(&dates.row(saved));
            n += 1;
        }
    })
    .map_err(err)?;
    Ok(n)
}

/// The runs of the crawl in `out_dir`, each with the images it first saved and those whose bytes
/// it found changed (for `manifest --runs`).
pub fn runs(out_dir: &Path) -> Result<Vec<(crate::state::Run, u64, u64)>, Error> {
    let layout = Layout::new(out_dir);
    let db_path = layout.state_db();
    let db = open_existing(&db_path)?;
    let err = |e| Error::state("cannot read the runs from", &db_path, e);
    let (mut first, mut changed): (HashMap<i64, u64>, HashMap<i64, u64>) = Default::default();
    db.each_saved_row(|saved| {
        *first.entry(saved.first_run).or_default() += 1;
        if let Some(run) = saved.changed_run {
            *changed.entry(run).or_default() += 1;
        }
    })
    .map_err(err)?;
    let count = |counts: &HashMap<i64, u64>, run: i64| counts.get(&run).copied().unwrap_or(0);
    Ok(db
        .runs()
        .map_err(err)?
        .into_iter()
        .map(|r| {
            let (f, c) = (count(&first, r.id), count(&changed, r.id));
            (r, f, c)
        })
        .collect())
}

/// The state database at `db_path`, opened to read; a clear error when there is none.
fn open_existing(db_path: &Path) -> Result<StateDb, Error> {
    if !db_path.exists() {
        return Err(Error::io(
            "no imgcrawl crawl here: cannot find",
            db_path,
            io::ErrorKind::NotFound.into(),
        ));
    }
    StateDb::open_read_only(db_path)
}
