//! Placing an image: recognising bytes already saved, picking a free name with the name index,
//! and making its directories as real directories of this crawl (a component that cannot be one
//! gets a suffix; failing that, the image goes to `_unplaced/`).

use std::fs;
use std::path::{Path, PathBuf};

use bytes::Bytes;

use super::fsio::{is_disk_trouble, writable};
use super::names::{sha_key, Index, ShaKey};
use super::{ImageName, Output, Stored};
use crate::error::{Failure, FailureKind};
use crate::paths::{prev_name, shorten_component, NameFields};
use crate::records::ManifestRow;

/// Where bytes with the content key `key` are already saved, if they are: a file of this crawl
/// (the image is a duplicate), or one an earlier crawl saved before this one started over with
/// `--fresh` (taken over as this image's file).
fn known_bytes(index: &mut Index, key: ShaKey) -> Option<Stored> {
    if let Some(existing) = index.by_sha.get(&key) {
        return Some(Stored {
            path: existing.to_path_buf(),
            duplicate: true,
            temp: None,
            previous: None,
        });
    }
    let path = index.reusable.remove(&key)?;
    index.by_sha.insert(key, path.clone());
    Some(Stored {
        path: path.into_path_buf(),
        duplicate: false,
        temp: None,
        previous: None,
    })
}

/// Whether the saved image `old` has a file of its own, that the index knows as holding its bytes.
fn owns(index: &Index, old: &ManifestRow) -> bool {
    old.duplicate_of.is_none()
        && old.duplicate_on.is_none()
        && index.by_sha.get(&sha_key(&old.sha256)).map(|p| p.as_ref()) == Some(old.path.as_path())
}

/// The file that holds the bytes a saved image had (its own, or the one it was a duplicate of).
fn old_file(old: &ManifestRow) -> PathBuf {
    old.duplicate_of.clone().unwrap_or_else(|| old.path.clone())
}

impl Output {
    /// Stores a complete, verified download: writes the last bytes (`data`) to its temporary
    /// file `tmp`, then either names it (to be moved into place by the commit) or, if the same
    /// bytes (`sha256`) are already saved, drops it. `replaces` is the row of the image's earlier
    /// bytes when an update found them changed (see [`Output::replace_in_place`]).
    pub fn write_image(
        &self,
        tmp: u64,
        data: &[Bytes],
        sha256: &str,
        name: &ImageName,
        replaces: Option<&ManifestRow>,
    ) -> Result<Stored, Failure> {
        let tmp_file = self.tmp_path(tmp);
        let fields = NameFields {
            host: &name.host,
            page_host: &name.page_host,
            name: &name.name,
            stem: &name.stem,
            dir: &name.dir,
            sha256,
            ext: name.ext,
        };
        let wanted = self.template.render(&fields);
        let key = sha_key(sha256);
        let mut index = self.index();
        let previous = replaces.map(old_file);
        // Copies are recognised before anything is written: their bytes never touch the disk.
        if let Some(stored) = known_bytes(&mut index, key) {
            drop(index);
            let _ = fs::remove_file(&tmp_file);
            return Ok(Stored { previous, ..stored });
        }
        if let Some(old) = replaces {
            let old_wanted = self.template.render(&NameFields {
                sha256: &old.sha256,
                ..fields
            });
            if old_wanted == wanted && owns(&index, old) {
                return self.replace_in_place(index, old, key, tmp, data);
            }
        }
        let wanted = match self.place(&mut index, &wanted, sha256, name.ext) {
            Ok(w) => w,
            Err(failure) => {
                drop(index);
                let _ = fs::remove_file(&tmp_file);
                return Err(failure);
            }
        };
        // A directory this crawl created holds only files it knows of (all in `taken`), so the
        // names in it need no look at the disk.
        let known_dir = wanted
            .parent()
            .is_some_and(|dir| self.created_here(&self.out_dir.join(dir)));
        let (rel, n) = index.pick(&wanted, |rel| !known_dir && self.occupied(rel));
        index.by_sha.insert(key, rel.clone().into_boxed_path());
        drop(index);
        // Written outside the index lock, so the other writer threads name files meanwhile.
        if let Err(e) = self.append_temp(tmp, data) {
            let mut index = self.index();
            index.unpick(&wanted, &rel, n);
            index.by_sha.remove(&key);
            drop(index);
            let _ = fs::remove_file(&tmp_file);
            return Err(Failure::new(
                FailureKind::Disk,
                format!("cannot write temporary file: {e}"),
            ));
        }
        let temp = Some(self.relative(tmp_file));
        Ok(Stored {
            path: rel,
            duplicate: false,
            temp,
            previous,
        })
    }

    /// Stores new bytes of the saved image `old` under its own name (its file is its own, and the
    /// name does not depend on the bytes): its file is to move to a free `NAME.prev.EXT` beside
    /// it, right before the new one takes its place (see [`Output::commit`]). Otherwise the new
    /// bytes are named like any new image, and the old file stays where it is.
    fn replace_in_place(
        &self,
        mut index: std::sync::MutexGuard<'_, Index>,
        old: &ManifestRow,
        key: ShaKey,
        tmp: u64,
        data: &[Bytes],
    ) -> Result<Stored, Failure> {
        let old_key = sha_key(&old.sha256);
        let tmp_file = self.tmp_path(tmp);
        let (prev, _) = index.pick(&prev_name(&old.path), |rel| self.occupied(rel));
        index.by_sha.insert(old_key, prev.clone().into_boxed_path());
        index.by_sha.insert(key, old.path.clone().into_boxed_path());
        drop(index);
        if let Err(e) = self.append_temp(tmp, data) {
            let mut index = self.index();
            index.give_back(&prev);
            index
                .by_sha
                .insert(old_key, old.path.clone().into_boxed_path());
            index.by_sha.remove(&key);
            drop(index);
            let _ = fs::remove_file(&tmp_file);
            return Err(Failure::new(
                FailureKind::Disk,
                format!("cannot write temporary file: {e}"),
            ));
        }
        Ok(Stored {
            path: old.path.clone(),
            duplicate: false,
            temp: Some(self.relative(tmp_file)),
            previous: Some(prev),
        })
    }

    /// A path of the output directory, relative to it.
    fn relative(&self, path: PathBuf) -> PathBuf {
        path.strip_prefix(&self.out_dir)
            .map(Path::to_path_buf)
            .unwrap_or(path)
    }

    /// Whether something (a file, a directory, a symbolic link, even a dangling one) has the
    /// name `rel` in `out_dir`.
    fn occupied(&self, rel: &Path) -> bool {
        fs::symlink_metadata(self.out_dir.join(rel)).is_ok()
    }

    /// Where an image wanted at `wanted` can go: every component shortened to what the file system
    /// takes, and its directories made (or found) as real directories. A directory component that
    /// cannot be one (a file of this crawl or another has that name, a symbolic link, a directory
    /// that cannot be written, a name too long) gets `-2`, `-3`, ... instead; when nothing works,
    /// the image goes to `_unplaced/` under a name from its hash. Fails only that image when even
    /// that cannot be made, and the crawl (disk full or read-only) when the disk is the trouble.
    fn place(
        &self,
        index: &mut Index,
        wanted: &Path,
        sha256: &str,
        ext: &str,
    ) -> Result<PathBuf, Failure> {
        let max = self
            .name_max
            .load(std::sync::atomic::Ordering::Relaxed)
            .saturating_sub(12)
            .clamp(16, crate::paths::MAX_COMPONENT_BYTES);
        let short: PathBuf = wanted
            .components()
            .map(|c| shorten_component(&c.as_os_str().to_string_lossy(), max))
            .collect();
        let file = short.file_name().map(Path::new).unwrap_or(Path::new("_"));
        let mut why = String::new();
        if let Some(dir) =
            self.make_dirs(index, short.parent().unwrap_or(Path::new("")), &mut why)?
        {
            return Ok(dir.join(file));
        }
        let hash = &sha256[..sha256.len().min(16)];
        let fallback = Path::new("_unplaced");
        if let Some(dir) = self.make_dirs(index, fallback, &mut why)? {
            log::warn!(
                "cannot make a directory for {} ({why}); saving it as {}",
                wanted.display(),
                dir.join(format!("{hash}.{ext}")).display()
            );
            return Ok(dir.join(format!("{hash}.{ext}")));
        }
        Err(Failure::new(
            FailureKind::Name,
            format!("no usable name for {}: {why}", wanted.display()),
        ))
    }

    /// Makes (or finds) the directories of `rel`, giving a component that cannot be a directory
    /// a suffix; `None` when some component cannot be made at all (the reason goes to `why`).
    fn make_dirs(
        &self,
        index: &mut Index,
        rel: &Path,
        why: &mut String,
    ) -> Result<Option<PathBuf>, Failure> {
        let mut dir = PathBuf::new();
        for comp in rel.components() {
            let comp = comp.as_os_str().to_string_lossy();
            let mut found = None;
            for n in 1..=20u32 {
                let candidate = if n == 1 {
                    dir.join(comp.as_ref())
                } else {
                    dir.join(format!("{comp}-{n}"))
                };
                if self.usable_dir(index, &candidate, why)? {
                    found = Some(candidate);
                    break;
                }
            }
            match found {
                Some(d) => dir = d,
                None => return Ok(None),
            }
        }
        Ok(Some(dir))
    }

    /// Whether `rel` is, or can now be made, a real directory of this crawl's output that can be
    /// written: not a file of this crawl, not a symbolic link, not something else on disk.
    fn usable_dir(&self, index: &mut Index, rel: &Path, why: &mut String) -> Result<bool, Failure> {
        if index.is_taken_file(rel) {
            *why = format!("{} is a file", rel.display());
            return Ok(false);
        }
        if index.is_known_dir(rel) {
            return Ok(true);
        }
        let full = self.out_dir.join(rel);
        match fs::symlink_metadata(&full) {
            Ok(m) if m.file_type().is_symlink() => {
                *why = format!("{} is a symbolic link, never followed", rel.display());
                Ok(false)
            }
            Ok(m) if m.is_dir() => {
                if writable(&full) {
                    index.take_dir(rel);
                    self.note_dir(&full, false);
                    Ok(true)
                } else {
                    *why = format!("{} cannot be written", rel.display());
                    Ok(false)
                }
            }
            Ok(_) => {
                *why = format!("{} is a file", rel.display());
                Ok(false)
            }
            Err(_) => match fs::create_dir(&full) {
                Ok(()) => {
                    index.take_dir(rel);
                    self.note_dir(&full, true);
                    Ok(true)
                }
                Err(e) if is_disk_trouble(&e) => Err(Failure::new(
                    FailureKind::Disk,
                    format!("cannot create directory {}: {e}", full.display()),
                )),
                Err(e) => {
                    *why = format!("cannot create {}: {e}", rel.display());
                    Ok(false)
                }
            },
        }
    }

    /// Remembers a directory as made (or found) by this crawl.
    fn note_dir(&self, dir: &Path, created: bool) {
        let mut dirs = self.dirs.lock().unwrap_or_else(|p| p.into_inner());
        dirs.made.entry(dir.to_path_buf()).or_insert(created);
    }
}
