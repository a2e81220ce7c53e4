//! The network between the crawler and a site, with real programs on loopback: nginx serving the
//! sample gallery over TLS from a CA the test makes (rcgen), with HTTP/2; and a real forward proxy
//! (Debian's tinyproxy), whose own log must show the crawl's tunnels. `.ci/run` installs both.

use std::net::TcpListener;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use imgcrawl::sample_site::SampleSite;

use crate::support::{errors, manifest, output_text, TestServer};

/// A port free on 127.0.0.1 right now.
fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// Waits until something accepts connections on `port`.
fn wait_for(port: u16, child: &mut Child, what: &str) {
    let deadline = Instant::now() + Duration::from_secs(15);
    while std::net::TcpStream::connect(("127.0.0.1", port)).is_err() {
        if let Ok(Some(status)) = child.try_wait() {
            panic!("{what} exited at start: {status}");
        }
        assert!(Instant::now() < deadline, "{what} never listened on {port}");
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// A program started by a test, stopped (by its PID) when dropped.
struct Daemon(Child);

impl Drop for Daemon {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// A test CA and a server certificate it signed for 127.0.0.1 and localhost, as PEM files in
/// `dir`: (ca.pem, server.pem, server.key).
fn make_ca(dir: &Path) -> (PathBuf, PathBuf, PathBuf) {
    use rcgen::{BasicConstraints, CertificateParams, DnType, IsCa, Issuer, KeyPair};
    let ca_key = KeyPair::generate().unwrap();
    let mut ca = CertificateParams::new(Vec::<String>::new()).unwrap();
    ca.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    ca.distinguished_name
        .push(DnType::CommonName, "imgcrawl test CA");
    let ca_cert = ca.self_signed(&ca_key).unwrap();
    let issuer = Issuer::new(ca, ca_key);
    let key = KeyPair::generate().unwrap();
    let leaf = CertificateParams::new(vec!["127.0.0.1".to_string(), "localhost".to_string()])
        .unwrap()
        .signed_by(&key, &issuer)
        .unwrap();
    let paths = (
        dir.join("ca.pem"),
        dir.join("server.pem"),
        dir.join("server.key"),
    );
    std::fs::write(&paths.0, ca_cert.pem()).unwrap();
    std::fs::write(&paths.1, leaf.pem()).unwrap();
    std::fs::write(&paths.2, key.serialize_pem()).unwrap();
    (paths.0, paths.1, paths.2)
}

/// nginx serving `root` over TLS with HTTP/2 on a free port; its access log records each
/// request's connection number and protocol.
struct Nginx {
    port: u16,
    log: PathBuf,
    _daemon: Daemon,
}

impl Nginx {
    fn start(dir: &Path, root: &Path, cert: &Path, key: &Path) -> Nginx {
        let port = free_port();
        let d = dir.display();
        let conf = dir.join("nginx.conf");
        std::fs::create_dir_all(dir.join("tmp")).unwrap();
        std::fs::write(
            &conf,
            format!(
                "daemon off;\nmaster_process off;\nworker_processes 1;\npid {d}/nginx.pid;\n\
                 error_log {d}/error.log;\nevents {{ worker_connections 256; }}\n\
                 http {{\n\
                   log_format conn '$connection $server_protocol $request_method $uri $status';\n\
                   access_log {d}/access.log conn;\n\
                   client_body_temp_path {d}/tmp; proxy_temp_path {d}/tmp;\n\
                   fastcgi_temp_path {d}/tmp; uwsgi_temp_path {d}/tmp; scgi_temp_path {d}/tmp;\n\
                   types {{ text/html html; image/png png; image/gif gif; image/jpeg jpg; \
                            text/plain txt; }}\n\
                   server {{\n\
                     listen 127.0.0.1:{port} ssl http2;\n\
                     ssl_certificate {}; ssl_certificate_key {};\n\
                     root {};\n\
                   }}\n\
                 }}\n",
                cert.display(),
                key.display(),
                root.display()
            ),
        )
        .unwrap();
        let mut child = Command::new("nginx")
            .args(["-c", conf.to_str().unwrap(), "-p", dir.to_str().unwrap()])
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .expect("nginx must be installed (.ci/run installs nginx-light)");
        wait_for(port, &mut child, "nginx");
        Nginx {
            port,
            log: dir.join("access.log"),
            _daemon: Daemon(child),
        }
    }

    /// (connection number, protocol, path, status) of each request served.
    fn requests(&self) -> Vec<(String, String, String, String)> {
        std::fs::read_to_string(&self.log)
            .unwrap_or_default()
            .lines()
            .map(|l| {
                let f: Vec<&str> = l.split(' ').collect();
                (f[0].into(), f[1].into(), f[3].into(), f[4].into())
            })
            .collect()
    }
}

/// tinyproxy on a free port, logging every request to its own log file.
struct Tinyproxy {
    port: u16,
    log: PathBuf,
    _daemon: Daemon,
}

impl Tinyproxy {
    fn start(dir: &Path) -> Tinyproxy {
        let port = free_port();
        // tinyproxy started as root runs as `nobody`, who must be able to write its log.
        std::fs::create_dir_all(dir).unwrap();
        let open = std::os::unix::fs::PermissionsExt::from_mode(0o777);
        std::fs::set_permissions(dir, open).unwrap();
        let log = dir.join("tinyproxy.log");
        let conf = dir.join("tinyproxy.conf");
        std::fs::write(
            &conf,
            format!(
                "User nobody\nGroup nogroup\nPort {port}\nListen 127.0.0.1\nTimeout 60\n\
                 LogFile \"{}\"\nLogLevel Info\nMaxClients 50\nAllow 127.0.0.1\n\
                 BasicAuth crawler s3cret\n",
                log.display()
            ),
        )
        .unwrap();
        let mut child = Command::new("tinyproxy")
            .args(["-d", "-c", conf.to_str().unwrap()])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("tinyproxy must be installed (.ci/run installs it)");
        wait_for(port, &mut child, "tinyproxy");
        Tinyproxy {
            port,
            log,
            _daemon: Daemon(child),
        }
    }

    /// The targets of the CONNECT requests tinyproxy logged.
    fn tunnels(&self) -> Vec<String> {
        std::fs::read_to_string(&self.log)
            .unwrap_or_default()
            .lines()
            .filter_map(|l| l.split("): CONNECT ").nth(1))
            .filter_map(|rest| rest.split_whitespace().next())
            .map(str::to_string)
            .collect()
    }
}

fn imgcrawl(args: &[&str], env: &[(&str, &str)]) -> std::process::Output {
    Command::new(env!("CARGO_BIN_EXE_imgcrawl"))
        .args(args)
        .env_remove("RUST_LOG")
        .env_remove("http_proxy")
        .env_remove("HTTP_PROXY")
        .env_remove("https_proxy")
        .env_remove("HTTPS_PROXY")
        .env_remove("ALL_PROXY")
        .env_remove("NO_PROXY")
        .envs(env.iter().copied())
        .output()
        .unwrap()
}

/// The sample gallery as static files under `dir/site`.
fn static_site(dir: &Path) -> (SampleSite, PathBuf) {
    let site = SampleSite {
        pages: 2,
        per_page: 8,
        page_kb: 0,
    };
    let root = dir.join("site");
    site.write_to(&root).unwrap();
    (site, root)
}

/// Saved images whose manifest URL is under `base`.
fn saved_under(out: &Path, base: &str) -> usize {
    manifest(out)
        .iter()
        .filter(|r| r.url.starts_with(base))
        .count()
}

#[test]
fn an_internal_ca_over_http2_is_trusted_only_when_given() {
    let dir = tempfile::tempdir().unwrap();
    let (ca, cert, key) = make_ca(dir.path());
    let (site, root) = static_site(dir.path());
    let nginx = Nginx::start(&dir.path().join("nginx"), &root, &cert, &key);
    let base = format!("https://127.0.0.1:{}", nginx.port);
    let start = format!("{base}/list/1.html");
    let start2 = format!("{base}/list/2.html");

    // Not trusted: every URL fails, and says why.
    let out = dir.path().join("untrusted");
    let o = imgcrawl(&["crawl", "-o", out.to_str().unwrap(), &start], &[]);
    assert_ne!(o.status.code(), Some(0), "{}", output_text(&o));
    let errs = errors(&out);
    assert!(!errs.is_empty(), "{}", output_text(&o));
    for e in &errs {
        assert_eq!(e.error, "tls", "{e:?}");
        assert!(
            e.detail
                .contains("certificate not trusted for 127.0.0.1 (signed by an unknown authority)"),
            "{e:?}"
        );
    }
    assert!(
        output_text(&o).contains("tls: certificate not trusted for 127.0.0.1"),
        "{}",
        output_text(&o)
    );
    assert!(nginx.requests().is_empty(), "no request got through");

    // The system trust store is read too: here SSL_CERT_FILE names it (as OpenSSL reads it).
    let out = dir.path().join("system-store");
    let o = imgcrawl(
        &["crawl", "-q", "-o", out.to_str().unwrap(), &start],
        &[("SSL_CERT_FILE", ca.to_str().unwrap())],
    );
    assert!(
        errors(&out).iter().all(|e| e.error != "tls"),
        "{}",
        output_text(&o)
    );
    assert!(saved_under(&out, &base) > 0, "{}", output_text(&o));

    // With http.ca_file: the whole gallery, over HTTP/2, each thread's workers on one connection.
    let earlier = nginx.requests().len();
    let out = dir.path().join("trusted");
    let o = imgcrawl(
        &[
            "crawl",
            "-q",
            "-o",
            out.to_str().unwrap(),
            "--ca-file",
            ca.to_str().unwrap(),
            "--fetchers",
            "2",
            "--threads",
            "1",
            &start,
            &start2,
        ],
        &[],
    );
    // The static copy of the gallery has broken images (a 404, an HTML "JPEG"): exit status 3.
    assert_eq!(o.status.code(), Some(3), "{}", output_text(&o));
    assert!(saved_under(&out, &base) as u64 > site.image_count());
    let served = nginx.requests().split_off(earlier);
    assert!(served.len() as u64 > site.image_count() * 2, "{served:?}");
    assert!(
        served.iter().all(|(_, proto, _, _)| proto == "HTTP/2.0"),
        "{served:?}"
    );
    let mut connections: Vec<&str> = served.iter().map(|(c, ..)| c.as_str()).collect();
    connections.sort();
    connections.dedup();
    // One client per thread: the fetchers' arbiter thread and the savers' System thread.
    assert!(
        connections.len() <= 2,
        "{} connections for {} requests: {served:?}",
        connections.len(),
        served.len()
    );
}

#[test]
fn a_real_proxy_carries_plain_and_tls_crawls_and_no_proxy_bypasses_it() {
    let dir = tempfile::tempdir().unwrap();
    let proxy = Tinyproxy::start(&dir.path().join("proxy"));
    // The proxy wants a user and password (Proxy-Authorization: Basic).
    let proxy_url = format!("http://crawler:s3cret@127.0.0.1:{}", proxy.port);

    // A plain-http site, the proxy taken from HTTP_PROXY as curl reads it.
    let site = SampleSite {
        pages: 2,
        per_page: 5,
        page_kb: 0,
    };
    let server = TestServer::sample(site, |_| None);
    let out = dir.path().join("plain");
    let start = server.url("/list/1.html");
    let o = imgcrawl(
        &["crawl", "-q", "-o", out.to_str().unwrap(), &start],
        &[("HTTP_PROXY", proxy_url.as_str())],
    );
    assert!(
        matches!(o.status.code(), Some(0 | 3)),
        "{}",
        output_text(&o)
    );
    assert!(
        saved_under(&out, &server.url("/")) >= 5,
        "{}",
        output_text(&o)
    );
    let target = server.addr.to_string();
    let tunnels = proxy.tunnels();
    assert!(
        tunnels.contains(&target),
        "tinyproxy logged no CONNECT {target}: {tunnels:?}"
    );
    let direct_before = server.hits().values().sum::<u32>();

    // NO_PROXY: the same site, straight to the server.
    let out2 = dir.path().join("bypass");
    let count = proxy.tunnels().len();
    let o = imgcrawl(
        &["crawl", "-q", "-o", out2.to_str().unwrap(), &start],
        &[
            ("HTTP_PROXY", proxy_url.as_str()),
            ("NO_PROXY", "127.0.0.1"),
        ],
    );
    assert!(
        matches!(o.status.code(), Some(0 | 3)),
        "{}",
        output_text(&o)
    );
    assert_eq!(proxy.tunnels().len(), count, "NO_PROXY was not honoured");
    assert!(server.hits().values().sum::<u32>() > direct_before);

    // An https site through HTTPS_PROXY: TLS and HTTP/2 run inside the tunnel, end to end.
    let (ca, cert, key) = make_ca(dir.path());
    let (tls_site, root) = static_site(dir.path());
    let nginx = Nginx::start(&dir.path().join("nginx"), &root, &cert, &key);
    let base = format!("https://127.0.0.1:{}", nginx.port);
    let out3 = dir.path().join("tls");
    let o = imgcrawl(
        &[
            "crawl",
            "-q",
            "-o",
            out3.to_str().unwrap(),
            "--ca-file",
            ca.to_str().unwrap(),
            &format!("{base}/list/1.html"),
            &format!("{base}/list/2.html"),
        ],
        &[("HTTPS_PROXY", proxy_url.as_str())],
    );
    assert_eq!(o.status.code(), Some(3), "{}", output_text(&o));
    assert!(saved_under(&out3, &base) as u64 > tls_site.image_count());
    let target = format!("127.0.0.1:{}", nginx.port);
    assert!(proxy.tunnels().contains(&target), "{:?}", proxy.tunnels());
    assert!(nginx
        .requests()
        .iter()
        .all(|(_, proto, _, _)| proto == "HTTP/2.0"));

    // Without the password, the proxy's 407 is the failure, and it says what to do.
    let out5 = dir.path().join("no-auth");
    let anonymous = format!("http://127.0.0.1:{}", proxy.port);
    let o = imgcrawl(
        &[
            "crawl",
            "-q",
            "-o",
            out5.to_str().unwrap(),
            "--proxy",
            &anonymous,
            &start,
        ],
        &[],
    );
    assert_ne!(o.status.code(), Some(0));
    let errs = errors(&out5);
    assert!(
        errs.iter()
            .any(|e| e.detail.contains("wants authentication (407)")),
        "{errs:?}"
    );

    // A proxy that is down is a connection failure naming the proxy.
    let out4 = dir.path().join("down");
    let dead = format!("http://127.0.0.1:{}", free_port());
    let o = imgcrawl(
        &[
            "crawl",
            "-q",
            "-o",
            out4.to_str().unwrap(),
            "--proxy",
            &dead,
            &start,
        ],
        &[],
    );
    assert_ne!(o.status.code(), Some(0));
    let errs = errors(&out4);
    assert!(
        errs.iter()
            .any(|e| e.detail.contains(&format!("proxy {dead}"))),
        "{errs:?}"
    );
}
