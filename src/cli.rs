//! Command-line definitions (clap). Flags only become configuration overrides, merged with the
//! other layers by [`crate::settings`]; nothing here decides behaviour.

use std::collections::HashMap;
use std::path::PathBuf;

use clap::{Args, Parser, Subcommand};

use crate::settings::ConfigSources;

/// imgcrawl: a fast, polite, crash-safe image crawler.
#[derive(Debug, Parser)]
#[command(name = "imgcrawl", version, about, propagate_version = true)]
pub struct Cli {
    /// What to do.
    #[command(subcommand)]
    pub command: Command,
    /// Only errors and the final summary (no progress display, no status lines).
    #[arg(short, long, global = true, conflicts_with = "verbose")]
    pub quiet: bool,
    /// More log detail: -v debug, -vv trace (RUST_LOG, when set, wins).
    #[arg(short, long, global = true, action = clap::ArgAction::Count)]
    pub verbose: u8,
}

/// The subcommands.
#[derive(Debug, Subcommand)]
pub enum Command {
    /// Crawl a site: start URLs from the arguments, the config file or the environment.
    Crawl(CrawlArgs),
    /// Serve the bundled sample gallery on 127.0.0.1 (free port) and crawl it.
    Demo(DemoArgs),
    /// Serve only the sample gallery, to try configurations against.
    ServeSample(ServeArgs),
    /// Rewrite OUT/manifest.jsonl from the crawl state in OUT/.imgcrawl/state.db, or print the
    /// whole manifest of a shared crawl (--redis URL --crawl-id ID) as JSON lines.
    Manifest(ManifestArgs),
    /// Write the sample gallery as static files, to serve with any web server (the benchmark).
    SampleSite(SampleSiteArgs),
    /// Fetch one page with the configured rules and show what a crawl would do with it: each
    /// image with its name and file path, each link followed or skipped and why. Saves nothing.
    Check(CheckArgs),
    /// Print the configuration `crawl` would use with the same arguments, as TOML, with where each
    /// value comes from (default, file, environment variable or flag).
    Config(CrawlArgs),
    /// Serve a gallery of the crawl in OUT in the browser (finished or running): thumbnails,
    /// search and filters, duplicates, failures, skipped URLs and per-host counters.
    View(ViewArgs),
}

/// `imgcrawl view`.
#[derive(Debug, Args)]
pub struct ViewArgs {
    /// The crawl's output directory.
    #[arg(value_name = "OUT")]
    pub out_dir: PathBuf,
    /// Address to serve on; loopback by default, as there is no authentication (port 0: any
    /// free port).
    #[arg(long, value_name = "IP:PORT", default_value = "127.0.0.1:8899")]
    pub addr: String,
}

/// Flags shared by every command that crawls.
#[derive(Debug, Args)]
pub struct CommonArgs {
    /// Configuration file (TOML); see config/default.toml for every key.
    #[arg(short = 'c', long = "config", value_name = "FILE")]
    pub config: Option<PathBuf>,
    /// Output directory (key out_dir).
    #[arg(short = 'o', long = "out-dir", value_name = "DIR")]
    pub out_dir: Option<PathBuf>,
    /// PageFetcher actors (key fetchers).
    #[arg(long, value_name = "N")]
    pub fetchers: Option<u32>,
    /// ImageSaver actors, i.e. downloads at once (key savers).
    #[arg(long, value_name = "N")]
    pub savers: Option<u32>,
    /// DiskWriter threads (key writers).
    #[arg(long, value_name = "N")]
    pub writers: Option<u32>,
    /// Arbiter threads for the page fetchers, 0 = one per core (key threads).
    #[arg(long, value_name = "N")]
    pub threads: Option<u32>,
    /// Pages to fetch in total (key scope.max_pages).
    #[arg(long, value_name = "N")]
    pub max_pages: Option<u64>,
    /// Link hops to follow from a start page (key scope.max_depth).
    #[arg(long, value_name = "N")]
    pub max_depth: Option<u32>,
    /// Serve /metrics (Prometheus) and /status (JSON) on this address while crawling, e.g.
    /// 127.0.0.1:9898 (key metrics).
    #[arg(long, value_name = "IP:PORT")]
    pub metrics: Option<String>,
    /// A header sent with every request, "Name: value"; repeat for more (table http.headers).
    #[arg(short = 'H', long = "header", value_name = "NAME: VALUE", value_parser = parse_header)]
    pub headers: Vec<(String, String)>,
    /// A Netscape cookies.txt whose cookies are sent where they belong (key http.cookies_file).
    #[arg(long = "cookies", value_name = "FILE")]
    pub cookies: Option<PathBuf>,
    /// Proxy for every request: http://[user:password@]host:port, socks5:// or socks5h://;
    /// "none" ignores the proxy environment variables (key http.proxy).
    #[arg(long, value_name = "URL")]
    pub proxy: Option<String>,
    /// A PEM file of CA certificates to trust besides the system's (key http.ca_file).
    #[arg(long = "ca-file", value_name = "FILE")]
    pub ca_file: Option<PathBuf>,
}

/// Reads `-H "Name: value"`.
fn parse_header(s: &str) -> Result<(String, String), String> {
    match s.split_once(':') {
        Some((name, value)) if !name.trim().is_empty() && !name.contains('.') => {
            Ok((name.trim().to_string(), value.trim().to_string()))
        }
        _ => Err(format!("expected \"Name: value\", not `{s}`")),
    }
}

/// `imgcrawl crawl`.
#[derive(Debug, Args)]
pub struct CrawlArgs {
    /// Pages to start from; replaces start_urls of the configuration.
    #[arg(value_name = "START_URL")]
    pub start_urls: Vec<String>,
    /// Start over instead of resuming the crawl in the output directory (its state and records
    /// are removed; image files are kept and reused when the same bytes come again).
    #[arg(long, conflicts_with = "update")]
    pub fresh: bool,
    /// Run a finished crawl again and fetch only what is new: each page is asked for only if it
    /// changed, saved images are never requested again (key update).
    #[arg(long)]
    pub update: bool,
    /// With --update: ask for saved images again too, each with its ETag / Last-Modified, and
    /// replace a file only when its bytes changed, keeping the old one as NAME.prev.EXT (key
    /// revalidate_images).
    #[arg(long)]
    pub revalidate_images: bool,
    /// Take part in a crawl shared through Redis: redis://[user:password@]host[:port][/db] or
    /// rediss:// (key distributed.redis_url).
    #[arg(long = "redis", value_name = "URL")]
    pub redis: Option<String>,
    /// The shared crawl's id, the same for every process of it (key distributed.crawl_id).
    #[arg(long, value_name = "ID")]
    pub crawl_id: Option<String>,
    /// What this process does in a shared crawl: pages, images or all (key distributed.role).
    #[arg(long, value_name = "ROLE")]
    pub role: Option<String>,
    /// Print the final counters as JSON on stdout instead of the summary table.
    #[arg(long)]
    pub json: bool,
    /// Configuration flags.
    #[command(flatten)]
    pub common: CommonArgs,
}

impl CrawlArgs {
    /// The configuration layers: the `-c` file, `env`, and the flags (start URLs included).
    pub fn sources(&self, env: HashMap<String, String>) -> ConfigSources {
        let mut s = self.common.sources(env);
        if !self.start_urls.is_empty() {
            s.flag("start_urls", "START_URL", self.start_urls.clone());
        }
        let shared = [
            ("distributed.redis_url", "--redis", &self.redis),
            ("distributed.crawl_id", "--crawl-id", &self.crawl_id),
            ("distributed.role", "--role", &self.role),
        ];
        for (key, flag, value) in shared {
            if let Some(v) = value {
                s.flag(key, flag, v.clone());
            }
        }
        if self.update {
            s.flag("update", "--update", true);
        }
        if self.revalidate_images {
            s.flag("revalidate_images", "--revalidate-images", true);
        }
        s
    }
}

/// `imgcrawl check`.
#[derive(Debug, Args)]
pub struct CheckArgs {
    /// The page to check (also the crawl's start URL for the scope's default hosts).
    #[arg(value_name = "URL")]
    pub url: String,
    /// Configuration flags.
    #[command(flatten)]
    pub common: CommonArgs,
}

impl CheckArgs {
    /// The configuration layers, with the page as the start URL.
    pub fn sources(&self, env: HashMap<String, String>) -> ConfigSources {
        let mut s = self.common.sources(env);
        s.flag("start_urls", "URL", vec![self.url.clone()]);
        s
    }
}

/// `imgcrawl demo`.
#[derive(Debug, Args)]
pub struct DemoArgs {
    /// Print the final counters as JSON on stdout instead of the summary table.
    #[arg(long)]
    pub json: bool,
    /// Then serve the gallery of the demo crawl (as `imgcrawl view`) until Ctrl-C.
    #[arg(long)]
    pub view: bool,
    /// Where --view serves the gallery.
    #[arg(
        long,
        value_name = "IP:PORT",
        default_value = "127.0.0.1:8899",
        requires = "view"
    )]
    pub view_addr: String,
    /// Configuration flags (the output directory defaults to imgcrawl-demo).
    #[command(flatten)]
    pub common: CommonArgs,
}

/// `imgcrawl manifest`.
#[derive(Debug, Args)]
pub struct ManifestArgs {
    /// The output directory of a crawl.
    #[arg(
        value_name = "OUT",
        required_unless_present = "redis",
        conflicts_with = "redis"
    )]
    pub out_dir: Option<PathBuf>,
    /// The Redis of a shared crawl: print every process's saved images, one JSON line each (with
    /// the process that saved it).
    #[arg(long = "redis", value_name = "URL", requires = "crawl_id")]
    pub redis: Option<String>,
    /// The shared crawl's id.
    #[arg(long, value_name = "ID", requires = "redis")]
    pub crawl_id: Option<String>,
    /// Print (as JSON lines, on stdout) only the images first saved by run N of the crawl (1 is
    /// the first crawl, then one per update), or by the latest run with "last"; the manifest file
    /// is left as it is.
    #[arg(long, value_name = "N|last", conflicts_with_all = ["new", "redis"])]
    pub run: Option<String>,
    /// Print only the images first saved by runs that started at or after SINCE: an RFC 3339
    /// time (2026-12-05T10:00:00Z), a date (2026-12-05, UTC) or a span back from now (2h, 3days).
    #[arg(long, value_name = "SINCE", conflicts_with = "redis")]
    pub new: Option<String>,
    /// List the runs of the crawl: number, kind, start, end, images first saved by each.
    #[arg(long, conflicts_with_all = ["run", "new", "redis"])]
    pub runs: bool,
}

/// `imgcrawl sample-site`.
#[derive(Debug, Args)]
pub struct SampleSiteArgs {
    /// Directory to write the site into (created if missing).
    #[arg(long, value_name = "DIR")]
    pub write: PathBuf,
    /// List pages of the generated gallery.
    #[arg(long, default_value_t = 200)]
    pub pages: u64,
    /// Images per list page.
    #[arg(long, default_value_t = 20)]
    pub per_page: u64,
    /// Extra markup per list and detail page, in KiB (a parse-heavy variant; adds no URLs).
    #[arg(long, default_value_t = 0, value_name = "KIB")]
    pub page_kb: u64,
}

/// `imgcrawl serve-sample`.
#[derive(Debug, Args)]
pub struct ServeArgs {
    /// Port on 127.0.0.1.
    #[arg(long, default_value_t = 8080)]
    pub port: u16,
    /// List pages of the generated gallery.
    #[arg(long, default_value_t = 12)]
    pub pages: u64,
    /// Images per list page.
    #[arg(long, default_value_t = 10)]
    pub per_page: u64,
}

impl CommonArgs {
    /// The configuration layers: the `-c` file, `env`, and these flags.
    pub fn sources(&self, env: HashMap<String, String>) -> ConfigSources {
        let mut s = ConfigSources {
            file: self.config.clone(),
            env,
            flags: Vec::new(),
        };
        if let Some(d) = &self.out_dir {
            s.flag("out_dir", "--out-dir", d.to_string_lossy().into_owned());
        }
        if let Some(a) = &self.metrics {
            s.flag("metrics", "--metrics", a.clone());
        }
        for (name, value) in &self.headers {
            s.flag(&format!("http.headers.{name}"), "--header", value.clone());
        }
        let paths = [
            ("http.cookies_file", "--cookies", &self.cookies),
            ("http.ca_file", "--ca-file", &self.ca_file),
        ];
        for (key, flag, value) in paths {
            if let Some(p) = value {
                s.flag(key, flag, p.to_string_lossy().into_owned());
            }
        }
        if let Some(p) = &self.proxy {
            s.flag("http.proxy", "--proxy", p.clone());
        }
        let numbers = [
            ("fetchers", "--fetchers", self.fetchers.map(u64::from)),
            ("savers", "--savers", self.savers.map(u64::from)),
            ("writers", "--writers", self.writers.map(u64::from)),
            ("threads", "--threads", self.threads.map(u64::from)),
            ("scope.max_pages", "--max-pages", self.max_pages),
            (
                "scope.max_depth",
                "--max-depth",
                self.max_depth.map(u64::from),
            ),
        ];
        for (key, flag, value) in numbers {
            if let Some(v) = value {
                s.flag(key, flag, v);
            }
        }
        s
    }
}
