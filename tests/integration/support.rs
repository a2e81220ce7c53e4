//! Test helpers: a real HTTP/1.1 server on 127.0.0.1 whose every response is decided by the test
//! (including lies such as a Content-Length longer than the body), counting requests per path, and
//! helpers to run crawls and read their records.

use std::collections::HashMap;
use std::io::{BufRead, BufReader, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::path::Path;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use imgcrawl::records::{ErrorRow, ManifestRow};
use imgcrawl::sample_site::SampleSite;
use imgcrawl::CrawlReport;

/// What the test server answers.
#[derive(Debug, Clone)]
pub enum Reply {
    /// 200 with this type and body.
    Ok(&'static str, Vec<u8>),
    /// This status with a small HTML body.
    Status(u16),
    /// Announces the whole body's length but sends only `send` bytes, then closes.
    Truncated(&'static str, Vec<u8>, usize),
    /// A 302 to this location.
    Redirect(String),
    /// Waits, then answers.
    Delayed(Duration, Box<Reply>),
    /// These exact bytes (status line, headers and body), then the connection is closed.
    Raw(Vec<u8>),
    /// A 200 announcing `len` bytes of this type, then one byte every `every`, forever or until
    /// `len` bytes were sent.
    Drip(&'static str, usize, Duration),
    /// Accepts the request and never answers.
    Hang,
    /// A chunked 200 of this type (no Content-Length) streaming `total` bytes: these first, then
    /// zeros.
    Stream(&'static str, Vec<u8>, usize),
    /// A 200 with this type and body (Content-Length announced), written 16 KiB at a time with a
    /// pause of `every` between writes, until the body is sent or the client has gone.
    Paced(&'static str, Vec<u8>, Duration),
}

impl Reply {
    /// A response with this status, extra headers and body (Content-Length added), after which
    /// the connection is closed.
    pub fn with_headers(status: u16, headers: &[(&str, &str)], body: &[u8]) -> Reply {
        let mut head = format!("HTTP/1.1 {status} X\r\ncontent-length: {}\r\n", body.len());
        for (k, v) in headers {
            head.push_str(&format!("{k}: {v}\r\n"));
        }
        head.push_str("connection: close\r\n\r\n");
        Reply::Raw([head.as_bytes(), body].concat())
    }
}

/// A request as the server read it.
#[derive(Debug, Clone, Default)]
pub struct Request {
    /// GET, HEAD, ...
    pub method: String,
    /// Path and query.
    pub path: String,
    /// Header names (lower-case) and values, in order.
    pub headers: Vec<(String, String)>,
}

impl Request {
    /// The value of header `name` (lower-case), if sent.
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(n, _)| n == name)
            .map(|(_, v)| v.as_str())
    }

    /// Whether the `Cookie` header holds `name=value`.
    pub fn has_cookie(&self, pair: &str) -> bool {
        self.header("cookie")
            .is_some_and(|c| c.split(';').any(|p| p.trim() == pair))
    }
}

type Routes = Arc<dyn Fn(&Request) -> Reply + Send + Sync>;

/// What the server saw: requests by path, their start times, and how many were answered at once.
#[derive(Default)]
struct Seen {
    hits: Mutex<HashMap<String, u32>>,
    log: Mutex<Vec<(Instant, String)>>,
    active: AtomicUsize,
    max_active: AtomicUsize,
    user_agents: Mutex<Vec<String>>,
    /// Body bytes written to the client, by path (for [`Reply::Paced`]).
    sent: Mutex<HashMap<String, usize>>,
    /// Answers without waiting for the client's delayed ACK (see [`TestServer::start_fast`]).
    nodelay: std::sync::atomic::AtomicBool,
    /// Every request, in order.
    requests: Mutex<Vec<Request>>,
}

/// A test HTTP server; lives until the test process ends.
pub struct TestServer {
    /// Where it listens.
    pub addr: SocketAddr,
    seen: Arc<Seen>,
}

impl TestServer {
    /// Serves `routes` (path and query -> reply) on a free port of 127.0.0.1.
    pub fn start(routes: impl Fn(&str) -> Reply + Send + Sync + 'static) -> TestServer {
        TestServer::start_on("127.0.0.1", routes)
    }

    /// Serves `routes` on a free port of the loopback address `ip` (127.0.0.2 is another host).
    pub fn start_on(
        ip: &str,
        routes: impl Fn(&str) -> Reply + Send + Sync + 'static,
    ) -> TestServer {
        TestServer::start_with(ip, move |r: &Request| routes(&r.path))
    }

    /// Serves `routes`, which see each request's method and headers, on a free port of `ip`.
    pub fn start_with(
        ip: &str,
        routes: impl Fn(&Request) -> Reply + Send + Sync + 'static,
    ) -> TestServer {
        let listener = TcpListener::bind((ip, 0)).expect("bind a loopback port");
        let addr = listener.local_addr().unwrap();
        let seen = Arc::new(Seen::default());
        let routes: Routes = Arc::new(routes);
        let s = seen.clone();
        std::thread::spawn(move || {
            for stream in listener.incoming().flatten() {
                let (routes, s) = (routes.clone(), s.clone());
                std::thread::spawn(move || serve_connection(stream, &routes, &s));
            }
        });
        TestServer { addr, seen }
    }

    /// Like [`start`](Self::start), but each answer leaves at once: head and body are separate
    /// writes, so otherwise every answer on a kept-alive connection waits for the client's
    /// delayed ACK (40 ms), which a long chain of pages pays on every hop. The other tests' timings
    /// are tuned to the plain server.
    pub fn start_fast(routes: impl Fn(&str) -> Reply + Send + Sync + 'static) -> TestServer {
        let server = TestServer::start(routes);
        server.seen.nodelay.store(true, Ordering::SeqCst);
        server
    }

    /// Every request, in order.
    pub fn requests(&self) -> Vec<Request> {
        self.seen.requests.lock().unwrap().clone()
    }

    /// When each request arrived, in order, with its path and query.
    pub fn log(&self) -> Vec<(Instant, String)> {
        self.seen.log.lock().unwrap().clone()
    }

    /// The most requests answered at the same time.
    pub fn max_active(&self) -> usize {
        self.seen.max_active.load(Ordering::SeqCst)
    }

    /// The User-Agent of every request.
    pub fn user_agents(&self) -> Vec<String> {
        self.seen.user_agents.lock().unwrap().clone()
    }

    /// Serves the sample gallery `site`, with `delay` before answering paths for which it is given.
    pub fn sample(
        site: SampleSite,
        delay: impl Fn(&str) -> Option<Duration> + Send + Sync + 'static,
    ) -> TestServer {
        TestServer::start(move |path| {
            let r = site.respond(path.split('?').next().unwrap_or(path));
            let reply = match (r.status, r.cut_at) {
                (200, None) => Reply::Ok(r.content_type, r.body.to_vec()),
                (200, Some(cut)) => Reply::Truncated(r.content_type, r.body.to_vec(), cut),
                (status, _) => Reply::Status(status),
            };
            match delay(path) {
                Some(d) => Reply::Delayed(d, Box::new(reply)),
                None => reply,
            }
        })
    }

    /// `http://127.0.0.1:PORT` followed by `path`.
    pub fn url(&self, path: &str) -> String {
        format!("http://{}{path}", self.addr)
    }

    /// Requests received, by path and query.
    pub fn hits(&self) -> HashMap<String, u32> {
        self.seen.hits.lock().unwrap().clone()
    }

    /// Body bytes the client accepted before it hung up, by path (only for [`Reply::Paced`]).
    pub fn sent(&self, path: &str) -> usize {
        self.seen
            .sent
            .lock()
            .unwrap()
            .get(path)
            .copied()
            .unwrap_or(0)
    }

    /// Requests being answered right now.
    pub fn active(&self) -> usize {
        self.seen.active.load(Ordering::SeqCst)
    }
}

fn serve_connection(stream: TcpStream, routes: &Routes, seen: &Seen) {
    if seen.nodelay.load(Ordering::SeqCst) {
        let _ = stream.set_nodelay(true);
    }
    let mut reader = BufReader::new(stream.try_clone().expect("clone stream"));
    let mut stream = stream;
    loop {
        let mut request_line = String::new();
        if reader.read_line(&mut request_line).unwrap_or(0) == 0 {
            return;
        }
        let mut headers = Vec::new();
        loop {
            let mut header = String::new();
            if reader.read_line(&mut header).unwrap_or(0) == 0 {
                return;
            }
            if header == "\r\n" || header == "\n" {
                break;
            }
            if let Some((name, value)) = header.split_once(':') {
                headers.push((name.trim().to_ascii_lowercase(), value.trim().to_string()));
                if name.eq_ignore_ascii_case("user-agent") {
                    seen.user_agents
                        .lock()
                        .unwrap()
                        .push(value.trim().to_string());
                }
            }
        }
        let mut words = request_line.split_whitespace();
        let method = words.next().unwrap_or("GET").to_string();
        let path = words.next().unwrap_or("/").to_string();
        let request = Request {
            method,
            path: path.clone(),
            headers,
        };
        seen.requests.lock().unwrap().push(request.clone());
        *seen.hits.lock().unwrap().entry(path.clone()).or_default() += 1;
        seen.log
            .lock()
            .unwrap()
            .push((Instant::now(), path.clone()));
        let now_active = seen.active.fetch_add(1, Ordering::SeqCst) + 1;
        seen.max_active.fetch_max(now_active, Ordering::SeqCst);
        let mut reply = routes(&request);
        while let Reply::Delayed(wait, inner) = reply {
            std::thread::sleep(wait);
            reply = *inner;
        }
        // Counted as served before the answer is written: once the client has the whole answer it
        // may start its next request, which must not find this one still counted (on a loaded
        // machine this thread can be descheduled between the write and the count).
        seen.active.fetch_sub(1, Ordering::SeqCst);
        if let Reply::Paced(ctype, body, every) = reply {
            paced(&mut stream, ctype, &body, every, &path, seen);
            return;
        }
        let keep = respond(&mut stream, reply);
        if !keep {
            return;
        }
    }
}

/// Writes a [`Reply::Paced`] answer, counting the body bytes written before the client hung up.
fn paced(
    stream: &mut TcpStream,
    ctype: &str,
    body: &[u8],
    every: Duration,
    path: &str,
    seen: &Seen,
) {
    let head = format!(
        "HTTP/1.1 200 X\r\ncontent-type: {ctype}\r\ncontent-length: {}\r\nconnection: close\r\n\r\n",
        body.len()
    );
    if stream.write_all(head.as_bytes()).is_err() {
        return;
    }
    for chunk in body.chunks(16 * 1024) {
        if stream
            .write_all(chunk)
            .and_then(|_| stream.flush())
            .is_err()
        {
            return;
        }
        *seen
            .sent
            .lock()
            .unwrap()
            .entry(path.to_string())
            .or_default() += chunk.len();
        std::thread::sleep(every);
    }
}

/// Writes `reply`; returns whether the connection can be reused.
fn respond(stream: &mut TcpStream, reply: Reply) -> bool {
    let head = |status: u16, ctype: &str, len: usize| {
        format!("HTTP/1.1 {status} X\r\ncontent-type: {ctype}\r\ncontent-length: {len}\r\n\r\n")
    };
    let result = match reply {
        Reply::Ok(ctype, body) => stream
            .write_all(head(200, ctype, body.len()).as_bytes())
            .and_then(|_| stream.write_all(&body)),
        Reply::Status(status) => {
            let body = format!("<html><body>status {status}</body></html>");
            stream.write_all((head(status, "text/html", body.len()) + body.as_str()).as_bytes())
        }
        Reply::Truncated(ctype, body, send) => {
            let _ = stream.write_all(head(200, ctype, body.len()).as_bytes());
            let _ = stream.write_all(&body[..send]);
            let _ = stream.flush();
            let _ = stream.shutdown(std::net::Shutdown::Both);
            return false;
        }
        Reply::Redirect(to) => stream.write_all(
            format!("HTTP/1.1 302 Found\r\nlocation: {to}\r\ncontent-length: 0\r\n\r\n").as_bytes(),
        ),
        Reply::Delayed(d, inner) => {
            std::thread::sleep(d);
            return respond(stream, *inner);
        }
        Reply::Raw(bytes) => {
            let _ = stream.write_all(&bytes);
            return false;
        }
        Reply::Drip(ctype, len, every) => {
            let _ = stream.write_all(head(200, ctype, len).as_bytes());
            for _ in 0..len {
                std::thread::sleep(every);
                if stream.write_all(b"x").is_err() {
                    break;
                }
            }
            return false;
        }
        Reply::Hang => {
            std::thread::sleep(Duration::from_secs(120));
            return false;
        }
        Reply::Paced(..) => unreachable!("paced replies are written by `paced`"),
        Reply::Stream(ctype, prefix, total) => {
            let head = format!(
                "HTTP/1.1 200 X\r\ncontent-type: {ctype}\r\ntransfer-encoding: chunked\r\n\r\n"
            );
            let mut chunk = vec![0; 64 * 1024];
            chunk[..prefix.len()].copy_from_slice(&prefix);
            let mut sent = 0;
            let mut ok = stream.write_all(head.as_bytes()).is_ok();
            while ok && sent < total {
                let n = chunk.len().min(total - sent);
                ok = stream
                    .write_all(format!("{n:x}\r\n").as_bytes())
                    .and_then(|_| stream.write_all(&chunk[..n]))
                    .and_then(|_| stream.write_all(b"\r\n"))
                    .is_ok();
                sent += n;
            }
            let _ = stream.write_all(b"0\r\n\r\n");
            return false;
        }
    };
    result.is_ok()
}

/// Reads a JSON-lines file (missing file: no rows).
pub fn read_jsonl<T: serde::de::DeserializeOwned>(path: &Path) -> Vec<T> {
    match std::fs::read_to_string(path) {
        Ok(text) => text
            .lines()
            .map(|l| serde_json::from_str(l).unwrap_or_else(|e| panic!("bad line {l}: {e}")))
            .collect(),
        Err(_) => Vec::new(),
    }
}

/// Hex SHA-256 of `bytes`.
pub fn sha256_hex(bytes: &[u8]) -> String {
    use sha2::{Digest, Sha256};
    format!("{:x}", Sha256::digest(bytes))
}

/// The manifest rows of `out`.
pub fn manifest(out: &Path) -> Vec<ManifestRow> {
    read_jsonl(&out.join("manifest.jsonl"))
}

/// Error rows of `out` as URL -> (error, attempts), with `server`'s address removed from URLs.
pub fn error_map(out: &Path, server: &TestServer) -> HashMap<String, (String, u32)> {
    errors(out)
        .into_iter()
        .map(|e| (e.url.replace(&server.url(""), ""), (e.error, e.attempts)))
        .collect()
}

/// Crawls `start` into `out` with `toml` over the defaults; returns the report and the wall time.
pub async fn run_crawl(start: &[String], out: &Path, toml: &str) -> (CrawlReport, Duration) {
    let t = Instant::now();
    let report = imgcrawl::Crawl::start(settings(start, out, toml))
        .await
        .unwrap()
        .wait()
        .await
        .unwrap();
    (report, t.elapsed())
}

/// What a finished process printed, stdout then stderr.
pub fn output_text(o: &std::process::Output) -> String {
    format!(
        "{}{}",
        String::from_utf8_lossy(&o.stdout),
        String::from_utf8_lossy(&o.stderr)
    )
}

/// The error rows of `out`.
pub fn errors(out: &Path) -> Vec<ErrorRow> {
    read_jsonl(&out.join("errors.jsonl"))
}

/// Every regular file under `dir`, relative, excluding imgcrawl's own directory and records.
pub fn image_files(dir: &Path) -> Vec<std::path::PathBuf> {
    fn walk(root: &Path, dir: &Path, out: &mut Vec<std::path::PathBuf>) {
        for e in std::fs::read_dir(dir).unwrap().flatten() {
            let p = e.path();
            if p.is_dir() {
                if p.file_name().is_some_and(|n| n != ".imgcrawl") {
                    walk(root, &p, out);
                }
            } else if p.parent() != Some(root) {
                out.push(p.strip_prefix(root).unwrap().to_path_buf());
            }
        }
    }
    let mut out = Vec::new();
    walk(dir, dir, &mut out);
    out.sort();
    out
}

/// Files left in imgcrawl's temporary directory (and its subdirectories).
pub fn temp_files(out: &Path) -> usize {
    fn count(dir: &Path) -> usize {
        std::fs::read_dir(dir)
            .map(|d| {
                d.flatten()
                    .map(|e| {
                        if e.path().is_dir() {
                            count(&e.path())
                        } else {
                            1
                        }
                    })
                    .sum()
            })
            .unwrap_or(0)
    }
    count(&out.join(".imgcrawl/tmp"))
}

/// Settings for crawling `urls` into `out`, with `toml` applied over the defaults.
pub fn settings(urls: &[String], out: &Path, toml: &str) -> imgcrawl::Settings {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("test.toml");
    std::fs::write(&file, toml).unwrap();
    let mut sources = imgcrawl::ConfigSources {
        file: Some(file),
        ..Default::default()
    };
    sources.flag("start_urls", "test", urls.to_vec());
    sources.flag("out_dir", "test", out.to_string_lossy().into_owned());
    imgcrawl::Settings::load(&sources).unwrap_or_else(|e| panic!("{e}"))
}
