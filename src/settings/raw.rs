//! The configuration as written: every key of `config/default.toml`, read by serde from the layers
//! (defaults, file, environment, flags) and untyped beyond that.

use std::collections::BTreeMap;
use std::path::PathBuf;

use serde::{Deserialize, Serialize};

use super::{load, RawDistributed};

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
    /// Run a finished crawl again to find what is new.
    pub update: bool,
    /// In an update, ask for saved images again too (conditionally).
    pub revalidate_images: bool,
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
    /// Read the sites' sitemaps (robots.txt `Sitemap:` lines, `/sitemap.xml`).
    pub sitemaps: bool,
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
    /// Headers sent with every request (name = value).
    #[serde(default)]
    pub headers: BTreeMap<String, String>,
    /// Per-host settings, by host name (`img.example.com`, or `*.example.com`).
    #[serde(default)]
    pub host: BTreeMap<String, RawHostHttp>,
    /// What image requests send as Referer: "page", "origin" or "none".
    pub referer: String,
    /// A Netscape cookies.txt to load; empty is none.
    pub cookies_file: String,
    /// Proxy URL for every request; empty reads the environment; "none" is no proxy.
    pub proxy: String,
    /// Hosts reached without the proxy; empty reads NO_PROXY.
    pub no_proxy: Vec<String>,
    /// A PEM file of CA certificates trusted besides the system's; empty is none.
    pub ca_file: String,
}

/// `[http.host."NAME"]` as written.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawHostHttp {
    /// Headers for this host; they win over `[http.headers]` of the same name.
    #[serde(default)]
    pub headers: BTreeMap<String, String>,
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
