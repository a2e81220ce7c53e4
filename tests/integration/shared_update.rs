//! `crawl --update` in a crawl shared through Redis: two processes crawl a site, it changes, two
//! processes update it together. What a page held and its validators come from Redis, whichever
//! process fetched it before; saved images are never asked for again.

use std::collections::{HashMap, HashSet};
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use crate::distributed::{finish, RedisServer};
use crate::support::{manifest, output_text, TestServer};
use crate::update::{change, expected_images, first_version, images_asked, serve, stats, Site};

/// A process of the shared crawl `upd` of `server`'s site, into `dir/out{n}`.
fn process(server: &TestServer, redis: &RedisServer, dir: &Path, n: usize, update: bool) -> Child {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_imgcrawl"));
    cmd.args(["crawl", "--max-depth", "5", "--fetchers", "1"])
        .arg(server.url("/list/1"))
        .args(["--redis", &redis.url(), "--crawl-id", "upd", "-o"])
        .arg(dir.join(format!("out{n}")))
        .env_remove("RUST_LOG")
        .env_remove("HTTP_PROXY")
        .env_remove("http_proxy")
        .env_remove("ALL_PROXY")
        .env("IMGCRAWL_DISTRIBUTED__LEASE_SECS", "2")
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    if update {
        cmd.arg("--update");
    }
    cmd.spawn().expect("start imgcrawl")
}

/// Runs two processes to their end; answers their outputs' text.
fn both(children: [Child; 2]) -> Vec<String> {
    children
        .into_iter()
        .map(|c| {
            let o = finish(c, Duration::from_secs(60));
            assert_eq!(o.status.code(), Some(0), "{}", output_text(&o));
            output_text(&o)
        })
        .collect()
}

/// Whether the processes `pids` have all read from the shared crawl's page stream.
fn all_reading(redis: &RedisServer, pids: &[u32]) -> bool {
    let consumers: Vec<HashMap<String, redis::Value>> = redis::cmd("XINFO")
        .arg("CONSUMERS")
        .arg("imgcrawl:{upd}:pages")
        .arg("workers")
        .query(&mut redis.con())
        .unwrap_or_default();
    let names: Vec<String> = consumers
        .iter()
        .filter_map(|c| redis::from_redis_value(c.get("name")?.clone()).ok())
        .collect();
    pids.iter()
        .all(|pid| names.iter().any(|n| n.contains(&format!("-{pid}-"))))
}

/// The image URLs saved in both output directories, each once across them.
fn saved(dir: &Path) -> HashSet<String> {
    let mut all = HashSet::new();
    for n in [1, 2] {
        for row in manifest(&dir.join(format!("out{n}"))) {
            assert!(all.insert(row.url.clone()), "{} saved twice", row.url);
        }
    }
    all
}

/// A counter of both processes' `stats.json` together.
fn total(dir: &Path, key: &str) -> u64 {
    [1, 2]
        .iter()
        .map(|n| {
            stats(&dir.join(format!("out{n}")))[key]
                .as_u64()
                .unwrap_or(0)
        })
        .sum()
}

#[test]
fn two_processes_update_a_shared_crawl_asking_only_for_what_changed() {
    let redis = RedisServer::start();
    let site = Arc::new(Mutex::new(Site {
        pages: first_version(),
        validators: true,
    }));
    let hold = Arc::new(AtomicBool::new(false));
    let server = serve(site.clone(), hold.clone());
    let dir = tempfile::tempdir().unwrap();
    let start = |n, update| process(&server, &redis, dir.path(), n, update);

    both([start(1, false), start(2, false)]);
    let first = saved(dir.path());
    assert_eq!(first.len(), 13);

    // Without --update the complete crawl stays complete.
    let before = server.requests().len();
    let text = both([start(1, false), start(2, false)]);
    assert!(text[0].contains("is complete"), "{}", text[0]);
    assert!(
        server.requests()[before..]
            .iter()
            .all(|r| r.path == "/robots.txt"),
        "a complete crawl asks for nothing"
    );

    change(&site);
    std::thread::sleep(Duration::from_millis(1100));
    // /list/4 (new) waits until both processes take part, so the run cannot end under the
    // second one (which would then start an update of its own).
    hold.store(true, Ordering::SeqCst);
    let before = server.requests().len();
    let children = [start(1, true), start(2, true)];
    let pids: Vec<u32> = children.iter().map(Child::id).collect();
    let deadline = Instant::now() + Duration::from_secs(30);
    while !all_reading(&redis, &pids) {
        assert!(
            Instant::now() < deadline,
            "the processes never both took part"
        );
        std::thread::sleep(Duration::from_millis(20));
    }
    hold.store(false, Ordering::SeqCst);
    let text = both(children);
    assert!(
        text.iter().any(|t| t.contains("update run 2 starts")),
        "{text:?}"
    );
    assert!(text.iter().any(|t| t.contains("joining run 2")), "{text:?}");
    let requests = &server.requests()[before..];

    // Only the new image URLs, each once (no file was deleted: 5.png is not among them).
    let mut want = expected_images();
    want.retain(|p| p != "/img/5.png");
    assert_eq!(images_asked(requests), want);
    // Every page once; the ones fetched before asked with their validators (from Redis,
    // whichever process fetched them), the unchanged ones answering 304.
    let pages: Vec<_> = requests
        .iter()
        .filter(|r| r.path != "/robots.txt" && !r.path.starts_with("/img/"))
        .collect();
    let mut paths: Vec<&str> = pages.iter().map(|r| r.path.as_str()).collect();
    paths.sort();
    let n = paths.len();
    paths.dedup();
    assert_eq!(paths.len(), n, "a page asked for twice: {paths:?}");
    for r in &pages {
        let known = first_version().contains_key(&r.path);
        assert_eq!(
            r.header("if-none-match").is_some(),
            known,
            "{} asked {} validators",
            r.path,
            if known { "without" } else { "with" }
        );
    }
    assert_eq!(total(dir.path(), "pages_unchanged"), 4);
    assert_eq!(total(dir.path(), "pages_changed"), 2);
    assert_eq!(total(dir.path(), "pages_gone"), 1);
    assert_eq!(total(dir.path(), "images_new"), 6);
    let now = saved(dir.path());
    assert_eq!(now.len(), 19);
    assert!(now.is_superset(&first));
}
