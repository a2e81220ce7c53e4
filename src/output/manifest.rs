//! `manifest.jsonl`, written only here: rows appended as their images are committed, the whole
//! file rewritten from the state database at the start and the end of a crawl, and an old
//! manifest read back into the state of a directory that has none.

use std::fs::{self, File};
use std::io::{self, BufRead, BufReader, Write};

use std::path::Path;

use url::Url;

use super::{safe_relative, Layout, RecordFile};
use crate::error::Error;
use crate::records::ManifestRow;
use crate::state::{StateDb, StateOp};

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
            row,
            temp: None,
        });
    }
    ops
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
    let n = db
        .each_saved_row(|json| {
            if written.is_ok() {
                written = out
                    .write_all(json.as_bytes())
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
    let db_path = layout.state_db();
    if !db_path.exists() {
        return Err(Error::io(
            "no imgcrawl crawl here: cannot find",
            db_path,
            io::ErrorKind::NotFound.into(),
        ));
    }
    rewrite(&layout, &StateDb::open_read_only(&db_path)?)
}
