//! Configuration in two stages: [`RawSettings`] is what serde reads from the layers (defaults, file,
//! environment, flags); [`Settings`] is the validated, typed result handed to the actors, one
//! sub-struct per concern. Validation happens once, here; nothing reads configuration afterwards.

mod distributed;
mod load;
mod raw;
mod validate;

use std::collections::BTreeSet;
use std::net::SocketAddr;
use std::num::NonZeroUsize;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use regex::Regex;
use scraper::Selector;
use url::Url;

pub use distributed::{redact, Distributed, RawDistributed, Role};
pub use load::{env_var, ConfigSources, FlagOverride, Origin, DEFAULT_TOML, ENV_PREFIX};
pub use raw::{
    RawExtract, RawFilter, RawHostHttp, RawHttp, RawImageRule, RawOutput, RawScope, RawSettings,
};
use validate::{bad, seconds, KeyError};

use crate::http::{Headers, Jar, ProxyRoutes, Referer};
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
    /// Run a finished crawl again, asking for each page only if it changed and downloading only
    /// new images (an unfinished crawl is resumed either way).
    pub update: bool,
    /// In an update, ask for every saved image again with its validators, replacing a file only
    /// when its bytes changed (the old ones kept beside it); without it an update never requests a
    /// saved image.
    pub revalidate_images: bool,
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
    /// Read the sites' sitemaps: the `Sitemap:` lines of robots.txt, or `/sitemap.xml`.
    pub sitemaps: bool,
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
    /// Headers of `[http.headers]` and `[http.host."NAME".headers]`.
    pub headers: Headers,
    /// What image requests send as `Referer`.
    pub referer: Referer,
    /// The session's cookies, shared by every clone of these settings (so by every worker).
    pub cookies: Jar,
    /// Which proxy each request goes through.
    pub proxy: ProxyRoutes,
    /// The TLS configuration: trusted roots (system, built-in, `http.ca_file`) and ALPN.
    pub tls: Arc<rustls::ClientConfig>,
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
