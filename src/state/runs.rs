//! The runs of a crawl in its state: the first crawl and each update, when they started and
//! finished; starting an update (every page an earlier run fetched becomes stale, to be asked for
//! again when the walk reaches it) and marking a run finished.

use rusqlite::{params, OptionalExtension};

use super::{now_secs, Run, RunKind, StateDb, STALE};

/// What [`StateDb::begin`] did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Begun {
    /// The last run had not finished (or this is the first): it goes on, whatever was asked.
    Resumed,
    /// The last run had finished and no update was asked for: nothing to do.
    Finished,
    /// A new update run started.
    Update,
}

impl StateDb {
    /// The latest run, if any.
    pub fn last_run(&self) -> rusqlite::Result<Option<Run>> {
        self.conn
            .query_row(
                "SELECT id, kind, started, finished FROM runs ORDER BY id DESC LIMIT 1",
                [],
                run,
            )
            .optional()
    }

    /// Every run, oldest first.
    pub fn runs(&self) -> rusqlite::Result<Vec<Run>> {
        let mut stmt = self
            .conn
            .prepare("SELECT id, kind, started, finished FROM runs ORDER BY id")?;
        let rows = stmt.query_map([], run)?;
        rows.collect()
    }

    /// The run being recorded.
    pub fn run(&self) -> i64 {
        self.run
    }

    /// Records a new run of `kind` starting now; answers its id.
    pub(super) fn new_run(&mut self, kind: RunKind) -> rusqlite::Result<i64> {
        self.conn.execute(
            "INSERT INTO runs (kind, started) VALUES (?1, ?2)",
            params![kind.as_str(), now_secs()],
        )?;
        self.run = self.conn.last_insert_rowid();
        Ok(self.run)
    }

    /// Starts this process's part of the crawl: an unfinished run goes on; after a finished one,
    /// `update` starts an update run, in which every page fetched before is stale (unknown to the
    /// walk, with what it held and its validators kept) until the walk reaches it again.
    pub fn begin(&mut self, update: bool) -> rusqlite::Result<Begun> {
        let finished = self.last_run()?.is_some_and(|r| r.finished.is_some());
        if !finished {
            return Ok(Begun::Resumed);
        }
        if !update {
            return Ok(Begun::Finished);
        }
        let tx = self.conn.transaction()?;
        tx.execute(
            "INSERT INTO runs (kind, started) VALUES (?1, ?2)",
            params![RunKind::Update.as_str(), now_secs()],
        )?;
        let id = tx.last_insert_rowid();
        tx.execute(
            "UPDATE pages SET state = ?1, attempts = 0 WHERE state != ?1",
            [STALE],
        )?;
        tx.commit()?;
        self.run = id;
        self.stale = true;
        Ok(Begun::Update)
    }

    /// Ties the saved images to no run (run 0), so that their manifest rows keep the dates they
    /// carry: for rows imported from an old `manifest.jsonl`, which no run of this state saved.
    pub fn undate_saved(&mut self) -> rusqlite::Result<()> {
        self.conn
            .execute("UPDATE images SET first_run = 0, last_run = 0", [])
            .map(drop)
    }

    /// Marks the run being recorded finished now (its frontier ran dry).
    pub fn finish_run(&mut self) -> rusqlite::Result<()> {
        self.conn
            .execute(
                "UPDATE runs SET finished = ?2 WHERE id = ?1",
                params![self.run, now_secs()],
            )
            .map(drop)
    }
}

/// A run from a row of `id, kind, started, finished`.
fn run(row: &rusqlite::Row<'_>) -> rusqlite::Result<Run> {
    let kind: String = row.get(1)?;
    Ok(Run {
        id: row.get(0)?,
        kind: if kind == RunKind::Update.as_str() {
            RunKind::Update
        } else {
            RunKind::Crawl
        },
        started: row.get(2)?,
        finished: row.get(3)?,
    })
}

/// What a finished crawl looks like to a command run again without `--update`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FinishedCrawl {
    /// Its last run.
    pub run: Run,
    /// The images it has saved (files and duplicates).
    pub images: u64,
}

impl FinishedCrawl {
    /// Reads the state database at `db_path` (without changing it): the crawl there, if it
    /// belongs to `fingerprint` and its last run finished. Anything unreadable is `None` (the
    /// crawl then opens the state as usual, and reports what is wrong with it).
    pub fn read(db_path: &std::path::Path, fingerprint: &str) -> Option<FinishedCrawl> {
        if !db_path.exists() {
            return None;
        }
        let db = StateDb::open_read_only(db_path).ok()?;
        if db.meta("fingerprint").ok()?.as_deref() != Some(fingerprint) {
            return None;
        }
        let run = db.last_run().ok()??;
        run.finished?;
        let images = db
            .conn
            .query_row(
                "SELECT COUNT(*) FROM images WHERE state IN (1, 5)",
                [],
                |r| r.get::<_, i64>(0),
            )
            .ok()?;
        Some(FinishedCrawl {
            run,
            images: images.max(0) as u64,
        })
    }

    /// The line that says so, e.g. `finished 2 h ago: 1,963 images; run with --update to look
    /// for new ones`.
    pub fn line(&self, now: i64) -> String {
        let when = ago(now - self.run.finished.unwrap_or(self.run.started));
        format!(
            "finished {when}: {} images; run with --update to look for new ones",
            grouped(self.images)
        )
    }
}

/// A time span in seconds as people say it: `just now`, `5 min ago`, `2 h ago`, `3 d ago`.
pub fn ago(secs: i64) -> String {
    match secs.max(0) {
        0..=59 => "just now".to_string(),
        s @ 60..=3599 => format!("{} min ago", s / 60),
        s @ 3600..=86_399 => format!("{} h ago", s / 3600),
        s => format!("{} d ago", s / 86_400),
    }
}

/// A count with thousands separated by commas: `1,963`.
pub fn grouped(n: u64) -> String {
    let digits = n.to_string();
    let mut out = String::with_capacity(digits.len() + digits.len() / 3);
    for (i, d) in digits.chars().enumerate() {
        if i > 0 && (digits.len() - i).is_multiple_of(3) {
            out.push(',');
        }
        out.push(d);
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_finished_line_reads_as_people_say_it() {
        assert_eq!(grouped(0), "0");
        assert_eq!(grouped(999), "999");
        assert_eq!(grouped(1963), "1,963");
        assert_eq!(grouped(1_234_567), "1,234,567");
        assert_eq!(ago(5), "just now");
        assert_eq!(ago(-3), "just now");
        assert_eq!(ago(150), "2 min ago");
        assert_eq!(ago(2 * 3600 + 59), "2 h ago");
        assert_eq!(ago(3 * 86_400), "3 d ago");
        let f = FinishedCrawl {
            run: Run {
                id: 1,
                kind: RunKind::Crawl,
                started: 0,
                finished: Some(1000),
            },
            images: 1963,
        };
        assert_eq!(
            f.line(1000 + 7200),
            "finished 2 h ago: 1,963 images; run with --update to look for new ones"
        );
    }

    #[test]
    fn an_update_starts_only_after_a_finished_run_and_makes_pages_stale() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("state.db");
        let page = url::Url::parse("http://h/list").unwrap();
        let mut db = StateDb::open(&path, "fp").unwrap();
        assert_eq!(db.run(), 1);
        db.apply(&[
            super::super::StateOp::PageQueued {
                url: page.clone(),
                depth: 0,
                barren: 0,
                redirected_from: Vec::new(),
                spilled: false,
            },
            super::super::StateOp::PageFetched {
                url: page.clone(),
                validators: crate::job::Validators {
                    etag: Some("\"v1\"".into()),
                    modified: None,
                },
                found: "l\thttp://h/list?p=2\n".into(),
            },
        ])
        .unwrap();
        // Not finished: an update asked for resumes the run.
        assert_eq!(db.begin(true).unwrap(), Begun::Resumed);
        db.finish_run().unwrap();
        assert!(FinishedCrawl::read(&path, "fp").is_some());
        assert!(FinishedCrawl::read(&path, "other").is_none());
        assert_eq!(db.begin(false).unwrap(), Begun::Finished);
        assert_eq!(db.begin(true).unwrap(), Begun::Update);
        assert_eq!(db.run(), 2);
        assert!(
            FinishedCrawl::read(&path, "fp").is_none(),
            "the update runs"
        );
        // The page is no longer seen, and what was learnt of it waits for its admission.
        let mut resume = db.resume(100).unwrap();
        assert!(resume.pages.is_empty());
        assert!(!resume.seen_pages.contains(&page));
        let before = resume.earlier.take(&page).expect("kept for the update");
        assert_eq!(before.validators.etag.as_deref(), Some("\"v1\""));
        // Admitted again: a new row at the end, carrying what was kept.
        db.apply(&[super::super::StateOp::PageQueued {
            url: page.clone(),
            depth: 0,
            barren: 0,
            redirected_from: Vec::new(),
            spilled: false,
        }])
        .unwrap();
        let resume = db.resume(100).unwrap();
        assert_eq!(resume.pages.len(), 1);
        let job = &resume.pages[0];
        assert_eq!(
            job.before.as_ref().unwrap().validators.etag.as_deref(),
            Some("\"v1\"")
        );
        let other = url::Url::parse("http://h/never").unwrap();
        assert_eq!(
            db.found(&[page.clone(), other]).unwrap(),
            [Some("l\thttp://h/list?p=2\n".to_string()), None]
        );
    }
}
