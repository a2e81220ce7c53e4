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
        &[("IMGCRAWL_FETCHERS", "5"), ("IMGCRAWL_WRITERS", "3")],
    );
    let all = output_text(&o);
    assert_eq!(o.status.code(), Some(0), "{all}");
    assert!(
        all.contains("started 5 page fetchers, 4 image savers and 3 disk writers"),
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
        Some(3),
        "the demo's broken images fail on purpose: {all}"
    );
    let site = SampleSite::default();
    assert_eq!(
        manifest(out.path()).len() as u64,
        site.image_count(),
        "{all}"
    );
    assert!(all.contains("3 failed"), "{all}");
}
