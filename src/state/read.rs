//! Reading the state: what an earlier run left (the resume), spilled jobs read back in admission
//! order, saved images, and the moves of saved files a crash interrupted.

use std::path::PathBuf;

use rusqlite::params;
use url::Url;

use super::{
    before, image_job, page_job, LoadSpilled, Loaded, Resume, StateDb, IMAGE_COLUMNS, PAGE_COLUMNS,
    REVALIDATING, STALE, WAITING,
};
use crate::job::Earlier;

/// The waiting jobs from row `?1` on, oldest first, at most `?2`.
/// (A saved image waiting to be asked for again is waiting too.)
const WAITING_FROM: &str = "WHERE rowid >= ?1 AND state IN (0, 5) ORDER BY rowid LIMIT ?2";
use crate::records::ManifestRow;
use crate::seen::SeenSet;
use crate::Kind;

/// A saved image as [`StateDb::each_saved_row`] reads it.
#[derive(Debug, Clone, Copy)]
pub struct SavedRow<'a> {
    /// Its manifest row, as JSON.
    pub json: &'a str,
    /// The run that saved it.
    pub first_run: i64,
    /// The last run that found it on a page.
    pub last_run: i64,
    /// The run in which the page it was found on, or its own URL, answered 404 or 410, if one
    /// did (the later of the two).
    pub gone_run: Option<i64>,
    /// The last run that found its bytes changed (`--revalidate-images`), if one did.
    pub changed_run: Option<i64>,
}

/// A saved image as an update with `--revalidate-images` asks for it again.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SavedImage {
    /// Its manifest row.
    pub row: ManifestRow,
    /// The `ETag` and `Last-Modified` its bytes came with.
    pub validators: crate::job::Validators,
}

/// What [`StateDb::resume`] reads of one table.
struct Table<J> {
    /// The waiting jobs read into memory, oldest first.
    jobs: Vec<J>,
    /// Every URL of the table.
    seen: SeenSet,
    /// Waiting jobs left in the database.
    spilled: u64,
    /// The rowid of the first of those.
    spill_from: Option<i64>,
    /// The URLs of saved images waiting to be asked for again.
    revalidating: SeenSet,
}

impl StateDb {
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
                let sql = format!("SELECT {PAGE_COLUMNS} FROM pages {WAITING_FROM}");
                self.waiting_rows(&sql, (from, take), page_job, &mut out.pages)?
            }
            Kind::Image => {
                let sql = format!("SELECT {IMAGE_COLUMNS} FROM images {WAITING_FROM}");
                self.waiting_rows(&sql, (from, take), image_job, &mut out.images)?
            }
        };
        self.spill_from[k] = (load.take < load.spilled).then_some(last + 1);
        Ok(out)
    }

    /// Reads up to `take` waiting jobs from row `from` on with `sql` (its first column the
    /// rowid), each made by `job` (rows that are not jobs any more are passed over), into `out`;
    /// answers the last rowid read (`from - 1` when none).
    fn waiting_rows<J>(
        &self,
        sql: &str,
        (from, take): (i64, i64),
        job: impl Fn(&rusqlite::Row<'_>) -> rusqlite::Result<Option<J>>,
        out: &mut Vec<J>,
    ) -> rusqlite::Result<i64> {
        let mut stmt = self.conn.prepare_cached(sql)?;
        let mut rows = stmt.query(params![from, take])?;
        let mut last = from - 1;
        while let Some(row) = rows.next()? {
            last = row.get(0)?;
            out.extend(job(row)?);
        }
        Ok(last)
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

    /// Saved images whose temporary file, one of `present`, may still have to be moved into
    /// place (a crash between the commit and the rename): temp, final path and where the old
    /// bytes go (for new bytes of an image saved before), all relative to `out_dir`. Rows whose
    /// temporary file is not there were moved before.
    pub fn pending_renames(
        &self,
        present: &std::collections::HashSet<PathBuf>,
    ) -> rusqlite::Result<Vec<(PathBuf, PathBuf, Option<PathBuf>)>> {
        let mut stmt = self
            .conn
            .prepare("SELECT temp, row FROM images WHERE state = 1 AND temp IS NOT NULL")?;
        let mut rows = stmt.query([])?;
        let mut out = Vec::new();
        while let Some(row) = rows.next()? {
            let temp = PathBuf::from(row.get::<_, String>(0)?);
            if !present.contains(&temp) {
                continue;
            }
            if let Ok(m) = serde_json::from_str::<ManifestRow>(&row.get::<_, String>(1)?) {
                out.push((temp, m.path, m.previous));
            }
        }
        Ok(out)
    }

    /// Everything an earlier run left. At most `in_memory` waiting jobs of each kind are read; the
    /// others stay spilled, counted in the [`Resume`], and are read back with
    /// [`load_spilled`](Self::load_spilled).
    pub fn resume(&mut self, in_memory: usize) -> rusqlite::Result<Resume> {
        let mut earlier = Earlier::default();
        let pages = format!("SELECT {PAGE_COLUMNS} FROM pages ORDER BY rowid");
        let pages = self.read_all(&pages, 3, in_memory, page_job, Some(&mut earlier))?;
        let images = format!("SELECT {IMAGE_COLUMNS} FROM images ORDER BY rowid");
        let images = self.read_all(&images, 4, in_memory, image_job, None)?;
        self.spill_from = [pages.spill_from, images.spill_from];
        Ok(Resume {
            seen_pages: pages.seen,
            pages: pages.jobs,
            pages_spilled: pages.spilled,
            seen_images: images.seen,
            images: images.jobs,
            images_spilled: images.spilled,
            saved: self.saved_rows()?,
            cookies: self.meta(super::COOKIES_KEY)?,
            run: self.last_run()?.unwrap_or_default(),
            earlier,
            revalidating: images.revalidating,
        })
    }

    /// Reads every row of `sql` (its columns: rowid, url, ..., the job's state at `state`): each
    /// URL as seen, the first `in_memory` waiting jobs (made by `job`), and the other waiting ones
    /// counted as spilled, from the rowid of the first of them. Stale pages (of earlier runs, not
    /// reached by this update yet) are not seen: what was learnt of them goes to `earlier`.
    fn read_all<J>(
        &self,
        sql: &str,
        state: usize,
        in_memory: usize,
        job: fn(&rusqlite::Row<'_>) -> rusqlite::Result<Option<J>>,
        mut earlier: Option<&mut Earlier>,
    ) -> rusqlite::Result<Table<J>> {
        let mut t = Table {
            jobs: Vec::new(),
            seen: SeenSet::default(),
            spilled: 0,
            spill_from: None,
            revalidating: SeenSet::default(),
        };
        let mut stmt = self.conn.prepare(sql)?;
        let mut rows = stmt.query([])?;
        while let Some(row) = rows.next()? {
            let text: String = row.get(1)?;
            let Ok(url) = Url::parse(&text) else {
                continue;
            };
            let row_state = row.get::<_, i64>(state)?;
            if row_state == STALE {
                if let (Some(earlier), Some(b)) = (earlier.as_deref_mut(), before(row)?) {
                    earlier.insert(&url, b);
                }
                continue;
            }
            if row_state == REVALIDATING {
                t.revalidating.insert(&url);
            }
            if row_state == WAITING || row_state == REVALIDATING {
                if t.jobs.len() < in_memory {
                    t.jobs.extend(job(row)?);
                } else {
                    t.spill_from.get_or_insert(row.get(0)?);
                    t.spilled += 1;
                }
            }
            t.seen.insert(&url);
        }
        Ok(t)
    }

    /// Calls `each` with every saved image (its manifest row as JSON, and in which runs it was
    /// first and last seen, and its page went gone), in the order they were saved, without
    /// holding them all in memory.
    pub fn each_saved_row(&self, mut each: impl FnMut(SavedRow<'_>)) -> rusqlite::Result<usize> {
        let mut stmt = self.conn.prepare(
            "SELECT i.row, i.first_run, i.last_run,
                 NULLIF(MAX(COALESCE(i.gone_run, 0), COALESCE(p.gone_run, 0)), 0), i.changed_run
             FROM images i
             LEFT JOIN pages p ON p.url = i.page WHERE i.state IN (1, 5) ORDER BY i.saved_seq",
        )?;
        let mut rows = stmt.query([])?;
        let mut n = 0;
        while let Some(row) = rows.next()? {
            let json: String = row.get(0)?;
            each(SavedRow {
                json: &json,
                first_run: row.get(1)?,
                last_run: row.get(2)?,
                gone_run: row.get(3)?,
                changed_run: row.get(4)?,
            });
            n += 1;
        }
        Ok(n)
    }

    /// What each of the pages `urls` held when a run last fetched it (see
    /// [`StateOp::PageFetched`]), in order; read in one transaction.
    ///
    /// [`StateOp::PageFetched`]: super::StateOp::PageFetched
    pub fn found(&self, urls: &[Url]) -> rusqlite::Result<Vec<Option<String>>> {
        use rusqlite::OptionalExtension;
        let tx = self.conn.unchecked_transaction()?;
        let mut out = Vec::with_capacity(urls.len());
        {
            let mut stmt = tx.prepare_cached("SELECT found FROM pages WHERE url = ?1")?;
            for url in urls {
                let found = stmt
                    .query_row([url.as_str()], |r| r.get::<_, Option<String>>(0))
                    .optional()?;
                out.push(found.flatten());
            }
        }
        tx.commit()?;
        Ok(out)
    }

    /// The saved image at `url` (`None` when it is not saved, or its row does not parse).
    pub fn saved_image(&self, url: &Url) -> rusqlite::Result<Option<SavedImage>> {
        use rusqlite::OptionalExtension;
        let found = self
            .conn
            .prepare_cached(
                "SELECT row, etag, modified FROM images WHERE url = ?1 AND state IN (1, 5)",
            )?
            .query_row([url.as_str()], |r| {
                let json: Option<String> = r.get(0)?;
                Ok((json, r.get(1)?, r.get(2)?))
            })
            .optional()?;
        Ok(found.and_then(|(json, etag, modified)| {
            let row = serde_json::from_str(&json?).ok()?;
            Some(SavedImage {
                row,
                validators: crate::job::Validators { etag, modified },
            })
        }))
    }

    /// The manifest rows of all saved images, in the order they were saved.
    pub fn saved_rows(&self) -> rusqlite::Result<Vec<ManifestRow>> {
        let mut stmt = self
            .conn
            .prepare("SELECT row FROM images WHERE state IN (1, 5) ORDER BY saved_seq")?;
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
