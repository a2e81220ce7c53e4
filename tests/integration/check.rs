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
