//! The dry run, `imgcrawl check URL`: on a local site, each image with its name and path, each
//! link followed or skipped with the reason, and nothing requested beyond the page and robots.txt,
//! nothing written.

use std::process::Command;

use crate::support::{output_text, Reply, TestServer};

#[test]
fn check_shows_what_a_crawl_would_do_with_one_page_and_saves_nothing() {
    let server = TestServer::start(|path| match path {
        "/robots.txt" => Reply::Ok(
            "text/plain",
            b"User-agent: *\nDisallow: /private/\n".to_vec(),
        ),
        "/gallery.html" => Reply::Ok(
            "text/html",
            b"<figure><img src='/img/a.jpg'><figcaption>Harbour at dawn</figcaption></figure>\
              <figure><img src='/img/b.jpeg'><figcaption>Harbour at dawn</figcaption></figure>\
              <img src='/img/c.png' alt='Lighthouse'>\
              <img src='http://cdn.other.example/d.png'>\
              <img src='/ads/banner.gif'>\
              <img src='/private/e.png'>\
              <a href='/gallery.html?page=2'>next</a>\
              <a href='/private/secret.html'>secret</a>\
              <a href='http://elsewhere.example/'>elsewhere</a>\
              <a href='/logout.html'>log out</a>\
              <a href='/gallery.html'>this page</a>"
                .to_vec(),
        ),
        _ => Reply::Status(404),
    });
    let tmp = tempfile::tempdir().unwrap();
    let config = tmp.path().join("site.toml");
    std::fs::write(
        &config,
        "[scope]\nexclude = ['/logout']\n[filter]\nexclude = ['/ads/']\n",
    )
    .unwrap();
    let out = tmp.path().join("out");
    let o = Command::new(env!("CARGO_BIN_EXE_imgcrawl"))
        .arg("check")
        .arg(server.url("/gallery.html"))
        .arg("-c")
        .arg(&config)
        .arg("-o")
        .arg(&out)
        .env_remove("RUST_LOG")
        .output()
        .unwrap();
    let text = output_text(&o);
    assert_eq!(o.status.code(), Some(0), "{text}");
    let line_of = |needle: &str| -> &str {
        text.lines()
            .find(|l| l.contains(needle))
            .unwrap_or_else(|| panic!("no line with {needle} in:\n{text}"))
    };
    let next_line = |needle: &str| -> &str {
        let mut lines = text.lines().skip_while(|l| !l.contains(needle));
        lines.next();
        lines.next().unwrap_or("")
    };
    let host = server.addr.ip().to_string();
    let path = |name: &str| out.join(&host).join(name).display().to_string();
    // Images: the name each gets and the file it would be saved as (a second image with the same
    // caption gets "-2"), or why it is skipped.
    assert!(line_of("/img/a.jpg").contains("save"), "{text}");
    assert!(
        next_line("/img/a.jpg").contains(&format!(
            "\"Harbour at dawn\" -> {}",
            path("Harbour at dawn.jpg")
        )),
        "{text}"
    );
    assert!(
        next_line("/img/b.jpeg").contains(&path("Harbour at dawn-2.jpg")),
        "{text}"
    );
    assert!(
        next_line("/img/c.png").contains(&format!("\"Lighthouse\" -> {}", path("Lighthouse.png"))),
        "{text}"
    );
    assert!(
        line_of("cdn.other.example/d.png").contains("skip")
            && line_of("cdn.other.example/d.png").contains("out of scope"),
        "{text}"
    );
    assert!(
        line_of("/ads/banner.gif").contains("excluded by filter.exclude"),
        "{text}"
    );
    assert!(line_of("/private/e.png").contains("robots"), "{text}");
    assert!(
        line_of("images ").contains("6 found: 3 to download, 3 skipped"),
        "{text}"
    );
    // Links: followed, or skipped with the reason.
    assert!(line_of("?page=2").contains("follow"), "{text}");
    assert!(line_of("/private/secret.html").contains("robots"), "{text}");
    assert!(
        line_of("elsewhere.example").contains("out of scope"),
        "{text}"
    );
    assert!(
        line_of("/logout.html").contains("excluded by scope.exclude"),
        "{text}"
    );
    assert!(
        line_of("links ").contains("5 found: 1 to follow, 4 skipped"),
        "{text}"
    );
    // Only the page and robots.txt were requested; nothing was written.
    let mut hits: Vec<String> = server.hits().into_keys().collect();
    hits.sort();
    assert_eq!(hits, ["/gallery.html", "/robots.txt"]);
    assert!(!out.exists(), "check created {out:?}");

    // A page that cannot be fetched is a clear error.
    let o = Command::new(env!("CARGO_BIN_EXE_imgcrawl"))
        .arg("check")
        .arg(server.url("/missing.html"))
        .arg("-o")
        .arg(&out)
        .env_remove("RUST_LOG")
        .output()
        .unwrap();
    assert_eq!(o.status.code(), Some(1), "{}", output_text(&o));
    assert!(
        output_text(&o).contains("cannot fetch") && output_text(&o).contains("404"),
        "{}",
        output_text(&o)
    );
}

#[actix_rt::test]
async fn check_follows_the_redirects_a_crawl_follows() {
    // The start page redirects into a folder excluded as a link: a crawl follows the redirect
    // (include/exclude are about links), so the dry run must too, and agree on what it finds.
    let server = TestServer::start(|path| match path {
        "/robots.txt" => Reply::Status(404),
        "/start" => Reply::Redirect("/old/gallery.html?sid=77".into()),
        "/old/gallery.html" => Reply::Ok("text/html", b"<img src='/i/a.png' alt='A'>".to_vec()),
        "/i/a.png" => Reply::Ok("image/png", imgcrawl::sample_site::png(1, 5, 5)),
        _ => Reply::Status(404),
    });
    let toml = "[scope]\nexclude = ['/old/']\n";
    let out = tempfile::tempdir().unwrap();
    let settings = crate::support::settings(&[server.url("/start")], out.path(), toml);
    let report =
        imgcrawl::check::check(&settings, &url::Url::parse(&server.url("/start")).unwrap())
            .await
            .unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(report.redirects.len(), 1, "{report}");
    let (crawled, _) = crate::support::run_crawl(&[server.url("/start")], out.path(), toml).await;
    assert_eq!(crawled.stats.images_saved, 1, "{crawled}");
    assert!(report.to_string().contains("/i/a.png"), "{report}");
}

#[actix_rt::test]
async fn a_dry_run_and_a_crawl_agree_on_every_image_and_link() {
    // One page with each rule at work: a redirect to reach it, robots.txt rules, a filter, a
    // scope exclusion, other sites, a redirecting image and a redirecting link. Whatever the dry
    // run says of each URL, the crawl must have done.
    let server = TestServer::start(|path| match path {
        "/robots.txt" => Reply::Ok(
            "text/plain",
            b"User-agent: *\nDisallow: /private/\n".to_vec(),
        ),
        "/start" => Reply::Redirect("/gallery.html".into()),
        "/gallery.html" => Reply::Ok(
            "text/html",
            b"<img src='/img/a.png' alt='A'><img src='/img/b.png' alt='B'>\
              <img src='/private/c.png'><img src='/ads/d.png'>\
              <img src='http://cdn.other.example/e.png'><img src='/img/moved.png'>\
              <a href='/page/2.html'>2</a><a href='/private/p.html'>p</a>\
              <a href='/logout.html'>out</a><a href='http://elsewhere.example/'>x</a>\
              <a href='/old.html'>old</a><a href='/gallery.html'>self</a>"
                .to_vec(),
        ),
        "/old.html" => Reply::Redirect("/new.html".into()),
        "/page/2.html" | "/new.html" => Reply::Ok("text/html", b"<p>nothing</p>".to_vec()),
        "/img/moved.png" => Reply::Redirect("/img/f.png".into()),
        p if p.starts_with("/img/") || p.starts_with("/private/") || p.starts_with("/ads/") => {
            Reply::Ok(
                "image/png",
                imgcrawl::sample_site::png(p.len() as u64, 8, 8),
            )
        }
        _ => Reply::Status(404),
    });
    let toml = "[scope]\nexclude = ['/logout']\nmax_depth = 1\n[filter]\nexclude = ['/ads/']\n";
    let out = tempfile::tempdir().unwrap();
    let start = server.url("/start");
    let settings = crate::support::settings(std::slice::from_ref(&start), out.path(), toml);
    let report = imgcrawl::check::check(&settings, &url::Url::parse(&start).unwrap())
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    let path = |u: &url::Url| u.as_str().replace(&server.url(""), "");
    let (taken_images, skipped_images): (Vec<_>, Vec<_>) = report
        .images
        .iter()
        .partition(|i| i.verdict == imgcrawl::check::Verdict::Take);
    let (taken_links, skipped_links): (Vec<_>, Vec<_>) = report
        .links
        .iter()
        .partition(|l| l.verdict == imgcrawl::check::Verdict::Take);
    let why = |v: &imgcrawl::check::Verdict| v.to_string();

    let (crawl, _) =
        crate::support::run_crawl(std::slice::from_ref(&start), out.path(), toml).await;
    let rel = |u: &str| u.replace(&server.url(""), "");
    let skipped: Vec<imgcrawl::records::SkipRow> =
        crate::support::read_jsonl(&out.path().join("skipped.jsonl"));

    // Images: those the dry run would take are the ones the crawl saved (or failed); those it
    // leaves for robots.txt or a filter are the crawl's skip records; the off-site ones, its
    // out-of-scope count.
    let mut took: Vec<String> = taken_images.iter().map(|i| path(&i.url)).collect();
    let mut saved: Vec<String> = crate::support::manifest(out.path())
        .iter()
        .map(|r| rel(&r.url))
        .chain(
            crate::support::errors(out.path())
                .iter()
                .map(|e| rel(&e.url)),
        )
        .collect();
    took.sort();
    saved.sort();
    assert_eq!(
        took,
        ["/img/a.png", "/img/b.png", "/img/moved.png"],
        "{report}"
    );
    assert_eq!(took, saved, "{report}\n{crawl}");
    let mut left: Vec<String> = skipped_images
        .iter()
        .filter(|i| !why(&i.verdict).contains("out of scope"))
        .map(|i| path(&i.url))
        .collect();
    let mut recorded: Vec<String> = skipped
        .iter()
        .filter(|r| r.kind == imgcrawl::Kind::Image)
        .map(|r| rel(&r.url))
        .collect();
    left.sort();
    recorded.sort();
    assert_eq!(left, ["/ads/d.png", "/private/c.png"], "{report}");
    assert_eq!(left, recorded, "{report}\n{crawl}");
    let off_site = skipped_images.len() - left.len();
    assert_eq!(crawl.stats.images_out_of_scope, off_site as u64, "{crawl}");

    // Links: those the dry run would follow are the pages the crawl fetched from this one
    // (besides the start's redirect chain and where a followed link redirected to).
    let mut follow: Vec<String> = taken_links.iter().map(|l| path(&l.url)).collect();
    let mut fetched: Vec<String> = server
        .hits()
        .into_keys()
        .filter(|p| p.ends_with(".html"))
        .filter(|p| !["/gallery.html", "/new.html"].contains(&p.as_str()))
        .collect();
    follow.sort();
    fetched.sort();
    assert_eq!(follow, ["/old.html", "/page/2.html"], "{report}");
    assert_eq!(follow, fetched, "{report}\n{crawl}");
    let robots: Vec<String> = skipped_links
        .iter()
        .filter(|l| why(&l.verdict).contains("robots"))
        .map(|l| path(&l.url))
        .collect();
    let recorded: Vec<String> = skipped
        .iter()
        .filter(|r| r.kind == imgcrawl::Kind::Page)
        .map(|r| rel(&r.url))
        .collect();
    assert_eq!(robots, ["/private/p.html"], "{report}");
    assert_eq!(robots, recorded, "{report}\n{crawl}");
    let out_of_scope = skipped_links
        .iter()
        .filter(|l| {
            let w = why(&l.verdict);
            w.contains("out of scope") || w.contains("excluded")
        })
        .count();
    assert_eq!(out_of_scope, 2, "{report}");
    assert_eq!(
        crawl.stats.links_out_of_scope, out_of_scope as u64,
        "{crawl}"
    );
}
