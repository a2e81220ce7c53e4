//! `imgcrawl view OUT`, asked over HTTP like a browser would (the pages' markup, the files'
//! types and headers): the gallery of a crawl of the sample site, its search and pages, thumbnails
//! made once, the failure, duplicate and host views, and what it refuses to serve.

use std::io::{BufRead, BufReader, Read, Write};
use std::net::TcpStream;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};

use imgcrawl::sample_site::SampleSite;

use crate::crawl::list_urls;
use crate::support::{manifest, output_text, TestServer};

/// A running `imgcrawl view`, stopped when dropped.
pub(crate) struct Viewer {
    child: Child,
    pub(crate) addr: String,
}

impl Viewer {
    pub(crate) fn start(out: &Path) -> Viewer {
        let mut child = Command::new(env!("CARGO_BIN_EXE_imgcrawl"))
            .args(["view", "--addr", "127.0.0.1:0"])
            .arg(out)
            .env_remove("RUST_LOG")
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .spawn()
            .unwrap();
        let mut line = String::new();
        BufReader::new(child.stdout.take().unwrap())
            .read_line(&mut line)
            .unwrap();
        let addr = line
            .split("http://")
            .nth(1)
            .and_then(|s| s.split('/').next())
            .unwrap_or_else(|| panic!("no address in `{line}`"))
            .to_string();
        Viewer { child, addr }
    }

    /// GET `path`: the status, the headers (names in lower case) and the body.
    fn get(&self, path: &str) -> (u16, Vec<(String, String)>, Vec<u8>) {
        let mut s = TcpStream::connect(&self.addr).unwrap();
        write!(
            s,
            "GET {path} HTTP/1.1\r\nHost: {}\r\nConnection: close\r\n\r\n",
            self.addr
        )
        .unwrap();
        let mut raw = Vec::new();
        s.read_to_end(&mut raw).unwrap();
        let split = raw.windows(4).position(|w| w == b"\r\n\r\n").unwrap();
        let head = String::from_utf8_lossy(&raw[..split]).into_owned();
        let mut lines = head.lines();
        let status = lines
            .next()
            .unwrap()
            .split(' ')
            .nth(1)
            .unwrap()
            .parse()
            .unwrap();
        let headers = lines
            .filter_map(|l| l.split_once(':'))
            .map(|(k, v)| (k.trim().to_ascii_lowercase(), v.trim().to_string()))
            .collect();
        (status, headers, raw[split + 4..].to_vec())
    }

    fn page(&self, path: &str) -> String {
        let (status, headers, body) = self.get(path);
        assert_eq!(status, 200, "{path}");
        assert_eq!(header(&headers, "content-type"), "text/html; charset=utf-8");
        String::from_utf8(body).unwrap()
    }
}

impl Drop for Viewer {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn header<'a>(headers: &'a [(String, String)], name: &str) -> &'a str {
    headers
        .iter()
        .find(|(k, _)| k == name)
        .map_or("", |(_, v)| v.as_str())
}

/// Crawls the sample site (`pages` list pages of 10) into a new directory's `out`.
pub(crate) fn crawled(pages: u64) -> (tempfile::TempDir, PathBuf, TestServer) {
    crawled_site(SampleSite {
        pages,
        ..SampleSite::default()
    })
}

/// Crawls `site` into a new directory's `out`.
pub(crate) fn crawled_site(site: SampleSite) -> (tempfile::TempDir, PathBuf, TestServer) {
    let server = TestServer::sample(site, |_| None);
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("out");
    let o = Command::new(env!("CARGO_BIN_EXE_imgcrawl"))
        .args(["crawl", "-q", "-o"])
        .arg(&out)
        .args(list_urls(&server, site))
        .env_remove("RUST_LOG")
        .output()
        .unwrap();
    assert_eq!(o.status.code(), Some(3), "{}", output_text(&o));
    (dir, out, server)
}

/// How many thumbnails a page shows.
fn tiles(html: &str) -> usize {
    html.matches("<img src=\"/thumb/").count()
}

#[test]
fn the_gallery_pages_its_thumbnails_and_a_search_narrows_it() {
    let (_dir, out, _server) = crawled(12);
    let rows = manifest(&out);
    let view = Viewer::start(&out);

    let (status, headers, body) = view.get("/");
    assert_eq!(status, 200);
    assert!(header(&headers, "content-security-policy").contains("default-src 'none'"));
    assert_eq!(header(&headers, "x-content-type-options"), "nosniff");
    let first = String::from_utf8(body).unwrap();
    assert_eq!(tiles(&first), 60);
    let total = format!("{} of {} images, page 1 of 2", rows.len(), rows.len());
    assert!(first.contains(&total), "{total} not in the page");
    let second = view.page("/?p=2");
    assert_eq!(tiles(&second), rows.len() - 60);
    // A page past the end shows the last one.
    assert_eq!(tiles(&view.page("/?p=99")), rows.len() - 60);

    // One image's caption finds it (and only what shares the words).
    let wanted = &rows[7];
    // Encoded as a browser sends it (the captions are not all ASCII).
    let q: String = wanted
        .name
        .split_whitespace()
        .map(|w| {
            percent_encoding::utf8_percent_encode(w, percent_encoding::NON_ALPHANUMERIC).to_string()
        })
        .collect::<Vec<_>>()
        .join("+");
    let found = view.page(&format!("/?q={q}"));
    assert!(
        tiles(&found) >= 1 && tiles(&found) < 60,
        "{}",
        tiles(&found)
    );
    assert!(found.contains(&format!("alt=\"{}\"", wanted.name)));
    // As the form sends it, its number fields left blank.
    let form = format!("/?q={q}&host=&page=&min_width=&min_height=&min_kb=&max_kb=");
    assert_eq!(tiles(&view.page(&form)), tiles(&found));
    // Filters combine; a host that is not there shows nothing.
    assert_eq!(tiles(&view.page("/?host=elsewhere.example")), 0);
    let big = view.page("/?min_width=100000");
    assert_eq!(tiles(&big), 0);

    // A thumbnail: a small JPEG or PNG, made once and kept under .imgcrawl/thumbs.
    let (status, headers, thumb) = view.get("/thumb/0");
    assert_eq!(status, 200);
    assert!(header(&headers, "content-type").starts_with("image/"));
    let img = image::load_from_memory(&thumb).unwrap();
    assert!(img.width() <= 240 && img.height() <= 240);
    let kept = out
        .join(".imgcrawl/thumbs")
        .join(&rows[0].sha256[..2])
        .join(format!("{}.thumb", rows[0].sha256));
    assert_eq!(std::fs::read(&kept).unwrap(), thumb);

    // The image's own page links its original, served with the type its bytes show.
    let page = view.page("/image/0");
    assert!(page.contains("src=\"/file/0\""));
    let (status, headers, bytes) = view.get("/file/0");
    assert_eq!(status, 200);
    assert_eq!(header(&headers, "content-type"), rows[0].content_type);
    assert_eq!(bytes, std::fs::read(out.join(&rows[0].path)).unwrap());
}

#[test]
fn failures_duplicates_and_hosts_each_have_a_view() {
    let (_dir, out, server) = crawled(3);
    let view = Viewer::start(&out);
    let failures = view.page("/errors");
    for kind in ["status 404", "not an image", "truncated body"] {
        assert!(failures.contains(&format!("<h2>{kind} ")), "{kind}");
    }
    // Each failed URL with a link to the page it was found on.
    let failed = crate::support::errors(&out);
    assert_eq!(failed.len(), 3);
    for row in &failed {
        let page = row.page.as_deref().expect("an image's page");
        assert!(page.starts_with(&server.url("/")));
        let link = format!("<a href=\"{page}\" rel=\"noreferrer noopener\">");
        assert!(failures.contains(&link), "{link}");
    }
    assert!(
        !view.page("/errors?kind=page").contains("<h2>"),
        "no page failed"
    );

    let dups = view.page("/duplicates");
    let groups = dups.matches("<section class=\"group\">").count();
    let rows = manifest(&out);
    let copies = rows.iter().filter(|r| r.duplicate_of.is_some()).count();
    assert!(
        groups >= 1 && groups <= copies,
        "{groups} groups, {copies} copies"
    );
    let hosts = view.page("/hosts");
    assert!(hosts.contains(">127.0.0.1</a>"), "{hosts}");
}

#[test]
fn nothing_but_the_crawls_images_is_served_and_never_as_a_page() {
    let (dir, out, _server) = crawled(1);
    let rows = manifest(&out);
    // One file replaced by an HTML page, one by a link to a file outside.
    std::fs::write(
        out.join(&rows[0].path),
        b"<html><script>alert(1)</script></html>",
    )
    .unwrap();
    std::fs::write(dir.path().join("secret.txt"), b"secret").unwrap();
    std::fs::remove_file(out.join(&rows[1].path)).unwrap();
    std::os::unix::fs::symlink(dir.path().join("secret.txt"), out.join(&rows[1].path)).unwrap();
    let view = Viewer::start(&out);

    let (status, headers, _) = view.get("/file/0");
    assert_eq!(status, 200);
    assert_eq!(header(&headers, "content-type"), "application/octet-stream");
    assert_eq!(header(&headers, "content-disposition"), "attachment");
    assert_eq!(header(&headers, "x-content-type-options"), "nosniff");
    let (status, _, body) = view.get("/file/1");
    assert_eq!(status, 404);
    assert!(!String::from_utf8_lossy(&body).contains("secret"));
    for path in [
        "/file/../../secret.txt",
        "/file/%2e%2e%2fsecret.txt",
        "/file/-1",
        "/file/99999",
        "/thumb/x",
        "/image/1e3",
        "/.imgcrawl/state.db",
        "/manifest.jsonl",
    ] {
        let (status, _, body) = view.get(path);
        assert_eq!(status, 404, "{path}");
        assert!(!String::from_utf8_lossy(&body).contains("secret"), "{path}");
    }
}

#[test]
fn the_demo_can_end_by_serving_its_gallery() {
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("demo");
    let mut child = Command::new(env!("CARGO_BIN_EXE_imgcrawl"))
        .args(["demo", "--view", "--view-addr", "127.0.0.1:0", "-o"])
        .arg(&out)
        .env_remove("RUST_LOG")
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let mut lines = BufReader::new(child.stdout.take().unwrap()).lines();
    let serving = lines
        .by_ref()
        .map(Result::unwrap)
        .find(|l| l.starts_with("serving the gallery of"))
        .expect("the demo says where its gallery is");
    let addr = serving
        .split("http://")
        .nth(1)
        .and_then(|s| s.split('/').next())
        .unwrap()
        .to_string();
    let viewer = Viewer {
        child,
        addr: addr.clone(),
    };
    let page = viewer.page("/");
    let rows = manifest(&out).len();
    assert!(page.contains(&format!("{rows} of {rows} images")), "{page}");
    // Ctrl-C ends it, with the demo's own exit status.
    let mut viewer = viewer;
    // SAFETY: kill only sends SIGINT to the process this test started.
    unsafe { libc::kill(viewer.child.id() as libc::pid_t, libc::SIGINT) };
    let status = viewer.child.wait().unwrap();
    assert_eq!(status.code(), Some(0));
}
