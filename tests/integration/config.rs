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
    // The start URL's site: http and https of the host on their default ports, no other port.
    let scope = &s.scope;
    assert!(scope.host_allowed(&url::Url::parse("https://a.example/x").unwrap()));
    assert!(scope.host_allowed(&url::Url::parse("http://a.example:80/x").unwrap()));
    assert!(!scope.host_allowed(&url::Url::parse("http://a.example:8080/x").unwrap()));
    assert!(!scope.host_allowed(&url::Url::parse("http://b.a.example/x").unwrap()));
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
    // Three sites, each http and https on the default ports.
    assert_eq!(s.scope.allowed_hosts.len(), 6);
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

/// Runs `imgcrawl config ARGS` with `env` added; returns (exit status, stdout, stderr).
fn config_command(args: &[&str], env: &[(&str, &str)]) -> (Option<i32>, String, String) {
    let o = std::process::Command::new(env!("CARGO_BIN_EXE_imgcrawl"))
        .arg("config")
        .args(args)
        .env_remove("RUST_LOG")
        .envs(env.iter().copied())
        .output()
        .unwrap();
    (
        o.status.code(),
        String::from_utf8_lossy(&o.stdout).into_owned(),
        String::from_utf8_lossy(&o.stderr).into_owned(),
    )
}

#[test]
fn the_config_command_prints_valid_toml_with_each_values_origin() {
    let (_d, path) = file(
        "fetchers = 5\n[http]\ndelay_ms = 100\ntimeout_secs = 9\n[filter]\nexclude = ['/ads/']\n",
    );
    let p = path.to_str().unwrap();
    let (code, out, err) = config_command(
        &[
            "-c",
            p,
            "--max-depth",
            "2",
            "--redis",
            "redis://:hunter2@127.0.0.1:6379/0",
            "--crawl-id",
            "g1",
            "http://a.example/",
        ],
        &[
            ("IMGCRAWL_SAVERS", "7"),
            ("IMGCRAWL_HTTP__TIMEOUT_SECS", "12"),
        ],
    );
    assert_eq!(code, Some(0), "{out}{err}");
    assert!(!out.contains("hunter2"), "the password is shown: {out}");
    // The printout is TOML a user can save and load again: the same values.
    let table: toml::Table = toml::from_str(&out).unwrap_or_else(|e| panic!("{e}\n{out}"));
    assert_eq!(table["fetchers"].as_integer(), Some(5));
    assert_eq!(table["savers"].as_integer(), Some(7));
    assert_eq!(table["http"]["timeout_secs"].as_float(), Some(12.0));
    assert_eq!(table["scope"]["max_depth"].as_integer(), Some(2));
    assert_eq!(
        table["distributed"]["redis_url"].as_str(),
        Some("redis://:***@127.0.0.1:6379/0")
    );
    // Each value's line names the layer that set it last.
    let origin = |section: &str, key: &str| -> String {
        let mut in_section = section.is_empty();
        for line in out.lines() {
            if line.starts_with('[') {
                in_section = line == format!("[{section}]");
            } else if in_section && line.starts_with(&format!("{key} = ")) {
                return line.rsplit_once(" # ").unwrap().1.to_string();
            }
        }
        panic!("no {section}.{key} in {out}");
    };
    assert_eq!(origin("", "fetchers"), format!("file {p}"));
    assert_eq!(origin("", "savers"), "env IMGCRAWL_SAVERS");
    assert_eq!(origin("", "writers"), "default");
    assert_eq!(origin("", "start_urls"), "flag START_URL");
    assert_eq!(origin("http", "delay_ms"), format!("file {p}"));
    assert_eq!(
        origin("http", "timeout_secs"),
        "env IMGCRAWL_HTTP__TIMEOUT_SECS"
    );
    assert_eq!(origin("http", "retries"), "default");
    assert_eq!(origin("scope", "max_depth"), "flag --max-depth");
    assert_eq!(origin("filter", "exclude"), format!("file {p}"));
    assert_eq!(origin("distributed", "redis_url"), "flag --redis");

    // Without start URLs the printout still works (crawl may be given them).
    let (code, out, _) = config_command(&[], &[]);
    assert_eq!(code, Some(0));
    assert!(out.contains("fetchers = 3"), "{out}");
    // A broken layer is an error naming the key and its origin.
    let (code, _, err) = config_command(&["http://a.example/"], &[("IMGCRAWL_FETCHERS", "eight")]);
    assert_eq!(code, Some(2));
    assert!(
        err.contains("IMGCRAWL_FETCHERS") && err.contains("fetchers"),
        "{err}"
    );
    // A value a crawl would refuse is shown, then named.
    let (code, out, err) = config_command(&["http://a.example/", "--fetchers", "0"], &[]);
    assert_eq!(code, Some(2));
    assert!(out.contains("fetchers = 0"), "{out}");
    assert!(err.contains("--fetchers"), "{err}");
}

#[test]
fn headers_per_host_proxies_and_their_secrets() {
    let (_d, path) = file(
        "start_urls = ['http://a.example/']\n\
         [http]\nproxy = 'http://me:pw123@127.0.0.1:3128'\nno_proxy = ['a.example']\n\
         [http.headers]\nX-Api-Key = 'k-secret'\nAccept-Language = 'de'\n\
         [http.host.\"img.example.com\".headers]\nAuthorization = 'Bearer tok-secret'\n",
    );
    let sources = ConfigSources {
        file: Some(path.clone()),
        env: env(&[("HTTPS_PROXY", "socks5://127.0.0.1:9")]),
        flags: Vec::new(),
    };
    let s = Settings::load(&sources).unwrap();
    let shown = |host: &str| -> Vec<String> {
        s.http
            .headers
            .for_host(host)
            .iter()
            .map(|(n, v)| format!("{n}: {}", v.to_str().unwrap()))
            .collect()
    };
    assert_eq!(
        shown("img.example.com"),
        [
            "authorization: Bearer tok-secret",
            "accept-language: de",
            "x-api-key: k-secret"
        ],
        "header names keep their case-insensitive identity and hosts keep their dots"
    );
    assert_eq!(shown("a.example").len(), 2);
    let proxy = s.http.proxy.for_target("https", "b.example").unwrap();
    assert_eq!(
        (proxy.host.as_str(), proxy.port),
        ("127.0.0.1", 3128),
        "the key wins over the environment"
    );
    assert!(s.http.proxy.for_target("https", "a.example").is_none());

    let (code, out, err) = config_command(
        &[
            "-c",
            path.to_str().unwrap(),
            "-H",
            "X-Flag-Token: flag-secret",
            "--header",
            "X-Plain: shown",
        ],
        &[],
    );
    assert_eq!(code, Some(0), "{out}{err}");
    assert!(out.contains("X-Flag-Token = \"***\""), "{out}");
    assert!(out.contains("X-Plain = \"shown\""), "{out}");
    assert!(!out.contains("flag-secret"), "{out}");
    for secret in ["k-secret", "tok-secret", "pw123"] {
        assert!(!out.contains(secret), "{secret} is shown: {out}");
    }
    assert!(out.contains("Accept-Language = \"de\""), "{out}");
    let table: toml::Table = toml::from_str(&out).unwrap_or_else(|e| panic!("{e}\n{out}"));
    assert_eq!(table["http"]["headers"]["X-Api-Key"].as_str(), Some("***"));
    assert_eq!(
        table["http"]["host"]["img.example.com"]["headers"]["Authorization"].as_str(),
        Some("***")
    );

    // Proxies from the environment, as curl reads them; a bad one names its variable.
    let from_env = Settings::load(&ConfigSources {
        env: env(&[
            ("HTTP_PROXY", "http://127.0.0.1:8080"),
            ("NO_PROXY", "skip.example"),
        ]),
        flags: Vec::new(),
        file: Some(file("start_urls = ['http://a.example/']\n").1),
    });
    let e = load_err(&ConfigSources {
        env: env(&[("HTTPS_PROXY", "ftp://127.0.0.1:21")]),
        flags: Vec::new(),
        file: Some(file("start_urls = ['http://a.example/']\n").1),
    });
    assert!(e.to_string().contains("HTTPS_PROXY"), "{e}");
    drop(from_env);

    for (toml, key) in [
        ("[http.headers]\nHost = 'x'\n", "http.headers"),
        ("[http]\nreferer = 'always'\n", "http.referer"),
        (
            "[http]\ncookies_file = '/nonexistent/cookies.txt'\n",
            "http.cookies_file",
        ),
        ("[http]\nca_file = '/nonexistent/ca.pem'\n", "http.ca_file"),
        ("[http]\nproxy = 'gopher://x'\n", "http.proxy"),
    ] {
        let (_d, p) = file(&format!("start_urls = ['http://a.example/']\n{toml}"));
        let e = load_err(&ConfigSources {
            file: Some(p),
            ..ConfigSources::default()
        });
        assert_eq!(e.key, key, "{e}");
    }
}
