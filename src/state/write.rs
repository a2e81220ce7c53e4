//! Writing the state: a batch of [`StateOp`]s applied in one transaction, each op by one prepared
//! statement.

use rusqlite::{params, CachedStatement, Transaction};

use super::{chain, StateDb, StateOp, DONE, FAILED, REDIRECTED, REVALIDATING};
use crate::Kind;

/// The prepared statements of one batch.
struct Statements<'tx> {
    /// A new page (ignored if known).
    page_new: CachedStatement<'tx>,
    /// A page's state.
    page_state: CachedStatement<'tx>,
    /// A page's failed attempts.
    page_retry: CachedStatement<'tx>,
    /// A new image (ignored if known).
    image_new: CachedStatement<'tx>,
    /// An image saved, with its manifest row.
    image_saved: CachedStatement<'tx>,
    /// An image's state.
    image_state: CachedStatement<'tx>,
    /// An image's failed attempts.
    image_retry: CachedStatement<'tx>,
    /// A page fetched: what it held and its validators.
    page_fetched: CachedStatement<'tx>,
    /// A page unchanged or gone.
    page_again: CachedStatement<'tx>,
    /// A stale page admitted again.
    page_readmit: CachedStatement<'tx>,
    /// An image found again.
    image_seen: CachedStatement<'tx>,
    /// A saved image replaced by other bytes (`--revalidate-images`).
    image_replaced: CachedStatement<'tx>,
    /// The run being recorded.
    run: i64,
    /// Whether stale pages may be admitted again (see [`StateDb::begin`]).
    stale: bool,
}

impl<'tx> Statements<'tx> {
    fn prepare(tx: &'tx Transaction<'_>, run: i64, stale: bool) -> rusqlite::Result<Self> {
        Ok(Statements {
            run,
            stale,
            page_fetched: tx.prepare_cached(
                "UPDATE pages SET state = 1, etag = ?2, modified = ?3, found = ?4, gone_run = NULL
                 WHERE url = ?1",
            )?,
            page_again: tx.prepare_cached(
                "UPDATE pages SET state = ?2, gone_run = CASE WHEN ?3 IS NULL THEN NULL
                 ELSE COALESCE(gone_run, ?3) END WHERE url = ?1",
            )?,
            image_seen: tx.prepare_cached("UPDATE images SET last_run = ?2 WHERE url = ?1")?,
            page_readmit: tx.prepare_cached(
                "UPDATE pages SET rowid = (SELECT MAX(rowid) + 1 FROM pages), state = 0,
                 depth = ?2, via = ?3, barren = ?4, attempts = 0 WHERE url = ?1 AND state = 4",
            )?,
            page_new: tx.prepare_cached(
                "INSERT OR IGNORE INTO pages (url, depth, state, via, barren) VALUES (?1, ?2, 0, ?3, ?4)",
            )?,
            page_state: tx.prepare_cached("UPDATE pages SET state = ?2 WHERE url = ?1")?,
            page_retry: tx.prepare_cached("UPDATE pages SET attempts = ?2 WHERE url = ?1")?,
            image_new: tx.prepare_cached(
                "INSERT OR IGNORE INTO images (url, page, name, state, via) VALUES (?1, ?2, ?3, 0, ?4)",
            )?,
            image_saved: tx.prepare_cached(
                "UPDATE images SET state = 1, saved_seq = ?2, row = ?3, temp = ?4, first_run = ?5,
                 last_run = ?5, etag = ?6, modified = ?7, gone_run = NULL WHERE url = ?1",
            )?,
            image_replaced: tx.prepare_cached(
                "UPDATE images SET state = 1, row = ?2, temp = ?3, last_run = ?4, changed_run = ?4,
                 etag = ?5, modified = ?6, gone_run = NULL WHERE url = ?1",
            )?,
            // A saved image asked for again that failed, was skipped or redirected keeps its
            // file and row: it is saved still.
            image_state: tx.prepare_cached(&format!(
                "UPDATE images SET state = CASE state WHEN {REVALIDATING} THEN {DONE} ELSE ?2 END
                 WHERE url = ?1"
            ))?,
            image_retry: tx.prepare_cached("UPDATE images SET attempts = ?2 WHERE url = ?1")?,
        })
    }

    /// The state statement of jobs of `kind`.
    fn state(&mut self, kind: Kind) -> &mut CachedStatement<'tx> {
        match kind {
            Kind::Page => &mut self.page_state,
            Kind::Image => &mut self.image_state,
        }
    }

    /// Applies one op; `seq` numbers saved images, `spill_from` remembers each kind's first
    /// spilled row, `saved` gets the manifest line of a saved image.
    fn apply(
        &mut self,
        tx: &Transaction<'_>,
        op: &StateOp,
        (seq, spill_from): (&mut i64, &mut [Option<i64>; 2]),
        saved: &mut String,
    ) -> rusqlite::Result<()> {
        let (kind, added, spilled) = match op {
            StateOp::PageQueued {
                url,
                depth,
                barren,
                redirected_from,
                spilled,
            } => {
                let from = chain(redirected_from);
                let params = params![url.as_str(), depth, from, barren];
                // A stale page (an earlier run's) is admitted again in its own row, moved to
                // the end so that spilled jobs stay in admission order, keeping what was learnt
                // of it.
                let moved = match self.stale {
                    true => self.page_readmit.execute(params)?,
                    false => 0,
                };
                let added = match moved {
                    0 => self.page_new.execute(params)?,
                    _ => {
                        if *spilled && spill_from[Kind::Page as usize].is_none() {
                            spill_from[Kind::Page as usize] = Some(tx.query_row(
                                "SELECT rowid FROM pages WHERE url = ?1",
                                [url.as_str()],
                                |r| r.get(0),
                            )?);
                        }
                        0
                    }
                };
                (Kind::Page, added, *spilled)
            }
            StateOp::ImageQueued {
                url,
                page,
                name,
                redirected_from,
                spilled,
            } => {
                let from = chain(redirected_from);
                let params = params![url.as_str(), page.as_str(), name, from];
                (Kind::Image, self.image_new.execute(params)?, *spilled)
            }
            StateOp::ImageSaved {
                url,
                row,
                temp,
                validators: v,
            } => {
                let json = serde_json::to_string(row).expect("a manifest row always serialises");
                let temp = temp.as_ref().map(|t| t.to_string_lossy().into_owned());
                if let Some(previous) = &row.previous {
                    let params = params![url.as_str(), &json, temp, self.run, v.etag, v.modified];
                    self.image_replaced.execute(params)?;
                    if row.duplicate_of.is_none() {
                        follow_displaced(tx, url.as_str(), &row.path, previous)?;
                    }
                } else {
                    let params = params![
                        url.as_str(),
                        *seq,
                        &json,
                        temp,
                        self.run,
                        v.etag,
                        v.modified
                    ];
                    self.image_saved.execute(params)?;
                    *seq += 1;
                }
                saved.push_str(&json);
                saved.push('\n');
                return Ok(());
            }
            StateOp::ImageRevalidating { url, spilled } => {
                // To the end of the table, so that a spilled one is read back in its turn.
                let moved = tx
                    .prepare_cached(&format!(
                        "UPDATE images SET state = {REVALIDATING}, attempts = 0,
                         rowid = (SELECT MAX(rowid) + 1 FROM images) WHERE url = ?1 AND state = {DONE}"
                    ))?
                    .execute([url.as_str()])?;
                let first = &mut spill_from[Kind::Image as usize];
                if *spilled && moved == 1 && first.is_none() {
                    *first = Some(max_rowid(tx)?);
                }
                return Ok(());
            }
            StateOp::ImageUnchanged { url, validators } => {
                let (url, run) = (url.as_str(), self.run);
                match validators {
                    Some(v) => tx
                        .prepare_cached(
                            "UPDATE images SET state = 1, last_run = ?2, gone_run = NULL,
                             etag = ?3, modified = ?4 WHERE url = ?1",
                        )?
                        .execute(params![url, run, v.etag, v.modified])?,
                    None => tx
                        .prepare_cached(
                            "UPDATE images SET state = 1, last_run = ?2, gone_run = NULL
                             WHERE url = ?1",
                        )?
                        .execute(params![url, run])?,
                };
                return Ok(());
            }
            StateOp::ImageGone(url) => {
                tx.prepare_cached(
                    "UPDATE images SET state = 1, gone_run = COALESCE(gone_run, ?2) WHERE url = ?1",
                )?
                .execute(params![url.as_str(), self.run])?;
                return Ok(());
            }
            StateOp::PageDone(url) => return self.set(Kind::Page, url, DONE),
            StateOp::PageFetched {
                url,
                validators,
                found,
            } => {
                let v = validators;
                let params = params![url.as_str(), v.etag, v.modified, found];
                self.page_fetched.execute(params)?;
                return Ok(());
            }
            StateOp::PageUnchanged(url) => {
                let params = params![url.as_str(), DONE, None::<i64>];
                self.page_again.execute(params)?;
                return Ok(());
            }
            StateOp::PageGone(url) => {
                self.page_again
                    .execute(params![url.as_str(), FAILED, self.run])?;
                return Ok(());
            }
            StateOp::ImageSeen(url) => {
                self.image_seen.execute(params![url.as_str(), self.run])?;
                return Ok(());
            }
            StateOp::Cookies(json) => {
                tx.execute(
                    "INSERT OR REPLACE INTO meta (key, value) VALUES (?1, ?2)",
                    params![super::COOKIES_KEY, json],
                )?;
                return Ok(());
            }
            StateOp::Failed(kind, url) => return self.set(*kind, url, FAILED),
            StateOp::Redirected(Kind::Page, url) => return self.set(Kind::Page, url, DONE),
            StateOp::Redirected(Kind::Image, url) => return self.set(Kind::Image, url, REDIRECTED),
            StateOp::Retry {
                kind,
                url,
                attempts,
            } => {
                let retry = match kind {
                    Kind::Page => &mut self.page_retry,
                    Kind::Image => &mut self.image_retry,
                };
                retry.execute(params![url.as_str(), attempts])?;
                return Ok(());
            }
        };
        let first = &mut spill_from[kind as usize];
        if spilled && added == 1 && first.is_none() {
            *first = Some(tx.last_insert_rowid());
        }
        Ok(())
    }

    /// Sets the state of the job of `kind` at `url`.
    fn set(&mut self, kind: Kind, url: &url::Url, state: i64) -> rusqlite::Result<()> {
        self.state(kind).execute(params![url.as_str(), state])?;
        Ok(())
    }
}

/// The rowid of the table's last image.
fn max_rowid(tx: &Transaction<'_>) -> rusqlite::Result<i64> {
    tx.query_row("SELECT COALESCE(MAX(rowid), 0) FROM images", [], |r| {
        r.get(0)
    })
}

/// The file at `path` (the image at `url` had it) moves to `previous`, new bytes taking its
/// place: the saved images that were duplicates of it now name `previous`.
fn follow_displaced(
    tx: &Transaction<'_>,
    url: &str,
    path: &std::path::Path,
    previous: &std::path::Path,
) -> rusqlite::Result<()> {
    let (path, previous) = (path.to_string_lossy(), previous.to_string_lossy());
    tx.prepare_cached(
        "UPDATE images SET row = json_set(row, '$.path', ?3, '$.duplicate_of', ?3)
         WHERE state IN (1, 5) AND url != ?1 AND json_extract(row, '$.duplicate_of') = ?2",
    )?
    .execute(params![url, path.as_ref(), previous.as_ref()])?;
    Ok(())
}

impl StateDb {
    /// Applies `ops` in one transaction. Answers the manifest lines of the images it records as
    /// saved, in order (each row is serialised once, for the state and for `manifest.jsonl`).
    pub fn apply(&mut self, ops: &[StateOp]) -> rusqlite::Result<String> {
        let mut spill_from = self.spill_from;
        let mut saved = String::new();
        let tx = self.conn.transaction()?;
        {
            let mut seq: i64 = tx.query_row(
                "SELECT COALESCE(MAX(saved_seq), 0) + 1 FROM images",
                [],
                |r| r.get(0),
            )?;
            let mut statements = Statements::prepare(&tx, self.run, self.stale)?;
            for op in ops {
                statements.apply(&tx, op, (&mut seq, &mut spill_from), &mut saved)?;
            }
        }
        tx.commit()?;
        self.spill_from = spill_from;
        Ok(saved)
    }
}
