//! Update runs (`crawl --update`) against a site that changes between runs: pages asked for with
//! their validators, 304s not parsed but still leading to the pages below, only new image URLs
//! requested, gone pages recorded with their images kept, dated manifest rows, and a plain
//! re-run of a finished crawl that does nothing.

use std::collections::BTreeMap;
use std::path::Path;
use std::process::{Command, Output};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use imgcrawl::sample_site::png;

use crate::support::{manifest, output_text, Reply, Request, TestServer};

/// The site's pages (path -> HTML, or `None` for gone) and whether it sends validators.
pub(crate) struct Site {
    pub(crate) pages: BTreeMap<String, Option<String>>,
    pub(crate) validators: bool,
}

/// A list page: its images (`/img/N.png`, each with its alt text `pic N`), a detail page for
/// the first, and the next list page.
fn list(images: &[u32], next: Option<&str>, extra: &str) -> Option<String> {
    let mut html = String::from("<html><body>");
    for n in images {
        html.push_str(&format!("<img src='/img/{n}.png' alt='pic {n}'>"));
    }
    if let Some(first) = images.first() {
        html.push_str(&format!("<a href='/detail/{first}'>detail</a>"));
    }
    if let Some(next) = next {
        html.push_str(&format!("<a href='{next}'>next</a>"));
    }
    html.push_str(extra);
    html.push_str("</body></html>");
    Some(html)
}

pub(crate) fn first_version() -> BTreeMap<String, Option<String>> {
    let mut pages = BTreeMap::new();
    pages.insert(
        "/list/1".into(),
        list(&[1, 2, 3], Some("/list/2"), "<a href='/extra'>x</a>"),
    );
    pages.insert("/list/2".into(), list(&[4, 5, 6], Some("/list/3"), ""));
    pages.insert("/list/3".into(), list(&[7, 8, 9], None, ""));
    pages.insert(
        "/extra".into(),
        Some("<img src='/img/10.png' alt='pic 10'>".into()),
    );
    for n in [1, 4, 7] {
        pages.insert(
            format!("/detail/{n}"),
            Some(format!(
                "<img src='/img/{n}.png'><img src='/img/{}.png' alt='pic 1'>",
                n + 100
            )),
        );
    }
    pages
}

/// Serves the site: pages with an ETag and Last-Modified (when `validators`), 304 to a request
/// whose validators match, images by number. While `hold` is set, `/list/4` does not answer.
pub(crate) fn serve(site: Arc<Mutex<Site>>, hold: Arc<AtomicBool>) -> TestServer {
    TestServer::start_with("127.0.0.1", move |r: &Request| {
        let path = r.path.as_str();
        while path == "/list/4" && hold.load(Ordering::SeqCst) {
            std::thread::sleep(Duration::from_millis(20));
        }
        if let Some(n) = path
            .strip_prefix("/img/")
            .and_then(|p| p.strip_suffix(".png"))
            .and_then(|n| n.parse::<u64>().ok())
        {
            return Reply::Ok("image/png", png(n, 8, 8));
        }
        let site = site.lock().unwrap();
        let Some(Some(html)) = site.pages.get(path) else {
            return Reply::Status(404);
        };
        if !site.validators {
            return Reply::Ok("text/html", html.clone().into_bytes());
        }
        let etag = format!("\"{}\"", crate::support::sha256_hex(html.as_bytes()));
        let modified = "Tue, 01 Dec 2026 10:00:00 GMT";
        let fresh = match r.header("if-none-match") {
            Some(tag) => tag == etag,
            None => r.header("if-modified-since") == Some(modified),
        };
        if fresh {
            return Reply::with_headers(304, &[("etag", &etag)], b"");
        }
        Reply::with_headers(
            200,
            &[
                ("content-type", "text/html"),
                ("etag", &etag),
                ("last-modified", modified),
            ],
            html.as_bytes(),
        )
    })
}

/// The binary with `args`, run in `dir`, with no proxy or log level from this environment.
fn command(args: &[&str], dir: &Path) -> Command {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_imgcrawl"));
    cmd.args(args)
        .current_dir(dir)
        .env_remove("RUST_LOG")
        .env_remove("HTTP_PROXY")
        .env_remove("http_proxy")
        .env_remove("ALL_PROXY");
    cmd
}

fn imgcrawl(args: &[&str], dir: &Path) -> Output {
    command(args, dir).output().unwrap()
}

pub(crate) fn stats(out: &Path) -> serde_json::Value {
    serde_json::from_slice(&std::fs::read(out.join("stats.json")).unwrap()).unwrap()
}

/// Paths requested since request number `from`.
pub(crate) fn asked(server: &TestServer, from: usize) -> Vec<Request> {
    server.requests().split_off(from)
}

/// A site crawled once, finished.
struct Crawled {
    site: Arc<Mutex<Site>>,
    server: TestServer,
    dir: tempfile::TempDir,
    /// The crawl's arguments (an update adds `--update`).
    args: Vec<String>,
}

impl Crawled {
    /// Serves the first version of the site (with validators or not; `/list/4` held while
    /// `hold` is set) and crawls it to the end.
    fn new(validators: bool, hold: Arc<AtomicBool>) -> Crawled {
        let site = Arc::new(Mutex::new(Site {
            pages: first_version(),
            validators,
        }));
        let server = serve(site.clone(), hold);
        let dir = tempfile::tempdir().unwrap();
        let args = ["crawl", "-q", "-o", "out", "--max-depth", "5"]
            .into_iter()
            .map(str::to_string)
            .chain([server.url("/list/1")])
            .collect();
        let crawled = Crawled {
            site,
            server,
            dir,
            args,
        };
        let o = crawled.run(false);
        assert_eq!(o.status.code(), Some(0), "{}", output_text(&o));
        assert_eq!(manifest(&crawled.out()).len(), 13);
        crawled
    }

    /// The crawl again, as an update or not.
    fn command(&self, update: bool) -> Command {
        let mut args: Vec<&str> = self.args.iter().map(String::as_str).collect();
        if update {
            args.push("--update");
        }
        command(&args, self.dir.path())
    }

    /// Runs [`command`](Self::command) to its end.
    fn run(&self, update: bool) -> Output {
        self.command(update).output().unwrap()
    }

    /// The output directory.
    fn out(&self) -> std::path::PathBuf {
        self.dir.path().join("out")
    }

    /// Changes the site (see [`change`]), in a later second than the first crawl's: runs are
    /// dated to the second.
    fn change(&self) {
        change(&self.site);
        std::thread::sleep(Duration::from_millis(1100));
    }
}

/// Runs the first crawl, changes the site, runs the update; answers the server, the update's
/// requests and output, and the directory.
fn crawl_change_update(validators: bool) -> (TestServer, Vec<Request>, Output, tempfile::TempDir) {
    let crawled = Crawled::new(validators, Arc::default());
    let (server, out) = (&crawled.server, crawled.out());

    // Run again without --update: it says so and asks for nothing.
    let before = server.requests().len();
    let o = crawled.run(false);
    assert_eq!(o.status.code(), Some(0), "{}", output_text(&o));
    let text = String::from_utf8_lossy(&o.stdout);
    assert!(
        text.contains("finished just now: 13 images; run with --update"),
        "{text}"
    );
    assert_eq!(server.requests().len(), before, "nothing requested");

    crawled.change();
    let deleted = manifest(&out)
        .into_iter()
        .find(|r| r.url.ends_with("/img/5.png"))
        .unwrap();
    std::fs::remove_file(out.join(&deleted.path)).unwrap();

    let before = server.requests().len();
    let o = crawled.run(true);
    assert_eq!(o.status.code(), Some(0), "{}", output_text(&o));
    let requests = asked(server, before);
    (crawled.server, requests, o, crawled.dir)
}

/// The site changes: new images on two list pages (one reusing an old image's caption), a new
/// list page, a page gone.
pub(crate) fn change(site: &Mutex<Site>) {
    {
        let mut s = site.lock().unwrap();
        s.pages.insert(
            "/list/2".into(),
            list(&[4, 5, 6, 20, 21], Some("/list/3"), ""),
        );
        s.pages.insert(
            "/list/3".into(),
            list(
                &[7, 8, 9, 22],
                Some("/list/4"),
                "<img src='/img/23.png' alt='pic 1'>",
            ),
        );
        s.pages.insert("/list/4".into(), list(&[30, 31], None, ""));
        s.pages
            .insert("/detail/30".into(), Some("<img src='/img/30.png'>".into()));
        s.pages.insert("/extra".into(), None);
    }
}

pub(crate) fn images_asked(requests: &[Request]) -> Vec<String> {
    let mut v: Vec<String> = requests
        .iter()
        .filter(|r| r.path.starts_with("/img/"))
        .map(|r| r.path.clone())
        .collect();
    v.sort();
    v
}

/// The images the update must download: the new ones and the one deleted by hand.
pub(crate) fn expected_images() -> Vec<String> {
    let mut v: Vec<String> = [5, 20, 21, 22, 23, 30, 31]
        .iter()
        .map(|n| format!("/img/{n}.png"))
        .collect();
    v.sort();
    v
}

#[test]
fn an_update_asks_only_for_what_changed_and_dates_what_it_found() {
    let (server, requests, o, dir) = crawl_change_update(true);
    let out = dir.path().join("out");
    // Only new image URLs (and the file deleted by hand) were requested.
    assert_eq!(
        images_asked(&requests),
        expected_images(),
        "{}",
        output_text(&o)
    );
    // Every page known before was asked for with its validators; unchanged ones answered 304
    // and the pages below them were still reached.
    for r in requests.iter().filter(|r| {
        ["/list/1", "/list/2", "/detail/1", "/detail/4", "/detail/7"].contains(&r.path.as_str())
    }) {
        assert!(r.header("if-none-match").is_some(), "{r:?}");
        assert!(r.header("if-modified-since").is_some(), "{r:?}");
    }
    let paths: Vec<&str> = requests.iter().map(|r| r.path.as_str()).collect();
    for p in [
        "/list/1",
        "/list/2",
        "/list/3",
        "/list/4",
        "/detail/1",
        "/detail/4",
        "/detail/7",
        "/extra",
    ] {
        assert_eq!(
            paths.iter().filter(|&&q| q == p).count(),
            1,
            "{p} in {paths:?}"
        );
    }
    let s = stats(&out);
    assert_eq!(s["update"], true);
    assert_eq!(s["run"], 2);
    // /list/1 and the three detail pages did not change; /list/2 and /list/3 did.
    assert_eq!(s["pages_unchanged"], 4, "{s}");
    assert_eq!(s["pages_changed"], 2, "{s}");
    assert_eq!(s["pages_gone"], 1, "{s}");
    assert_eq!(s["pages_failed"], 0, "{s}");
    assert_eq!(s["images_new"], 7, "{s}");
    // Saved before and found again: all but the deleted file's and the gone page's.
    assert_eq!(s["images_unchanged"], 11, "{s}");
    let summary = String::from_utf8_lossy(&o.stdout);
    assert!(summary.contains("pages unchanged"), "{summary}");

    // The manifest: every image, the new ones first seen in the update, the old ones seen again,
    // the gone page's image kept and marked.
    let rows = manifest(&out);
    assert_eq!(rows.len(), 19);
    let first_run = rows
        .iter()
        .find(|r| r.url.ends_with("/img/1.png"))
        .unwrap()
        .first_seen
        .clone()
        .unwrap();
    for r in &rows {
        let n: u32 = r
            .url
            .rsplit('/')
            .next()
            .unwrap()
            .trim_end_matches(".png")
            .parse()
            .unwrap();
        let new = [5, 20, 21, 22, 23, 30, 31].contains(&n);
        assert_eq!(r.first_seen.as_ref() != Some(&first_run), new, "{r:?}");
        assert!(dir.path().join("out").join(&r.path).exists(), "{r:?}");
        if n == 10 {
            assert!(r.gone_since.is_some(), "{r:?}");
            assert_eq!(r.last_seen.as_ref(), Some(&first_run), "{r:?}");
        } else {
            assert!(r.gone_since.is_none(), "{r:?}");
            assert_ne!(r.last_seen.as_ref(), Some(&first_run), "{r:?}");
        }
    }
    // Names never clobber: the new image captioned like an old one got a name of its own.
    let pic1: Vec<_> = rows.iter().filter(|r| r.name == "pic 1").collect();
    assert!(pic1.len() >= 3, "{pic1:?}");
    let mut paths: Vec<_> = pic1.iter().map(|r| r.path.clone()).collect();
    paths.sort();
    paths.dedup();
    assert_eq!(paths.len(), pic1.len(), "{pic1:?}");
    for r in &rows {
        let bytes = std::fs::read(out.join(&r.path)).unwrap();
        assert_eq!(crate::support::sha256_hex(&bytes), r.sha256, "{r:?}");
    }

    // manifest --run last / --new: exactly what arrived in the update.
    let o = imgcrawl(&["manifest", "out", "--run", "last"], dir.path());
    assert_eq!(o.status.code(), Some(0), "{}", output_text(&o));
    let mut new: Vec<String> = String::from_utf8_lossy(&o.stdout)
        .lines()
        .map(|l| {
            serde_json::from_str::<imgcrawl::records::ManifestRow>(l)
                .unwrap()
                .url
        })
        .map(|u| u.trim_start_matches(&server.url("")).to_string())
        .collect();
    new.sort();
    assert_eq!(new, expected_images());
    let o = imgcrawl(&["manifest", "out", "--new", "1h"], dir.path());
    assert_eq!(String::from_utf8_lossy(&o.stdout).lines().count(), 19);
    let o = imgcrawl(&["manifest", "out", "--runs"], dir.path());
    let runs = String::from_utf8_lossy(&o.stdout);
    assert!(
        runs.contains("run 1  crawl") && runs.contains("run 2  update"),
        "{runs}"
    );
    let o = imgcrawl(&["manifest", "out", "--run", "soon"], dir.path());
    assert_eq!(o.status.code(), Some(2), "{}", output_text(&o));

    // A second update with nothing changed: every page 304 or gone, no image requested.
    let before = server.requests().len();
    let start = server.url("/list/1");
    let again = [
        "crawl",
        "-q",
        "-o",
        "out",
        "--max-depth",
        "5",
        "--update",
        &start,
    ];
    let o = imgcrawl(&again, dir.path());
    assert_eq!(o.status.code(), Some(0), "{}", output_text(&o));
    assert!(images_asked(&asked(&server, before)).is_empty());
    assert_eq!(stats(&out)["pages_unchanged"], 8, "{}", stats(&out));
}

#[test]
fn without_validators_an_update_still_gets_it_right() {
    let (_server, requests, o, dir) = crawl_change_update(false);
    let out = dir.path().join("out");
    assert_eq!(
        images_asked(&requests),
        expected_images(),
        "{}",
        output_text(&o)
    );
    let s = stats(&out);
    assert_eq!(s["pages_unchanged"], 0, "{s}");
    assert_eq!(s["pages_changed"], 6, "{s}");
    assert_eq!(s["images_new"], 7, "{s}");
    assert_eq!(manifest(&out).len(), 19);
}

/// Pages the state records as done in the run being recorded.
fn done_pages(out: &Path) -> Vec<String> {
    let Ok(db) = rusqlite::Connection::open(out.join(".imgcrawl/state.db")) else {
        return Vec::new();
    };
    let Ok(mut stmt) = db.prepare("SELECT url FROM pages WHERE state = 1") else {
        return Vec::new();
    };
    stmt.query_map([], |r| r.get::<_, String>(0))
        .map(|rows| rows.flatten().collect())
        .unwrap_or_default()
}

#[test]
fn an_update_killed_midway_goes_on_without_asking_twice_for_what_it_committed() {
    let hold = Arc::new(AtomicBool::new(true));
    let crawled = Crawled::new(true, hold.clone());
    let (server, out) = (&crawled.server, crawled.out());
    crawled.change();

    // The update is killed while /list/4 hangs, once what came before it is committed.
    let before = server.requests().len();
    let mut child = crawled
        .command(true)
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .spawn()
        .unwrap();
    let deadline = Instant::now() + Duration::from_secs(30);
    let committed = loop {
        let done = done_pages(&out);
        let saved_22 = manifest(&out)
            .iter()
            .any(|r| r.url.ends_with("/img/22.png"));
        if server.hits().contains_key("/list/4") && saved_22 && done.len() >= 6 {
            break done;
        }
        assert!(
            Instant::now() < deadline,
            "the update never reached /list/4"
        );
        std::thread::sleep(Duration::from_millis(20));
    };
    child.kill().unwrap();
    child.wait().unwrap();
    let first_part = asked(server, before);

    // Again with --update: the same run goes on.
    hold.store(false, Ordering::SeqCst);
    let again = server.requests().len();
    let o = crawled.run(true);
    assert_eq!(o.status.code(), Some(0), "{}", output_text(&o));
    let second_part = asked(server, again);
    let base = server.url("");
    for url in &committed {
        let path = url.trim_start_matches(&base);
        assert!(
            second_part.iter().all(|r| r.path != path),
            "{path} was committed, yet asked for again"
        );
    }
    // No image asked for twice, and every new one saved.
    let mut images = images_asked(&first_part);
    images.extend(images_asked(&second_part));
    let mut unique = images.clone();
    unique.sort();
    unique.dedup();
    assert_eq!(images.len(), unique.len(), "{images:?}");
    let rows = manifest(&out);
    assert_eq!(rows.len(), 19, "{rows:?}");
    assert_eq!(stats(&out)["run"], 2);
    let o = imgcrawl(&["manifest", "out", "--run", "2"], crawled.dir.path());
    assert_eq!(String::from_utf8_lossy(&o.stdout).lines().count(), 6);
}
