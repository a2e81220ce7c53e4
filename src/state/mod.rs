//! The crawl's durable state in `OUT/.imgcrawl/state.db`, an SQLite database (rusqlite, WAL): every
//! page and image URL admitted, with whether it is waiting, done or failed, and the manifest row of
//! every saved image. Blocking: used only on the DiskWriter's threads. The Supervisor sends changes
//! as batches of [`StateOp`]s, each applied in one transaction (a group commit), so durability costs
//! one sync per batch, not one per URL.

use std::path::{Path, PathBuf};

use rusqlite::{params, Connection, OptionalExtension};
use url::Url;

use crate::error::StateError;
use crate::job::{Before, Earlier, ImageJob, Job, PageJob, Validators};
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
/// A page an earlier run fetched that this update run has not reached (yet).
const STALE: i64 = 4;
/// A saved image waiting to be asked for again (`--revalidate-images`); its file and row stay
/// valid, and an outcome other than a replacement puts it back to done.
const REVALIDATING: i64 = 5;

/// The `meta` key the session's cookies are saved under.
const COOKIES_KEY: &str = "cookies";
/// The `meta` key saying whether `manifest.jsonl` agrees with the state.
const MANIFEST_CLEAN_KEY: &str = "manifest_clean";

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
    /// A page is done with nothing to remember of it (a sitemap guessed where there is none).
    PageDone(Url),
    /// A page was fetched and what it links to is queued; what it held and its validators are
    /// kept for the next update.
    PageFetched {
        /// Its URL.
        url: Url,
        /// Its `ETag` and `Last-Modified`.
        validators: Validators,
        /// What it held, in the form of [`crate::extract::Extracted::encode`].
        found: String,
    },
    /// An update found a page unchanged (a 304): what it held then was queued again.
    PageUnchanged(Url),
    /// An update found a page gone (404 or 410); the images it brought stay.
    PageGone(Url),
    /// An update found an image saved before on a page again.
    ImageSeen(Url),
    /// A saved image is to be asked for again (`--revalidate-images`): waiting, its file and row
    /// kept.
    ImageRevalidating {
        /// Its URL.
        url: Url,
        /// Kept only here (see [`StateOp::PageQueued`]).
        spilled: bool,
    },
    /// A saved image asked for again answered 304 or the same bytes; `validators` are the new
    /// ones, if it sent the bytes again.
    ImageUnchanged {
        /// Its URL.
        url: Url,
        /// Its new `ETag` and `Last-Modified`, when the bytes came again.
        validators: Option<Validators>,
    },
    /// A saved image asked for again answered 404 or 410: its file and row stay.
    ImageGone(Url),
    /// The session's cookie jar, as JSON (see [`crate::http::Jar::to_json`]), replacing the one
    /// saved before.
    Cookies(String),
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
    /// `temp` (when not a duplicate) right after the commit. A row with `previous` replaces the
    /// URL's earlier bytes (`--revalidate-images`): when the new file takes the old one's path,
    /// the old file moves to `previous` first, and rows that were duplicates of it follow it.
    ImageSaved {
        /// The URL the job had (after redirects).
        url: Url,
        /// Its manifest row (boxed: it is most of the op's size, and batches hold many ops).
        row: Box<ManifestRow>,
        /// The temporary file to move into place, relative to `out_dir`.
        temp: Option<PathBuf>,
        /// Its `ETag` and `Last-Modified`, for a later `--revalidate-images`.
        validators: Validators,
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
            Job::Image(j) if j.revalidate => StateOp::ImageRevalidating {
                url: j.url.clone(),
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
        if let StateOp::PageQueued { spilled: s, .. }
        | StateOp::ImageQueued { spilled: s, .. }
        | StateOp::ImageRevalidating { spilled: s, .. } = &mut self
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
    /// The session's cookie jar as last saved (JSON), if any.
    pub cookies: Option<String>,
    /// The run this is (the first crawl, an update, or one of them resumed).
    pub run: Run,
    /// What earlier runs learnt of the pages this update has not reached yet.
    pub earlier: Earlier,
    /// Saved images waiting to be asked for again (among `images` or spilled); also in `saved`.
    pub revalidating: SeenSet,
}

/// Whether a run is a crawl's first or an update of it.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub enum RunKind {
    /// The first crawl (or one started over with `--fresh`).
    #[default]
    Crawl,
    /// An update: every page asked for again, only new images downloaded.
    Update,
}

impl RunKind {
    /// Its name in the database and in records.
    pub fn as_str(self) -> &'static str {
        match self {
            RunKind::Crawl => "crawl",
            RunKind::Update => "update",
        }
    }
}

/// One run of the crawl in an output directory: the first crawl and each update, each with its
/// resumes.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Run {
    /// Its number, from 1.
    pub id: i64,
    /// Crawl or update.
    pub kind: RunKind,
    /// When it started, in seconds since the Unix epoch.
    pub started: i64,
    /// When it finished (its frontier ran dry), if it did.
    pub finished: Option<i64>,
}

impl Run {
    /// When it started, as RFC 3339 (UTC, seconds): the form records use.
    pub fn started_text(&self) -> String {
        timestamp(self.started)
    }
}

/// Seconds since the Unix epoch as RFC 3339 (UTC, seconds).
pub fn timestamp(secs: i64) -> String {
    let at = std::time::UNIX_EPOCH + std::time::Duration::from_secs(secs.max(0) as u64);
    humantime::format_rfc3339_seconds(at).to_string()
}

/// Now, in seconds since the Unix epoch.
pub fn now_secs() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_secs() as i64)
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
    /// The run being recorded.
    run: i64,
    /// Whether pages of earlier runs wait to be reached by this update (a page admitted again
    /// must then move to a new row: see [`StateOp::PageQueued`] in `write`).
    stale: bool,
}

impl std::fmt::Debug for StateDb {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("StateDb")
            .field("path", &self.conn.path())
            .finish()
    }
}

/// The columns a page job is read from: rowid, url, depth, state, via, attempts, barren, etag,
/// modified, and whether what it held is known (an earlier run fetched it).
const PAGE_COLUMNS: &str =
    "rowid, url, depth, state, via, attempts, barren, etag, modified, found IS NOT NULL";
/// The columns an image job is read from: rowid, url, page, name, state, via, attempts.
const IMAGE_COLUMNS: &str = "rowid, url, page, name, state, via, attempts";

/// A waiting page from a row of [`PAGE_COLUMNS`] (`None` if its URL does not parse).
fn page_job(row: &rusqlite::Row<'_>) -> rusqlite::Result<Option<PageJob>> {
    let url: String = row.get(1)?;
    let Ok(url) = Url::parse(&url) else {
        return Ok(None);
    };
    Ok(Some(PageJob {
        url,
        depth: row.get(2)?,
        redirected_from: unchain(row.get(4)?),
        attempts: row.get(5)?,
        barren: row.get(6)?,
        losses: 0,
        before: before(row)?.map(Box::new),
    }))
}

/// What an earlier run learnt of a page, from a row of [`PAGE_COLUMNS`] (`None` when no run
/// fetched it).
fn before(row: &rusqlite::Row<'_>) -> rusqlite::Result<Option<Before>> {
    if !row.get::<_, bool>(9)? {
        return Ok(None);
    }
    Ok(Some(Before {
        validators: Validators {
            etag: row.get(7)?,
            modified: row.get(8)?,
        },
        found: None,
    }))
}

/// A waiting image from a row of [`IMAGE_COLUMNS`] (`None` if a URL does not parse).
fn image_job(row: &rusqlite::Row<'_>) -> rusqlite::Result<Option<ImageJob>> {
    let (url, page): (String, String) = (row.get(1)?, row.get(2)?);
    let (Ok(url), Ok(page)) = (Url::parse(&url), Url::parse(&page)) else {
        return Ok(None);
    };
    Ok(Some(ImageJob {
        url,
        page,
        name: row.get(3)?,
        redirected_from: unchain(row.get(5)?),
        attempts: row.get(6)?,
        losses: 0,
        revalidate: row.get::<_, i64>(4)? == REVALIDATING,
    }))
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
        // What updates need, added after that: a state written before gains the columns (its
        // pages then have no validators and nothing kept, and are fetched whole by an update).
        if conn.prepare("SELECT found FROM pages LIMIT 0").is_err() {
            conn.execute_batch(
                "ALTER TABLE pages ADD COLUMN etag TEXT;
                 ALTER TABLE pages ADD COLUMN modified TEXT;
                 ALTER TABLE pages ADD COLUMN found TEXT;
                 ALTER TABLE pages ADD COLUMN gone_run INTEGER;
                 ALTER TABLE images ADD COLUMN first_run INTEGER NOT NULL DEFAULT 1;
                 ALTER TABLE images ADD COLUMN last_run INTEGER NOT NULL DEFAULT 1;",
            )?;
        }
        // What `--revalidate-images` needs, added after that: images saved before have no
        // validators (asked for unconditionally) and have never changed.
        if conn
            .prepare("SELECT changed_run FROM images LIMIT 0")
            .is_err()
        {
            conn.execute_batch(
                "ALTER TABLE images ADD COLUMN etag TEXT;
                 ALTER TABLE images ADD COLUMN modified TEXT;
                 ALTER TABLE images ADD COLUMN changed_run INTEGER;
                 ALTER TABLE images ADD COLUMN gone_run INTEGER;",
            )?;
        }
        conn.execute_batch(
            "CREATE TABLE IF NOT EXISTS runs (
                 id INTEGER PRIMARY KEY, kind TEXT NOT NULL, started INTEGER NOT NULL,
                 finished INTEGER);
             CREATE INDEX IF NOT EXISTS images_page ON images (page);",
        )?;
        let mut db = StateDb {
            conn,
            spill_from: [None, None],
            run: 0,
            stale: false,
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
        db.run = match db.last_run()? {
            Some(run) => run.id,
            None => db.new_run(RunKind::Crawl)?,
        };
        db.stale = db.conn.query_row(
            "SELECT EXISTS (SELECT 1 FROM pages WHERE state = 4)",
            [],
            |r| r.get(0),
        )?;
        Ok(db)
    }

    /// Opens an existing database to read it, whatever crawl it belongs to.
    /// Opens the state database at `path` to read it only (another process may be using it).
    pub fn open_read_only(path: &Path) -> Result<StateDb, crate::Error> {
        Connection::open_with_flags(path, rusqlite::OpenFlags::SQLITE_OPEN_READ_ONLY)
            .map(|conn| StateDb {
                conn,
                spill_from: [None, None],
                run: 0,
                stale: false,
            })
            .map_err(|e| crate::Error::state("cannot open", path, e))
    }

    /// Whether `manifest.jsonl` was rewritten at the end of the last run and nothing changed
    /// since (see [`set_manifest_clean`](Self::set_manifest_clean)).
    pub fn manifest_clean(&self) -> rusqlite::Result<bool> {
        Ok(self.meta(MANIFEST_CLEAN_KEY)?.as_deref() == Some("1"))
    }

    /// Records whether `manifest.jsonl` agrees with the state: set at the end of a run, cleared
    /// at the start of one (until its end, a crash may leave the file behind the state).
    pub fn set_manifest_clean(&self, clean: bool) -> rusqlite::Result<()> {
        self.set_meta(MANIFEST_CLEAN_KEY, if clean { "1" } else { "0" })
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

mod read;
mod runs;
pub use read::{SavedImage, SavedRow};
pub use runs::{ago, grouped, Begun, FinishedCrawl};
#[cfg(test)]
mod tests;
mod write;
