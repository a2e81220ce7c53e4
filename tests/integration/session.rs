//! A site behind a login, as real sites are: a cookie from a `cookies.txt`, a session cookie the
//! site sets (on a page and on a redirect) that later pages require, images refused without the
//! `Referer` of their page (hotlink protection, on the site and on a second host), an API key
//! every request must carry and a header only one host gets. Crawled by the real binary, killed
//! with SIGKILL while the session is open, and resumed: the session's cookies come back from the
//! state database.

use std::path::Path;
use std::process::{Command, Stdio};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use imgcrawl::sample_site::png;

use crate::support::{errors, manifest, output_text, Reply, Request, TestServer};

/// Answers 403 with this reason as the body (so that a failure says what was missing).
fn refuse(why: &str) -> Reply {
    Reply::with_headers(403, &[("content-type", "text/plain")], why.as_bytes())
}

fn page(html: &str, set_cookie: Option<&str>) -> Reply {
    let mut headers = vec![("content-type", "text/html")];
    if let Some(c) = set_cookie {
        headers.push(("set-cookie", c));
    }
    Reply::with_headers(200, &headers, html.as_bytes())
}

/// The site on 127.0.0.1; `later_open` lets `/later` answer (until then it hangs).
fn site(cdn: String, later_open: Arc<AtomicBool>) -> TestServer {
    TestServer::start_with("127.0.0.1", move |r: &Request| {
        let base = format!("http://{}", r.header("host").unwrap_or(""));
        if r.header("x-api-key") != Some("k1") {
            return refuse("no API key");
        }
        if r.header("x-cdn-token").is_some() {
            return refuse("the CDN's header was sent to the site");
        }
        let session = r.has_cookie("session=s1") && r.has_cookie("hop=1");
        match r.path.as_str() {
            "/robots.txt" | "/sitemap.xml" => Reply::Status(404),
            "/" if !r.has_cookie("login=yes") => refuse("not logged in"),
            "/" => page(
                "<a href='/go'>gallery</a><img src='/img/a.png'>",
                Some("session=s1; Path=/; HttpOnly"),
            ),
            "/go" => Reply::Raw(
                b"HTTP/1.1 302 Found\r\nlocation: /gallery\r\nset-cookie: hop=1; Path=/\r\n\
                  content-length: 0\r\nconnection: close\r\n\r\n"
                    .to_vec(),
            ),
            p if p.starts_with("/img/") => {
                let expected = match p {
                    "/img/a.png" => format!("{base}/"),
                    "/img/c.png" => format!("{base}/later"),
                    _ => String::new(),
                };
                if r.header("referer") != Some(expected.as_str()) {
                    return refuse("hotlinking");
                }
                Reply::Ok("image/png", png(p.len() as u64, 12, 12))
            }
            _ if !session => refuse("no session"),
            "/gallery" => page(
                &format!("<img src='{cdn}/cdn/b.png'><a href='/later'>more</a>"),
                None,
            ),
            "/later" if !later_open.load(Ordering::SeqCst) => Reply::Hang,
            "/later" => page("<img src='/img/c.png'>", None),
            _ => Reply::Status(404),
        }
    })
}

/// The image host on 127.0.0.2: wants its own token and the gallery as Referer.
fn cdn(gallery: Arc<std::sync::Mutex<String>>) -> TestServer {
    TestServer::start_with("127.0.0.2", move |r: &Request| {
        if r.path == "/robots.txt" || r.path == "/sitemap.xml" {
            return Reply::Status(404);
        }
        if r.header("x-cdn-token") != Some("c1") {
            return refuse("no CDN token");
        }
        if r.header("referer") != Some(gallery.lock().unwrap().as_str()) {
            return refuse("hotlinking");
        }
        Reply::Ok("image/png", png(7, 20, 20))
    })
}

fn imgcrawl(args: &[&str], dir: &Path) -> Command {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_imgcrawl"));
    cmd.args(args)
        .current_dir(dir)
        .env_remove("RUST_LOG")
        .env_remove("HTTP_PROXY")
        .env_remove("http_proxy")
        .env_remove("ALL_PROXY")
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    cmd
}

/// The session cookie the state database holds, if it was saved yet.
fn saved_session(out: &Path) -> bool {
    let Ok(db) = rusqlite::Connection::open(out.join(".imgcrawl/state.db")) else {
        return false;
    };
    db.query_row("SELECT value FROM meta WHERE key = 'cookies'", [], |r| {
        r.get::<_, String>(0)
    })
    .is_ok_and(|json| json.contains("s1"))
}

#[test]
fn a_login_session_survives_kill_9_and_every_request_carries_what_the_site_wants() {
    let open = Arc::new(AtomicBool::new(false));
    let gallery = Arc::new(std::sync::Mutex::new(String::new()));
    let cdn = cdn(gallery.clone());
    let site = site(cdn.url(""), open.clone());
    *gallery.lock().unwrap() = site.url("/gallery");

    let dir = tempfile::tempdir().unwrap();
    // As a browser export add-on writes it: a host-only login cookie, and one for another site
    // that must never be sent here.
    std::fs::write(
        dir.path().join("cookies.txt"),
        "# Netscape HTTP Cookie File\n\
         127.0.0.1\tFALSE\t/\tFALSE\t0\tlogin\tyes\n\
         .other.example\tTRUE\t/\tFALSE\t0\tstray\tno\n",
    )
    .unwrap();
    std::fs::write(
        dir.path().join("crawl.toml"),
        "[scope]\nallowed_hosts = ['127.0.0.1', '127.0.0.2']\n\
         [http]\ncookies_file = 'cookies.txt'\nretries = 0\n\
         [http.headers]\nX-Api-Key = 'k1'\n\
         [http.host.\"127.0.0.2\".headers]\nX-Cdn-Token = 'c1'\n",
    )
    .unwrap();
    let args = ["crawl", "-c", "crawl.toml", "-o", "out", "-q"];
    let start = site.url("/");
    let out = dir.path().join("out");

    // The first run: killed once the session is open and saved, while /later hangs.
    let mut child = imgcrawl(&[&args[..], &[start.as_str()]].concat(), dir.path())
        .spawn()
        .unwrap();
    let deadline = Instant::now() + Duration::from_secs(30);
    while !(site.hits().contains_key("/later") && saved_session(&out)) {
        assert!(Instant::now() < deadline, "the crawl never reached /later");
        std::thread::sleep(Duration::from_millis(50));
    }
    child.kill().unwrap();
    child.wait().unwrap();

    // The second run resumes: /later needs the session only / and /go gave, and they are done.
    open.store(true, Ordering::SeqCst);
    let o = imgcrawl(&[&args[..], &[start.as_str()]].concat(), dir.path())
        .output()
        .unwrap();
    assert_eq!(o.status.code(), Some(0), "{}", output_text(&o));
    assert!(
        errors(&out).is_empty(),
        "{:?}\n{:#?}",
        errors(&out),
        site.requests()
    );
    let mut saved: Vec<String> = manifest(&out).into_iter().map(|r| r.url).collect();
    saved.sort();
    assert_eq!(
        saved,
        [
            site.url("/img/a.png"),
            site.url("/img/c.png"),
            cdn.url("/cdn/b.png")
        ]
    );
    assert_eq!(site.hits().get("/"), Some(&1), "not fetched again");
    for r in site.requests().iter().chain(cdn.requests().iter()) {
        assert_eq!(r.method, "GET", "{r:?}");
        let cookie = r.header("cookie").unwrap_or("");
        assert!(!cookie.contains("stray"), "{r:?}");
    }
    assert!(
        cdn.requests().iter().all(|r| r.header("cookie").is_none()),
        "the site's cookies went to another host"
    );

    // `check` uses the same cookies and headers.
    let o = imgcrawl(&["check", "-c", "crawl.toml", &start], dir.path())
        .output()
        .unwrap();
    assert_eq!(o.status.code(), Some(0), "{}", output_text(&o));
    assert!(
        output_text(&o).contains("/img/a.png"),
        "{}",
        output_text(&o)
    );

    // Without the Referer, hotlink protection answers 403, and the failure says so.
    let o = imgcrawl(
        &["crawl", "-c", "crawl.toml", "-o", "out2", "-q", &start],
        dir.path(),
    )
    .env("IMGCRAWL_HTTP__REFERER", "none")
    .output()
    .unwrap();
    assert_ne!(o.status.code(), Some(0), "{}", output_text(&o));
    let failed: Vec<String> = errors(&dir.path().join("out2"))
        .into_iter()
        .map(|e| e.url)
        .collect();
    assert!(failed.contains(&site.url("/img/a.png")), "{failed:?}");
}
