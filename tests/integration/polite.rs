//! Politeness against a fault-injecting server: robots.txt and Crawl-delay, per-host limits that
//! leave other hosts alone, retries with Retry-After, and timeouts a slow server cannot stretch.
//! Every test asserts what the server saw: request counts and the time between requests.

use std::collections::HashMap;
use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use imgcrawl::sample_site::png;

use crate::support::{
    error_map, errors, image_files, manifest, run_crawl, temp_files, Reply, TestServer,
};

/// A small PNG whose bytes depend on the whole of `path`.
fn img(path: &str) -> Vec<u8> {
    let seed = path.bytes().fold(0xcbf2_9ce4_8422_2325u64, |h, b| {
        (h ^ u64::from(b)).wrapping_mul(0x100_0000_01b3)
    });
    png(seed, 9, 9)
}

/// The smallest gap between the starts of two consecutive requests in `log`.
fn min_gap(log: &[(Instant, String)]) -> Duration {
    log.windows(2)
        .map(|w| w[1].0 - w[0].0)
        .min()
        .unwrap_or(Duration::MAX)
}

#[actix_rt::test]
async fn robots_txt_is_obeyed_with_its_crawl_delay_and_other_hosts_run_free() {
    let other = TestServer::start_on("127.0.0.2", |path| match path {
        "/robots.txt" => Reply::Status(404),
        p if p.starts_with("/cdn/") => Reply::Ok("image/png", img(p)),
        _ => Reply::Status(404),
    });
    let cdn: String = (0..8)
        .map(|i| format!("<img src='{}'>", other.url(&format!("/cdn/{i}.png"))))
        .collect();
    let robots = "User-agent: *\nDisallow: /\n\nUser-agent: imgcrawl\nDisallow: /private\nCrawl-delay: 0.3\n";
    let server = TestServer::start(move |path| match path {
        "/robots.txt" => Reply::Ok("text/plain", robots.as_bytes().to_vec()),
        "/" => Reply::Ok(
            "text/html",
            format!(
                "<a href='/a.html'>a</a><a href='/private/p.html'>p</a><img src='/one.png'>\
                 <img src='/private/x.png'>{cdn}"
            )
            .into_bytes(),
        ),
        "/a.html" => Reply::Ok(
            "text/html",
            b"<img src='/two.png'><a href='/b.html'>b</a>".to_vec(),
        ),
        "/b.html" => Reply::Ok("text/html", b"<img src='/three.png'>".to_vec()),
        p if p.ends_with(".png") => Reply::Ok("image/png", img(p)),
        _ => Reply::Status(404),
    });
    let out = tempfile::tempdir().unwrap();
    let toml = "[scope]\nallowed_hosts = ['127.0.0.1', '127.0.0.2']\n";
    let (report, _) = run_crawl(&[server.url("/")], out.path(), toml).await;

    let hits = server.hits();
    assert_eq!(hits.get("/robots.txt"), Some(&1), "fetched once: {hits:?}");
    assert!(
        hits.keys().all(|p| !p.starts_with("/private")),
        "a disallowed URL was requested: {hits:?}"
    );
    let errs = error_map(out.path(), &server);
    assert!(
        errs.is_empty(),
        "disallowed URLs are skipped, not failures: {errs:?}"
    );
    assert_eq!(report.stats.pages_skipped.get("robots"), Some(&1));
    assert_eq!(report.stats.images_skipped.get("robots"), Some(&1));
    assert_eq!(report.exit_code(), 0);
    assert_eq!(report.stats.images_saved, 3 + 8);

    // robots.txt, the sitemap guessed at /sitemap.xml (404: no sitemap, no failure), 3 pages and
    // 3 images: every start at least Crawl-delay after the one before.
    let log = server.log();
    assert_eq!(log.len(), 8, "{log:?}");
    assert!(min_gap(&log) >= Duration::from_millis(290), "{log:?}");
    assert!(log[0].1 == "/robots.txt", "robots.txt comes first: {log:?}");
    // The other host has no delay: its 8 images do not wait 0.3 s each.
    let other_log = other.log();
    assert_eq!(
        other_log.len(),
        10,
        "robots.txt, /sitemap.xml and 8 images: {other_log:?}"
    );
    let span = other_log.last().unwrap().0 - other_log[2].0;
    assert!(span < Duration::from_millis(900), "{span:?}");
    // Both hosts saw our user agent.
    let ua = format!("imgcrawl/{}", env!("CARGO_PKG_VERSION"));
    assert!(server
        .user_agents()
        .iter()
        .chain(&other.user_agents())
        .all(|u| *u == ua));
}

#[actix_rt::test]
async fn robots_txt_missing_failing_or_ignored() {
    // 503 twice, then a file: retried, then obeyed.
    let robots_tries = Arc::new(AtomicU32::new(0));
    let tries = robots_tries.clone();
    let flaky = TestServer::start(move |path| match path {
        "/robots.txt" if tries.fetch_add(1, Ordering::SeqCst) < 2 => Reply::Status(503),
        "/robots.txt" => Reply::Ok("text/plain", b"User-agent: *\nDisallow: /no\n".to_vec()),
        "/" => Reply::Ok(
            "text/html",
            b"<a href='/no/x.html'>x</a><img src='/i.png'>".to_vec(),
        ),
        "/i.png" => Reply::Ok("image/png", png(1, 9, 9)),
        _ => Reply::Status(404),
    });
    let out = tempfile::tempdir().unwrap();
    let fast = "[http]\nretries = 2\nretry_backoff_ms = 20\n";
    run_crawl(&[flaky.url("/")], out.path(), fast).await;
    let hits = flaky.hits();
    assert_eq!(hits.get("/robots.txt"), Some(&3), "{hits:?}");
    assert_eq!(hits.get("/no/x.html"), None);
    assert_eq!(hits.get("/i.png"), Some(&1));

    // Always 500: the host counts as disallowed, nothing else is requested.
    let down = TestServer::start(|path| match path {
        "/robots.txt" => Reply::Status(500),
        _ => Reply::Ok("text/html", b"<img src='/i.png'>".to_vec()),
    });
    let out = tempfile::tempdir().unwrap();
    run_crawl(&[down.url("/")], out.path(), fast).await;
    assert_eq!(down.hits().len(), 1, "only robots.txt: {:?}", down.hits());
    assert_eq!(down.hits().get("/robots.txt"), Some(&3));
    assert_eq!(
        error_map(out.path(), &down).get("/"),
        Some(&("robots.txt unavailable".into(), 0))
    );

    // 404 allows everything; obey_robots = false never asks.
    for (toml, robots_hits) in [("", Some(&1)), ("[http]\nobey_robots = false\n", None)] {
        let open = TestServer::start(|path| match path {
            "/" => Reply::Ok("text/html", b"<img src='/i.png'>".to_vec()),
            "/i.png" => Reply::Ok("image/png", png(2, 9, 9)),
            _ => Reply::Status(404),
        });
        let out = tempfile::tempdir().unwrap();
        let (report, _) = run_crawl(&[open.url("/")], out.path(), toml).await;
        assert_eq!(open.hits().get("/robots.txt"), robots_hits, "{toml}");
        assert_eq!(report.stats.images_saved, 1, "{toml}");
    }
}

#[actix_rt::test]
async fn per_host_concurrency_and_delay_hold_for_pages_and_images_together() {
    let imgs: String = (0..12).map(|i| format!("<img src='/i{i}.png'>")).collect();
    let links: String = (0..6)
        .map(|i| format!("<a href='/p{i}.html'>p</a>"))
        .collect();
    let page = format!("{imgs}{links}");
    let server = TestServer::start(move |path| {
        let reply = match path {
            "/" => Reply::Ok("text/html", page.clone().into_bytes()),
            p if p.ends_with(".html") => Reply::Ok("text/html", b"<p>leaf</p>".to_vec()),
            p if p.ends_with(".png") => Reply::Ok("image/png", img(p)),
            _ => Reply::Status(404),
        };
        Reply::Delayed(Duration::from_millis(150), Box::new(reply))
    });
    let out = tempfile::tempdir().unwrap();
    let toml = "[http]\nper_host_concurrency = 2\n";
    run_crawl(&[server.url("/")], out.path(), toml).await;
    assert_eq!(
        server.max_active(),
        2,
        "at most 2 at once, and the crawl used both"
    );
    assert_eq!(image_files(out.path()).len(), 12);

    let out = tempfile::tempdir().unwrap();
    let server2 = TestServer::start(|path| match path {
        "/" => Reply::Ok(
            "text/html",
            b"<img src='/a.png'><img src='/b.png'><a href='/c.html'>c</a>".to_vec(),
        ),
        "/c.html" => Reply::Ok("text/html", b"<img src='/d.png'>".to_vec()),
        p if p.ends_with(".png") => Reply::Ok("image/png", img(p)),
        _ => Reply::Status(404),
    });
    run_crawl(&[server2.url("/")], out.path(), "[http]\ndelay_ms = 250\n").await;
    let log = server2.log();
    assert_eq!(log.len(), 7, "with robots.txt and /sitemap.xml: {log:?}");
    assert!(min_gap(&log) >= Duration::from_millis(245), "{log:?}");
}

#[actix_rt::test]
async fn retries_back_off_and_retry_after_pauses_the_whole_host() {
    let counters: Arc<std::sync::Mutex<HashMap<String, u32>>> = Default::default();
    let c = counters.clone();
    let server = TestServer::start(move |path| {
        let n = {
            let mut c = c.lock().unwrap();
            let n = c.entry(path.to_string()).or_default();
            *n += 1;
            *n
        };
        let ok = || Reply::Ok("image/png", img(path));
        match (path, n) {
            ("/robots.txt", _) => Reply::Status(404),
            ("/", _) => Reply::Ok(
                "text/html",
                b"<img src='/busy.png'><img src='/flaky.png'><img src='/gone.png'>\
                  <img src='/slowdown.png'><img src='/later.png'><img src='/o1.png'><img src='/o2.png'>"
                    .to_vec(),
            ),
            ("/busy.png", 1) => Reply::with_headers(429, &[("retry-after", "1")], b"slow down"),
            ("/flaky.png", 1 | 2) => Reply::Status(503),
            ("/slowdown.png", 1) => Reply::Status(408),
            ("/gone.png", _) => Reply::Status(404),
            ("/later.png", _) => Reply::with_headers(503, &[("retry-after", "3600")], b""),
            _ => ok(),
        }
    });
    let out = tempfile::tempdir().unwrap();
    let toml = "[http]\nretry_backoff_ms = 50\nper_host_concurrency = 1\nmax_wait_secs = 60\n";
    let (report, _) = run_crawl(&[server.url("/")], out.path(), toml).await;

    let hits = server.hits();
    assert_eq!(hits.get("/busy.png"), Some(&2));
    assert_eq!(hits.get("/flaky.png"), Some(&3));
    assert_eq!(hits.get("/slowdown.png"), Some(&2), "408 is retried");
    assert_eq!(hits.get("/gone.png"), Some(&1), "404 is not retried");
    assert_eq!(
        hits.get("/later.png"),
        Some(&1),
        "a Retry-After over max_wait_secs gives up"
    );
    let errs = error_map(out.path(), &server);
    assert_eq!(errs.get("/gone.png"), Some(&("status 404".into(), 1)));
    assert_eq!(errs.get("/later.png"), Some(&("status 503".into(), 1)));
    assert!(errors(out.path())
        .iter()
        .any(|e| e.detail.contains("Retry-After of 3600 s")));
    assert_eq!(report.stats.images_saved, 5);

    // After the 429, nothing at all was asked of the host for the second it asked for.
    let log = server.log();
    let at_429 = log.iter().find(|(_, p)| p == "/busy.png").unwrap().0;
    let next = log.iter().find(|(t, _)| *t > at_429).unwrap().0;
    assert!(next - at_429 >= Duration::from_millis(950), "{log:?}");
}

#[actix_rt::test]
async fn slow_servers_cost_at_most_the_configured_times() {
    let server = TestServer::start(|path| match path {
        "/robots.txt" => Reply::Status(404),
        "/" => Reply::Ok(
            "text/html",
            b"<img src='/drip.png'><img src='/hang.png'><img src='/fine.png'>".to_vec(),
        ),
        "/drip.png" => Reply::Drip("image/png", 100_000, Duration::from_millis(100)),
        "/hang.png" => Reply::Hang,
        "/fine.png" => Reply::Ok("image/png", png(3, 9, 9)),
        _ => Reply::Status(404),
    });
    let out = tempfile::tempdir().unwrap();
    let toml =
        "[http]\ntimeout_secs = 1.5\nhead_timeout_secs = 0.5\nretries = 1\nretry_backoff_ms = 50\n";
    let (report, elapsed) = run_crawl(&[server.url("/")], out.path(), toml).await;
    let errs = error_map(out.path(), &server);
    assert_eq!(errs.get("/drip.png"), Some(&("timeout".into(), 2)));
    assert_eq!(errs.get("/hang.png"), Some(&("timeout".into(), 2)));
    assert_eq!(report.stats.images_saved, 1);
    // Two drips of 1.5 s and two hangs of 0.5 s run side by side: far below what the servers
    // would take (the drip alone would need hours).
    assert!(elapsed < Duration::from_secs(6), "{elapsed:?}");
    let log = server.log();
    let drips: Vec<Instant> = log
        .iter()
        .filter(|(_, p)| p == "/drip.png")
        .map(|(t, _)| *t)
        .collect();
    assert!(
        drips[1] - drips[0] >= Duration::from_millis(1450),
        "the total deadline held the first"
    );
    assert_eq!(temp_files(out.path()), 0);
    assert_eq!(manifest(out.path()).len(), 1);
}
