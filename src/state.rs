//! The crawl's durable state in `OUT/.imgcrawl/state.db`, an SQLite database (rusqlite, WAL): every
//! page and image URL admitted, with whether it is waiting, done or failed, and the manifest row of
//! every saved image. Blocking: used only on the DiskWriter's threads. The Supervisor sends changes
//! as batches of [`StateOp`]s, each applied in one transaction (a group commit), so durability costs
//! one sync per batch, not one per URL.

use std::path::{Path, PathBuf};

use rusqlite::{params, Connection, OptionalExtension};
use url::Url;

use crate::frontier::{ImageJob, PageJob};
use crate::records::ManifestRow;

/// File name of the state database inside `OUT/.imgcrawl/`.
pub const STATE_DB: &str = "state.db";

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
        /// Redirects that led to it.
        redirected_from: Vec<Url>,
    },
    /// A page was fetched and what it links to is queued (or it redirected elsewhere).
    PageDone(Url),
    /// A page failed for good.
    PageFailed(Url),
    /// A page failed and waits for a retry; `attempts` so far (kept across runs, so that a URL
    /// that keeps failing is not retried forever by resuming).
    PageRetry {
        /// Its URL.
        url: Url,
        /// Failed attempts so far.
        attempts: u32,
    },
    /// An image failed and waits for a retry.
    ImageRetry {
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
    /// An image failed for good (or is not to be fetched).
    ImageFailed(Url),
    /// An image URL redirected to another one, queued in its place.
    ImageRedirected(Url),
}

/// What an earlier run left: enough to carry on where it was.
#[derive(Debug, Default)]
pub struct Resume {
    /// Every page URL admitted before (waiting, done or failed).
    pub seen_pages: Vec<Url>,
    /// Pages still waiting.
    pub pages: Vec<PageJob>,
    /// Every image URL admitted before.
    pub seen_images: Vec<Url>,
    /// Images still waiting.
    pub images: Vec<ImageJob>,
    /// Images saved, in the order they were saved.
    pub saved: Vec<ManifestRow>,
}

impl Resume {
    /// Whether there is nothing to resume.
    pub fn is_empty(&self) -> bool {
        self.seen_pages.is_empty() && self.seen_images.is_empty()
    }
}

/// The open state database.
pub struct StateDb {
    conn: Connection,
}

impl std::fmt::Debug for StateDb {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("StateDb")
            .field("path", &self.conn.path())
            .finish()
    }
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
    pub fn open(path: &Path, fingerprint: &str) -> Result<StateDb, String> {
        let conn = Connection::open(path).map_err(|e| e.to_string())?;
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
        )
        .map_err(|e| e.to_string())?;
        let db = StateDb { conn };
        match (db.meta("schema")?, db.meta("fingerprint")?) {
            (None, _) => {
                db.set_meta("schema", SCHEMA_VERSION)?;
                db.set_meta("fingerprint", fingerprint)?;
            }
            (Some(v), _) if v != SCHEMA_VERSION => {
                return Err(format!(
                    "it was written by another version of imgcrawl (state schema {v})"
                ))
            }
            (Some(_), Some(f)) if f != fingerprint => {
                return Err(format!(
                    "it holds a crawl of other start URLs: {}",
                    summary(&f)
                ))
            }
            _ => {}
        }
        Ok(db)
    }

    /// Opens an existing database to read it, whatever crawl it belongs to.
    fn open_read_only(path: &Path) -> Result<StateDb, crate::Error> {
        Connection::open_with_flags(path, rusqlite::OpenFlags::SQLITE_OPEN_READ_ONLY)
            .map(|conn| StateDb { conn })
            .map_err(|e| crate::Error::State(format!("{}: {e}", path.display())))
    }

    fn meta(&self, key: &str) -> Result<Option<String>, String> {
        self.conn
            .query_row("SELECT value FROM meta WHERE key = ?1", [key], |r| r.get(0))
            .optional()
            .map_err(|e| e.to_string())
    }

    fn set_meta(&self, key: &str, value: &str) -> Result<(), String> {
        self.conn
            .execute(
                "INSERT OR REPLACE INTO meta (key, value) VALUES (?1, ?2)",
                params![key, value],
            )
            .map(drop)
            .map_err(|e| e.to_string())
    }

    /// Applies `ops` in one transaction.
    pub fn apply(&mut self, ops: &[StateOp]) -> rusqlite::Result<()> {
        let tx = self.conn.transaction()?;
        {
            let mut next_seq: i64 = tx.query_row(
                "SELECT COALESCE(MAX(saved_seq), 0) + 1 FROM images",
                [],
                |r| r.get(0),
            )?;
            let mut page_new = tx.prepare_cached(
                "INSERT OR IGNORE INTO pages (url, depth, state, via) VALUES (?1, ?2, 0, ?3)",
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
                        redirected_from,
                    } => {
                        page_new.execute(params![url.as_str(), depth, chain(redirected_from)])?;
                    }
                    StateOp::PageDone(url) => {
                        page_state.execute(params![url.as_str(), DONE])?;
                    }
                    StateOp::PageFailed(url) => {
                        page_state.execute(params![url.as_str(), FAILED])?;
                    }
                    StateOp::ImageQueued {
                        url,
                        page,
                        name,
                        redirected_from,
                    } => {
                        image_new.execute(params![
                            url.as_str(),
                            page.as_str(),
                            name,
                            chain(redirected_from)
                        ])?;
                    }
                    StateOp::ImageSaved { url, row, temp } => {
                        let json =
                            serde_json::to_string(row).expect("a manifest row always serialises");
                        let temp = temp.as_ref().map(|t| t.to_string_lossy().into_owned());
                        image_saved.execute(params![url.as_str(), next_seq, json, temp])?;
                        next_seq += 1;
                    }
                    StateOp::ImageFailed(url) => {
                        image_state.execute(params![url.as_str(), FAILED])?;
                    }
                    StateOp::PageRetry { url, attempts } => {
                        page_retry.execute(params![url.as_str(), attempts])?;
                    }
                    StateOp::ImageRetry { url, attempts } => {
                        image_retry.execute(params![url.as_str(), attempts])?;
                    }
                    StateOp::ImageRedirected(url) => {
                        image_state.execute(params![url.as_str(), REDIRECTED])?;
                    }
                }
            }
        }
        tx.commit()
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

    /// Everything an earlier run left.
    pub fn resume(&self) -> rusqlite::Result<Resume> {
        let mut r = Resume::default();
        let mut stmt = self
            .conn
            .prepare("SELECT url, depth, state, via, attempts FROM pages")?;
        let mut rows = stmt.query([])?;
        while let Some(row) = rows.next()? {
            let Ok(url) = Url::parse(&row.get::<_, String>(0)?) else {
                continue;
            };
            if row.get::<_, i64>(2)? == WAITING {
                r.pages.push(PageJob {
                    url: url.clone(),
                    depth: row.get(1)?,
                    attempts: row.get(4)?,
                    losses: 0,
                    redirected_from: unchain(row.get(3)?),
                });
            }
            r.seen_pages.push(url);
        }
        let mut stmt = self
            .conn
            .prepare("SELECT url, page, name, state, via, attempts FROM images ORDER BY rowid")?;
        let mut rows = stmt.query([])?;
        while let Some(row) = rows.next()? {
            let (Ok(url), Ok(page)) = (
                Url::parse(&row.get::<_, String>(0)?),
                Url::parse(&row.get::<_, String>(1)?),
            ) else {
                continue;
            };
            if row.get::<_, i64>(3)? == WAITING {
                r.images.push(ImageJob {
                    url: url.clone(),
                    page,
                    name: row.get(2)?,
                    attempts: row.get(5)?,
                    losses: 0,
                    redirected_from: unchain(row.get(4)?),
                });
            }
            r.seen_images.push(url);
        }
        r.saved = self.saved_rows()?;
        Ok(r)
    }

    /// Replaces `out_dir/manifest.jsonl` with the saved images, in the order they were saved;
    /// returns how many. The rows stream from the database to a synced temporary file that is
    /// then renamed over the old manifest, so memory stays flat and no reader sees half of it.
    pub fn write_manifest(&self, out_dir: &Path) -> Result<usize, crate::Error> {
        use std::io::Write;
        let target = out_dir.join("manifest.jsonl");
        let tmp = out_dir.join(".imgcrawl").join("manifest.jsonl.part");
        let failed = |e: rusqlite::Error| crate::Error::State(format!("reading saved images: {e}"));
        let io = |e: std::io::Error| crate::Error::io("cannot write", &target, e);
        let mut out = std::io::BufWriter::new(std::fs::File::create(&tmp).map_err(io)?);
        let mut stmt = self
            .conn
            .prepare("SELECT row FROM images WHERE state = 1 ORDER BY saved_seq")
            .map_err(failed)?;
        let mut rows = stmt.query([]).map_err(failed)?;
        let mut n = 0;
        while let Some(row) = rows.next().map_err(failed)? {
            let json: String = row.get(0).map_err(failed)?;
            out.write_all(json.as_bytes())
                .and_then(|_| out.write_all(b"\n"))
                .map_err(io)?;
            n += 1;
        }
        let file = out.into_inner().map_err(|e| io(e.into_error()))?;
        file.sync_all().map_err(io)?;
        std::fs::rename(&tmp, &target).map_err(io)?;
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

/// Rewrites `out_dir/manifest.jsonl` from the state database of the crawl in `out_dir` (atomically:
/// a temporary file renamed over the old one); returns the number of images in it.
pub fn export_manifest(out_dir: &Path) -> Result<usize, crate::Error> {
    let db_path = out_dir.join(".imgcrawl").join(STATE_DB);
    if !db_path.exists() {
        return Err(crate::Error::State(format!(
            "{} does not exist: {} holds no imgcrawl crawl",
            db_path.display(),
            out_dir.display()
        )));
    }
    StateDb::open_read_only(&db_path)?.write_manifest(out_dir)
}

/// The saved images recorded in the state database at `db_path`, read without changing it and
/// whatever crawl it belongs to.
pub fn read_saved(db_path: &Path) -> Result<Vec<ManifestRow>, crate::Error> {
    StateDb::open_read_only(db_path)?
        .saved_rows()
        .map_err(|e| crate::Error::State(format!("{}: {e}", db_path.display())))
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
        }
    }

    #[test]
    fn batches_round_trip_into_a_resume() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join(STATE_DB);
        let fp = fingerprint(&[url("http://h/")]);
        let mut db = StateDb::open(&path, &fp).unwrap();
        db.apply(&[
            StateOp::PageQueued {
                url: url("http://h/"),
                depth: 0,
                redirected_from: vec![],
            },
            StateOp::PageQueued {
                url: url("http://h/2"),
                depth: 1,
                redirected_from: vec![url("http://h/r")],
            },
            StateOp::ImageQueued {
                url: url("http://h/a.png"),
                page: url("http://h/"),
                name: Some("A".into()),
                redirected_from: vec![],
            },
            StateOp::ImageQueued {
                url: url("http://h/b.png"),
                page: url("http://h/"),
                name: None,
                redirected_from: vec![],
            },
            StateOp::PageDone(url("http://h/")),
        ])
        .unwrap();
        db.apply(&[StateOp::PageRetry {
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

        let db = StateDb::open(&path, &fp).unwrap();
        let r = db.resume().unwrap();
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
        assert!(err.contains("other start URLs: http://h/"), "{err}");
    }
}
