//! The crawl's durable state in `OUT/.imgcrawl/state.db`, an SQLite database (rusqlite, WAL): every
//! page and image URL admitted, with whether it is waiting, done or failed, and the manifest row of
//! every saved image. Blocking: used only on the DiskWriter's threads. The Supervisor sends changes
//! as batches of [`StateOp`]s, each applied in one transaction (a group commit), so durability costs
//! one sync per batch, not one per URL.

use std::path::{Path, PathBuf};

use rusqlite::{params, Connection, OptionalExtension};
use url::Url;

use crate::error::StateError;
use crate::job::{ImageJob, Job, PageJob};
use crate::records::ManifestRow;
use crate::seen::SeenSet;
use crate::Kind;

/// Schema version stored in the database; a different one is refused rather than misread.
const SCHEMA_VERSION: &str = "2";

/// A URL waiting.
const WAITING: i64 = 0;
/// A page fetched (or redirected) / an image saved.
const DONE: i64 = 1;
/// Failed for good.
const FAILED: i64 = 2;
/// An image URL that redirected to another one.
const REDIRECTED: i64 = 3;

/// One change to the state, in the order the Supervisor decided it.
#[derive(Debug, Clone)]
pub enum StateOp {
    /// A page was admitted to the frontier.
    PageQueued {
        /// Its URL.
        url: Url,
        /// Link hops from a start page.
        depth: u32,
        /// The trap rule's barren run (see [`PageJob::barren`]).
        barren: u32,
        /// Redirects that led to it.
        redirected_from: Vec<Url>,
        /// Kept only here, not in the Supervisor's memory (the frontier is full); read back later
        /// with [`StateDb::load_spilled`].
        spilled: bool,
    },
    /// A page was fetched and what it links to is queued.
    PageDone(Url),
    /// A job failed and waits for a retry; `attempts` so far (kept across runs, so that a URL
    /// that keeps failing is not retried forever by resuming).
    Retry {
        /// Page or image.
        kind: Kind,
        /// Its URL.
        url: Url,
        /// Failed attempts so far.
        attempts: u32,
    },
    /// An image was admitted.
    ImageQueued {
        /// Its URL.
        url: Url,
        /// The page it was found on.
        page: Url,
        /// Its caption, if any.
        name: Option<String>,
        /// Redirects that led to it.
        redirected_from: Vec<Url>,
        /// Kept only here (see [`StateOp::PageQueued`]).
        spilled: bool,
    },
    /// An image is saved: its file is complete and synced, and will be renamed to `row.path` from
    /// `temp` (when not a duplicate) right after the commit.
    ImageSaved {
        /// The URL the job had (after redirects).
        url: Url,
        /// Its manifest row.
        row: ManifestRow,
        /// The temporary file to move into place, relative to `out_dir`.
        temp: Option<PathBuf>,
    },
    /// A job failed for good, or is not to be fetched or kept (skipped).
    Failed(Kind, Url),
    /// A job's URL redirected to another one, queued in its place.
    Redirected(Kind, Url),
}

impl StateOp {
    /// The admission of `job` (kept only in the database when `spilled`).
    pub fn queued(job: &Job, spilled: bool) -> StateOp {
        match job {
            Job::Page(j) => StateOp::PageQueued {
                url: j.url.clone(),
                depth: j.depth,
                barren: j.barren,
                redirected_from: j.redirected_from.clone(),
                spilled,
            },
            Job::Image(j) => StateOp::ImageQueued {
                url: j.url.clone(),
                page: j.page.clone(),
                name: j.name.clone(),
                redirected_from: j.redirected_from.clone(),
                spilled,
            },
        }
    }

    /// The same admission, kept only in the database when `spilled`.
    pub fn spilled(mut self, spilled: bool) -> StateOp {
        if let StateOp::PageQueued { spilled: s, .. } | StateOp::ImageQueued { spilled: s, .. } =
            &mut self
        {
            *s = spilled;
        }
        self
    }
}

/// What an earlier run left: enough to carry on where it was.
#[derive(Debug, Default)]
pub struct Resume {
    /// Every page URL admitted before (waiting, done or failed), as hashes.
    pub seen_pages: SeenSet,
    /// Pages still waiting.
    pub pages: Vec<PageJob>,
    /// Every image URL admitted before, as hashes.
    pub seen_images: SeenSet,
    /// Images still waiting.
    pub images: Vec<ImageJob>,
    /// Images saved, in the order they were saved.
    pub saved: Vec<ManifestRow>,
    /// Waiting pages left in the database because `pages` is full (read back with
    /// [`StateDb::load_spilled`]).
    pub pages_spilled: u64,
    /// Waiting images left in the database.
    pub images_spilled: u64,
}

impl Resume {
    /// Whether there is nothing to resume.
    pub fn is_empty(&self) -> bool {
        self.seen_pages.is_empty() && self.seen_images.is_empty()
    }
}

/// Spilled jobs to read back, for one kind.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct LoadSpilled {
    /// How many to read (the oldest first).
    pub take: u64,
    /// How many are spilled in all, after the batch this load comes with; when `take` reaches it,
    /// none are left.
    pub spilled: u64,
}

/// Jobs read back from the database.
#[derive(Debug, Default)]
pub struct Loaded {
    /// Pages, oldest first.
    pub pages: Vec<PageJob>,
    /// Images, oldest first.
    pub images: Vec<ImageJob>,
}

/// The open state database.
pub struct StateDb {
    conn: Connection,
    /// For pages and for images: the rowid from which the spilled jobs (waiting only here) start,
    /// while there are any. Jobs in the Supervisor's memory all have smaller rowids: while any job
    /// is spilled, every new one is spilled too, so they stay in admission order.
    spill_from: [Option<i64>; 2],
}

impl std::fmt::Debug for StateDb {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("StateDb")
            .field("path", &self.conn.path())
            .finish()
    }
}

/// A waiting page from its columns (url, depth, via, attempts, barren).
fn page_job(
    url: String,
    depth: u32,
    via: Option<String>,
    attempts: u32,
    barren: u32,
) -> Option<PageJob> {
    Some(PageJob {
        url: Url::parse(&url).ok()?,
        depth,
        barren,
        attempts,
        losses: 0,
        redirected_from: unchain(via),
    })
}

/// A waiting image from its columns (url, page, name, via, attempts).
fn image_job(
    url: String,
    page: String,
    name: Option<String>,
    via: Option<String>,
    attempts: u32,
) -> Option<ImageJob> {
    Some(ImageJob {
        url: Url::parse(&url).ok()?,
        page: Url::parse(&page).ok()?,
        name,
        attempts,
        losses: 0,
        redirected_from: unchain(via),
    })
}

fn chain(urls: &[Url]) -> Option<String> {
    (!urls.is_empty()).then(|| urls.iter().map(Url::as_str).collect::<Vec<_>>().join("\n"))
}

fn unchain(text: Option<String>) -> Vec<Url> {
    text.map(|t| t.lines().filter_map(|l| Url::parse(l).ok()).collect())
        .unwrap_or_default()
}

impl StateDb {
    /// Opens (creating if needed) the database at `path`, for the crawl identified by
    /// `fingerprint` (its start URLs). An existing database of another crawl is refused with a
    /// message saying why.
    pub fn open(path: &Path, fingerprint: &str) -> Result<StateDb, StateError> {
        let conn = Connection::open(path)?;
        conn.execute_batch(
            "PRAGMA journal_mode = WAL;
             PRAGMA synchronous = FULL;
             PRAGMA busy_timeout = 5000;
             CREATE TABLE IF NOT EXISTS meta (key TEXT PRIMARY KEY, value TEXT NOT NULL);
             CREATE TABLE IF NOT EXISTS pages (
                 url TEXT PRIMARY KEY, depth INTEGER NOT NULL, state INTEGER NOT NULL, via TEXT,
                 attempts INTEGER NOT NULL DEFAULT 0);
             CREATE TABLE IF NOT EXISTS images (
                 url TEXT PRIMARY KEY, page TEXT NOT NULL, name TEXT, state INTEGER NOT NULL,
                 via TEXT, saved_seq INTEGER, row TEXT, temp TEXT,
                 attempts INTEGER NOT NULL DEFAULT 0);
             CREATE INDEX IF NOT EXISTS images_saved ON images (saved_seq);",
        )?;
        // The trap rule's barren run, added after the first release of this schema: a state
        // written before it gains the column (0: every waiting page starts a new run).
        if conn.prepare("SELECT barren FROM pages LIMIT 0").is_err() {
            conn.execute_batch("ALTER TABLE pages ADD COLUMN barren INTEGER NOT NULL DEFAULT 0")?;
        }
        let db = StateDb {
            conn,
            spill_from: [None, None],
        };
        match (db.meta("schema")?, db.meta("fingerprint")?) {
            (None, _) => {
                db.set_meta("schema", SCHEMA_VERSION)?;
                db.set_meta("fingerprint", fingerprint)?;
            }
            (Some(v), _) if v != SCHEMA_VERSION => return Err(StateError::OtherVersion(v)),
            (Some(_), Some(f)) if f != fingerprint => {
                return Err(StateError::OtherCrawl(summary(&f)))
            }
            _ => {}
        }
        Ok(db)
    }

    /// Opens an existing database to read it, whatever crawl it belongs to.
    /// Opens the state database at `path` to read it only (another process may be using it).
    pub fn open_read_only(path: &Path) -> Result<StateDb, crate::Error> {
        Connection::open_with_flags(path, rusqlite::OpenFlags::SQLITE_OPEN_READ_ONLY)
            .map(|conn| StateDb {
                conn,
                spill_from: [None, None],
            })
            .map_err(|e| crate::Error::state("cannot open", path, e))
    }

    fn meta(&self, key: &str) -> rusqlite::Result<Option<String>> {
        self.conn
            .query_row("SELECT value FROM meta WHERE key = ?1", [key], |r| r.get(0))
            .optional()
    }

    fn set_meta(&self, key: &str, value: &str) -> rusqlite::Result<()> {
        self.conn
            .execute(
                "INSERT OR REPLACE INTO meta (key, value) VALUES (?1, ?2)",
                params![key, value],
            )
            .map(drop)
    }

    /// Applies `ops` in one transaction.
    pub fn apply(&mut self, ops: &[StateOp]) -> rusqlite::Result<()> {
        let mut spill_from = self.spill_from;
        let tx = self.conn.transaction()?;
        {
            let mut next_seq: i64 = tx.query_row(
                "SELECT COALESCE(MAX(saved_seq), 0) + 1 FROM images",
                [],
                |r| r.get(0),
            )?;
            let mut page_new = tx.prepare_cached(
                "INSERT OR IGNORE INTO pages (url, depth, state, via, barren) VALUES (?1, ?2, 0, ?3, ?4)",
            )?;
            let mut page_state = tx.prepare_cached("UPDATE pages SET state = ?2 WHERE url = ?1")?;
            let mut image_new = tx.prepare_cached(
                "INSERT OR IGNORE INTO images (url, page, name, state, via) VALUES (?1, ?2, ?3, 0, ?4)",
            )?;
            let mut image_saved = tx.prepare_cached(
                "UPDATE images SET state = 1, saved_seq = ?2, row = ?3, temp = ?4 WHERE url = ?1",
            )?;
            let mut image_state =
                tx.prepare_cached("UPDATE images SET state = ?2 WHERE url = ?1")?;
            let mut page_retry =
                tx.prepare_cached("UPDATE pages SET attempts = ?2 WHERE url = ?1")?;
            let mut image_retry =
                tx.prepare_cached("UPDATE images SET attempts = ?2 WHERE url = ?1")?;
            for op in ops {
                match op {
                    StateOp::PageQueued {
                        url,
                        depth,
                        barren,
                        redirected_from,
                        spilled,
                    } => {
                        let added = page_new.execute(params![
                            url.as_str(),
                            depth,
                            chain(redirected_from),
                            barren
                        ])?;
                        if *spilled && added == 1 && spill_from[0].is_none() {
                            spill_from[0] = Some(tx.last_insert_rowid());
                        }
                    }
                    StateOp::PageDone(url) => {
                        page_state.execute(params![url.as_str(), DONE])?;
                    }
                    StateOp::ImageQueued {
                        url,
                        page,
                        name,
                        redirected_from,
                        spilled,
                    } => {
                        let added = image_new.execute(params![
                            url.as_str(),
                            page.as_str(),
                            name,
                            chain(redirected_from)
                        ])?;
                        if *spilled && added == 1 && spill_from[1].is_none() {
                            spill_from[1] = Some(tx.last_insert_rowid());
                        }
                    }
                    StateOp::ImageSaved { url, row, temp } => {
                        let json =
                            serde_json::to_string(row).expect("a manifest row always serialises");
                        let temp = temp.as_ref().map(|t| t.to_string_lossy().into_owned());
                        image_saved.execute(params![url.as_str(), next_seq, json, temp])?;
                        next_seq += 1;
                    }
                    StateOp::Failed(Kind::Page, url) => {
                        page_state.execute(params![url.as_str(), FAILED])?;
                    }
                    StateOp::Failed(Kind::Image, url) => {
                        image_state.execute(params![url.as_str(), FAILED])?;
                    }
                    StateOp::Retry {
                        kind: Kind::Page,
                        url,
                        attempts,
                    } => {
                        page_retry.execute(params![url.as_str(), attempts])?;
                    }
                    StateOp::Retry {
                        kind: Kind::Image,
                        url,
                        attempts,
                    } => {
                        image_retry.execute(params![url.as_str(), attempts])?;
                    }
                    StateOp::Redirected(Kind::Page, url) => {
                        page_state.execute(params![url.as_str(), DONE])?;
                    }
                    StateOp::Redirected(Kind::Image, url) => {
                        image_state.execute(params![url.as_str(), REDIRECTED])?;
                    }
                }
            }
        }
        tx.commit()?;
        self.spill_from = spill_from;
        Ok(())
    }

    /// Reads back the oldest spilled jobs of `kind` (see [`StateOp::PageQueued`]), at most
    /// `load.take` of them.
    pub fn load_spilled(&mut self, kind: Kind, load: LoadSpilled) -> rusqlite::Result<Loaded> {
        let mut out = Loaded::default();
        let k = kind as usize;
        let Some(from) = self.spill_from[k].filter(|_| load.take > 0) else {
            return Ok(out);
        };
        let take = load.take.min(i64::MAX as u64) as i64;
        let last = match kind {
            Kind::Page => {
                let mut stmt = self.conn.prepare_cached(
                    "SELECT rowid, url, depth, via, attempts, barren FROM pages
                     WHERE rowid >= ?1 AND state = 0 ORDER BY rowid LIMIT ?2",
                )?;
                let mut rows = stmt.query(params![from, take])?;
                let mut last = from - 1;
                while let Some(row) = rows.next()? {
                    last = row.get(0)?;
                    if let Some(job) = page_job(
                        row.get(1)?,
                        row.get(2)?,
                        row.get(3)?,
                        row.get(4)?,
                        row.get(5)?,
                    ) {
                        out.pages.push(job);
                    }
                }
                last
            }
            Kind::Image => {
                let mut stmt = self.conn.prepare_cached(
                    "SELECT rowid, url, page, name, via, attempts FROM images
                     WHERE rowid >= ?1 AND state = 0 ORDER BY rowid LIMIT ?2",
                )?;
                let mut rows = stmt.query(params![from, take])?;
                let mut last = from - 1;
                while let Some(row) = rows.next()? {
                    last = row.get(0)?;
                    if let Some(job) = image_job(
                        row.get(1)?,
                        row.get(2)?,
                        row.get(3)?,
                        row.get(4)?,
                        row.get(5)?,
                    ) {
                        out.images.push(job);
                    }
                }
                last
            }
        };
        self.spill_from[k] = (load.take < load.spilled).then_some(last + 1);
        Ok(out)
    }

    /// Marks the temporary files of saved images as moved into place.
    pub fn clear_temps(&mut self) -> rusqlite::Result<()> {
        self.conn
            .execute("UPDATE images SET temp = NULL WHERE temp IS NOT NULL", [])
            .map(drop)
    }

    /// Puts saved images back to waiting (their file is gone).
    pub fn requeue_images(&mut self, urls: &[Url]) -> rusqlite::Result<()> {
        let tx = self.conn.transaction()?;
        {
            let mut stmt = tx.prepare_cached(
                "UPDATE images SET state = 0, saved_seq = NULL, row = NULL WHERE url = ?1",
            )?;
            for url in urls {
                stmt.execute([url.as_str()])?;
            }
        }
        tx.commit()
    }

    /// Saved images whose temporary file may still have to be moved into place (a crash between
    /// the commit and the rename): (temp, final path), both relative to `out_dir`.
    pub fn pending_renames(&self) -> rusqlite::Result<Vec<(PathBuf, PathBuf)>> {
        let mut stmt = self
            .conn
            .prepare("SELECT temp, row FROM images WHERE state = 1 AND temp IS NOT NULL")?;
        let rows = stmt.query_map([], |r| Ok((r.get::<_, String>(0)?, r.get::<_, String>(1)?)))?;
        let mut out = Vec::new();
        for row in rows {
            let (temp, json) = row?;
            if let Ok(m) = serde_json::from_str::<ManifestRow>(&json) {
                out.push((PathBuf::from(temp), m.path));
            }
        }
        Ok(out)
    }

    /// Everything an earlier run left. At most `in_memory` waiting jobs of each kind are read; the
    /// others stay spilled, counted in the [`Resume`], and are read back with
    /// [`load_spilled`](Self::load_spilled).
    pub fn resume(&mut self, in_memory: usize) -> rusqlite::Result<Resume> {
        let mut r = Resume::default();
        self.spill_from = [None, None];
        let mut stmt = self.conn.prepare(
            "SELECT rowid, url, depth, state, via, attempts, barren FROM pages ORDER BY rowid",
        )?;
        let mut rows = stmt.query([])?;
        while let Some(row) = rows.next()? {
            let text: String = row.get(1)?;
            let Ok(url) = Url::parse(&text) else {
                continue;
            };
            if row.get::<_, i64>(3)? == WAITING {
                if r.pages.len() < in_memory {
                    if let Some(job) =
                        page_job(text, row.get(2)?, row.get(4)?, row.get(5)?, row.get(6)?)
                    {
                        r.pages.push(job);
                    }
                } else {
                    self.spill_from[0].get_or_insert(row.get(0)?);
                    r.pages_spilled += 1;
                }
            }
            r.seen_pages.insert(&url);
        }
        drop(rows);
        drop(stmt);
        let mut stmt = self.conn.prepare(
            "SELECT rowid, url, page, name, state, via, attempts FROM images ORDER BY rowid",
        )?;
        let mut rows = stmt.query([])?;
        while let Some(row) = rows.next()? {
            let text: String = row.get(1)?;
            let Ok(url) = Url::parse(&text) else {
                continue;
            };
            if row.get::<_, i64>(4)? == WAITING {
                if r.images.len() < in_memory {
                    let job = image_job(text, row.get(2)?, row.get(3)?, row.get(5)?, row.get(6)?);
                    r.images.extend(job);
                } else {
                    self.spill_from[1].get_or_insert(row.get(0)?);
                    r.images_spilled += 1;
                }
            }
            r.seen_images.insert(&url);
        }
        drop(rows);
        drop(stmt);
        r.saved = self.saved_rows()?;
        Ok(r)
    }

    /// Calls `each` with the manifest row (JSON) of every saved image, in the order they were
    /// saved, without holding them all in memory.
    pub fn each_saved_row(&self, mut each: impl FnMut(&str)) -> rusqlite::Result<usize> {
        let mut stmt = self
            .conn
            .prepare("SELECT row FROM images WHERE state = 1 ORDER BY saved_seq")?;
        let mut rows = stmt.query([])?;
        let mut n = 0;
        while let Some(row) = rows.next()? {
            let json: String = row.get(0)?;
            each(&json);
            n += 1;
        }
        Ok(n)
    }

    /// The manifest rows of all saved images, in the order they were saved.
    pub fn saved_rows(&self) -> rusqlite::Result<Vec<ManifestRow>> {
        let mut stmt = self
            .conn
            .prepare("SELECT row FROM images WHERE state = 1 ORDER BY saved_seq")?;
        let rows = stmt.query_map([], |r| r.get::<_, String>(0))?;
        let mut out = Vec::new();
        for json in rows {
            if let Ok(row) = serde_json::from_str(&json?) {
                out.push(row);
            }
        }
        Ok(out)
    }
}

/// The saved images recorded in the state database at `db_path`, read without changing it and
/// whatever crawl it belongs to.
pub fn read_saved(db_path: &Path) -> Result<Vec<ManifestRow>, crate::Error> {
    StateDb::open_read_only(db_path)?
        .saved_rows()
        .map_err(|e| crate::Error::state("cannot read saved images from", db_path, e))
}

/// The fingerprint of a crawl: its sorted start URLs, one per line.
pub fn fingerprint(start_urls: &[Url]) -> String {
    let mut urls: Vec<&str> = start_urls.iter().map(Url::as_str).collect();
    urls.sort_unstable();
    urls.join("\n")
}

/// A short human form of a fingerprint.
fn summary(fingerprint: &str) -> String {
    let urls: Vec<&str> = fingerprint.lines().collect();
    match urls.len() {
        0 => "none".to_string(),
        1 => urls[0].to_string(),
        n => format!("{} and {} more", urls[0], n - 1),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn url(s: &str) -> Url {
        Url::parse(s).unwrap()
    }

    fn row(u: &str, path: &str) -> ManifestRow {
        ManifestRow {
            url: u.to_string(),
            page: "http://h/".to_string(),
            name: "n".to_string(),
            path: PathBuf::from(path),
            bytes: 3,
            sha256: "abc".to_string(),
            content_type: "image/png".to_string(),
            width: None,
            height: None,
            duplicate_of: None,
            duplicate_on: None,
        }
    }

    #[test]
    fn batches_round_trip_into_a_resume() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("state.db");
        let fp = fingerprint(&[url("http://h/")]);
        let mut db = StateDb::open(&path, &fp).unwrap();
        db.apply(&[
            StateOp::PageQueued {
                url: url("http://h/"),
                depth: 0,
                barren: 0,
                redirected_from: vec![],
                spilled: false,
            },
            StateOp::PageQueued {
                url: url("http://h/2"),
                depth: 1,
                barren: 0,
                redirected_from: vec![url("http://h/r")],
                spilled: false,
            },
            StateOp::ImageQueued {
                url: url("http://h/a.png"),
                page: url("http://h/"),
                name: Some("A".into()),
                redirected_from: vec![],
                spilled: false,
            },
            StateOp::ImageQueued {
                url: url("http://h/b.png"),
                page: url("http://h/"),
                name: None,
                redirected_from: vec![],
                spilled: false,
            },
            StateOp::PageDone(url("http://h/")),
        ])
        .unwrap();
        db.apply(&[StateOp::Retry {
            kind: Kind::Page,
            url: url("http://h/2"),
            attempts: 2,
        }])
        .unwrap();
        db.apply(&[StateOp::ImageSaved {
            url: url("http://h/a.png"),
            row: row("http://h/a.png", "h/A.png"),
            temp: Some(PathBuf::from(".imgcrawl/tmp/x.part")),
        }])
        .unwrap();
        drop(db);

        let mut db = StateDb::open(&path, &fp).unwrap();
        let r = db.resume(100).unwrap();
        assert_eq!(r.seen_pages.len(), 2);
        assert_eq!(r.pages.len(), 1);
        assert_eq!(r.pages[0].url.as_str(), "http://h/2");
        assert_eq!(r.pages[0].redirected_from, vec![url("http://h/r")]);
        assert_eq!(r.pages[0].attempts, 2, "retries are not forgotten");
        assert_eq!(r.images.len(), 1, "a.png is saved, b.png waits");
        assert_eq!(r.images[0].url.as_str(), "http://h/b.png");
        assert_eq!(r.saved.len(), 1);
        assert_eq!(
            db.pending_renames().unwrap(),
            vec![(
                PathBuf::from(".imgcrawl/tmp/x.part"),
                PathBuf::from("h/A.png")
            )]
        );

        let err = StateDb::open(&path, &fingerprint(&[url("http://other/")]))
            .err()
            .unwrap();
        assert!(
            err.to_string().contains("other start URLs: http://h/"),
            "{err}"
        );
    }

    #[test]
    fn spilled_jobs_come_back_once_in_admission_order() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("state.db");
        let mut db = StateDb::open(&path, "fp").unwrap();
        let page = |n: u32, spilled: bool| StateOp::PageQueued {
            url: url(&format!("http://h/{n}")),
            depth: 1,
            barren: 0,
            redirected_from: vec![],
            spilled,
        };
        let paths = |l: Loaded| -> Vec<String> {
            l.pages.iter().map(|j| j.url.path().to_string()).collect()
        };
        let load = |take, spilled| LoadSpilled { take, spilled };
        // p0 stays in memory; p1..p5 are spilled.
        db.apply(&[page(0, false), page(1, true), page(2, true), page(3, true)])
            .unwrap();
        db.apply(&[page(4, true), page(5, true)]).unwrap();
        assert_eq!(
            paths(db.load_spilled(Kind::Page, load(2, 5)).unwrap()),
            ["/1", "/2"]
        );
        db.apply(&[page(6, true)]).unwrap();
        assert_eq!(
            paths(db.load_spilled(Kind::Page, load(10, 4)).unwrap()),
            ["/3", "/4", "/5", "/6"]
        );
        // None spilled now: p7 goes to memory, then a new spill starts at p8.
        db.apply(&[page(7, false), page(8, true)]).unwrap();
        assert_eq!(
            paths(db.load_spilled(Kind::Page, load(5, 1)).unwrap()),
            ["/8"]
        );
        assert!(db
            .load_spilled(Kind::Page, load(5, 0))
            .unwrap()
            .pages
            .is_empty());

        // A later run reads the first waiting ones into memory and leaves the rest spilled.
        db.apply(&[
            StateOp::PageDone(url("http://h/0")),
            StateOp::PageDone(url("http://h/2")),
        ])
        .unwrap();
        drop(db);
        let mut db = StateDb::open(&path, "fp").unwrap();
        let r = db.resume(3).unwrap();
        let first: Vec<&str> = r.pages.iter().map(|j| j.url.path()).collect();
        assert_eq!(first, ["/1", "/3", "/4"]);
        assert_eq!((r.pages_spilled, r.seen_pages.len()), (4, 9));
        assert_eq!(
            paths(db.load_spilled(Kind::Page, load(4, 4)).unwrap()),
            ["/5", "/6", "/7", "/8"]
        );
    }
}
