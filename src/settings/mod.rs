//! Configuration in two stages: [`RawSettings`] is what serde reads from the layers (defaults, file,
//! environment, flags); [`Settings`] is the validated, typed result handed to the actors, one
//! sub-struct per concern. Validation happens once, here; nothing reads configuration afterwards.

mod distributed;
mod load;

use std::collections::BTreeSet;
use std::fmt;
use std::net::SocketAddr;
use std::num::NonZeroUsize;
use std::path::PathBuf;
use std::time::Duration;

use regex::Regex;
use scraper::Selector;
use serde::{Deserialize, Serialize};
use url::Url;

pub use distributed::{redact, Distributed, RawDistributed, Role};
pub use load::{env_var, ConfigSources, FlagOverride, Origin, DEFAULT_TOML, ENV_PREFIX};

use crate::paths::FilenameTemplate;
use crate::urls;

/// A configuration error: which key, where its value came from, and what is wrong with it.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("configuration error in {}", load::SettingsErrorDisplay(self))]
pub struct SettingsError {
    /// The dotted key, e.g. `http.timeout_secs`.
    pub key: String,
    /// The layer that supplied the offending value.
    pub origin: Origin,
    /// What is wrong.
    pub message: String,
}

/// The configuration as written: every key of `config/default.toml`, untyped beyond serde.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawSettings {
    /// Pages to start from.
    #[serde(default)]
    pub start_urls: Vec<String>,
    /// A list-page URL with a `{page}` placeholder.
    #[serde(default)]
    pub page_template: Option<String>,
    /// Inclusive range `[first, last]` of page numbers for `page_template`.
    #[serde(default)]
    pub pages: Option<Vec<u64>>,
    /// Output directory.
    pub out_dir: PathBuf,
    /// Number of PageFetcher actors.
    pub fetchers: usize,
    /// Number of ImageSaver actors (downloads at once).
    pub savers: usize,
    /// Number of DiskWriter threads.
    pub writers: usize,
    /// Arbiter threads the page fetchers are spread over; 0 means one per core. The Supervisor,
    /// the Logger and the image savers share the actix System's thread.
    pub threads: usize,
    /// Waiting jobs of each kind kept in memory; the rest wait in the state database.
    pub frontier_in_memory: usize,
    /// `IP:PORT` to serve `/metrics` and `/status` on; empty is off.
    pub metrics: String,
    /// What may be crawled.
    pub scope: RawScope,
    /// How images, links and names are found in pages.
    pub extract: RawExtract,
    /// HTTP behaviour and limits.
    pub http: RawHttp,
    /// How saved files are named.
    pub output: RawOutput,
    /// Which images are worth keeping.
    pub filter: RawFilter,
    /// The optional shared crawl on Redis.
    pub distributed: RawDistributed,
}

/// `[scope]` as written.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawScope {
    /// Hosts that may be requested; empty means those of the start URLs.
    pub allowed_hosts: Vec<String>,
    /// Link hops from a start page; `None` is unlimited.
    #[serde(default)]
    pub max_depth: Option<u32>,
    /// Pages fetched in total; `None` is unlimited.
    #[serde(default)]
    pub max_pages: Option<u64>,
    /// URL regexes a followed link must match (one of them), when any are given.
    pub include: Vec<String>,
    /// URL regexes a followed link must not match.
    pub exclude: Vec<String>,
    /// Longest URL (in bytes, normalized) requested; longer ones are skipped.
    pub max_url_length: usize,
    /// Query parameters removed from every URL before it is deduplicated and requested.
    pub strip_query: Vec<String>,
    /// Barren pages in a row (and per URL shape) before the trap rule skips more; 0 is off.
    pub trap_pages: u32,
}

/// One `[[extract.images]]` rule: elements and the attributes, in order, that may hold the URL.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawImageRule {
    /// CSS selector of the elements.
    pub selector: String,
    /// Attributes tried in order; the first present and usable one wins.
    pub attrs: Vec<String>,
}

/// `[extract]` as written.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawExtract {
    /// Image rules.
    pub images: Vec<RawImageRule>,
    /// Selector of links to follow.
    pub follow: String,
    /// Selector of the item around an image carrying its caption.
    pub item: String,
    /// Selector of the caption inside the item.
    pub name: String,
    /// Most images taken from one page; more are dropped and counted.
    pub max_images_per_page: usize,
    /// Most links taken from one page; more are dropped and counted.
    pub max_links_per_page: usize,
    /// Longest time parsing and reading one page may take, in seconds; a page that takes longer
    /// fails as too complex.
    pub parse_timeout_secs: f64,
}

/// `[http]` as written.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawHttp {
    /// User-Agent header; `{version}` is replaced.
    pub user_agent: String,
    /// Total time for one request, body included (fractions allowed).
    pub timeout_secs: f64,
    /// Time to connect.
    pub connect_timeout_secs: f64,
    /// Time from sending a request to its response head.
    pub head_timeout_secs: f64,
    /// Extra attempts after a retryable failure.
    pub retries: u32,
    /// First retry's backoff; it doubles with each further attempt.
    pub retry_backoff_ms: u64,
    /// Longest `Retry-After` or `Crawl-delay` honoured.
    pub max_wait_secs: f64,
    /// Redirects followed per request.
    pub max_redirects: u32,
    /// Largest page body accepted.
    pub max_page_bytes: u64,
    /// Largest image body accepted.
    pub max_image_bytes: u64,
    /// Requests in flight per host.
    pub per_host_concurrency: usize,
    /// Pause between request starts to one host.
    pub delay_ms: u64,
    /// Respect robots.txt.
    pub obey_robots: bool,
    /// Refuse loopback, private and link-local addresses: "auto" (when every start URL is a
    /// public host), "on" or "off".
    pub block_private_addresses: String,
}

/// `[output]` as written.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawOutput {
    /// File name template relative to `out_dir`.
    pub filename: String,
}

/// `[filter]` as written.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawFilter {
    /// Narrowest image kept, in pixels (0: any).
    pub min_width: u32,
    /// Lowest image kept, in pixels (0: any).
    pub min_height: u32,
    /// Smallest image kept, in bytes (0: any).
    pub min_bytes: u64,
    /// Largest image kept, in bytes (0: any, up to `http.max_image_bytes`).
    pub max_bytes: u64,
    /// Image URLs matching any of these regexes are not downloaded.
    pub exclude: Vec<String>,
}

impl Default for RawSettings {
    /// The built-in defaults: exactly `config/default.toml`.
    fn default() -> Self {
        load::defaults()
    }
}

/// Validated configuration for one crawl.
#[derive(Debug, Clone)]
pub struct Settings {
    /// Start pages (depth 0): `start_urls` followed by the pages of `page_template`, normalized.
    pub start_urls: Vec<Url>,
    /// Output directory.
    pub out_dir: PathBuf,
    /// How many actors and threads to start.
    pub workers: Workers,
    /// What may be crawled.
    pub scope: Scope,
    /// Extraction rules.
    pub extract: ExtractRules,
    /// HTTP behaviour and limits.
    pub http: HttpSettings,
    /// File naming.
    pub filename: FilenameTemplate,
    /// Which images are kept.
    pub filter: Filter,
    /// The shared crawl this process takes part in; `None` for a local crawl.
    pub distributed: Option<Distributed>,
    /// Where the binary serves `/metrics` and `/status` while crawling; `None` is off.
    pub metrics: Option<SocketAddr>,
}

/// Which images are kept. An image that fails a filter is skipped, counted by the filter's key,
/// and not stored; a skip is not a failure.
#[derive(Debug, Clone, Default)]
pub struct Filter {
    /// Narrowest image kept, in pixels (0: any).
    pub min_width: u32,
    /// Lowest image kept, in pixels (0: any).
    pub min_height: u32,
    /// Smallest image kept, in bytes (0: any).
    pub min_bytes: u64,
    /// Largest image kept, in bytes.
    pub max_bytes: Option<u64>,
    /// Image URLs matching any of these are not downloaded.
    pub exclude: Vec<Regex>,
}

impl Filter {
    /// The `filter.exclude` pattern `url` matches, if any.
    pub fn excluded(&self, url: &Url) -> Option<&Regex> {
        self.exclude.iter().find(|r| r.is_match(url.as_str()))
    }

    /// Why an image of this size is not kept (the filter key), once its dimensions are known.
    pub fn too_small(&self, width: u32, height: u32) -> Option<&'static str> {
        if width < self.min_width {
            Some("filter.min_width")
        } else if height < self.min_height {
            Some("filter.min_height")
        } else {
            None
        }
    }

    /// Why an image of `bytes` bytes is not kept (the filter key); `complete` is false while
    /// more may come (then only the upper bound applies).
    pub fn wrong_size(&self, bytes: u64, complete: bool) -> Option<&'static str> {
        if self.max_bytes.is_some_and(|max| bytes > max) {
            Some("filter.max_bytes")
        } else if complete && bytes < self.min_bytes {
            Some("filter.min_bytes")
        } else {
            None
        }
    }
}

/// Actor and thread counts.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Workers {
    /// PageFetcher actors.
    pub fetchers: NonZeroUsize,
    /// ImageSaver actors.
    pub savers: NonZeroUsize,
    /// DiskWriter threads.
    pub writers: NonZeroUsize,
    /// Arbiter threads the page fetchers are spread over (resolved: never 0).
    pub threads: NonZeroUsize,
    /// Waiting pages, and waiting images, kept in memory; more wait in the state database and
    /// are read back as the queue drains, so memory does not grow with the size of the crawl.
    pub frontier_in_memory: NonZeroUsize,
}

/// What may be crawled.
#[derive(Debug, Clone)]
pub struct Scope {
    /// What may be requested: lower-case `host` (any port) or `host:port` (that port only). The
    /// default, from the start URLs, is each start URL's site: `host:80` and `host:443` for a
    /// start URL on a default port (http and https of one host are one site), `host:port` for
    /// one on another port.
    pub allowed_hosts: BTreeSet<String>,
    /// Link hops from a start page; `None` is unlimited.
    pub max_depth: Option<u32>,
    /// Pages fetched in total; `None` is unlimited.
    pub max_pages: Option<u64>,
    /// A followed link must match one of these, when any.
    pub include: Vec<Regex>,
    /// A followed link must match none of these.
    pub exclude: Vec<Regex>,
    /// Longest URL requested, in bytes.
    pub max_url_length: usize,
    /// Lower-case names of query parameters removed from every URL.
    pub strip_query: BTreeSet<String>,
    /// The trap rule's limit (see [`crate::trap`]); 0 is off.
    pub trap_pages: u32,
}

impl Scope {
    /// Whether `url` is on an allowed site (and is http or https): its host is allowed on any
    /// port, or its host and port (the scheme's default when not written) are.
    pub fn host_allowed(&self, url: &Url) -> bool {
        if !matches!(url.scheme(), "http" | "https") {
            return false;
        }
        let (Some(host), Some(port)) = (url.host_str(), url.port_or_known_default()) else {
            return false;
        };
        self.allowed_hosts.contains(host) || self.allowed_hosts.contains(&format!("{host}:{port}"))
    }

    /// The form of `url` that is deduplicated and requested: the parameters of `strip_query`
    /// removed, from the query and from path segments (`;jsessionid=...`). `None` when it is
    /// longer than `max_url_length` (a trap or a hostile page).
    pub fn canonical(&self, url: Url) -> Option<Url> {
        let strip = |name: &str| self.strip_query.contains(&name.to_ascii_lowercase());
        let url = urls::strip_path_params(urls::strip_query(url, strip), strip);
        (url.as_str().len() <= self.max_url_length).then_some(url)
    }

    /// Whether a discovered link should be followed as a page (host, include and exclude rules).
    pub fn follow_allowed(&self, url: &Url) -> bool {
        let s = url.as_str();
        self.host_allowed(url)
            && (self.include.is_empty() || self.include.iter().any(|r| r.is_match(s)))
            && !self.exclude.iter().any(|r| r.is_match(s))
    }
}

/// One image rule with its selector compiled.
#[derive(Debug, Clone)]
pub struct ImageRule {
    /// Elements holding image URLs.
    pub selector: Selector,
    /// Attributes tried in order.
    pub attrs: Vec<String>,
}

/// Extraction rules with compiled selectors.
#[derive(Debug, Clone)]
pub struct ExtractRules {
    /// Image rules, applied in order.
    pub images: Vec<ImageRule>,
    /// Links to follow.
    pub follow: Selector,
    /// The item around an image carrying its caption.
    pub item: Selector,
    /// The caption inside the item.
    pub name: Selector,
    /// Most images taken from one page.
    pub max_images_per_page: usize,
    /// Most links taken from one page.
    pub max_links_per_page: usize,
    /// Longest time parsing and reading one page may take.
    pub parse_timeout: Duration,
}

impl Default for ExtractRules {
    /// The default rules of `config/default.toml`.
    fn default() -> Self {
        RawSettings::default()
            .extract
            .compile()
            .expect("the built-in extraction rules are valid selectors")
    }
}

/// HTTP behaviour and limits.
#[derive(Debug, Clone)]
pub struct HttpSettings {
    /// User-Agent header value.
    pub user_agent: String,
    /// Total time for one request, body included: a server dripping bytes cannot keep a download
    /// alive beyond it.
    pub timeout: Duration,
    /// Time to connect.
    pub connect_timeout: Duration,
    /// Time from sending a request to its response head (at most `timeout`).
    pub head_timeout: Duration,
    /// Extra attempts after a retryable failure.
    pub retries: u32,
    /// First retry's backoff; it doubles with each further attempt (with jitter).
    pub retry_backoff: Duration,
    /// Longest server-requested wait honoured: a longer `Retry-After` fails the URL at once, and a
    /// longer `Crawl-delay` is cut to this.
    pub max_wait: Duration,
    /// Redirects followed per request.
    pub max_redirects: u32,
    /// Largest page body accepted, in bytes.
    pub max_page_bytes: u64,
    /// Largest image body accepted, in bytes.
    pub max_image_bytes: u64,
    /// Requests in flight per host.
    pub per_host_concurrency: NonZeroUsize,
    /// Pause between request starts to one host.
    pub delay: Duration,
    /// Respect robots.txt.
    pub obey_robots: bool,
    /// Refuse requests, redirects included, to loopback, private and link-local addresses, after
    /// DNS (see [`crate::netguard`]).
    pub block_private: bool,
}

impl Settings {
    /// Loads, merges and validates configuration from its layers. See [`ConfigSources`].
    pub fn load(sources: &ConfigSources) -> Result<Settings, SettingsError> {
        sources.load()
    }

    /// Settings for crawling `start_urls` into `out_dir` with every other key at its default.
    pub fn for_urls<I, S>(
        start_urls: I,
        out_dir: impl Into<PathBuf>,
    ) -> Result<Settings, SettingsError>
    where
        I: IntoIterator<Item = S>,
        S: Into<String>,
    {
        RawSettings {
            start_urls: start_urls.into_iter().map(Into::into).collect(),
            out_dir: out_dir.into(),
            ..RawSettings::default()
        }
        .validate()
    }
}

/// A validation failure before its origin is known: the key and the message.
type KeyError = (&'static str, String);

fn bad(key: &'static str, message: impl fmt::Display) -> KeyError {
    (key, message.to_string())
}

/// A positive, finite number of seconds (fractions allowed, so tests can use short times).
fn seconds(key: &'static str, secs: f64) -> Result<Duration, KeyError> {
    if !(secs.is_finite() && secs > 0.0 && secs <= 1e9) {
        return Err(bad(
            key,
            format!("must be a number of seconds above 0, not {secs}"),
        ));
    }
    Ok(Duration::from_secs_f64(secs))
}

fn non_zero(key: &'static str, n: usize) -> Result<NonZeroUsize, KeyError> {
    NonZeroUsize::new(n).ok_or_else(|| bad(key, "must be at least 1"))
}

impl RawSettings {
    /// Validates into [`Settings`]; errors name the key, with the origin reported as the default
    /// layer. [`ConfigSources::load`] replaces it with the layer that really set the key.
    pub fn validate(&self) -> Result<Settings, SettingsError> {
        self.validate_keys()
            .map_err(|(key, message)| SettingsError {
                key: key.to_string(),
                origin: Origin::Default,
                message,
            })
    }

    fn validate_keys(&self) -> Result<Settings, KeyError> {
        let mut start_urls = Vec::new();
        for s in &self.start_urls {
            start_urls.push(parse_start_url("start_urls", s)?);
        }
        start_urls.extend(self.template_pages()?);
        if start_urls.is_empty() {
            return Err(bad(
                "start_urls",
                "no start URL: give one on the command line, in `start_urls`, or with `page_template` and `pages`",
            ));
        }
        let mut seen = BTreeSet::new();
        start_urls.retain(|u| seen.insert(u.as_str().to_string()));
        let threads = match self.threads {
            0 => std::thread::available_parallelism().map_or(1, NonZeroUsize::get),
            n => n,
        };
        let workers = Workers {
            fetchers: non_zero("fetchers", self.fetchers)?,
            savers: non_zero("savers", self.savers)?,
            writers: non_zero("writers", self.writers)?,
            threads: non_zero("threads", threads)?,
            frontier_in_memory: non_zero("frontier_in_memory", self.frontier_in_memory)?,
        };
        if self.out_dir.as_os_str().is_empty() {
            return Err(bad("out_dir", "must not be empty"));
        }
        let mut http = self.http.validate()?;
        http.block_private = match self.http.block_private_addresses.trim() {
            "auto" => start_urls.iter().all(crate::netguard::looks_public),
            "on" | "true" => true,
            "off" | "false" => false,
            other => {
                return Err(bad(
                    "http.block_private_addresses",
                    format!("`{other}` is not one of \"auto\", \"on\", \"off\""),
                ))
            }
        };
        Ok(Settings {
            scope: self.scope.validate(&start_urls)?,
            start_urls,
            out_dir: self.out_dir.clone(),
            workers,
            extract: self.extract.compile()?,
            http,
            filename: FilenameTemplate::parse(&self.output.filename)
                .map_err(|e| bad("output.filename", e))?,
            filter: self.filter.validate()?,
            distributed: self.distributed.validate()?,
            metrics: match self.metrics.trim() {
                "" => None,
                a => Some(a.parse().map_err(|_| {
                    bad(
                        "metrics",
                        format!("`{a}` is not an IP address and port, e.g. 127.0.0.1:9898"),
                    )
                })?),
            },
        })
    }

    fn template_pages(&self) -> Result<Vec<Url>, KeyError> {
        let (template, range) = match (&self.page_template, &self.pages) {
            (None, None) => return Ok(Vec::new()),
            (Some(t), Some(r)) => (t, r),
            (Some(_), None) => {
                return Err(bad("pages", "`page_template` is set but `pages` is not"))
            }
            (None, Some(_)) => {
                return Err(bad(
                    "page_template",
                    "`pages` is set but `page_template` is not",
                ))
            }
        };
        if !template.contains("{page}") {
            return Err(bad(
                "page_template",
                "must contain the placeholder `{page}`",
            ));
        }
        let [first, last] = range[..] else {
            return Err(bad("pages", "must be two numbers: [first, last]"));
        };
        if first > last {
            return Err(bad(
                "pages",
                format!("first page {first} is after last page {last}"),
            ));
        }
        (first..=last)
            .map(|n| parse_start_url("page_template", &template.replace("{page}", &n.to_string())))
            .collect()
    }
}

fn parse_start_url(key: &'static str, s: &str) -> Result<Url, KeyError> {
    let url = Url::parse(s).map_err(|e| bad(key, format!("`{s}` is not a URL: {e}")))?;
    if !matches!(url.scheme(), "http" | "https") || url.host_str().is_none() {
        return Err(bad(key, format!("`{s}` is not an http or https URL")));
    }
    Ok(urls::normalize(url))
}

impl RawScope {
    fn validate(&self, start_urls: &[Url]) -> Result<Scope, KeyError> {
        let mut allowed_hosts = BTreeSet::new();
        for h in &self.allowed_hosts {
            // `host` or `host:port`, parsed as the authority of a URL (IPv6 in brackets).
            let parsed = Url::parse(&format!("http://{}/", h.trim()))
                .ok()
                .filter(|u| u.username().is_empty() && u.path() == "/" && u.query().is_none())
                .and_then(|u| Some((u.host_str()?.to_string(), u.port())))
                .ok_or_else(|| {
                    bad(
                        "scope.allowed_hosts",
                        format!("`{h}` is not a host name or host:port"),
                    )
                })?;
            allowed_hosts.insert(match parsed {
                (host, Some(port)) => format!("{host}:{port}"),
                // The URL parser drops :80; a port written out is kept.
                (host, None) if h.trim().ends_with(":80") => format!("{host}:80"),
                (host, None) => host,
            });
        }
        if allowed_hosts.is_empty() {
            for u in start_urls {
                let Some(host) = u.host_str() else { continue };
                match u.port() {
                    Some(port) => {
                        allowed_hosts.insert(format!("{host}:{port}"));
                    }
                    None => {
                        allowed_hosts.insert(format!("{host}:80"));
                        allowed_hosts.insert(format!("{host}:443"));
                    }
                }
            }
        }
        Ok(Scope {
            allowed_hosts,
            max_depth: self.max_depth,
            max_pages: self.max_pages,
            include: compile_regexes("scope.include", &self.include)?,
            exclude: compile_regexes("scope.exclude", &self.exclude)?,
            max_url_length: match self.max_url_length {
                n if n < 16 => return Err(bad("scope.max_url_length", "must be at least 16")),
                n => n,
            },
            strip_query: self
                .strip_query
                .iter()
                .map(|p| p.trim().to_ascii_lowercase())
                .filter(|p| !p.is_empty())
                .collect(),
            trap_pages: self.trap_pages,
        })
    }
}

impl RawFilter {
    fn validate(&self) -> Result<Filter, KeyError> {
        let max_bytes = (self.max_bytes > 0).then_some(self.max_bytes);
        if max_bytes.is_some_and(|max| max < self.min_bytes) {
            return Err(bad(
                "filter.max_bytes",
                format!(
                    "{} is below filter.min_bytes ({}): no image could be kept",
                    self.max_bytes, self.min_bytes
                ),
            ));
        }
        Ok(Filter {
            min_width: self.min_width,
            min_height: self.min_height,
            min_bytes: self.min_bytes,
            max_bytes,
            exclude: compile_regexes("filter.exclude", &self.exclude)?,
        })
    }
}

fn compile_regexes(key: &'static str, patterns: &[String]) -> Result<Vec<Regex>, KeyError> {
    patterns
        .iter()
        .map(|p| Regex::new(p).map_err(|e| bad(key, format!("`{p}` is not a valid regex: {e}"))))
        .collect()
}

fn selector(key: &'static str, s: &str) -> Result<Selector, KeyError> {
    Selector::parse(s).map_err(|e| bad(key, format!("`{s}` is not a valid CSS selector: {e}")))
}

impl RawExtract {
    fn compile(&self) -> Result<ExtractRules, KeyError> {
        let mut images = Vec::new();
        for rule in &self.images {
            if rule.attrs.is_empty() {
                return Err(bad(
                    "extract.images",
                    format!("rule `{}` lists no attrs", rule.selector),
                ));
            }
            images.push(ImageRule {
                selector: selector("extract.images", &rule.selector)?,
                attrs: rule.attrs.clone(),
            });
        }
        Ok(ExtractRules {
            images,
            follow: selector("extract.follow", &self.follow)?,
            item: selector("extract.item", &self.item)?,
            name: selector("extract.name", &self.name)?,
            max_images_per_page: match self.max_images_per_page {
                0 => return Err(bad("extract.max_images_per_page", "must be at least 1")),
                n => n,
            },
            max_links_per_page: match self.max_links_per_page {
                0 => return Err(bad("extract.max_links_per_page", "must be at least 1")),
                n => n,
            },
            parse_timeout: seconds("extract.parse_timeout_secs", self.parse_timeout_secs)?,
        })
    }
}

impl RawHttp {
    fn validate(&self) -> Result<HttpSettings, KeyError> {
        let user_agent = self
            .user_agent
            .replace("{version}", env!("CARGO_PKG_VERSION"));
        if user_agent.trim().is_empty() || user_agent.chars().any(char::is_control) {
            return Err(bad("http.user_agent", "must be non-empty printable text"));
        }
        let timeout = seconds("http.timeout_secs", self.timeout_secs)?;
        let connect_timeout = seconds("http.connect_timeout_secs", self.connect_timeout_secs)?;
        let head_timeout = seconds("http.head_timeout_secs", self.head_timeout_secs)?;
        let max_wait = seconds("http.max_wait_secs", self.max_wait_secs)?;
        if self.max_page_bytes == 0 {
            return Err(bad("http.max_page_bytes", "must be at least 1"));
        }
        if self.max_image_bytes == 0 {
            return Err(bad("http.max_image_bytes", "must be at least 1"));
        }
        Ok(HttpSettings {
            user_agent,
            timeout,
            connect_timeout,
            head_timeout: head_timeout.min(timeout),
            retries: self.retries,
            retry_backoff: Duration::from_millis(self.retry_backoff_ms),
            max_wait,
            max_redirects: self.max_redirects,
            max_page_bytes: self.max_page_bytes,
            max_image_bytes: self.max_image_bytes,
            per_host_concurrency: non_zero("http.per_host_concurrency", self.per_host_concurrency)?,
            delay: Duration::from_millis(self.delay_ms),
            obey_robots: self.obey_robots,
            // Decided with the start URLs, in `validate_keys`.
            block_private: false,
        })
    }
}
