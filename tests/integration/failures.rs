//! Pages and images that fail in every common way are recorded with their reason and attempts,
//! and the crawl goes on.

use std::time::Duration;

use imgcrawl::sample_site::SampleSite;
use imgcrawl::Crawl;

use crate::support::{error_map, image_files, manifest, settings, temp_files, Reply, TestServer};

#[actix_rt::test]
async fn every_failure_is_recorded_with_its_kind_and_the_crawl_goes_on() {
    let closed_port = {
        let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        l.local_addr().unwrap().port()
    };
    let good = SampleSite::image_bytes(3);
    let big = imgcrawl::sample_site::png(5, 120, 120);
    let html = format!(
        r#"<img src="/ok.png"><img src="/404.png"><img src="/500.png"><img src="/cut.png"><img src="/html.jpg">
           <img src="/slow.png"><img src="http://127.0.0.1:{closed_port}/refused.png"><img src="/big.png">
           <img src="/loop.png"><img src="/empty.png"><img src="/redirected.png">
           <a href="/missing.html">x</a><a href="/broken.html">y</a><a href="/fine.html">z</a>"#
    );
    let server = TestServer::start(move |path| match path {
        "/" => Reply::Ok("text/html", html.clone().into_bytes()),
        "/fine.html" => Reply::Ok("text/html", b"<img src='/ok2.png'>".to_vec()),
        "/broken.html" => Reply::Status(500),
        "/ok.png" => Reply::Ok("image/png", good.clone()),
        "/ok2.png" | "/final.png" => Reply::Ok("image/png", SampleSite::image_bytes(4)),
        "/500.png" => Reply::Status(503),
        "/cut.png" => Reply::Truncated("image/png", good.clone(), 100),
        "/html.jpg" => Reply::Ok(
            "image/jpeg",
            b"<!DOCTYPE html><html><body>Not here</body></html>".to_vec(),
        ),
        "/slow.png" => Reply::Delayed(
            Duration::from_secs(3),
            Box::new(Reply::Ok("image/png", good.clone())),
        ),
        "/big.png" => Reply::Ok("image/png", big.clone()),
        "/loop.png" => Reply::Redirect("/loop2.png".into()),
        "/loop2.png" => Reply::Redirect("/loop.png".into()),
        "/empty.png" => Reply::Ok("image/png", Vec::new()),
        "/redirected.png" => Reply::Redirect("/final.png".into()),
        _ => Reply::Status(404),
    });
    let out = tempfile::tempdir().unwrap();
    // Any port of 127.0.0.1, for the refused connection on a closed port.
    let toml = "[http]\nretries = 1\ntimeout_secs = 1\nmax_image_bytes = 40000\n\
                [scope]\nallowed_hosts = [\"127.0.0.1\"]\n";
    let report = Crawl::start(settings(&[server.url("/")], out.path(), toml))
        .await
        .unwrap()
        .wait()
        .await
        .unwrap();

    let errs = error_map(out.path(), &server);
    let expect = |url: &str, kind: &str, attempts: u32| {
        assert_eq!(
            errs.get(url),
            Some(&(kind.to_string(), attempts)),
            "{url}: {errs:#?}"
        );
    };
    expect("/404.png", "status 404", 1);
    expect("/500.png", "status 503", 2);
    expect("/cut.png", "truncated body", 2);
    expect("/html.jpg", "not an image", 1);
    expect("/slow.png", "timeout", 2);
    expect(
        &format!("http://127.0.0.1:{closed_port}/refused.png"),
        "connection failed",
        0,
    );
    expect("/big.png", "too large", 1);
    expect("/loop.png", "redirect loop", 1);
    expect("/empty.png", "not an image", 1);
    expect("/missing.html", "status 404", 1);
    expect("/broken.html", "status 500", 2);
    assert_eq!(errs.len(), 11, "{errs:#?}");

    let saved: Vec<String> = manifest(out.path())
        .into_iter()
        .map(|r| r.url.replace(&server.url(""), ""))
        .collect();
    assert_eq!(saved.len(), 3, "{saved:?}");
    for url in ["/ok.png", "/ok2.png", "/redirected.png"] {
        assert!(
            saved.contains(&url.to_string()),
            "{url} not saved: {saved:?}"
        );
    }
    assert_eq!(
        image_files(out.path()).len(),
        2,
        "ok2 and the redirect target share bytes"
    );
    assert_eq!(temp_files(out.path()), 0);
    assert_eq!(report.stats.pages_failed, 2);
    assert_eq!(report.stats.images_failed, 9);
    assert_eq!(report.exit_code(), 3);
    assert_eq!(server.hits().get("/final.png"), Some(&1));
}
