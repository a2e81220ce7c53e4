//! Reading the gallery's files safely: only paths inside the output directory, never through a
//! symbolic link, never more than a limit; and thumbnails made once per distinct image (by its
//! SHA-256) and kept under `OUT/.imgcrawl/thumbs/`. Blocking: called on actix-web's blocking pool,
//! never on a server thread.

use std::fs::{self, File, OpenOptions};
use std::io::{self, Cursor, Read, Write};
use std::os::unix::fs::OpenOptionsExt;
use std::path::{Component, Path, PathBuf};

/// The longest side of a thumbnail, in pixels.
pub const THUMB_PX: u32 = 240;
/// Files larger than this are not read (for a thumbnail or to serve).
pub const MAX_FILE_BYTES: u64 = 256 * 1024 * 1024;
/// Images with a side longer than this are not decoded for a thumbnail.
const MAX_SIDE: u32 = 20_000;

/// Opens `rel`, a path relative to `out_dir`, for reading: refused (`PermissionDenied`) when it is
/// absolute, climbs out with `..`, or passes through or ends at a symbolic link.
pub fn open_inside(out_dir: &Path, rel: &Path) -> io::Result<File> {
    let mut at = out_dir.to_path_buf();
    let parts: Vec<Component<'_>> = rel.components().collect();
    if parts.is_empty() || !parts.iter().all(|c| matches!(c, Component::Normal(_))) {
        return Err(io::Error::new(
            io::ErrorKind::PermissionDenied,
            format!(
                "{} is not a path inside the output directory",
                rel.display()
            ),
        ));
    }
    for part in &parts[..parts.len() - 1] {
        at.push(part);
        if fs::symlink_metadata(&at)?.file_type().is_symlink() {
            return Err(io::Error::new(
                io::ErrorKind::PermissionDenied,
                format!("{} is a symbolic link, never followed", at.display()),
            ));
        }
    }
    at.push(parts[parts.len() - 1]);
    let file = OpenOptions::new()
        .read(true)
        .custom_flags(libc::O_NOFOLLOW | libc::O_NONBLOCK)
        .open(&at)?;
    if !file.metadata()?.is_file() {
        return Err(io::Error::new(
            io::ErrorKind::PermissionDenied,
            format!("{} is not a regular file", at.display()),
        ));
    }
    Ok(file)
}

/// The bytes of `rel` inside `out_dir` (see [`open_inside`]), at most [`MAX_FILE_BYTES`].
pub fn read_inside(out_dir: &Path, rel: &Path) -> io::Result<Vec<u8>> {
    let file = open_inside(out_dir, rel)?;
    if file.metadata()?.len() > MAX_FILE_BYTES {
        return Err(io::Error::other("too large to serve"));
    }
    let mut bytes = Vec::new();
    file.take(MAX_FILE_BYTES).read_to_end(&mut bytes)?;
    Ok(bytes)
}

/// Where the thumbnail of the bytes with hex SHA-256 `sha256` is kept (`None` for a hash that is
/// not 64 hex digits: never a path from untrusted text).
fn thumb_path(out_dir: &Path, sha256: &str) -> Option<PathBuf> {
    let ok = sha256.len() == 64 && sha256.bytes().all(|b| b.is_ascii_hexdigit());
    ok.then(|| {
        let sha = sha256.to_ascii_lowercase();
        out_dir
            .join(".imgcrawl/thumbs")
            .join(&sha[..2])
            .join(format!("{sha}.thumb"))
    })
}

/// The thumbnail (JPEG, or PNG for an image with transparency) of the image in `rel` whose bytes
/// have hex SHA-256 `sha256`: read from the cache, or made from the original (never changed) and
/// kept. `Ok(None)` when there can be none: an image type or a size the decoder does not take.
pub fn thumbnail(out_dir: &Path, rel: &Path, sha256: &str) -> io::Result<Option<Vec<u8>>> {
    let cached = thumb_path(out_dir, sha256);
    if let Some(path) = &cached {
        match fs::read(path) {
            Ok(bytes) => return Ok(Some(bytes)),
            Err(e) if e.kind() == io::ErrorKind::NotFound => {}
            Err(e) => return Err(e),
        }
    }
    let original = read_inside(out_dir, rel)?;
    let Some(thumb) = make_thumbnail(&original) else {
        return Ok(None);
    };
    if let Some(path) = cached {
        // Not kept: made again next time, but shown now.
        if let Err(e) = keep(&path, &thumb) {
            log::warn!("cannot keep the thumbnail {}: {e}", path.display());
        }
    }
    Ok(Some(thumb))
}

/// A thumbnail of the image `bytes`, at most [`THUMB_PX`] on its longer side.
pub fn make_thumbnail(bytes: &[u8]) -> Option<Vec<u8>> {
    let mut reader = image::ImageReader::new(Cursor::new(bytes))
        .with_guessed_format()
        .ok()?;
    let mut limits = image::Limits::default();
    limits.max_image_width = Some(MAX_SIDE);
    limits.max_image_height = Some(MAX_SIDE);
    limits.max_alloc = Some(512 * 1024 * 1024);
    reader.limits(limits);
    let img = reader.decode().ok()?;
    // Never enlarged: a small image is its own thumbnail (re-encoded, so one type of file).
    let small = if img.width() <= THUMB_PX && img.height() <= THUMB_PX {
        img
    } else {
        img.thumbnail(THUMB_PX, THUMB_PX)
    };
    let mut out = Cursor::new(Vec::new());
    if small.color().has_alpha() {
        small
            .to_rgba8()
            .write_to(&mut out, image::ImageFormat::Png)
            .ok()?;
    } else {
        let rgb = small.to_rgb8();
        image::codecs::jpeg::JpegEncoder::new_with_quality(&mut out, 82)
            .encode_image(&rgb)
            .ok()?;
    }
    Some(out.into_inner())
}

/// Writes `bytes` to `path` whole or not at all (a temporary file beside it, then a rename).
fn keep(path: &Path, bytes: &[u8]) -> io::Result<()> {
    let dir = path
        .parent()
        .ok_or_else(|| io::Error::other("no directory"))?;
    fs::create_dir_all(dir)?;
    // Unique to this write: two requests may make the same thumbnail at once (two URLs of the
    // same bytes), and each renames its own file.
    static WRITES: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(0);
    let n = WRITES.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
    let tmp = dir.join(format!(
        ".{}-{n}.{}.part",
        std::process::id(),
        path.file_name().map_or("t".into(), |n| n.to_string_lossy())
    ));
    let mut f = OpenOptions::new()
        .write(true)
        .create(true)
        .truncate(true)
        .custom_flags(libc::O_NOFOLLOW)
        .open(&tmp)?;
    f.write_all(bytes)?;
    drop(f);
    fs::rename(&tmp, path)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_regular_files_inside_are_opened() {
        let dir = tempfile::tempdir().unwrap();
        let out = dir.path().join("out");
        fs::create_dir_all(out.join("site")).unwrap();
        fs::write(out.join("site/a.png"), b"x").unwrap();
        fs::write(dir.path().join("secret"), b"s").unwrap();
        std::os::unix::fs::symlink(dir.path().join("secret"), out.join("site/link.png")).unwrap();
        std::os::unix::fs::symlink(dir.path(), out.join("up")).unwrap();
        assert_eq!(
            read_inside(&out, Path::new("site/a.png")).unwrap(),
            b"x".to_vec()
        );
        for bad in [
            "../secret",
            "/etc/passwd",
            "site/../../secret",
            "site/link.png",
            "up/secret",
            "site",
            "",
        ] {
            assert!(read_inside(&out, Path::new(bad)).is_err(), "{bad} was read");
        }
    }

    #[test]
    fn thumbnails_fit_the_box_and_are_kept_by_hash() {
        let dir = tempfile::tempdir().unwrap();
        let out = dir.path();
        let png = crate::sample_site::png(4, 600, 300);
        fs::create_dir_all(out.join("s")).unwrap();
        fs::write(out.join("s/p.png"), &png).unwrap();
        let sha = format!("{:x}", <sha2::Sha256 as sha2::Digest>::digest(&png));
        let thumb = thumbnail(out, Path::new("s/p.png"), &sha).unwrap().unwrap();
        let small = image::load_from_memory(&thumb).unwrap();
        assert_eq!((small.width(), small.height()), (240, 120));
        // Kept: the original can go, the thumbnail stays.
        fs::remove_file(out.join("s/p.png")).unwrap();
        assert_eq!(
            thumbnail(out, Path::new("s/p.png"), &sha).unwrap().unwrap(),
            thumb
        );
        // A small image is not enlarged.
        let tiny = crate::sample_site::png(5, 30, 20);
        let t = image::load_from_memory(&make_thumbnail(&tiny).unwrap()).unwrap();
        assert_eq!((t.width(), t.height()), (30, 20));
        // Not an image the decoder takes: no thumbnail, and no error.
        fs::write(out.join("s/x.png"), b"<html>not an image</html>").unwrap();
        assert_eq!(thumbnail(out, Path::new("s/x.png"), "zz").unwrap(), None);
    }
}
