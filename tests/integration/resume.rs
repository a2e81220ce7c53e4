//! Never losing work: the real binary killed with SIGKILL at several moments and resumed, Ctrl-C,
//! a full disk, and a state that belongs to another crawl.

use std::collections::{BTreeMap, HashSet};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::time::{Duration, Instant};

use imgcrawl::sample_site::SampleSite;
use sha2::{Digest, Sha256};

use crate::crawl::{assert_all_images_saved, list_urls};
use crate::support::{image_files, manifest, output_text, temp_files, TestServer};

fn imgcrawl(args: &[&str]) -> Command {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_imgcrawl"));
    cmd.args(args)
        .env_remove("RUST_LOG")
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    cmd
}

/// `imgcrawl crawl` of the list pages of `site` on `server` into `out`, with few savers and a short
/// backoff so that a crawl takes a few seconds and retries little.
fn crawl_cmd(server: &TestServer, site: SampleSite, out: &Path, extra: &[&str]) -> Command {
    let urls = list_urls(server, site);
    let mut args: Vec<&str> = vec!["crawl"];
    args.extend(urls.iter().map(String::as_str));
    args.extend([
        "-o",
        out.to_str().unwrap(),
        "--savers",
        "4",
        "--fetchers",
        "2",
    ]);
    args.extend(extra);
    let mut cmd = imgcrawl(&args);
    cmd.env("IMGCRAWL_HTTP__RETRY_BACKOFF_MS", "20");
    cmd
}

fn output(child: Child) -> Output {
    child.wait_with_output().expect("wait for imgcrawl")
}

/// Image files under `out` by relative path, with the SHA-256 of their bytes.
fn file_hashes(out: &Path) -> BTreeMap<PathBuf, String> {
    image_files(out)
        .into_iter()
        .map(|p| {
            let bytes = std::fs::read(out.join(&p)).unwrap();
            (p, format!("{:x}", Sha256::digest(bytes)))
        })
        .collect()
}

/// The image URLs the state of `out` holds as saved (via `imgcrawl manifest`).
fn saved_urls(out: &Path) -> HashSet<String> {
    let o = imgcrawl(&["manifest", out.to_str().unwrap()])
        .output()
        .unwrap();
    assert!(o.status.success(), "{}", output_text(&o));
    manifest(out).into_iter().map(|r| r.url).collect()
}

fn send(child: &Child, signal: libc::c_int) {
    // SAFETY: kill only sends a signal to the child we started.
    let rc = unsafe { libc::kill(child.id() as libc::pid_t, signal) };
    assert_eq!(rc, 0, "cannot signal the crawl");
}

#[test]
fn killed_at_any_moment_the_crawl_resumes_and_ends_as_if_never_killed() {
    let site = SampleSite {
        pages: 16,
        per_page: 15,
        page_kb: 0,
    };
    let slow = |p: &str| p.starts_with("/img/").then_some(Duration::from_millis(25));
    // The uninterrupted crawl, on a server of its own.
    let reference_server = TestServer::sample(site, slow);
    let reference = tempfile::tempdir().unwrap();
    let o = output(
        crawl_cmd(&reference_server, site, reference.path(), &[])
            .spawn()
            .unwrap(),
    );
    assert_eq!(
        o.status.code(),
        Some(3),
        "3 broken images: {}",
        output_text(&o)
    );

    let server = TestServer::sample(site, slow);
    let out = tempfile::tempdir().unwrap();
    let mut kills = Vec::new();
    for after in [
        Duration::from_millis(250),
        Duration::from_millis(1200),
        Duration::from_millis(2000),
    ] {
        // A small frontier, so that kills also hit jobs waiting only in the state database.
        let mut child = crawl_cmd(&server, site, out.path(), &[])
            .env("IMGCRAWL_FRONTIER_IN_MEMORY", "7")
            .spawn()
            .unwrap();
        std::thread::sleep(after);
        child.kill().unwrap(); // SIGKILL
        let status = child.wait().unwrap();
        assert_eq!(status.code(), None, "killed by a signal, not finished");
        kills.push((Instant::now(), saved_urls(out.path())));
    }
    assert!(
        kills.last().unwrap().1.len() > 20,
        "the crawl had saved images by the last kill"
    );
    let o = output(
        crawl_cmd(&server, site, out.path(), &[])
            .env("IMGCRAWL_FRONTIER_IN_MEMORY", "7")
            .spawn()
            .unwrap(),
    );
    assert_eq!(o.status.code(), Some(3), "{}", output_text(&o));
    assert!(
        output_text(&o).contains("resuming: "),
        "{}",
        output_text(&o)
    );

    // The same files as the uninterrupted crawl, byte for byte. Which of two byte-identical URLs
    // (or of two images with one caption) gets the plain name depends on which arrives first, in
    // any two runs, so the files are compared by content; every URL's bytes and name are checked
    // against the site below.
    let sums = |out: &Path| {
        let mut v: Vec<String> = file_hashes(out).into_values().collect();
        v.sort();
        v
    };
    let (got, want) = (sums(out.path()), sums(reference.path()));
    assert_eq!(got.len(), want.len(), "number of files");
    assert!(got == want, "the files do not hold the same bytes");
    assert_all_images_saved(site, &server, out.path());
    assert_eq!(temp_files(out.path()), 0, "a temporary file was left");
    let state_dir: Vec<String> = std::fs::read_dir(out.path().join(".imgcrawl"))
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    assert!(
        !state_dir.iter().any(|n| n.ends_with("-wal")),
        "the state database was not closed: {state_dir:?}"
    );

    // Nothing saved before a kill was downloaded again after it.
    let log = server.log();
    for (killed_at, saved) in &kills {
        for url in saved {
            let path = url.replace(&server.url(""), "");
            let again = log
                .iter()
                .filter(|(t, p)| t > killed_at && *p == path)
                .count();
            assert_eq!(again, 0, "{path} was saved, then downloaded again");
        }
    }
}

#[test]
fn ctrl_c_or_sigterm_stops_cleanly_and_the_next_run_finishes() {
    let site = SampleSite {
        pages: 12,
        per_page: 10,
        page_kb: 0,
    };
    let server = TestServer::sample(site, |p| {
        p.starts_with("/img/").then_some(Duration::from_millis(60))
    });
    let out = tempfile::tempdir().unwrap();
    let mut saved_before = 0;
    for (signal, name) in [(libc::SIGINT, "Ctrl-C"), (libc::SIGTERM, "SIGTERM")] {
        let child = crawl_cmd(&server, site, out.path(), &[]).spawn().unwrap();
        // Stop it once it has saved some more images.
        let deadline = Instant::now() + Duration::from_secs(20);
        while manifest(out.path()).len() < saved_before + 10 && Instant::now() < deadline {
            std::thread::sleep(Duration::from_millis(50));
        }
        let t = Instant::now();
        send(&child, signal);
        let o = output(child);
        let said = output_text(&o);
        assert!(
            t.elapsed() < Duration::from_secs(5),
            "{name}: {:?}",
            t.elapsed()
        );
        assert_eq!(o.status.code(), Some(130), "{name}: {said}");
        assert!(said.contains("stopped before the end"), "{name}: {said}");
        if saved_before > 0 {
            let resumed = format!("pages waiting, {saved_before} images saved");
            assert!(said.contains(&resumed), "{name}: {said}");
        }
        let saved = manifest(out.path()).len();
        assert!(saved > saved_before && saved < 120, "{name}: {saved}");
        assert_eq!(temp_files(out.path()), 0, "{name}");
        saved_before = saved;
    }
    let o = output(crawl_cmd(&server, site, out.path(), &[]).spawn().unwrap());
    let said = output_text(&o);
    assert_eq!(o.status.code(), Some(3), "{said}");
    let resumed = format!("pages waiting, {saved_before} images saved");
    assert!(
        said.contains("resuming: ") && said.contains(&resumed),
        "{said}"
    );
    assert_all_images_saved(site, &server, out.path());
}

#[test]
fn an_output_directory_that_cannot_be_created_is_a_clear_error() {
    let parent = tempfile::tempdir().unwrap();
    let file = parent.path().join("a-file");
    std::fs::write(&file, b"not a directory").unwrap();
    let out = file.join("out");
    let o = imgcrawl(&["crawl", "http://127.0.0.1:9/", "-o", out.to_str().unwrap()])
        .output()
        .unwrap();
    let said = output_text(&o);
    assert_eq!(o.status.code(), Some(1), "{said}");
    assert!(said.contains("cannot create output directory"), "{said}");
    assert!(said.contains("a-file/out"), "{said}");
}

#[test]
fn another_crawl_in_the_same_directory_is_refused_unless_fresh() {
    let site = SampleSite {
        pages: 2,
        per_page: 3,
        page_kb: 0,
    };
    let server = TestServer::sample(site, |_| None);
    let out = tempfile::tempdir().unwrap();
    let o = output(crawl_cmd(&server, site, out.path(), &[]).spawn().unwrap());
    assert_eq!(o.status.code(), Some(3), "{}", output_text(&o));
    let other = server.url("/list/1.html");
    let dir = out.path().to_str().unwrap();
    let o = imgcrawl(&["crawl", &other, "-o", dir]).output().unwrap();
    assert_eq!(o.status.code(), Some(2), "{}", output_text(&o));
    assert!(
        output_text(&o).contains("other start URLs"),
        "{}",
        output_text(&o)
    );
    assert!(output_text(&o).contains("--fresh"), "{}", output_text(&o));
    let o = imgcrawl(&["crawl", &other, "-o", dir, "--fresh"])
        .output()
        .unwrap();
    assert_eq!(o.status.code(), Some(3), "{}", output_text(&o));
    assert!(!output_text(&o).contains("resuming"), "{}", output_text(&o));
    assert_eq!(
        manifest(out.path()).len(),
        6,
        "the crawl started over and saved everything"
    );
}

/// Mounts a tmpfs of `size` at `dir`; `Err` with the reason when this machine does not allow it.
fn mount_tmpfs(dir: &Path, size: &str) -> Result<(), String> {
    // SAFETY: geteuid has no preconditions.
    if unsafe { libc::geteuid() } != 0 {
        return Err("not running as root".into());
    }
    let o = Command::new("mount")
        .args(["-t", "tmpfs", "-o", &format!("size={size}"), "tmpfs"])
        .arg(dir)
        .output()
        .map_err(|e| format!("cannot run mount: {e}"))?;
    if o.status.success() {
        Ok(())
    } else {
        Err(format!(
            "mount failed: {}",
            String::from_utf8_lossy(&o.stderr).trim()
        ))
    }
}

#[test]
fn a_full_disk_ends_the_crawl_with_a_clear_error_and_keeps_what_was_saved() {
    let site = SampleSite {
        pages: 12,
        per_page: 20,
        page_kb: 0,
    };
    let server = TestServer::sample(site, |_| None);
    let mnt = tempfile::tempdir().unwrap();
    if let Err(why) = mount_tmpfs(mnt.path(), "1500k") {
        println!("SKIPPED a_full_disk_...: needs a small tmpfs ({why})");
        return;
    }
    struct Unmount<'a>(&'a Path);
    impl Drop for Unmount<'_> {
        fn drop(&mut self) {
            let _ = Command::new("umount").arg(self.0).status();
        }
    }
    let _unmount = Unmount(mnt.path());
    let out = mnt.path().join("out");
    let o = output(crawl_cmd(&server, site, &out, &[]).spawn().unwrap());
    assert_eq!(o.status.code(), Some(1), "{}", output_text(&o));
    let said = output_text(&o);
    assert!(
        said.contains("cannot write to the output directory"),
        "{said}"
    );
    assert!(
        said.contains("No space left on device") || said.contains("disk is full"),
        "{said}"
    );

    // The state opens and agrees with the files: every saved image is there, whole.
    let conn = rusqlite::Connection::open(out.join(".imgcrawl/state.db")).unwrap();
    let check: String = conn
        .query_row("PRAGMA integrity_check", [], |r| r.get(0))
        .unwrap();
    assert_eq!(check, "ok");
    let rows: Vec<imgcrawl::records::ManifestRow> = conn
        .prepare("SELECT row FROM images WHERE state = 1")
        .unwrap()
        .query_map([], |r| r.get::<_, String>(0))
        .unwrap()
        .map(|json| serde_json::from_str(&json.unwrap()).unwrap())
        .collect();
    drop(conn);
    assert!(
        !rows.is_empty(),
        "some images were saved before the disk filled"
    );
    for row in &rows {
        let bytes = std::fs::read(out.join(&row.path)).unwrap();
        assert_eq!(
            format!("{:x}", Sha256::digest(&bytes)),
            row.sha256,
            "{:?}",
            row.path
        );
    }
    assert_eq!(temp_files(&out), 0, "a partial file was left");
}
