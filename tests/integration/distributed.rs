//! One crawl shared by several `imgcrawl` processes through a real `redis-server` that each test
//! starts on a free loopback port with a password: mixed roles, a process killed with SIGKILL,
//! Redis restarted mid-crawl, a wrong password, the cluster-wide delay, byte-identical images
//! stored once across the processes, and Ctrl-C.

use std::collections::{HashMap, HashSet};
use std::net::TcpListener;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::time::{Duration, Instant};

use imgcrawl::sample_site::SampleSite;

use crate::crawl::list_urls;
use crate::support::{errors, image_files, manifest, output_text, sha256_hex, TestServer};

const PASSWORD: &str = "s3cret-pw";

/// A `redis-server` of this test, stopped when dropped.
pub(crate) struct RedisServer {
    child: Option<Child>,
    port: u16,
    dir: tempfile::TempDir,
}

impl RedisServer {
    /// Starts redis-server on a free port of 127.0.0.1, with a password and an append-only file
    /// (so that a restart keeps the crawl).
    pub(crate) fn start() -> RedisServer {
        let port = {
            let l = TcpListener::bind("127.0.0.1:0").unwrap();
            l.local_addr().unwrap().port()
        };
        let mut r = RedisServer {
            child: None,
            port,
            dir: tempfile::tempdir().unwrap(),
        };
        r.spawn();
        r
    }

    fn spawn(&mut self) {
        let child = Command::new("redis-server")
            .args(["--bind", "127.0.0.1", "--port", &self.port.to_string()])
            .args(["--requirepass", PASSWORD, "--save", ""])
            .args(["--appendonly", "yes", "--appendfsync", "always"])
            .arg("--dir")
            .arg(self.dir.path())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap_or_else(|e| {
                panic!(
                    "cannot start redis-server ({e}): the distributed tests need it; install it \
                     with `apt-get install redis-server` (.ci/run does)"
                )
            });
        self.child = Some(child);
        let deadline = Instant::now() + Duration::from_secs(10);
        loop {
            let ready = redis::Client::open(self.url().as_str())
                .and_then(|c| c.get_connection())
                .and_then(|mut c| redis::cmd("PING").query::<String>(&mut c));
            if ready.is_ok() {
                return;
            }
            assert!(Instant::now() < deadline, "redis-server did not come up");
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    /// Stops the server (it writes its append-only file) and starts it again on the same port.
    fn restart(&mut self, down_for: Duration) {
        self.stop();
        std::thread::sleep(down_for);
        self.spawn();
    }

    fn stop(&mut self) {
        if let Some(mut child) = self.child.take() {
            // SAFETY: kill only sends SIGTERM to the redis-server this test started.
            unsafe { libc::kill(child.id() as libc::pid_t, libc::SIGTERM) };
            let _ = child.wait();
        }
    }

    pub(crate) fn url(&self) -> String {
        format!("redis://:{PASSWORD}@127.0.0.1:{}/0", self.port)
    }

    pub(crate) fn con(&self) -> redis::Connection {
        redis::Client::open(self.url().as_str())
            .unwrap()
            .get_connection()
            .unwrap()
    }
}

impl Drop for RedisServer {
    fn drop(&mut self) {
        self.stop();
    }
}

/// `imgcrawl crawl` of `site`'s list pages into `out`, in the shared crawl `id` on `redis` with
/// `role`, 6 savers (unless `IMGCRAWL_SAVERS` is in `env`), leases of 2 s (unless
/// `IMGCRAWL_DISTRIBUTED__LEASE_SECS` is) and a short retry backoff.
fn shared_crawl(
    server: &TestServer,
    site: SampleSite,
    redis: &str,
    (id, role): (&str, &str),
    out: &Path,
    env: &[(&str, &str)],
) -> Child {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_imgcrawl"));
    cmd.arg("crawl")
        .args(list_urls(server, site))
        .args(["--redis", redis, "--crawl-id", id, "--role", role])
        .args(["--fetchers", "2", "-o"])
        .arg(out)
        .env_remove("RUST_LOG")
        .env("IMGCRAWL_SAVERS", "6")
        .env("IMGCRAWL_DISTRIBUTED__LEASE_SECS", "2")
        .env("IMGCRAWL_HTTP__RETRY_BACKOFF_MS", "20")
        .envs(env.iter().copied())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    cmd.spawn().expect("start imgcrawl")
}

/// Waits for `child`, failing the test if it does not end on its own within `limit`.
pub(crate) fn finish(mut child: Child, limit: Duration) -> Output {
    let deadline = Instant::now() + limit;
    while child.try_wait().unwrap().is_none() {
        if Instant::now() > deadline {
            let _ = child.kill();
            let o = child.wait_with_output().unwrap();
            panic!("imgcrawl did not finish on its own:\n{}", output_text(&o));
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    child.wait_with_output().unwrap()
}

/// Checks a surviving process's exit: 3 if it recorded failures (the site's 3 broken images),
/// else 0.
fn assert_clean_exit(o: &Output, out: &Path) {
    let expected = if errors(out).is_empty() { 0 } else { 3 };
    assert_eq!(o.status.code(), Some(expected), "{}", output_text(o));
}

/// The image URLs whose saving `out`'s state committed (the manifest is exported from the state
/// first, for a process that was killed before writing it).
fn saved_urls(out: &Path) -> Vec<String> {
    let o = Command::new(env!("CARGO_BIN_EXE_imgcrawl"))
        .arg("manifest")
        .arg(out)
        .output()
        .unwrap();
    assert!(o.status.success(), "{}", output_text(&o));
    manifest(out).into_iter().map(|r| r.url).collect()
}

/// Every good image URL of `site` on `server`.
fn good_images(site: SampleSite, server: &TestServer) -> HashSet<String> {
    site.images()
        .iter()
        .filter(|i| i.bytes.is_some())
        .map(|i| server.url(&i.path))
        .collect()
}

/// Waits until `out` holds at least `n` image files.
fn wait_for_files(out: &Path, n: usize, limit: Duration) {
    let deadline = Instant::now() + limit;
    while !out.exists() || image_files(out).len() < n {
        assert!(Instant::now() < deadline, "no progress in {out:?}");
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// Asserts that `got` equals `want`, naming what is missing and what is extra.
fn assert_same(got: &HashSet<String>, want: &HashSet<String>, what: &str) {
    let missing: Vec<_> = want.difference(got).collect();
    let extra: Vec<_> = got.difference(want).collect();
    assert!(
        missing.is_empty() && extra.is_empty(),
        "{what}: missing {missing:?}, extra {extra:?}"
    );
}

/// The SHA-256 of every image file in `dirs`, with the file, failing the test if two files hold
/// the same bytes.
fn stored_once(dirs: &[PathBuf]) -> HashMap<String, PathBuf> {
    let mut by_sha: HashMap<String, PathBuf> = HashMap::new();
    for dir in dirs {
        for rel in image_files(dir) {
            let path = dir.join(rel);
            let sha = sha256_hex(&std::fs::read(&path).unwrap());
            if let Some(first) = by_sha.insert(sha, path.clone()) {
                panic!("the same bytes stored twice: {first:?} and {path:?}");
            }
        }
    }
    by_sha
}

/// The consumer name a process logged when it joined its shared crawl.
fn consumer_of(o: &Output) -> String {
    let text = output_text(o);
    let join = text
        .lines()
        .find(|l| l.contains("joined the shared crawl"))
        .unwrap_or_else(|| panic!("no join line in {text}"));
    let (_, after) = join.split_once(" as ").unwrap();
    after.split_whitespace().next().unwrap().to_string()
}

fn open_jobs(redis: &RedisServer, id: &str) -> i64 {
    let mut con = redis.con();
    redis::cmd("GET")
        .arg(format!("imgcrawl:{{{id}}}:open"))
        .query::<Option<i64>>(&mut con)
        .unwrap()
        .unwrap_or(0)
}

#[test]
fn mixed_roles_and_a_killed_process_save_every_image_once_between_them() {
    let site = SampleSite {
        pages: 8,
        per_page: 20,
        page_kb: 0,
    };
    // Slow images, so that the kill lands mid-crawl with images in flight.
    let server = TestServer::sample(site, |p| {
        p.starts_with("/img/").then_some(Duration::from_millis(15))
    });
    let redis = RedisServer::start();
    let tmp = tempfile::tempdir().unwrap();
    let dirs: Vec<PathBuf> = ["pages", "images", "all", "killed"]
        .iter()
        .map(|d| tmp.path().join(d))
        .collect();
    let url = redis.url();
    let mut victim = shared_crawl(&server, site, &url, ("c1", "all"), &dirs[3], &[]);
    wait_for_files(&dirs[3], 5, Duration::from_secs(60));
    let others: Vec<Child> = ["pages", "images", "all"]
        .iter()
        .zip(&dirs)
        .map(|(role, dir)| shared_crawl(&server, site, &url, ("c1", role), dir, &[]))
        .collect();
    wait_for_files(&dirs[3], 20, Duration::from_secs(60));
    victim.kill().unwrap(); // SIGKILL
    victim.wait().unwrap();
    let mut outputs = Vec::new();
    for (child, dir) in others.into_iter().zip(&dirs) {
        let o = finish(child, Duration::from_secs(120));
        assert_clean_exit(&o, dir);
        outputs.push(output_text(&o));
    }
    assert_eq!(open_jobs(&redis, "c1"), 0);
    // The whole crawl's manifest, read from Redis, has every image once, whoever saved it.
    let o = Command::new(env!("CARGO_BIN_EXE_imgcrawl"))
        .args(["manifest", "--redis", &url, "--crawl-id", "c1"])
        .output()
        .unwrap();
    assert!(o.status.success(), "{}", output_text(&o));
    let rows: Vec<serde_json::Value> = String::from_utf8_lossy(&o.stdout)
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    let urls: HashSet<String> = rows
        .iter()
        .map(|r| r["url"].as_str().unwrap().to_string())
        .collect();
    assert_eq!(
        urls.len(),
        rows.len(),
        "an image twice in the shared manifest"
    );
    assert_same(&urls, &good_images(site, &server), "the shared manifest");
    assert!(rows.iter().all(|r| r["process"].is_string()));
    // The whole crawl's counters count every image once, whoever did it.
    let stats: HashMap<String, u64> = redis::cmd("HGETALL")
        .arg("imgcrawl:{c1}:stats")
        .query(&mut redis.con())
        .unwrap();
    let good = good_images(site, &server).len() as u64;
    assert_eq!(
        stats["images_saved"] + stats["duplicates"],
        good,
        "{stats:?}"
    );
    assert_eq!(stats["images_failed"], 3, "the broken images: {stats:?}");
    assert_eq!(
        stats["pages_fetched"],
        site.pages + site.image_count(),
        "{stats:?}"
    );
    // Every survivor's summary ends with those counters.
    let n = |key: &str| stats.get(key).copied().unwrap_or(0); // a counter never raised is absent
    let whole = format!(
        "whole shared crawl, all processes:\n    pages fetched {}, failed {}; images saved {}, duplicates {}, failed {}; {:.1} MB",
        n("pages_fetched"),
        n("pages_failed"),
        n("images_saved"),
        n("duplicates"),
        n("images_failed"),
        n("bytes_saved") as f64 / 1e6
    );
    for text in &outputs {
        assert!(text.contains(&whole), "no {whole:?} in:\n{text}");
    }

    // Survivors never saved an image twice; with the killed process, every image is saved, and
    // only images the killed one held at the kill may have been saved twice.
    let mut by_url: HashMap<String, usize> = HashMap::new();
    for dir in &dirs[..3] {
        for url in saved_urls(dir) {
            *by_url.entry(url).or_default() += 1;
        }
    }
    assert!(by_url.values().all(|&n| n == 1), "a survivor saved twice");
    // Nor stored the same bytes twice (under the site's byte-identical URLs).
    stored_once(&dirs[..3]);
    let killed = saved_urls(&dirs[3]);
    assert!(killed.len() >= 20, "the killed process saved {killed:?}");
    let twice = killed.iter().filter(|u| by_url.contains_key(*u)).count();
    let all: HashSet<String> = by_url.keys().cloned().chain(killed).collect();
    assert_same(&all, &good_images(site, &server), "saved between them");
    // Saved by the killed process and again: only those it had committed but not yet
    // acknowledged (the acknowledgement follows the commit), at most one group commit's worth.
    // Requested twice: only what it held (leased, in flight, or downloaded and not yet committed).
    assert!(
        twice <= 60,
        "{twice} images saved by the killed process and again"
    );
    // Pages too: at most the 2 fetchers x 4 pages x 2 it leases at a time.
    let hits = server.hits();
    let good: HashSet<String> = good_images(site, &server)
        .iter()
        .map(|u| u.replace(&server.url(""), ""))
        .collect();
    let counts = |pick: &dyn Fn(&str) -> bool| {
        let picked: Vec<u32> = hits
            .iter()
            .filter(|(p, _)| pick(p))
            .map(|(_, &n)| n)
            .collect();
        (
            picked.len(),
            picked.iter().filter(|&&n| n > 1).count(),
            picked.iter().all(|&n| n <= 2),
        )
    };
    let (images, images_twice, at_most_twice) = counts(&|p| good.contains(p));
    assert_eq!(images, good.len());
    assert!(
        images_twice <= 60 && at_most_twice,
        "{images_twice} images requested twice"
    );
    let is_page = |p: &str| p.starts_with("/list/") || p.starts_with("/detail/");
    let (pages, pages_twice, at_most_twice) = counts(&is_page);
    assert_eq!(pages as u64, site.pages + site.image_count());
    assert!(
        pages_twice <= 16 && at_most_twice,
        "{pages_twice} pages requested twice"
    );
}

#[test]
fn redis_restarted_mid_crawl_the_processes_pause_and_carry_on() {
    let site = SampleSite {
        pages: 6,
        per_page: 15,
        page_kb: 0,
    };
    let server = TestServer::sample(site, |p| {
        p.starts_with("/img/").then_some(Duration::from_millis(20))
    });
    let mut redis = RedisServer::start();
    let tmp = tempfile::tempdir().unwrap();
    let (a, b) = (tmp.path().join("a"), tmp.path().join("b"));
    let url = redis.url();
    let long = [("IMGCRAWL_DISTRIBUTED__LEASE_SECS", "60")];
    let pa = shared_crawl(&server, site, &url, ("r1", "all"), &a, &long);
    let pb = shared_crawl(&server, site, &url, ("r1", "images"), &b, &long);
    // Nobody dies here: leases long enough to outlast the outage, or a lease that ran out while
    // Redis was down would hand a job to the other process too.
    wait_for_files(&a, 10, Duration::from_secs(60));
    redis.restart(Duration::from_millis(1500));
    let (oa, ob) = (
        finish(pa, Duration::from_secs(120)),
        finish(pb, Duration::from_secs(120)),
    );
    assert_clean_exit(&oa, &a);
    assert_clean_exit(&ob, &b);
    let text = output_text(&oa) + output_text(&ob).as_str();
    assert!(text.contains("pausing the shared crawl"), "{text}");
    let (sa, sb) = (saved_urls(&a), saved_urls(&b));
    let both: HashSet<&String> = sa.iter().filter(|u| sb.contains(u)).collect();
    assert!(both.is_empty(), "saved by both: {both:?}");
    let all: HashSet<String> = sa.into_iter().chain(sb).collect();
    assert_same(&all, &good_images(site, &server), "saved between them");
    assert_eq!(open_jobs(&redis, "r1"), 0);
}

#[test]
fn a_wrong_redis_password_is_a_start_up_error_that_never_shows_the_password() {
    let redis = RedisServer::start();
    let tmp = tempfile::tempdir().unwrap();
    let wrong = format!("redis://:not-{PASSWORD}@127.0.0.1:{}/0", redis.port);
    let o = Command::new(env!("CARGO_BIN_EXE_imgcrawl"))
        .args(["crawl", "http://127.0.0.1:9/", "--redis", &wrong])
        .args(["--crawl-id", "w1", "-o"])
        .arg(tmp.path().join("out"))
        .output()
        .unwrap();
    let text = output_text(&o);
    assert_eq!(o.status.code(), Some(2), "{text}");
    assert!(text.contains("refused the credentials"), "{text}");
    assert!(!text.contains(PASSWORD), "{text}");
    // A crawl started after the end exits at once, saying so.
    let site = SampleSite {
        pages: 1,
        per_page: 3,
        page_kb: 0,
    };
    let server = TestServer::sample(site, |_| None);
    let first = shared_crawl(
        &server,
        site,
        &redis.url(),
        ("w2", "all"),
        &tmp.path().join("1"),
        &[],
    );
    let o = finish(first, Duration::from_secs(60));
    assert_clean_exit(&o, &tmp.path().join("1"));
    let late = shared_crawl(
        &server,
        site,
        &redis.url(),
        ("w2", "all"),
        &tmp.path().join("2"),
        &[],
    );
    let o = finish(late, Duration::from_secs(10));
    assert_eq!(o.status.code(), Some(0), "{}", output_text(&o));
    assert!(
        output_text(&o).contains("is complete: nothing is left to do"),
        "{}",
        output_text(&o)
    );
}

#[test]
fn the_per_host_delay_holds_for_the_whole_cluster() {
    // More images than one process leases at a time, so that all three do some of the work.
    let site = SampleSite {
        pages: 2,
        per_page: 20,
        page_kb: 0,
    };
    let tmp = tempfile::tempdir().unwrap();
    // A first local crawl elsewhere brings the binary's pages into memory: a cold process can
    // take longer between being granted a start and its request reaching the server than the
    // next process, which makes the gap seen at the server look shorter than the one granted.
    let warm = TestServer::sample(site, |_| None);
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_imgcrawl"));
    cmd.arg("crawl")
        .args(list_urls(&warm, site))
        .arg("-o")
        .arg(tmp.path().join("warm"));
    cmd.output().unwrap();
    let server = TestServer::sample(site, |_| None);
    let redis = RedisServer::start();
    let delay = [("IMGCRAWL_HTTP__DELAY_MS", "60")];
    let crawls: Vec<(Child, PathBuf)> = (0..3)
        .map(|n| {
            let dir = tmp.path().join(n.to_string());
            let child = shared_crawl(&server, site, &redis.url(), ("d1", "all"), &dir, &delay);
            (child, dir)
        })
        .collect();
    let mut workers = 0;
    for (child, dir) in crawls {
        assert_clean_exit(&finish(child, Duration::from_secs(120)), &dir);
        workers += usize::from(!manifest(&dir).is_empty());
    }
    assert!(workers >= 2, "only {workers} process saved images");
    // Each process fetches robots.txt for itself, outside the shared delay; every other request
    // reaches the server at least 60 ms after the one before, whichever process made it, however
    // slow a process is between its grant and its request (a cold start, a loaded machine: with
    // a delay, a request is granted only after the previous one's slot was freed). Without the
    // shared delay, three processes each spacing their own requests by 60 ms interleave at about
    // 20 ms, with gaps near zero.
    let mut starts: Vec<Instant> = server
        .log()
        .into_iter()
        .filter(|(_, path)| path != "/robots.txt")
        .map(|(t, _)| t)
        .collect();
    starts.sort();
    assert!(starts.len() > 10, "{} requests", starts.len());
    let mut gaps: Vec<Duration> = starts.windows(2).map(|w| w[1] - w[0]).collect();
    gaps.sort();
    let (shortest, median) = (gaps[0], gaps[gaps.len() / 2]);
    let mut log = server.log();
    log.sort();
    let t0 = log[0].0;
    let log: Vec<_> = log
        .iter()
        .map(|(t, p)| (t.duration_since(t0).as_millis(), p))
        .collect();
    assert!(
        shortest >= Duration::from_millis(60) && median >= Duration::from_millis(60),
        "gaps between request starts: {gaps:?} in {log:?}"
    );
}

#[test]
fn identical_bytes_are_stored_once_across_the_processes() {
    // Every 20th image is a byte-identical copy of the one before it, under its own URL: 8 pairs.
    // With one saver each, a process leases about two images at a time, so most pairs are split
    // between two processes, often downloaded at the same moment.
    let site = SampleSite {
        pages: 8,
        per_page: 20,
        page_kb: 0,
    };
    let server = TestServer::sample(site, |p| {
        p.starts_with("/img/").then_some(Duration::from_millis(10))
    });
    let redis = RedisServer::start();
    let tmp = tempfile::tempdir().unwrap();
    let dirs: Vec<PathBuf> = (0..3).map(|n| tmp.path().join(n.to_string())).collect();
    let crawls: Vec<Child> = dirs
        .iter()
        .map(|dir| {
            let one = [("IMGCRAWL_SAVERS", "1")];
            shared_crawl(&server, site, &redis.url(), ("b1", "all"), dir, &one)
        })
        .collect();
    let mut dir_of: HashMap<String, PathBuf> = HashMap::new();
    for (child, dir) in crawls.into_iter().zip(&dirs) {
        let o = finish(child, Duration::from_secs(120));
        assert_clean_exit(&o, dir);
        dir_of.insert(consumer_of(&o), dir.clone());
    }
    let workers = dirs.iter().filter(|d| !manifest(d).is_empty()).count();
    assert!(workers >= 2, "only {workers} process saved images");
    // Each distinct good image is stored once, in one of the processes' directories.
    let stored = stored_once(&dirs);
    let distinct: HashSet<String> = site
        .images()
        .iter()
        .filter_map(|i| i.bytes.as_deref().map(sha256_hex))
        .collect();
    assert_eq!(
        stored.keys().cloned().collect::<HashSet<_>>(),
        distinct,
        "the files stored between them"
    );
    // Every URL is in some process's manifest, and each row leads to its bytes: in that process's
    // directory, or, for bytes another process holds, in that one's.
    let mut urls = HashSet::new();
    let mut elsewhere = 0;
    for dir in &dirs {
        for row in manifest(dir) {
            let holder = match &row.duplicate_on {
                Some(by) => {
                    elsewhere += 1;
                    dir_of
                        .get(by)
                        .unwrap_or_else(|| panic!("unknown process {by}"))
                }
                None => dir,
            };
            let bytes = std::fs::read(holder.join(&row.path)).unwrap();
            assert_eq!(sha256_hex(&bytes), row.sha256, "{row:?}");
            assert!(urls.insert(row.url.clone()), "{} listed twice", row.url);
        }
    }
    assert_same(&urls, &good_images(site, &server), "the manifests");
    let stats: HashMap<String, u64> = redis::cmd("HGETALL")
        .arg("imgcrawl:{b1}:stats")
        .query(&mut redis.con())
        .unwrap();
    assert_eq!(stats["images_saved"] as usize, distinct.len(), "{stats:?}");
    assert_eq!(
        stats["duplicates"] as usize,
        urls.len() - distinct.len(),
        "{stats:?}"
    );
    eprintln!("{elsewhere} images recorded as bytes another process holds");
}

#[test]
fn a_stopped_process_gives_its_jobs_back_at_once() {
    let site = SampleSite {
        pages: 2,
        per_page: 20,
        page_kb: 0,
    };
    let server = TestServer::sample(site, |p| {
        p.starts_with("/img/").then_some(Duration::from_millis(100))
    });
    let redis = RedisServer::start();
    let tmp = tempfile::tempdir().unwrap();
    let (a, b) = (tmp.path().join("a"), tmp.path().join("b"));
    // Leases of a minute: only a give-back lets the second process finish in time.
    let long = [("IMGCRAWL_DISTRIBUTED__LEASE_SECS", "60")];
    let first = shared_crawl(&server, site, &redis.url(), ("s1", "all"), &a, &long);
    wait_for_files(&a, 3, Duration::from_secs(60));
    // SAFETY: kill only sends SIGINT (Ctrl-C) to the child this test started.
    unsafe { libc::kill(first.id() as libc::pid_t, libc::SIGINT) };
    let o = finish(first, Duration::from_secs(30));
    assert_eq!(o.status.code(), Some(130), "{}", output_text(&o));
    assert!(
        output_text(&o).contains("giving back"),
        "{}",
        output_text(&o)
    );
    let pending: (u64, redis::Value, redis::Value, redis::Value) = redis::cmd("XPENDING")
        .arg("imgcrawl:{s1}:images")
        .arg("workers")
        .query(&mut redis.con())
        .unwrap();
    assert_eq!(pending.0, 0, "images still leased to the stopped process");
    let second = shared_crawl(&server, site, &redis.url(), ("s1", "all"), &b, &long);
    let o = finish(second, Duration::from_secs(40));
    assert_clean_exit(&o, &b);
    let all: HashSet<String> = saved_urls(&a).into_iter().chain(saved_urls(&b)).collect();
    assert_same(&all, &good_images(site, &server), "saved between them");
}
