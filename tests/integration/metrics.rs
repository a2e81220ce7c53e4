//! `/metrics` and `/status`, scraped with a real HTTP client (awc) during and after crawls of a
//! local site, and parsed: by a Prometheus text parser, and line by line against the format.

use std::collections::HashMap;
use std::io::{BufRead, BufReader};
use std::process::{Command, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant};

use imgcrawl::metrics::MetricsServer;
use imgcrawl::sample_site::SampleSite;
use imgcrawl::Crawl;
use prometheus_parse::{Scrape, Value};

use crate::support::{settings, TestServer};

/// GET `url` with awc, answering the status and the body.
async fn get(url: &str) -> (u16, String) {
    let mut res = awc::Client::new()
        .get(url)
        .send()
        .await
        .unwrap_or_else(|e| panic!("GET {url}: {e}"));
    let body = res.body().await.unwrap();
    (
        res.status().as_u16(),
        String::from_utf8(body.to_vec()).unwrap(),
    )
}

/// Checks every line against the text exposition format, then parses it.
fn parse(text: &str) -> Scrape {
    let sample = regex::Regex::new(
        r#"^[a-zA-Z_:][a-zA-Z0-9_:]*(\{[a-zA-Z_][a-zA-Z0-9_]*="(?:[^"\\\n]|\\.)*"(,[a-zA-Z_][a-zA-Z0-9_]*="(?:[^"\\\n]|\\.)*")*\})? (\+Inf|-Inf|NaN|[-+]?[0-9]+(\.[0-9]+)?([eE][-+]?[0-9]+)?)$"#,
    )
    .unwrap();
    let comment = regex::Regex::new(
        r"^# (HELP [a-zA-Z_:][a-zA-Z0-9_:]* .+|TYPE [a-zA-Z_:][a-zA-Z0-9_:]* (counter|gauge|histogram))$",
    )
    .unwrap();
    for line in text.lines() {
        let ok = if line.starts_with('#') {
            comment.is_match(line)
        } else {
            sample.is_match(line)
        };
        assert!(ok, "not in the exposition format: {line:?}");
    }
    Scrape::parse(text.lines().map(|l| Ok(l.to_string()))).unwrap()
}

/// The value of `metric` with exactly `labels`, for counters and gauges.
fn value(scrape: &Scrape, metric: &str, labels: &[(&str, &str)]) -> Option<f64> {
    scrape
        .samples
        .iter()
        .find(|s| {
            s.metric == metric
                && labels.iter().all(|(k, v)| s.labels.get(k) == Some(*v))
                && s.labels.len() == labels.len()
        })
        .map(|s| match s.value {
            Value::Counter(v) | Value::Gauge(v) | Value::Untyped(v) => v,
            ref other => panic!("{metric} is not a number: {other:?}"),
        })
}

/// `(le, cumulative count)` of the response-time histogram of `kind`; checks it is cumulative.
fn histogram(scrape: &Scrape, kind: &str) -> Vec<(f64, f64)> {
    let s = scrape
        .samples
        .iter()
        .find(|s| s.metric == "imgcrawl_response_seconds" && s.labels.get("kind") == Some(kind))
        .unwrap_or_else(|| panic!("no response_seconds for {kind}"));
    let Value::Histogram(buckets) = &s.value else {
        panic!("not a histogram: {:?}", s.value)
    };
    let b: Vec<(f64, f64)> = buckets.iter().map(|b| (b.less_than, b.count)).collect();
    assert!(b.len() >= 2 && b.last().unwrap().0.is_infinite(), "{b:?}");
    assert!(
        b.windows(2).all(|w| w[0].0 < w[1].0 && w[0].1 <= w[1].1),
        "buckets not cumulative: {b:?}"
    );
    b
}

/// Counters that must never go down between two scrapes.
const COUNTERS: [(&str, &str, &str); 4] = [
    ("imgcrawl_pages_total", "outcome", "fetched"),
    ("imgcrawl_images_total", "outcome", "saved"),
    ("imgcrawl_images_total", "outcome", "duplicate"),
    ("imgcrawl_saved_bytes_total", "", ""),
];

fn counter(scrape: &Scrape, (metric, k, v): (&str, &str, &str)) -> f64 {
    let labels: &[(&str, &str)] = if k.is_empty() { &[] } else { &[(k, v)] };
    value(scrape, metric, labels).unwrap_or_else(|| panic!("no {metric}{labels:?}"))
}

#[test]
fn the_binary_serves_metrics_and_status_while_it_crawls() {
    // List pages 1 and 2 at depth 0: 20 images (the 20th a byte copy of the 19th), each taking
    // 0.3 s, two at a time: about 3 s of crawl to scrape.
    let site = SampleSite {
        pages: 3,
        per_page: 10,
        page_kb: 0,
    };
    let server = TestServer::sample(site, |p| {
        p.starts_with("/img/").then_some(Duration::from_millis(300))
    });
    let out = tempfile::tempdir().unwrap();
    let mut child = Command::new(env!("CARGO_BIN_EXE_imgcrawl"))
        .args([
            "crawl",
            &server.url("/list/1.html"),
            &server.url("/list/2.html"),
            "-o",
            out.path().to_str().unwrap(),
            "--savers",
            "2",
            "--max-depth",
            "0",
            "--metrics",
            "127.0.0.1:0",
        ])
        .env_remove("RUST_LOG")
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    // Port 0: the address actually bound is in the log.
    let (tx, rx) = mpsc::channel();
    let stderr = child.stderr.take().unwrap();
    std::thread::spawn(move || {
        for line in BufReader::new(stderr).lines().map_while(Result::ok) {
            let _ = tx.send(line);
        }
    });
    let base = loop {
        let line = rx
            .recv_timeout(Duration::from_secs(20))
            .expect("no metrics address logged");
        if let Some((_, rest)) = line.split_once("metrics at http://") {
            let addr = rest.split('/').next().unwrap();
            break format!("http://{addr}");
        }
    };
    let host = server.url("").trim_start_matches("http://").to_string();

    let system = actix_rt::System::new();
    let (first, busy, status) = system.block_on(async {
        let (code, text) = get(&format!("{base}/metrics")).await;
        assert_eq!(code, 200, "{text}");
        let first = parse(&text);
        // Scrape until a download is seen in flight, with its host.
        let until = Instant::now() + Duration::from_secs(15);
        let busy = loop {
            let (_, text) = get(&format!("{base}/metrics")).await;
            let s = parse(&text);
            let images = value(&s, "imgcrawl_in_flight_requests", &[("kind", "image")]);
            let on_host = value(&s, "imgcrawl_host_in_flight_requests", &[("host", &host)]);
            if images.unwrap_or(0.0) >= 1.0 && on_host.unwrap_or(0.0) >= 1.0 {
                break s;
            }
            assert!(
                Instant::now() < until,
                "never saw a download in flight:\n{text}"
            );
            actix_rt::time::sleep(Duration::from_millis(50)).await;
        };
        let (code, status) = get(&format!("{base}/status")).await;
        assert_eq!(code, 200, "{status}");
        (first, busy, status)
    });
    for c in COUNTERS {
        assert!(counter(&first, c) <= counter(&busy, c), "{c:?} went down");
    }
    assert_eq!(value(&busy, "imgcrawl_running", &[]), Some(1.0));
    // A download in flight is at most 2 (--savers 2), and only on the test server's host.
    let in_flight = value(&busy, "imgcrawl_in_flight_requests", &[("kind", "image")]).unwrap();
    assert!((1.0..=2.0).contains(&in_flight), "{in_flight}");
    // robots.txt and a list page are in, answered faster than any image can be (0.3 s).
    let under = |h: &[(f64, f64)], le: f64| h.iter().find(|b| b.0 == le).unwrap().1;
    let pages = histogram(&busy, "page");
    assert!(pages.last().unwrap().1 >= 2.0, "{pages:?}");
    assert!(under(&pages, 0.25) >= 1.0, "{pages:?}");
    let images = histogram(&busy, "image");
    assert_eq!(
        under(&images, 0.25),
        0.0,
        "no image answers in under 0.3 s: {images:?}"
    );

    let status: serde_json::Value = serde_json::from_str(&status).unwrap();
    assert_eq!(status["state"], "running", "{status}");
    assert!(status["queues"]["images_in_flight"].as_u64().unwrap() <= 2);
    assert!(status["stats"]["pages_fetched"].as_u64().unwrap() >= 1);

    let o = child.wait_with_output().unwrap();
    assert_eq!(o.status.code(), Some(0));
    let stats: serde_json::Value =
        serde_json::from_slice(&std::fs::read(out.path().join("stats.json")).unwrap()).unwrap();
    assert_eq!(stats["images_saved"], 19);
    assert!(counter(&busy, COUNTERS[1]) <= 19.0);
}

#[actix_rt::test]
async fn an_embedded_crawls_metrics_count_every_request_once_it_ends() {
    // The last list page holds the broken images: a 404, an HTML page, a cut body.
    let site = SampleSite {
        pages: 2,
        per_page: 5,
        page_kb: 0,
    };
    let server = TestServer::sample(site, |_| None);
    let out = tempfile::tempdir().unwrap();
    let s = settings(
        &[server.url("/list/1.html")],
        out.path(),
        "[http]\nretries = 0\n",
    );
    let crawl = Crawl::start(s).await.unwrap();
    let listener = imgcrawl::metrics::bind("127.0.0.1:0".parse().unwrap()).unwrap();
    let metrics = MetricsServer::start(&crawl, listener).unwrap();
    let report = crawl.wait().await.unwrap();
    let base = format!("http://{}", metrics.addr());
    let (_, text) = get(&format!("{base}/metrics")).await;
    let m = parse(&text);
    let st = &report.stats;
    let n = |metric: &str, labels: &[(&str, &str)]| value(&m, metric, labels).unwrap_or(0.0) as u64;
    assert_eq!(
        n("imgcrawl_pages_total", &[("outcome", "fetched")]),
        st.pages_fetched
    );
    assert_eq!(
        n("imgcrawl_images_total", &[("outcome", "saved")]),
        st.images_saved
    );
    assert_eq!(
        n("imgcrawl_images_total", &[("outcome", "duplicate")]),
        st.duplicates
    );
    assert_eq!(n("imgcrawl_images_total", &[("outcome", "failed")]), 3);
    assert_eq!(n("imgcrawl_saved_bytes_total", &[]), st.bytes_saved);
    for kind in ["status 404", "not an image", "truncated body"] {
        assert_eq!(
            n("imgcrawl_errors_total", &[("kind", kind)]),
            1,
            "{kind}\n{text}"
        );
    }
    assert_eq!(n("imgcrawl_running", &[]), 0);
    assert_eq!(n("imgcrawl_in_flight_requests", &[("kind", "image")]), 0);
    // One observation per request the server answered.
    let hits = server.hits();
    let requests = |image: bool| -> f64 {
        hits.iter()
            .filter(|(p, _)| p.starts_with("/img/") == image)
            .map(|(_, n)| *n as f64)
            .sum()
    };
    let count = |kind| histogram(&m, kind).last().unwrap().1;
    assert_eq!(count("image"), requests(true), "{hits:?}");
    assert_eq!(count("page"), requests(false), "{hits:?}");

    let (_, status) = get(&format!("{base}/status")).await;
    let status: serde_json::Value = serde_json::from_str(&status).unwrap();
    assert_eq!(status["state"], "finished");
    assert_eq!(status["stats"]["images_saved"], st.images_saved);
    let by_host: HashMap<String, u64> =
        serde_json::from_value(status["hosts_in_flight"].clone()).unwrap();
    assert!(by_host.is_empty(), "{by_host:?}");
    metrics.stop().await;
}
