//! `crawl --update --revalidate-images`: saved images asked for again with their validators; a
//! 304 or the same bytes leave the file alone, new bytes replace it with the old file kept as
//! `NAME.prev.EXT` (and its duplicates pointing there), a 404 keeps it; and a kill -9 midway.

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use imgcrawl::sample_site::png;

use crate::support::{manifest, output_text, sha256_hex, Reply, Request, TestServer};

/// An image the site serves: its bytes (`None`: 404) and whether it sends an ETag.
#[derive(Clone)]
struct Image {
    bytes: Option<Vec<u8>>,
    etag: bool,
}

/// The site: one list page of images, by name, with alt text `pic NAME`.
#[derive(Default)]
struct Site {
    images: Vec<(String, Image)>,
}

impl Site {
    fn set(&mut self, name: &str, bytes: Option<Vec<u8>>, etag: bool) {
        let image = Image { bytes, etag };
        match self.images.iter_mut().find(|(n, _)| n == name) {
            Some((_, i)) => *i = image,
            None => self.images.push((name.to_string(), image)),
        }
    }

    fn page(&self) -> String {
        let mut html = String::from("<html><body>");
        for (name, _) in &self.images {
            html.push_str(&format!("<img src='/img/{name}.png' alt='pic {name}'>"));
        }
        html + "</body></html>"
    }
}

/// Serves the site; images answer 304 to a matching `If-None-Match`. While `hold` is set,
/// `/img/a.png` does not answer; `/img/copy.png` always answers late.
fn serve(site: Arc<Mutex<Site>>, hold: Arc<AtomicBool>) -> TestServer {
    TestServer::start_with("127.0.0.1", move |r: &Request| {
        let path = r.path.as_str();
        if path == "/list" {
            return Reply::Ok("text/html", site.lock().unwrap().page().into_bytes());
        }
        while path == "/img/a.png" && hold.load(Ordering::SeqCst) {
            std::thread::sleep(Duration::from_millis(20));
        }
        // a.png's bytes are saved before their copy's, so that the copy is the duplicate.
        if path == "/img/copy.png" {
            std::thread::sleep(Duration::from_millis(300));
        }
        let name = path
            .strip_prefix("/img/")
            .and_then(|p| p.strip_suffix(".png"));
        let site = site.lock().unwrap();
        let Some((_, image)) = site.images.iter().find(|(n, _)| Some(n.as_str()) == name) else {
            return Reply::Status(404);
        };
        let Some(bytes) = &image.bytes else {
            return Reply::Status(404);
        };
        if !image.etag {
            return Reply::Ok("image/png", bytes.clone());
        }
        let etag = format!("\"{}\"", &sha256_hex(bytes)[..16]);
        if r.header("if-none-match") == Some(etag.as_str()) {
            return Reply::with_headers(304, &[("etag", &etag)], b"");
        }
        Reply::with_headers(
            200,
            &[("content-type", "image/png"), ("etag", &etag)],
            bytes,
        )
    })
}

/// The ETag the site sends for `bytes`.
fn etag(bytes: &[u8]) -> String {
    format!("\"{}\"", &sha256_hex(bytes)[..16])
}

/// A crawled site and its output directory.
struct Crawl {
    site: Arc<Mutex<Site>>,
    server: TestServer,
    dir: tempfile::TempDir,
}

impl Crawl {
    /// Serves a.png, its copy (the same bytes), b.png (no ETag), c.png and e.png, and crawls
    /// them once, to the end.
    fn new(hold: Arc<AtomicBool>) -> Crawl {
        let mut site = Site::default();
        site.set("a", Some(png(1, 8, 8)), true);
        site.set("copy", Some(png(1, 8, 8)), true);
        site.set("b", Some(png(2, 8, 8)), false);
        site.set("c", Some(png(3, 8, 8)), true);
        site.set("e", Some(png(5, 8, 8)), true);
        let site = Arc::new(Mutex::new(site));
        let server = serve(site.clone(), hold);
        let crawl = Crawl {
            site,
            server,
            dir: tempfile::tempdir().unwrap(),
        };
        let o = crawl.run(&[]);
        assert_eq!(o.status.code(), Some(0), "{}", output_text(&o));
        assert_eq!(manifest(&crawl.out()).len(), 5);
        crawl
    }

    /// The crawl's command with `extra` flags.
    fn command(&self, extra: &[&str]) -> Command {
        let mut cmd = Command::new(env!("CARGO_BIN_EXE_imgcrawl"));
        cmd.args(["crawl", "-q", "-o", "out", &self.server.url("/list")])
            .args(extra)
            .current_dir(self.dir.path())
            .env_remove("RUST_LOG")
            .env_remove("HTTP_PROXY")
            .env_remove("http_proxy")
            .env_remove("ALL_PROXY");
        cmd
    }

    fn run(&self, extra: &[&str]) -> Output {
        self.command(extra).output().unwrap()
    }

    fn out(&self) -> PathBuf {
        self.dir.path().join("out")
    }

    /// a.png gets new bytes, e.png is gone, f.png is new; in a later second than the crawl
    /// (runs are dated to the second).
    fn change(&self) {
        let mut site = self.site.lock().unwrap();
        site.set("a", Some(png(11, 8, 8)), true);
        site.set("e", None, true);
        site.set("f", Some(png(6, 8, 8)), true);
        drop(site);
        std::thread::sleep(Duration::from_millis(1100));
    }

    /// The manifest's rows by image name (`a`, `copy`...).
    fn rows(&self) -> HashMap<String, imgcrawl::records::ManifestRow> {
        manifest(&self.out())
            .into_iter()
            .map(|r| {
                let name = r.url.rsplit('/').next().unwrap().trim_end_matches(".png");
                (name.to_string(), r)
            })
            .collect()
    }

    fn stats(&self) -> serde_json::Value {
        serde_json::from_slice(&std::fs::read(self.out().join("stats.json")).unwrap()).unwrap()
    }
}

/// The image requests among `requests`: name and the `If-None-Match` sent.
fn image_requests(requests: &[Request]) -> Vec<(String, Option<String>)> {
    let mut v: Vec<(String, Option<String>)> = requests
        .iter()
        .filter_map(|r| {
            let name = r.path.strip_prefix("/img/")?.trim_end_matches(".png");
            Some((
                name.to_string(),
                r.header("if-none-match").map(str::to_string),
            ))
        })
        .collect();
    v.sort();
    v
}

#[test]
fn changed_bytes_replace_the_file_and_the_old_ones_are_kept_beside_it() {
    let crawl = Crawl::new(Arc::default());
    let (server, out) = (&crawl.server, crawl.out());
    let first = crawl.rows();
    assert_eq!(first["copy"].duplicate_of.as_ref(), Some(&first["a"].path));

    // Not without --update: it is a question only an update asks.
    let o = crawl.run(&["--revalidate-images"]);
    assert_eq!(o.status.code(), Some(2), "{}", output_text(&o));
    assert!(
        output_text(&o).contains("revalidate_images"),
        "{}",
        output_text(&o)
    );

    // Nor in a shared crawl: a saved file is the saving process's own.
    let shared = [
        "--update",
        "--revalidate-images",
        "--redis",
        "redis://127.0.0.1:1/0",
        "--crawl-id",
        "x",
    ];
    let o = crawl.run(&shared);
    assert_eq!(o.status.code(), Some(2), "{}", output_text(&o));
    assert!(
        output_text(&o).contains("revalidate_images") && output_text(&o).contains("shared"),
        "{}",
        output_text(&o)
    );

    crawl.change();
    let before = server.requests().len();
    let o = crawl.run(&["--update", "--revalidate-images"]);
    assert_eq!(o.status.code(), Some(0), "{}", output_text(&o));
    let (old, new) = (png(1, 8, 8), png(11, 8, 8));
    // Every image once; the saved ones with the ETag they came with (b.png had none).
    assert_eq!(
        image_requests(&server.requests()[before..]),
        [
            ("a".to_string(), Some(etag(&old))),
            ("b".to_string(), None),
            ("c".to_string(), Some(etag(&png(3, 8, 8)))),
            ("copy".to_string(), Some(etag(&old))),
            ("e".to_string(), Some(etag(&png(5, 8, 8)))),
            ("f".to_string(), None),
        ]
    );

    // a.png's new bytes under its name; the old ones beside it, where its copy now points.
    let rows = crawl.rows();
    let a = &rows["a"];
    assert_eq!(a.path, first["a"].path);
    assert_eq!(std::fs::read(out.join(&a.path)).unwrap(), new);
    assert_eq!(a.sha256, sha256_hex(&new));
    let prev = a.previous.clone().expect("the old bytes' file");
    assert_eq!(prev.file_name().unwrap(), "pic a.prev.png");
    assert_eq!(std::fs::read(out.join(&prev)).unwrap(), old);
    assert_eq!(rows["copy"].path, prev);
    assert_eq!(rows["copy"].duplicate_of.as_ref(), Some(&prev));
    // Dated: first seen in the first run, changed in this one.
    assert_eq!(a.first_seen, first["a"].first_seen);
    assert!(a.changed.is_some() && a.changed > a.first_seen, "{a:?}");
    assert_eq!(a.changed, rows["f"].first_seen);
    // The others as they were; e.png's file kept though its URL is gone.
    for name in ["b", "c", "copy"] {
        assert_eq!(rows[name].sha256, first[name].sha256, "{name}");
        assert!(rows[name].changed.is_none(), "{name}");
        assert_eq!(rows[name].last_seen, a.changed, "{name}");
    }
    assert_eq!(
        std::fs::read(out.join(&rows["e"].path)).unwrap(),
        png(5, 8, 8)
    );
    assert!(rows["e"].gone_since.is_some(), "{:?}", rows["e"]);
    assert_eq!(rows.len(), 6);
    let s = crawl.stats();
    for (key, n) in [
        ("images_revalidated", 5),
        ("images_changed", 1),
        ("images_unchanged", 3),
        ("images_gone", 1),
        ("images_new", 1),
        ("images_failed", 0),
    ] {
        assert_eq!(s[key], n, "{key}: {s}");
    }

    // What arrived in this run: the new image and the changed one.
    let o = Command::new(env!("CARGO_BIN_EXE_imgcrawl"))
        .args(["manifest", "out", "--run", "last"])
        .current_dir(crawl.dir.path())
        .output()
        .unwrap();
    let mut arrived: Vec<String> = String::from_utf8_lossy(&o.stdout)
        .lines()
        .map(|l| {
            serde_json::from_str::<imgcrawl::records::ManifestRow>(l)
                .unwrap()
                .url
        })
        .collect();
    arrived.sort();
    assert_eq!(
        arrived,
        [server.url("/img/a.png"), server.url("/img/f.png")]
    );
    let o = Command::new(env!("CARGO_BIN_EXE_imgcrawl"))
        .args(["manifest", "out", "--runs"])
        .current_dir(crawl.dir.path())
        .output()
        .unwrap();
    let runs = String::from_utf8_lossy(&o.stdout);
    assert!(runs.contains("1 images first saved, 1 changed"), "{runs}");

    // Again, after the copy changed: a.png asked with its new ETag and unchanged; the copy,
    // which had no file of its own, gets one, and the old bytes stay where they are.
    crawl
        .site
        .lock()
        .unwrap()
        .set("copy", Some(png(12, 8, 8)), true);
    std::thread::sleep(Duration::from_millis(1100));
    let before = server.requests().len();
    let o = crawl.run(&["--update", "--revalidate-images"]);
    assert_eq!(o.status.code(), Some(0), "{}", output_text(&o));
    let asked = image_requests(&server.requests()[before..]);
    assert!(
        asked.contains(&("a".to_string(), Some(etag(&new)))),
        "{asked:?}"
    );
    let s = crawl.stats();
    assert_eq!(s["images_changed"], 1, "{s}");
    assert_eq!(s["images_unchanged"], 4, "{s}");
    let rows = crawl.rows();
    assert_eq!(rows["a"].previous, Some(prev.clone()));
    let copy = &rows["copy"];
    assert_eq!(copy.path.file_name().unwrap(), "pic copy.png");
    assert_eq!(copy.duplicate_of, None);
    assert_eq!(copy.previous, Some(prev.clone()));
    assert_eq!(std::fs::read(out.join(&copy.path)).unwrap(), png(12, 8, 8));
    assert_eq!(std::fs::read(out.join(&prev)).unwrap(), old);
}

/// Saved images the state records as asked for again and answered, in the run being recorded.
fn revalidated(out: &Path) -> Vec<String> {
    let Ok(db) = rusqlite::Connection::open(out.join(".imgcrawl/state.db")) else {
        return Vec::new();
    };
    let sql = "SELECT url FROM images WHERE state = 1 AND last_run = 2";
    let Ok(mut stmt) = db.prepare(sql) else {
        return Vec::new();
    };
    stmt.query_map([], |r| r.get::<_, String>(0))
        .map(|rows| rows.flatten().collect())
        .unwrap_or_default()
}

#[test]
fn a_revalidating_update_killed_midway_asks_again_only_for_what_it_had_not_committed() {
    let hold = Arc::new(AtomicBool::new(false));
    let crawl = Crawl::new(hold.clone());
    let (server, out) = (&crawl.server, crawl.out());
    crawl.change();
    hold.store(true, Ordering::SeqCst);

    // Killed while a.png hangs, once the other answers are committed.
    let before = server.requests().len();
    let mut child = crawl
        .command(&["--update", "--revalidate-images"])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let deadline = Instant::now() + Duration::from_secs(30);
    let committed = loop {
        let done = revalidated(&out);
        if server.hits().contains_key("/img/a.png") && done.len() >= 3 {
            break done;
        }
        assert!(Instant::now() < deadline, "the update never reached a.png");
        std::thread::sleep(Duration::from_millis(20));
    };
    child.kill().unwrap();
    child.wait().unwrap();
    hold.store(false, Ordering::SeqCst);

    let again = server.requests().len();
    let o = crawl.run(&["--update", "--revalidate-images"]);
    assert_eq!(o.status.code(), Some(0), "{}", output_text(&o));
    let second = image_requests(&server.requests()[again..]);
    for url in &committed {
        let name = url.rsplit('/').next().unwrap().trim_end_matches(".png");
        assert!(
            second.iter().all(|(n, _)| n != name),
            "{name} was committed, yet asked for again: {second:?}"
        );
    }
    assert!(second.iter().any(|(n, _)| n == "a"), "{second:?}");
    assert!(image_requests(&server.requests()[before..again]).len() >= 4);
    // The end is the same as without the kill.
    let rows = crawl.rows();
    let prev = rows["a"].previous.clone().expect("a.png changed");
    assert_eq!(
        std::fs::read(out.join(&rows["a"].path)).unwrap(),
        png(11, 8, 8)
    );
    assert_eq!(std::fs::read(out.join(&prev)).unwrap(), png(1, 8, 8));
    assert_eq!(rows["copy"].path, prev);
    assert_eq!(rows.len(), 6);
    assert_eq!(crawl.stats()["run"], 2);
}
