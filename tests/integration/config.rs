//! Configuration layers (defaults < file < environment < flags) and errors that name the key and
//! its source. The environment is passed as a map; the test process environment is never touched.

use std::collections::HashMap;
use std::path::PathBuf;

use imgcrawl::settings::Origin;
use imgcrawl::{ConfigSources, Settings};

fn file(text: &str) -> (tempfile::TempDir, PathBuf) {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("crawl.toml");
    std::fs::write(&path, text).unwrap();
    (dir, path)
}

fn env(pairs: &[(&str, &str)]) -> HashMap<String, String> {
    pairs
        .iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect()
}

#[test]
fn later_layers_win_key_by_key() {
    let (_d, path) = file("start_urls = ['http://a.example/']\nfetchers = 4\nsavers = 7\n[http]\ntimeout_secs = 11\ndelay_ms = 5\n");
    let mut sources = ConfigSources {
        file: Some(path),
        env: env(&[
            ("IMGCRAWL_SAVERS", "9"),
            ("IMGCRAWL_HTTP__TIMEOUT_SECS", "12"),
            ("IMGCRAWL_WRITERS", "3"),
            ("OTHER", "x"),
        ]),
        flags: Vec::new(),
    };
    sources.flag("writers", "--writers", 5u64);
    let s = Settings::load(&sources).unwrap();
    assert_eq!(s.workers.fetchers.get(), 4, "file over default");
    assert_eq!(s.workers.savers.get(), 9, "environment over file");
    assert_eq!(s.workers.writers.get(), 5, "flag over environment");
    assert_eq!(
        s.http.timeout.as_secs(),
        12,
        "nested key from the environment"
    );
    assert_eq!(s.http.delay.as_millis(), 5);
    assert_eq!(s.http.connect_timeout.as_secs(), 10, "default");
    assert_eq!(s.start_urls[0].as_str(), "http://a.example/");
    assert!(s.scope.allowed_hosts.contains("a.example"));
}

#[test]
fn lists_and_page_templates_from_the_environment() {
    let sources = ConfigSources {
        env: env(&[
            (
                "IMGCRAWL_START_URLS",
                "http://a.example/x,http://b.example/y",
            ),
            (
                "IMGCRAWL_PAGE_TEMPLATE",
                "http://c.example/list?page={page}",
            ),
            ("IMGCRAWL_PAGES", "2,4"),
            ("IMGCRAWL_FETCHERS", "5"),
        ]),
        ..Default::default()
    };
    let s = Settings::load(&sources).unwrap();
    let urls: Vec<&str> = s.start_urls.iter().map(|u| u.as_str()).collect();
    assert_eq!(
        urls,
        [
            "http://a.example/x",
            "http://b.example/y",
            "http://c.example/list?page=2",
            "http://c.example/list?page=3",
            "http://c.example/list?page=4"
        ]
    );
    assert_eq!(s.workers.fetchers.get(), 5);
    assert_eq!(s.scope.allowed_hosts.len(), 3);
}

fn load_err(sources: &ConfigSources) -> imgcrawl::SettingsError {
    Settings::load(sources).expect_err("this configuration is wrong")
}

#[test]
fn errors_name_the_key_and_where_it_came_from() {
    let (_d, path) = file("start_urls = ['http://a.example/']\nfetcher = 3\n");
    let e = load_err(&ConfigSources {
        file: Some(path.clone()),
        ..Default::default()
    });
    assert_eq!(
        (e.key.as_str(), &e.origin),
        ("fetcher", &Origin::File(path))
    );
    assert!(e.to_string().contains("unknown field `fetcher`"), "{e}");

    let (_d, path) = file("start_urls = ['http://a.example/']\n[http]\ntimeout = 3\n");
    let e = load_err(&ConfigSources {
        file: Some(path.clone()),
        ..Default::default()
    });
    assert_eq!(
        (e.key.as_str(), &e.origin),
        ("http.timeout", &Origin::File(path))
    );

    let sources = ConfigSources {
        env: env(&[
            ("IMGCRAWL_START_URLS", "http://a.example/"),
            ("IMGCRAWL_FETCHERS", "eight"),
        ]),
        ..Default::default()
    };
    let e = load_err(&sources);
    assert_eq!(
        (e.key.as_str(), &e.origin),
        ("fetchers", &Origin::Env("IMGCRAWL_FETCHERS".into()))
    );
    assert!(
        e.to_string()
            .contains("environment variable IMGCRAWL_FETCHERS"),
        "{e}"
    );

    let (_d, path) = file("start_urls = ['http://a.example/']\nfetchers = 0\n");
    let e = load_err(&ConfigSources {
        file: Some(path.clone()),
        ..Default::default()
    });
    assert_eq!(
        (e.key.as_str(), &e.origin),
        ("fetchers", &Origin::File(path.clone()))
    );
    assert!(e.message.contains("at least 1"), "{e}");

    let mut sources = ConfigSources {
        file: Some(path),
        ..Default::default()
    };
    sources.flag("fetchers", "--fetchers", 2u64);
    sources.flag("scope.include", "--include", vec!["(unclosed".to_string()]);
    let e = load_err(&sources);
    assert_eq!(
        (e.key.as_str(), &e.origin),
        ("scope.include", &Origin::Flag("--include".into()))
    );

    let e = load_err(&ConfigSources::default());
    assert_eq!(e.key, "start_urls");
    assert!(e.message.contains("no start URL"), "{e}");

    let (_d, path) = file("start_urls = ['ftp://a.example/']\n");
    assert!(load_err(&ConfigSources {
        file: Some(path),
        ..Default::default()
    })
    .message
    .contains("not an http"));
    let (_d, path) =
        file("start_urls = ['http://a.example/']\n[output]\nfilename = '{host}/{title}.{ext}'\n");
    assert!(load_err(&ConfigSources {
        file: Some(path),
        ..Default::default()
    })
    .message
    .contains("unknown placeholder `{title}`"));
    let (_d, path) = file("start_urls = [\n");
    assert!(matches!(
        load_err(&ConfigSources {
            file: Some(path),
            ..Default::default()
        })
        .origin,
        Origin::File(_)
    ));
    let e = load_err(&ConfigSources {
        file: Some("/nonexistent/x.toml".into()),
        ..Default::default()
    });
    assert!(
        e.to_string().contains("/nonexistent/x.toml") && e.message.contains("cannot read"),
        "{e}"
    );
}

#[test]
fn the_documented_defaults_are_the_built_in_defaults() {
    let raw = imgcrawl::settings::RawSettings::default();
    assert_eq!((raw.fetchers, raw.savers, raw.writers), (3, 30, 2));
    assert_eq!(raw.http.timeout_secs, 30.0);
    assert_eq!(raw.http.max_page_bytes, 10 * 1024 * 1024);
    assert_eq!(raw.http.max_image_bytes, 50 * 1024 * 1024);
    assert_eq!(raw.output.filename, "{host}/{name}.{ext}");
    let s = Settings::for_urls(["http://a.example/"], "out").unwrap();
    assert_eq!(
        s.http.user_agent,
        format!("imgcrawl/{}", env!("CARGO_PKG_VERSION"))
    );
}
