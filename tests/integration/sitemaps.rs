//! Sitemaps in whole crawls: robots.txt names a sitemap index, which names a gzip-compressed
//! sitemap of pages no link reaches and a Google image sitemap; the pages go through the scope
//! rules like links, the images are kept with the page they are listed under (and fetched with
//! it as Referer). A site whose robots.txt names none is asked for `/sitemap.xml`.

use std::io::Write;
use std::sync::{Arc, Mutex};

use imgcrawl::sample_site::png;

use crate::support::{errors, manifest, run_crawl, Reply, Request, TestServer};

fn gzip(text: &str) -> Vec<u8> {
    let mut e = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::default());
    e.write_all(text.as_bytes()).unwrap();
    e.finish().unwrap()
}

fn xml(text: String) -> Reply {
    Reply::Ok("application/xml", text.into_bytes())
}

const URLSET: &str = r#"<urlset xmlns="http://www.sitemaps.org/schemas/sitemap/0.9" xmlns:image="http://www.google.com/schemas/sitemap-image/1.1">"#;

#[actix_rt::test]
async fn an_index_a_gzipped_sitemap_and_an_image_sitemap_reach_what_no_link_does() {
    let cdn = TestServer::start_on("127.0.0.2", |p| match p {
        "/photo1.png" => Reply::Ok("image/png", png(1, 30, 20)),
        _ => Reply::Status(404),
    });
    let photo1 = cdn.url("/photo1.png");
    let base = Arc::new(Mutex::new(String::new()));
    let (b, p1) = (base.clone(), photo1.clone());
    let server = TestServer::start_with("127.0.0.1", move |r: &Request| {
        let base = b.lock().unwrap().clone();
        match r.path.as_str() {
            "/robots.txt" => Reply::Ok(
                "text/plain",
                format!("User-agent: *\nDisallow: /private/\nSitemap: {base}/sitemap_index.xml\n")
                    .into_bytes(),
            ),
            "/sitemap_index.xml" => xml(format!(
                "<?xml version='1.0'?><sitemapindex xmlns='http://www.sitemaps.org/schemas/sitemap/0.9'>\
                 <sitemap><loc>{base}/s1.xml.gz</loc></sitemap>\
                 <sitemap><loc>{base}/images.xml</loc></sitemap></sitemapindex>"
            )),
            "/s1.xml.gz" => Reply::Ok(
                "application/x-gzip",
                gzip(&format!(
                    "{URLSET}<url><loc>{base}/p1</loc></url><url><loc>{base}/p2?a=1&amp;b=2</loc></url>\
                     <url><loc>{base}/excluded/p3</loc></url><url><loc>{base}/private/x</loc></url>\
                     <url><loc>http://elsewhere.example/x</loc></url></urlset>"
                )),
            ),
            "/images.xml" => xml(format!(
                "{URLSET}<url><loc>{base}/p4</loc>\
                 <image:image><image:loc>{p1}</image:loc></image:image>\
                 <image:image><image:loc>{base}/photo2.png</image:loc></image:image></url></urlset>"
            )),
            "/" | "/p4" => Reply::Ok("text/html", b"<p>no links here</p>".to_vec()),
            "/p1" => Reply::Ok("text/html", b"<img src='/a.png'>".to_vec()),
            "/p2?a=1&b=2" => Reply::Ok("text/html", b"<img src='/b.png'>".to_vec()),
            "/a.png" => Reply::Ok("image/png", png(2, 10, 10)),
            "/b.png" => Reply::Ok("image/png", png(3, 10, 10)),
            "/photo2.png" if r.header("referer") == Some(&format!("{base}/p4")) => {
                Reply::Ok("image/png", png(4, 10, 10))
            }
            "/photo2.png" => Reply::Status(403),
            _ => Reply::Status(404),
        }
    });
    *base.lock().unwrap() = server.url("");

    let out = tempfile::tempdir().unwrap();
    let toml = "[scope]\nallowed_hosts = ['127.0.0.1', '127.0.0.2']\nexclude = ['/excluded/']\n";
    let (report, _) = run_crawl(&[server.url("/")], out.path(), toml).await;

    assert!(errors(out.path()).is_empty(), "{:?}", errors(out.path()));
    assert_eq!(report.exit_code(), 0);
    let mut saved: Vec<(String, String)> = manifest(out.path())
        .into_iter()
        .map(|r| (r.url, r.page))
        .collect();
    saved.sort();
    let mut expected = vec![
        (server.url("/a.png"), server.url("/p1")),
        (server.url("/b.png"), server.url("/p2?a=1&b=2")),
        (server.url("/photo2.png"), server.url("/p4")),
        (photo1, server.url("/p4")),
    ];
    expected.sort();
    assert_eq!(saved, expected);
    let hits = server.hits();
    for never in ["/excluded/p3", "/private/x", "/sitemap.xml"] {
        assert!(!hits.contains_key(never), "{never} requested: {hits:?}");
    }
    assert_eq!(hits.get("/s1.xml.gz"), Some(&1));
    assert_eq!(report.stats.pages_skipped.get("robots"), Some(&1));

    // Sitemaps off: only what links reach (nothing but the start page).
    let out = tempfile::tempdir().unwrap();
    let toml = format!("{toml}sitemaps = false\n");
    let before = server.hits().get("/sitemap_index.xml").copied();
    let (report, _) = run_crawl(&[server.url("/")], out.path(), &toml).await;
    assert_eq!(report.stats.images_saved, 0);
    assert_eq!(server.hits().get("/sitemap_index.xml").copied(), before);
}

#[actix_rt::test]
async fn without_a_sitemap_line_the_site_is_asked_for_sitemap_xml() {
    let base = Arc::new(Mutex::new(String::new()));
    let b = base.clone();
    let server = TestServer::start(move |p| {
        let base = b.lock().unwrap().clone();
        match p {
            "/robots.txt" => Reply::Status(404),
            "/sitemap.xml" => xml(format!(
                "{URLSET}<url><loc>{base}/hidden</loc></url></urlset>"
            )),
            "/" => Reply::Ok("text/html", b"<p>nothing</p>".to_vec()),
            "/hidden" => Reply::Ok("text/html", b"<img src='/h.png'>".to_vec()),
            "/h.png" => Reply::Ok("image/png", png(9, 10, 10)),
            _ => Reply::Status(404),
        }
    });
    *base.lock().unwrap() = server.url("");
    let out = tempfile::tempdir().unwrap();
    let (report, _) = run_crawl(&[server.url("/")], out.path(), "").await;
    assert_eq!(report.exit_code(), 0);
    assert_eq!(report.stats.images_saved, 1);
    assert_eq!(manifest(out.path())[0].page, server.url("/hidden"));
}
