//! Small file-system helpers of the output directory: vectored writes, syncs, the lock, symbolic
//! link refusal, and what the file system allows (writable, longest name, disk trouble).

use std::fs::{self, File, OpenOptions};
use std::io::{self, Write};
use std::os::unix::fs::OpenOptionsExt;
use std::path::Path;

use bytes::Bytes;

use crate::error::Error;

/// Writes `chunks` in order with as few system calls as the kernel allows (one `writev` for a
/// typical image), going on after a partial write.
pub fn write_all_chunks(f: &mut File, chunks: &[Bytes]) -> io::Result<()> {
    let mut slices: Vec<io::IoSlice<'_>> = chunks
        .iter()
        .filter(|c| !c.is_empty())
        .map(|c| io::IoSlice::new(c))
        .collect();
    let mut rest = &mut slices[..];
    while !rest.is_empty() {
        match f.write_vectored(rest) {
            Ok(0) => return Err(io::ErrorKind::WriteZero.into()),
            Ok(n) => io::IoSlice::advance_slices(&mut rest, n),
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(e) => return Err(e),
        }
    }
    Ok(())
}

/// Refuses a symbolic link where imgcrawl writes its own files: it is never followed.
pub fn refuse_symlink(path: &Path) -> Result<(), Error> {
    match fs::symlink_metadata(path) {
        Ok(m) if m.file_type().is_symlink() => Err(Error::Symlink {
            path: path.to_path_buf(),
        }),
        _ => Ok(()),
    }
}

/// Whether some directory on the way from `out` to `rel` is a symbolic link.
pub fn through_symlink(out: &Path, rel: &Path) -> bool {
    let mut p = out.to_path_buf();
    let Some(parent) = rel.parent() else {
        return false;
    };
    parent.components().any(|c| {
        p.push(c);
        fs::symlink_metadata(&p).is_ok_and(|m| m.file_type().is_symlink())
    })
}

/// Locks `out` for this crawl: `.imgcrawl/lock` is held with `flock` for as long as the crawl
/// runs (the kernel lets it go when the process ends, even by `kill -9`) and holds its PID, so a
/// second crawl started on the same directory stops at once and names the first.
pub fn lock_output(out: &Path, path: &Path) -> Result<File, Error> {
    use std::io::Read;
    use std::os::fd::AsRawFd;
    let mut f = OpenOptions::new()
        .read(true)
        .write(true)
        .create(true)
        .truncate(false)
        .custom_flags(libc::O_NOFOLLOW)
        .open(path)
        .map_err(|e| Error::io("cannot open", path, e))?;
    // SAFETY: flock only uses the descriptor, which `f` keeps open for the call.
    if unsafe { libc::flock(f.as_raw_fd(), libc::LOCK_EX | libc::LOCK_NB) } != 0 {
        let e = io::Error::last_os_error();
        if e.raw_os_error() != Some(libc::EWOULDBLOCK) {
            return Err(Error::io("cannot lock", path, e));
        }
        let mut pid = String::new();
        let _ = f.read_to_string(&mut pid);
        let pid = pid.trim();
        let holder = if pid.is_empty() {
            "another imgcrawl crawl".to_string()
        } else {
            format!("another imgcrawl crawl (PID {pid})")
        };
        return Err(Error::Busy {
            dir: out.to_path_buf(),
            holder,
        });
    }
    f.set_len(0)
        .and_then(|()| f.write_all(format!("{}\n", std::process::id()).as_bytes()))
        .map_err(|e| Error::io("cannot write", path, e))?;
    Ok(f)
}

/// `path` as a C string for a libc call (`None` if it holds a NUL, which no real path does).
pub fn c_path(path: &Path) -> Option<std::ffi::CString> {
    use std::os::unix::ffi::OsStrExt;
    std::ffi::CString::new(path.as_os_str().as_bytes()).ok()
}

/// Whether this process may create files in the directory `dir`.
pub fn writable(dir: &Path) -> bool {
    let Some(c) = c_path(dir) else {
        return false;
    };
    // SAFETY: access only reads the NUL-terminated path, which `c` keeps alive for the call.
    unsafe { libc::access(c.as_ptr(), libc::W_OK | libc::X_OK) == 0 }
}

/// The longest file name the file system holding `dir` takes, in bytes (255 when it does not say).
pub fn name_max(dir: &Path) -> usize {
    let Some(c) = c_path(dir) else {
        return 255;
    };
    // SAFETY: pathconf only reads the NUL-terminated path, which `c` keeps alive for the call.
    let n = unsafe { libc::pathconf(c.as_ptr(), libc::_PC_NAME_MAX) };
    if n > 0 {
        n as usize
    } else {
        255
    }
}

/// Whether an error means the output's disk as a whole cannot be written (full, read-only, out of
/// quota, failing), which ends the crawl, rather than one name that cannot be made.
pub fn is_disk_trouble(e: &io::Error) -> bool {
    matches!(
        e.raw_os_error(),
        Some(libc::ENOSPC | libc::EROFS | libc::EDQUOT | libc::EIO)
    )
}

/// Removes a file if it exists.
pub fn remove_if_there(path: &Path) -> Result<(), Error> {
    match fs::remove_file(path) {
        Err(e) if e.kind() != io::ErrorKind::NotFound => Err(Error::io("cannot remove", path, e)),
        _ => Ok(()),
    }
}

/// Makes the data of `files` durable before their state is committed: one `syncfs` of the file
/// system holding `out_dir` on Linux (one flush for the whole batch), else one `fsync` per file.
pub fn sync_files<'a>(out_dir: &Path, files: impl Iterator<Item = &'a Path>) -> Result<(), Error> {
    #[cfg(target_os = "linux")]
    {
        use std::os::fd::AsRawFd;
        let _ = files;
        let dir = File::open(out_dir).map_err(|e| Error::io("cannot open", out_dir, e))?;
        // SAFETY: syncfs only reads the descriptor, which `dir` keeps open for the call.
        if unsafe { libc::syncfs(dir.as_raw_fd()) } != 0 {
            return Err(Error::io(
                "cannot sync",
                out_dir,
                io::Error::last_os_error(),
            ));
        }
        Ok(())
    }
    #[cfg(not(target_os = "linux"))]
    {
        let _ = out_dir;
        for path in files {
            File::open(path)
                .and_then(|f| f.sync_all())
                .map_err(|e| Error::io("cannot sync", path, e))?;
        }
        Ok(())
    }
}

/// Whether a path read from a manifest stays inside `out_dir` (manifests can be edited by hand).
pub fn safe_relative(p: &Path) -> bool {
    p.components()
        .all(|c| matches!(c, std::path::Component::Normal(_)))
        && p.components().next().is_some()
}
