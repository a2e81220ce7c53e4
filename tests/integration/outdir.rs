//! The output directory belongs to one crawl and holds only what it wrote: names that cannot be
//! made fail (or move) that image alone, names one file system would take for one never overwrite
//! each other, a second crawl on the same directory is refused, and symbolic links planted in it
//! are never written through.

use std::path::Path;
use std::process::Command;

use imgcrawl::sample_site::png;

use crate::support::{errors, image_files, manifest, run_crawl, settings, Reply, TestServer};

fn gallery(paths: &'static [&'static str]) -> TestServer {
    TestServer::start(move |path| {
        if path == "/robots.txt" {
            return Reply::Status(404);
        }
        if path == "/" {
            let imgs: String = paths.iter().map(|p| format!("<img src='{p}'>")).collect();
            return Reply::Ok("text/html", imgs.into_bytes());
        }
        match paths.iter().position(|p| *p == path) {
            Some(i) => Reply::Ok("image/png", png(100 + i as u64, 7, 7)),
            None => Reply::Status(404),
        }
    })
}

#[actix_rt::test]
async fn a_file_where_a_directory_is_needed_does_not_end_the_crawl() {
    // Under {dir}, /x/a.png is a file and /x/a.png/b.png needs a directory of the same name; in
    // either order, and with names differing only by case or Unicode normalization.
    let server = gallery(&[
        "/x/a.png",
        "/x/a.png/b.png",
        "/y/c.png/d.png",
        "/y/c.png",
        "/z/Cat.png",
        "/z/cat.png",
        "/z/caf%C3%A9.png",
        "/z/cafe%CC%81.png",
    ]);
    let out = tempfile::tempdir().unwrap();
    let toml = "[output]\nfilename = \"{dir}/{stem}.{ext}\"\n";
    let (report, _) = run_crawl(&[server.url("/")], out.path(), toml).await;
    assert_eq!(report.exit_code(), 0, "{report}");
    assert_eq!(report.stats.images_saved, 8, "{report}");
    assert!(errors(out.path()).is_empty());
    let rows = manifest(out.path());
    assert_eq!(rows.len(), 8);
    // Every file holds its own bytes, and no two paths are one name on a case-insensitive,
    // normalizing file system.
    let mut folded = std::collections::HashSet::new();
    for row in &rows {
        let bytes = std::fs::read(out.path().join(&row.path)).unwrap();
        assert_eq!(bytes.len() as u64, row.bytes, "{row:?}");
        let key = imgcrawl::paths::fold_key(&row.path);
        assert!(folded.insert(key), "{:?} collides", row.path);
    }
    assert_eq!(image_files(out.path()).len(), 8);
}

#[actix_rt::test]
async fn a_planted_symlink_is_never_written_through() {
    let server = gallery(&["/a.png", "/b.png"]);
    let host = "127.0.0.1";
    let outside = tempfile::tempdir().unwrap();

    // A record file pointing outside: refused at start, with a message naming it.
    let out = tempfile::tempdir().unwrap();
    std::os::unix::fs::symlink(
        outside.path().join("stolen"),
        out.path().join("errors.jsonl"),
    )
    .unwrap();
    let err = match imgcrawl::Crawl::start(settings(&[server.url("/")], out.path(), "")).await {
        Ok(_) => panic!("a crawl started through a planted symlink"),
        Err(e) => e.to_string(),
    };
    assert!(
        err.contains("errors.jsonl") && err.contains("symbolic link"),
        "{err}"
    );
    assert!(!outside.path().join("stolen").exists());

    // An image directory pointing outside: the images go elsewhere inside out_dir.
    let out = tempfile::tempdir().unwrap();
    let planted = out.path().join(host);
    std::os::unix::fs::symlink(outside.path(), &planted).unwrap();
    let (report, _) = run_crawl(&[server.url("/")], out.path(), "").await;
    assert_eq!(report.stats.images_saved, 2, "{report}");
    assert_eq!(std::fs::read_dir(outside.path()).unwrap().count(), 0);
    for row in manifest(out.path()) {
        let real = out.path().join(&row.path).canonicalize().unwrap();
        assert!(
            real.starts_with(out.path().canonicalize().unwrap()),
            "{row:?}"
        );
    }
}

fn imgcrawl(out: &Path, url: &str) -> Command {
    let mut c = Command::new(env!("CARGO_BIN_EXE_imgcrawl"));
    c.args(["crawl", "-q", url, "-o"]).arg(out);
    c
}

#[test]
fn a_second_crawl_on_the_same_directory_exits_2_naming_the_first() {
    // The first crawl is held up by a server that answers its start page slowly.
    let server = TestServer::start(|path| match path {
        "/robots.txt" => Reply::Status(404),
        "/" => Reply::Delayed(
            std::time::Duration::from_secs(4),
            Box::new(Reply::Ok("text/html", b"<img src='/a.png'>".to_vec())),
        ),
        "/a.png" => Reply::Ok("image/png", png(1, 5, 5)),
        _ => Reply::Status(404),
    });
    let out = tempfile::tempdir().unwrap();
    let mut first = imgcrawl(out.path(), &server.url("/")).spawn().unwrap();
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
    while !server.hits().contains_key("/") && std::time::Instant::now() < deadline {
        std::thread::sleep(std::time::Duration::from_millis(20));
    }
    let second = imgcrawl(out.path(), &server.url("/")).output().unwrap();
    let text = String::from_utf8_lossy(&second.stderr);
    assert_eq!(second.status.code(), Some(2), "{text}");
    assert!(text.contains(&format!("PID {}", first.id())), "{text}");
    assert!(
        first.wait().unwrap().success(),
        "the first crawl was not disturbed"
    );
    assert_eq!(manifest(out.path()).len(), 1);
}

#[test]
fn a_corrupt_state_database_says_what_to_do_and_fresh_starts_over() {
    let server = gallery(&["/a.png"]);
    let out = tempfile::tempdir().unwrap();
    std::fs::create_dir_all(out.path().join(".imgcrawl")).unwrap();
    std::fs::write(out.path().join(".imgcrawl/state.db"), vec![0x5a; 8192]).unwrap();
    let run = imgcrawl(out.path(), &server.url("/")).output().unwrap();
    let text = String::from_utf8_lossy(&run.stderr);
    assert_eq!(run.status.code(), Some(2), "{text}");
    assert!(text.contains("--fresh"), "{text}");
    let run = imgcrawl(out.path(), &server.url("/"))
        .arg("--fresh")
        .output()
        .unwrap();
    assert_eq!(
        run.status.code(),
        Some(0),
        "{}",
        String::from_utf8_lossy(&run.stderr)
    );
    assert_eq!(manifest(out.path()).len(), 1);
}
