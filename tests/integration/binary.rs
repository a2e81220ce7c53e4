//! The `imgcrawl` binary: exit statuses, the start-up line, configuration errors on the terminal.

use std::process::{Command, Output};

use imgcrawl::sample_site::SampleSite;

use crate::support::{manifest, output_text, TestServer};

fn imgcrawl(args: &[&str], env: &[(&str, &str)]) -> Output {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_imgcrawl"));
    cmd.args(args).env_remove("RUST_LOG");
    for (k, v) in env {
        cmd.env(k, v);
    }
    cmd.output().expect("run imgcrawl")
}

#[test]
fn a_clean_crawl_exits_0_and_env_sets_the_actor_counts() {
    // Only the first list page (depth 0): its images are all good.
    let site = SampleSite {
        pages: 3,
        per_page: 4,
        page_kb: 0,
    };
    let server = TestServer::sample(site, |_| None);
    let out = tempfile::tempdir().unwrap();
    let o = imgcrawl(
        &[
            "crawl",
            &server.url("/list/1.html"),
            "-o",
            out.path().to_str().unwrap(),
            "--max-depth",
            "0",
            "--savers",
            "4",
        ],
        &[
            ("IMGCRAWL_FETCHERS", "5"),
            ("IMGCRAWL_WRITERS", "3"),
            ("IMGCRAWL_THREADS", "2"),
        ],
    );
    let all = output_text(&o);
    assert_eq!(o.status.code(), Some(0), "{all}");
    assert!(
        all.contains("started 5 page fetchers on 2 threads, 4 image savers and 3 disk writers"),
        "{all}"
    );
    assert!(all.contains("imgcrawl finished"), "{all}");
    assert_eq!(manifest(out.path()).len(), 4, "page 1 holds four images");
}

#[test]
fn failures_exit_3_and_bad_configuration_exits_2_naming_the_key() {
    let site = SampleSite {
        pages: 1,
        per_page: 2,
        page_kb: 0,
    };
    let server = TestServer::sample(site, |_| None);
    let out = tempfile::tempdir().unwrap();
    let o = imgcrawl(
        &[
            "crawl",
            &server.url("/list/1.html"),
            "-o",
            out.path().to_str().unwrap(),
        ],
        &[("IMGCRAWL_HTTP__RETRIES", "0")],
    );
    assert_eq!(o.status.code(), Some(3), "{}", output_text(&o));

    let dir = tempfile::tempdir().unwrap();
    let cfg = dir.path().join("bad.toml");
    std::fs::write(
        &cfg,
        "start_urls = ['http://127.0.0.1:1/']\n[http]\nretries = 'many'\n",
    )
    .unwrap();
    let o = imgcrawl(&["crawl", "-c", cfg.to_str().unwrap()], &[]);
    assert_eq!(o.status.code(), Some(2));
    let err = String::from_utf8_lossy(&o.stderr);
    assert!(
        err.contains("http.retries") && err.contains(cfg.to_str().unwrap()),
        "{err}"
    );

    let o = imgcrawl(
        &["crawl", "http://127.0.0.1:1/"],
        &[("IMGCRAWL_SAVERS", "0")],
    );
    assert_eq!(o.status.code(), Some(2));
    let err = String::from_utf8_lossy(&o.stderr);
    assert!(
        err.contains("IMGCRAWL_SAVERS") && err.contains("savers"),
        "{err}"
    );

    let o = imgcrawl(&["crawl", "http://127.0.0.1:1/", "--fetchers", "lots"], &[]);
    assert_eq!(o.status.code(), Some(2), "a bad flag is a usage error");
}

#[test]
fn the_demo_crawls_the_bundled_gallery() {
    let out = tempfile::tempdir().unwrap();
    let o = imgcrawl(&["demo", "-o", out.path().to_str().unwrap()], &[]);
    let all = output_text(&o);
    assert_eq!(
        o.status.code(),
        Some(0),
        "the demo's broken images fail on purpose, as it expects: {all}"
    );
    assert!(
        all.contains("as the sample gallery was built to show"),
        "{all}"
    );
    let site = SampleSite::default();
    assert_eq!(
        manifest(out.path()).len() as u64,
        site.image_count(),
        "{all}"
    );
    // The sample server's deliberate faults are not reported as imgcrawl's errors.
    assert!(
        !String::from_utf8_lossy(&o.stderr).contains("ERROR"),
        "{all}"
    );
    // Each broken image fails the way it is broken, the cut one too (the server announces its
    // length, sends half and drops the connection).
    let errors = std::fs::read_to_string(out.path().join("errors.jsonl")).unwrap();
    let mut kinds: Vec<String> = errors
        .lines()
        .map(|l| serde_json::from_str::<serde_json::Value>(l).unwrap()["error"].to_string())
        .collect();
    kinds.sort();
    assert_eq!(
        kinds,
        ["\"not an image\"", "\"status 404\"", "\"truncated body\""],
        "{errors}"
    );
}

#[test]
fn off_a_terminal_status_lines_come_every_few_seconds_and_quiet_leaves_the_summary() {
    // List pages 1 and 2 at depth 0: 20 images, the 20th a byte copy of the 19th; page 3 holds
    // the site's deliberately broken images and is not reached.
    let site = SampleSite {
        pages: 3,
        per_page: 10,
        page_kb: 0,
    };
    // Slow images (20 × 0.4 s over 2 savers): the first crawl lasts about 4 s, past the 3 s
    // status period. The other runs need not be slow.
    let slow = TestServer::sample(site, |p| {
        p.starts_with("/img/")
            .then_some(std::time::Duration::from_millis(400))
    });
    let fast = TestServer::sample(site, |_| None);
    let out = tempfile::tempdir().unwrap();
    let run = |server: &TestServer, name: &str, extra: &[&str], env: &[(&str, &str)]| {
        let dir = out.path().join(name);
        let (one, two) = (server.url("/list/1.html"), server.url("/list/2.html"));
        let mut args = vec![
            "crawl",
            &one,
            &two,
            "-o",
            dir.to_str().unwrap(),
            "--savers",
            "2",
            "--max-depth",
            "0",
        ];
        args.extend(extra);
        (imgcrawl(&args, env), dir)
    };

    let (o, _) = run(&slow, "a", &[], &[]);
    let err = String::from_utf8_lossy(&o.stderr);
    assert_eq!(o.status.code(), Some(0), "{}", output_text(&o));
    // Piped: plain status lines with the counters, no progress bar drawing.
    let status: Vec<&str> = err.lines().filter(|l| l.contains(" done, ")).collect();
    assert!(!status.is_empty(), "no status line in:\n{err}");
    assert!(
        status
            .iter()
            .all(|l| l.contains("images ") && l.contains(" MB")),
        "{status:?}"
    );
    assert!(
        !err.contains('\u{1b}'),
        "terminal escapes off a terminal:\n{err}"
    );
    // The summary table on stdout.
    let out_text = String::from_utf8_lossy(&o.stdout);
    assert!(out_text.contains("images saved"), "{out_text}");

    // -q: nothing on stderr but errors; the summary stays.
    let (o, _) = run(&fast, "b", &["-q"], &[]);
    assert_eq!(o.status.code(), Some(0), "{}", output_text(&o));
    assert_eq!(String::from_utf8_lossy(&o.stderr), "");
    assert!(String::from_utf8_lossy(&o.stdout).contains("imgcrawl finished"));

    // --json: the final counters as one JSON object on stdout.
    let (o, dir) = run(&fast, "c", &["--json", "-q"], &[]);
    let stats: serde_json::Value =
        serde_json::from_slice(&o.stdout).unwrap_or_else(|e| panic!("{e}: {}", output_text(&o)));
    assert_eq!(stats["images_saved"], 19, "{stats}");
    assert_eq!(stats["duplicates"], 1, "{stats}");
    assert_eq!(stats["outcome"], "finished");
    assert_eq!(stats["out_dir"], dir.to_str().unwrap());

    // -v: debug lines; RUST_LOG still wins over it.
    let (o, _) = run(&fast, "d", &["-v"], &[]);
    assert!(
        String::from_utf8_lossy(&o.stderr).contains("DEBUG"),
        "{}",
        output_text(&o)
    );
    let (o, _) = run(&fast, "e", &["-v"], &[("RUST_LOG", "warn")]);
    let err = String::from_utf8_lossy(&o.stderr);
    assert!(!err.contains("DEBUG") && !err.contains("INFO"), "{err}");
}

#[test]
fn on_a_terminal_the_bar_stays_below_the_log_lines_and_is_cleared_at_the_end() {
    // util-linux's `script` gives the crawl a pseudo-terminal; vt100 replays what it drew, 64
    // bytes at a time, so every intermediate screen is looked at.
    let site = SampleSite {
        pages: 3,
        per_page: 10,
        page_kb: 0,
    };
    let server = TestServer::sample(site, |p| {
        p.starts_with("/img/")
            .then_some(std::time::Duration::from_millis(150))
    });
    let out = tempfile::tempdir().unwrap();
    let command = format!(
        "stty cols 100 rows 30; exec '{}' crawl '{}' '{}' -o '{}' --savers 2 --max-depth 0 -v",
        env!("CARGO_BIN_EXE_imgcrawl"),
        server.url("/list/1.html"),
        server.url("/list/2.html"),
        out.path().display()
    );
    let o = Command::new("script")
        .args(["-qec", &command, "/dev/null"])
        .env_remove("RUST_LOG")
        .output()
        .expect("`script` (util-linux) runs the crawl on a pseudo-terminal");
    assert_eq!(o.status.code(), Some(0), "{}", output_text(&o));
    let is_bar = |r: &str| r.contains("% ≈");
    let is_log = |r: &str| r.contains("DEBUG]") || r.contains("INFO ]");
    let mut screen = vt100::Parser::new(30.try_into().unwrap(), 100.try_into().unwrap(), 0);
    let (mut frames_with_bar, mut logs_under_bar) = (0, 0);
    for chunk in o.stdout.chunks(64) {
        screen.process(chunk);
        let rows: Vec<String> = screen.screen().rows(0, 100).collect();
        let bars: Vec<usize> = (0..rows.len()).filter(|&i| is_bar(&rows[i])).collect();
        assert!(bars.len() <= 1, "two bars:\n{}", rows.join("\n"));
        for r in &rows {
            assert!(
                !(is_log(r) && (is_bar(r) || r.contains("pages/s"))),
                "a log line torn into the bar: {r:?}"
            );
        }
        if let Some(&bar) = bars.first() {
            frames_with_bar += 1;
            logs_under_bar += rows[bar..].iter().filter(|r| is_log(r)).count();
        }
    }
    assert!(frames_with_bar > 0, "no bar was drawn");
    assert_eq!(logs_under_bar, 0, "log lines appeared below the bar");
    // At the end the bar is gone and the summary follows the last log lines.
    let rows: Vec<String> = screen.screen().rows(0, 100).collect();
    assert!(!rows.iter().any(|r| is_bar(r)), "{}", rows.join("\n"));
    let summary = rows
        .iter()
        .position(|r| r.starts_with("imgcrawl finished"))
        .unwrap_or_else(|| panic!("no summary:\n{}", rows.join("\n")));
    assert!(rows[..summary].iter().any(|r| r.contains("DEBUG] saved")));
}

#[test]
fn output_into_a_closed_pipe_ends_quietly() {
    // `imgcrawl config | head -0`: the reader is gone before anything is written.
    use std::process::Stdio;
    for _ in 0..3 {
        let mut child = Command::new(env!("CARGO_BIN_EXE_imgcrawl"))
            .arg("config")
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap();
        drop(child.stdout.take());
        let o = child.wait_with_output().unwrap();
        let err = String::from_utf8_lossy(&o.stderr);
        assert!(
            !err.contains("panicked") && !err.contains("Broken pipe"),
            "{err}"
        );
    }
}
