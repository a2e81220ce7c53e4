//! Proxies under awc, which has none of its own: `http.proxy` or the environment variables curl
//! reads (`http_proxy`, `HTTPS_PROXY`, `ALL_PROXY`, `NO_PROXY`), and a TCP connector for awc that
//! opens a tunnel to the target through an HTTP proxy (`CONNECT`) or a SOCKS5 proxy before awc
//! layers TLS (and so HTTP/2) on top, with the target's name. Hosts the proxy is not for are
//! dialled directly. Everything above the socket (robots.txt, politeness, per-host limits, the
//! connection pool) keeps counting the target host, not the proxy.

use std::collections::HashMap;
use std::future::Future;
use std::io;
use std::net::IpAddr;
use std::pin::Pin;
use std::rc::Rc;

use actix_service::Service;
use actix_tls::connect::{ConnectError, ConnectInfo, Connection, ConnectorService};
use awc::http::Uri;
use base64::Engine as _;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use url::Url;

/// The port a proxy URL without one is reached on (as curl does).
const DEFAULT_PROXY_PORT: u16 = 1080;

/// The longest answer head to a `CONNECT` we read.
const MAX_CONNECT_HEAD: usize = 16 * 1024;

/// The kind of proxy.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ProxyKind {
    /// An HTTP proxy, asked to open a tunnel with `CONNECT host:port`.
    Http,
    /// A SOCKS5 proxy; `remote_dns` (socks5h://) lets the proxy resolve the target's name.
    Socks5 {
        /// The proxy resolves names (socks5h); otherwise they are resolved here (socks5).
        remote_dns: bool,
    },
}

/// One proxy server.
#[derive(Clone, PartialEq, Eq)]
pub struct Proxy {
    /// HTTP or SOCKS5.
    pub kind: ProxyKind,
    /// Its host name or address.
    pub host: String,
    /// Its port.
    pub port: u16,
    /// User name and password, percent-decoded.
    pub auth: Option<(String, String)>,
}

impl std::fmt::Debug for Proxy {
    /// Never shows the password.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}", self)
    }
}

impl std::fmt::Display for Proxy {
    /// The proxy as a URL, its password shown as `***`.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let scheme = match self.kind {
            ProxyKind::Http => "http",
            ProxyKind::Socks5 { remote_dns: false } => "socks5",
            ProxyKind::Socks5 { remote_dns: true } => "socks5h",
        };
        let user = match &self.auth {
            Some((u, _)) => format!("{u}:***@"),
            None => String::new(),
        };
        write!(f, "{scheme}://{user}{}:{}", self.host, self.port)
    }
}

impl Proxy {
    /// Parses `http://[user:pass@]host[:port]`, `socks5://...` or `socks5h://...`. A value
    /// without a scheme is an HTTP proxy, as curl takes it.
    pub fn parse(value: &str) -> Result<Proxy, String> {
        let value = value.trim();
        let with_scheme = if value.contains("://") {
            value.to_string()
        } else {
            format!("http://{value}")
        };
        let url = Url::parse(&with_scheme).map_err(|e| format!("`{value}` is not a URL: {e}"))?;
        let kind = match url.scheme() {
            "http" => ProxyKind::Http,
            "socks5" => ProxyKind::Socks5 { remote_dns: false },
            "socks5h" => ProxyKind::Socks5 { remote_dns: true },
            "https" => {
                return Err(
                    "TLS to the proxy itself (https://) is not supported; use an \
                            http:// proxy (https sites still go through it encrypted end to end)"
                        .into(),
                )
            }
            other => {
                return Err(format!(
                    "unsupported proxy scheme `{other}` (use http://, socks5:// or socks5h://)"
                ))
            }
        };
        let host = url
            .host_str()
            .filter(|h| !h.is_empty())
            .ok_or_else(|| format!("`{value}` has no host"))?;
        let host = host
            .trim_start_matches('[')
            .trim_end_matches(']')
            .to_string();
        let decode = |s: &str| {
            percent_encoding::percent_decode_str(s)
                .decode_utf8_lossy()
                .into()
        };
        let auth = (!url.username().is_empty())
            .then(|| (decode(url.username()), decode(url.password().unwrap_or(""))));
        Ok(Proxy {
            kind,
            host,
            port: url.port().unwrap_or(DEFAULT_PROXY_PORT),
            auth,
        })
    }

    /// Opens a TCP stream to `host:port` through this proxy, ready for the request (or for TLS).
    pub async fn tunnel(&self, host: &str, port: u16) -> io::Result<TcpStream> {
        let target = host.trim_start_matches('[').trim_end_matches(']');
        let stream = TcpStream::connect((self.host.as_str(), self.port))
            .await
            .map_err(|e| io::Error::new(e.kind(), format!("proxy {self}: {e}")))?;
        match self.kind {
            ProxyKind::Http => self.connect_method(stream, target, port).await,
            ProxyKind::Socks5 { remote_dns } => self.socks5(stream, target, port, remote_dns).await,
        }
    }

    /// The `CONNECT` handshake: a 2xx answer means the stream now reaches the target.
    async fn connect_method(
        &self,
        mut stream: TcpStream,
        host: &str,
        port: u16,
    ) -> io::Result<TcpStream> {
        let authority = if host.contains(':') {
            format!("[{host}]:{port}")
        } else {
            format!("{host}:{port}")
        };
        let mut head = format!("CONNECT {authority} HTTP/1.1\r\nHost: {authority}\r\n");
        if let Some((user, pass)) = &self.auth {
            let token = base64::engine::general_purpose::STANDARD.encode(format!("{user}:{pass}"));
            head.push_str(&format!("Proxy-Authorization: Basic {token}\r\n"));
        }
        head.push_str("\r\n");
        stream.write_all(head.as_bytes()).await?;
        // Byte by byte: what follows the answer's head belongs to the tunnel.
        let mut answer = Vec::with_capacity(256);
        while !answer.ends_with(b"\r\n\r\n") {
            if answer.len() >= MAX_CONNECT_HEAD {
                return Err(io::Error::other(format!(
                    "proxy {self}: answer to CONNECT longer than {MAX_CONNECT_HEAD} bytes"
                )));
            }
            let byte = stream.read_u8().await.map_err(|e| {
                io::Error::new(
                    e.kind(),
                    format!("proxy {self} closed the connection during CONNECT {authority}"),
                )
            })?;
            answer.push(byte);
        }
        let text = String::from_utf8_lossy(&answer);
        let status_line = text.lines().next().unwrap_or("");
        let status: u16 = status_line
            .split_whitespace()
            .nth(1)
            .and_then(|s| s.parse().ok())
            .unwrap_or(0);
        match status {
            200..=299 => Ok(stream),
            407 => Err(io::Error::other(format!(
                "proxy {self} wants authentication (407): give http.proxy as \
                 http://user:password@host:port"
            ))),
            _ => Err(io::Error::other(format!(
                "proxy {self} refused CONNECT {authority}: {}",
                status_line.trim()
            ))),
        }
    }

    /// The SOCKS5 handshake (with a user name and password when given).
    async fn socks5(
        &self,
        stream: TcpStream,
        host: &str,
        port: u16,
        remote_dns: bool,
    ) -> io::Result<TcpStream> {
        use tokio_socks::tcp::Socks5Stream;
        use tokio_socks::TargetAddr;
        let target: TargetAddr<'static> = match host.parse::<IpAddr>() {
            Ok(ip) => TargetAddr::Ip((ip, port).into()),
            Err(_) if remote_dns => TargetAddr::Domain(host.to_string().into(), port),
            Err(_) => {
                let addr = tokio::net::lookup_host((host, port))
                    .await?
                    .next()
                    .ok_or_else(|| io::Error::other(format!("{host} has no address")))?;
                TargetAddr::Ip(addr)
            }
        };
        let socks = match &self.auth {
            Some((user, pass)) => {
                Socks5Stream::connect_with_password_and_socket(stream, target, user, pass).await
            }
            None => Socks5Stream::connect_with_socket(stream, target).await,
        }
        .map_err(|e| io::Error::other(format!("proxy {self}: {e}")))?;
        Ok(socks.into_inner())
    }
}

/// Hosts reached without the proxy (`NO_PROXY`, `http.no_proxy`), as curl reads them: `*` for
/// every host; a name for itself and its subdomains (a leading dot is ignored); an IP address; an
/// address range in CIDR notation (`10.0.0.0/8`).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct NoProxy {
    entries: Vec<String>,
}

impl NoProxy {
    /// Reads a list of entries (each may itself be comma-separated).
    pub fn new<S: AsRef<str>>(entries: &[S]) -> NoProxy {
        let entries = entries
            .iter()
            .flat_map(|e| e.as_ref().split(','))
            .map(|e| e.trim().trim_start_matches('.').to_ascii_lowercase())
            .filter(|e| !e.is_empty())
            .collect();
        NoProxy { entries }
    }

    /// Whether `host` is reached directly.
    pub fn matches(&self, host: &str) -> bool {
        let host = host
            .trim_start_matches('[')
            .trim_end_matches(']')
            .to_ascii_lowercase();
        let ip = host.parse::<IpAddr>().ok();
        self.entries.iter().any(|e| {
            if e == "*" {
                return true;
            }
            if let (Some(ip), Some((net, bits))) = (ip, e.split_once('/')) {
                return in_range(ip, net, bits);
            }
            let e = e.trim_start_matches('[').trim_end_matches(']');
            host == e || host.strip_suffix(e).is_some_and(|rest| rest.ends_with('.'))
        })
    }
}

/// Whether `ip` is in the CIDR range `net/bits`.
fn in_range(ip: IpAddr, net: &str, bits: &str) -> bool {
    let (Ok(net), Ok(bits)) = (net.parse::<IpAddr>(), bits.parse::<u32>()) else {
        return false;
    };
    match (ip, net) {
        (IpAddr::V4(a), IpAddr::V4(n)) if bits <= 32 => {
            let mask = u32::MAX.checked_shl(32 - bits).unwrap_or(0);
            u32::from(a) & mask == u32::from(n) & mask
        }
        (IpAddr::V6(a), IpAddr::V6(n)) if bits <= 128 => {
            let mask = u128::MAX.checked_shl(128 - bits).unwrap_or(0);
            u128::from(a) & mask == u128::from(n) & mask
        }
        _ => false,
    }
}

/// Which proxy, if any, each request goes through.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ProxyRoutes {
    /// For http:// URLs.
    pub http: Option<Proxy>,
    /// For https:// URLs.
    pub https: Option<Proxy>,
    /// Hosts reached directly.
    pub no_proxy: NoProxy,
}

impl ProxyRoutes {
    /// The routes for the value of `http.proxy` and `http.no_proxy`: a proxy URL is used for
    /// every request; `"none"` is no proxy at all; empty reads the environment as curl does
    /// (`http_proxy` or `HTTP_PROXY` for http, `HTTPS_PROXY` for https, `ALL_PROXY` for both when
    /// those are unset, `NO_PROXY` when `no_proxy` is empty). Names the variable at fault.
    pub fn resolve(
        proxy: &str,
        no_proxy: &[String],
        env: &HashMap<String, String>,
    ) -> Result<ProxyRoutes, (String, String)> {
        let var = |names: &[&str]| {
            names.iter().find_map(|n| {
                env.get(*n)
                    .filter(|v| !v.trim().is_empty())
                    .map(|v| (n.to_string(), v.clone()))
            })
        };
        let parse = |(name, value): (String, String)| Proxy::parse(&value).map_err(|e| (name, e));
        let explicit_no_proxy = || (!no_proxy.is_empty()).then(|| NoProxy::new(no_proxy));
        match proxy.trim() {
            "none" => Ok(ProxyRoutes::default()),
            "" => {
                let all = var(&["all_proxy", "ALL_PROXY"]);
                let http = var(&["http_proxy", "HTTP_PROXY"]).or_else(|| all.clone());
                let https = var(&["https_proxy", "HTTPS_PROXY"]).or(all);
                let no_proxy = explicit_no_proxy().unwrap_or_else(|| {
                    NoProxy::new(
                        &var(&["no_proxy", "NO_PROXY"])
                            .map(|(_, v)| [v])
                            .unwrap_or_default(),
                    )
                });
                Ok(ProxyRoutes {
                    http: http.map(parse).transpose()?,
                    https: https.map(parse).transpose()?,
                    no_proxy,
                })
            }
            value => {
                let p = parse(("http.proxy".into(), value.into()))?;
                Ok(ProxyRoutes {
                    http: Some(p.clone()),
                    https: Some(p),
                    no_proxy: explicit_no_proxy().unwrap_or_default(),
                })
            }
        }
    }

    /// Whether no request goes through a proxy.
    pub fn is_direct(&self) -> bool {
        self.http.is_none() && self.https.is_none()
    }

    /// The proxy a request to `host` over `scheme` goes through, if any.
    pub fn for_target(&self, scheme: &str, host: &str) -> Option<&Proxy> {
        let proxy = match scheme {
            "https" => self.https.as_ref(),
            _ => self.http.as_ref(),
        }?;
        (!self.no_proxy.matches(host)).then_some(proxy)
    }
}

/// awc's TCP connector when a proxy is set: through the proxy for the hosts it is for, directly
/// (with the crawl's resolver) for the others.
#[derive(Clone)]
pub struct Dial {
    /// Which proxy each request takes.
    pub routes: Rc<ProxyRoutes>,
    /// The direct connector.
    pub direct: ConnectorService,
}

/// The future of a [`Dial`].
type DialFuture = Pin<Box<dyn Future<Output = Result<Connection<Uri, TcpStream>, ConnectError>>>>;

impl Service<ConnectInfo<Uri>> for Dial {
    type Response = Connection<Uri, TcpStream>;
    type Error = ConnectError;
    type Future = DialFuture;

    actix_service::always_ready!();

    fn call(&self, info: ConnectInfo<Uri>) -> Self::Future {
        let scheme = info.request().scheme_str().unwrap_or("http");
        let Some(proxy) = self.routes.for_target(scheme, info.hostname()).cloned() else {
            return Box::pin(self.direct.call(info));
        };
        Box::pin(async move {
            let stream = proxy
                .tunnel(info.hostname(), info.port())
                .await
                .map_err(ConnectError::Io)?;
            Ok(Connection::new(info.request().clone(), stream))
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn proxy_urls_are_read_as_curl_reads_them() {
        let p = Proxy::parse("http://user:p%40ss@proxy.lan:3128").unwrap();
        assert_eq!(p.kind, ProxyKind::Http);
        assert_eq!((p.host.as_str(), p.port), ("proxy.lan", 3128));
        assert_eq!(p.auth, Some(("user".into(), "p@ss".into())));
        assert_eq!(p.to_string(), "http://user:***@proxy.lan:3128");
        let p = Proxy::parse("proxy.lan").unwrap();
        assert_eq!((p.kind, p.port), (ProxyKind::Http, 1080));
        let p = Proxy::parse("socks5h://[::1]:9050").unwrap();
        assert_eq!(p.kind, ProxyKind::Socks5 { remote_dns: true });
        assert_eq!(p.host, "::1");
        assert!(Proxy::parse("ftp://x:1")
            .unwrap_err()
            .contains("unsupported"));
        assert!(Proxy::parse("https://x:1")
            .unwrap_err()
            .contains("not supported"));
    }

    #[test]
    fn no_proxy_matches_names_subdomains_addresses_and_ranges() {
        let n = NoProxy::new(&[".example.com, localhost", "10.0.0.0/8", "::1"]);
        assert!(n.matches("example.com"));
        assert!(n.matches("img.example.com"));
        assert!(!n.matches("badexample.com"));
        assert!(n.matches("LOCALHOST"));
        assert!(n.matches("10.1.2.3"));
        assert!(!n.matches("11.1.2.3"));
        assert!(n.matches("[::1]"));
        assert!(NoProxy::new(&["*"]).matches("anything"));
        assert!(!NoProxy::default().matches("anything"));
    }

    #[test]
    fn routes_come_from_the_key_or_the_environment() {
        let env: HashMap<String, String> = [
            ("HTTP_PROXY", "http://h:1"),
            ("HTTPS_PROXY", "socks5://s:2"),
            ("NO_PROXY", "skip.example"),
        ]
        .iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect();
        let r = ProxyRoutes::resolve("", &[], &env).unwrap();
        assert_eq!(r.for_target("http", "a.example").unwrap().host, "h");
        assert_eq!(r.for_target("https", "a.example").unwrap().host, "s");
        assert!(r.for_target("https", "img.skip.example").is_none());

        let r = ProxyRoutes::resolve("http://k:3", &["a.example".into()], &env).unwrap();
        assert_eq!(r.for_target("https", "b.example").unwrap().host, "k");
        assert!(r.for_target("https", "a.example").is_none());
        assert!(ProxyRoutes::resolve("none", &[], &env).unwrap().is_direct());

        let all: HashMap<String, String> =
            [("ALL_PROXY".to_string(), "socks5h://x:4".to_string())].into();
        let r = ProxyRoutes::resolve("", &[], &all).unwrap();
        assert_eq!(r.for_target("http", "a").unwrap().port, 4);
        assert_eq!(r.for_target("https", "a").unwrap().port, 4);

        let bad: HashMap<String, String> =
            [("HTTPS_PROXY".to_string(), "gopher://x".to_string())].into();
        let (name, _) = ProxyRoutes::resolve("", &[], &bad).unwrap_err();
        assert_eq!(name, "HTTPS_PROXY");
    }
}
