//! Reading the state: what an earlier run left (the resume), spilled jobs read back in admission
//! order, saved images, and the moves of saved files a crash interrupted.

use std::path::PathBuf;

use rusqlite::params;
use url::Url;

use super::{
    image_job, page_job, LoadSpilled, Loaded, Resume, StateDb, IMAGE_COLUMNS, PAGE_COLUMNS, WAITING,
};

/// The waiting jobs from row `?1` on, oldest first, at most `?2`.
const WAITING_FROM: &str = "WHERE rowid >= ?1 AND state = 0 ORDER BY rowid LIMIT ?2";
use crate::records::ManifestRow;
use crate::Kind;

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
        let mut stmt = self
            .conn
            .prepare(&format!("SELECT {PAGE_COLUMNS} FROM pages ORDER BY rowid"))?;
        let mut rows = stmt.query([])?;
        while let Some(row) = rows.next()? {
            let text: String = row.get(1)?;
            let Ok(url) = Url::parse(&text) else {
                continue;
            };
            if row.get::<_, i64>(3)? == WAITING {
                if r.pages.len() < in_memory {
                    r.pages.extend(page_job(row)?);
                } else {
                    self.spill_from[0].get_or_insert(row.get(0)?);
                    r.pages_spilled += 1;
                }
            }
            r.seen_pages.insert(&url);
        }
        drop(rows);
        drop(stmt);
        let mut stmt = self.conn.prepare(&format!(
            "SELECT {IMAGE_COLUMNS} FROM images ORDER BY rowid"
        ))?;
        let mut rows = stmt.query([])?;
        while let Some(row) = rows.next()? {
            let text: String = row.get(1)?;
            let Ok(url) = Url::parse(&text) else {
                continue;
            };
            if row.get::<_, i64>(4)? == WAITING {
                if r.images.len() < in_memory {
                    r.images.extend(image_job(row)?);
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
