//! The example configurations of `config/examples/`, each run by the binary as a user would (only
//! the site's address changed, through the environment) against a local site of its shape.

use std::collections::HashSet;
use std::path::Path;
use std::process::{Command, Output};

use imgcrawl::sample_site::{png, SampleSite};

use crate::support::{manifest, output_text, Reply, TestServer};

/// Runs `imgcrawl crawl -c config/examples/NAME -o OUT ARGS...` with `env`.
fn crawl_with_example(name: &str, out: &Path, args: &[&str], env: &[(&str, String)]) -> Output {
    let example = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("config/examples")
        .join(name);
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_imgcrawl"));
    cmd.arg("crawl")
        .args(args)
        .arg("-c")
        .arg(&example)
        .arg("-o")
        .arg(out)
        .arg("-q")
        .env_remove("RUST_LOG");
    for (k, v) in env {
        cmd.env(k, v);
    }
    cmd.output().unwrap()
}

/// Names in the manifest, sorted.
fn names(out: &Path) -> Vec<String> {
    let mut n: Vec<String> = manifest(out).into_iter().map(|r| r.name).collect();
    n.sort();
    n
}

/// Paths requested whose path starts with `prefix`.
fn requested(server: &TestServer, prefix: &str) -> Vec<String> {
    let mut v: Vec<String> = server
        .hits()
        .into_keys()
        .filter(|p| p.starts_with(prefix))
        .collect();
    v.sort();
    v
}

fn html(body: String) -> Reply {
    Reply::Ok(
        "text/html; charset=utf-8",
        format!("<!doctype html><html><body>{body}</body></html>").into_bytes(),
    )
}

#[test]
fn paginated_lazy_reads_the_lazy_attribute_of_every_list_page() {
    let site = SampleSite {
        pages: 3,
        per_page: 10,
        page_kb: 0,
    };
    let server = TestServer::sample(site, |_| None);
    let out = tempfile::tempdir().unwrap();
    let o = crawl_with_example(
        "paginated-lazy.toml",
        out.path(),
        &[],
        &[
            ("IMGCRAWL_PAGE_TEMPLATE", server.url("/list/{page}.html")),
            ("IMGCRAWL_PAGES", "1,3".into()),
            // The three broken images of the sample site fail at once rather than after retries.
            ("IMGCRAWL_HTTP__RETRIES", "0".into()),
        ],
    );
    assert_eq!(o.status.code(), Some(3), "{}", output_text(&o));
    // Every good image, named by its caption; the placeholder never requested; no detail page.
    let mut expected: Vec<String> = (1..=site.image_count()).map(SampleSite::caption).collect();
    expected.sort();
    assert_eq!(names(out.path()), expected);
    assert!(requested(&server, "/static/").is_empty());
    assert!(requested(&server, "/detail/").is_empty());
    assert_eq!(requested(&server, "/list/").len(), 3);
}

#[test]
fn thumbnails_download_the_full_size_images_only() {
    let figure = |i: u32| {
        format!(
            "<figure><a class=\"thumb\" href=\"/full/2024/pic{i}.jpg\"><img src=\"/thumbs/pic{i}_200.jpg\" alt=\"alt {i}\"></a><figcaption>Caption {i}</figcaption></figure>\n"
        )
    };
    let server = TestServer::start(move |path| {
        match path {
        "/albums/summer" => html(format!(
            "<div class=\"album\">{}{}{}\
             <a class=\"thumb\" href=\"/full/2024/pic5.JPG\"><img src=\"/thumbs/pic5_200.jpg\" alt=\"Fifth\"></a>\
             <a href=\"/full/small.jpg\"><img src=\"/thumbs/small.jpg\" alt=\"a preview\"></a></div>\
             <a class=\"next\" href=\"/albums/summer?page=2\">Next</a> <a href=\"/albums/summer?sort=date\">by date</a>\
             <a href=\"/about.html\">About</a>",
            figure(1),
            figure(2),
            figure(3)
        )),
        "/albums/summer?page=2" => html(format!("{}{}", figure(6), figure(7))),
        p if p.starts_with("/full/small") => Reply::Ok("image/jpeg", png(99, 120, 90)),
        p if p.starts_with("/full/") || p.starts_with("/thumbs/") => {
            let n: u64 = p.bytes().filter(u8::is_ascii_digit).map(u64::from).sum();
            let side = if p.starts_with("/full/") { 640 } else { 200 };
            Reply::Ok("image/jpeg", png(n, side, side * 3 / 4))
        }
        _ => Reply::Status(404),
    }
    });
    let out = tempfile::tempdir().unwrap();
    let start = server.url("/albums/summer");
    let o = crawl_with_example(
        "thumbnails.toml",
        out.path(),
        &[&start],
        &[(
            "IMGCRAWL_SCOPE__INCLUDE",
            format!("^{}", regex::escape(&server.url("/albums/"))),
        )],
    );
    assert_eq!(o.status.code(), Some(0), "{}", output_text(&o));
    assert_eq!(
        names(out.path()),
        [
            "Caption 1",
            "Caption 2",
            "Caption 3",
            "Caption 6",
            "Caption 7",
            "Fifth"
        ]
    );
    for row in manifest(out.path()) {
        assert_eq!(row.width, Some(640), "{row:?}");
    }
    assert!(
        requested(&server, "/thumbs/").is_empty(),
        "thumbnails fetched"
    );
    // Each full-size file requested once: as an image, not also as a page.
    let hits = server.hits();
    let full: Vec<_> = hits
        .iter()
        .filter(|(p, _)| p.starts_with("/full/"))
        .collect();
    assert_eq!(full.len(), 7, "{hits:?}");
    assert!(full.iter().all(|(_, n)| **n == 1), "{hits:?}");
    // Out of the include pattern, or excluded: never requested.
    assert!(!hits.contains_key("/about.html"));
    assert!(!hits.contains_key("/albums/summer?sort=date"));
    let stats: serde_json::Value =
        serde_json::from_slice(&std::fs::read(out.path().join("stats.json")).unwrap()).unwrap();
    assert_eq!(stats["images_skipped"]["filter.min_width"], 1, "{stats}");
}

#[test]
fn directory_listing_mirrors_the_folder_tree_and_stays_inside_it() {
    let listing = |entries: &[&str]| {
        let rows: String = entries
            .iter()
            .map(|e| format!("<a href=\"{e}\">{e}</a>   12-Mar-2024 10:02   2M\n"))
            .collect();
        html(format!("<h1>Index of</h1><pre>{rows}</pre><hr>"))
    };
    let server = TestServer::start(move |path| match path {
        "/" => listing(&["photos/", "secret.jpg"]),
        "/photos/" => listing(&[
            "../",
            "?C=N;O=D",
            "?C=M;O=A",
            "2023/",
            "IMG_0001.JPG",
            "IMG_0002.jpg",
            "notes.txt",
        ]),
        "/photos/2023/" => listing(&["../", "IMG_0001.JPG", "beach%20day.png", "empty/"]),
        "/photos/2023/empty/" => listing(&["../"]),
        p if p.ends_with(".JPG") || p.ends_with(".jpg") || p.ends_with(".png") => {
            let seed = p.bytes().map(u64::from).sum();
            Reply::Ok("image/jpeg", png(seed, 64, 48))
        }
        "/photos/notes.txt" => Reply::Ok("text/plain", b"notes".to_vec()),
        _ => Reply::Status(404),
    });
    let out = tempfile::tempdir().unwrap();
    let start = server.url("/photos/");
    let o = crawl_with_example(
        "directory-listing.toml",
        out.path(),
        &[&start],
        &[(
            "IMGCRAWL_SCOPE__INCLUDE",
            format!("^{}", regex::escape(&server.url("/photos/"))),
        )],
    );
    assert_eq!(o.status.code(), Some(0), "{}", output_text(&o));
    let files: HashSet<String> = manifest(out.path())
        .into_iter()
        .map(|r| r.path.to_string_lossy().replace('\\', "/"))
        .collect();
    let expected: HashSet<String> = [
        "127.0.0.1/photos/IMG_0001.png",
        "127.0.0.1/photos/IMG_0002.png",
        "127.0.0.1/photos/2023/IMG_0001.png",
        "127.0.0.1/photos/2023/beach day.png",
    ]
    .into_iter()
    .map(String::from)
    .collect();
    assert_eq!(files, expected);
    for f in &files {
        assert!(out.path().join(f).is_file(), "{f}");
    }
    let hits = server.hits();
    for never in ["/", "/secret.jpg", "/photos/notes.txt"] {
        assert!(!hits.contains_key(never), "{never} requested: {hits:?}");
    }
    assert!(
        hits.keys().all(|p| !p.contains("?C=")),
        "sorting links followed: {hits:?}"
    );
    assert_eq!(hits.get("/photos/2023/empty/"), Some(&1));
}
