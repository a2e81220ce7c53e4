//! imgcrawl: a fast, polite, crash-safe image crawler built as an actix actor system.
//!
//! # The map
//! - [`Crawl`] (`crawl.rs`) starts a crawl inside any running actix System and is the handle to it:
//!   subscribe to events, read stats, stop, await the [`CrawlReport`].
//! - [`actors`]: the **Supervisor** owns the crawl (frontier, seen sets, in-flight jobs, retries,
//!   replacement of dead workers, completion); **PageFetcher**s fetch and parse pages on their own
//!   arbiter threads; **ImageSaver**s download and verify images; the **DiskWriter** `SyncArbiter`
//!   does every blocking write; the **Logger** keeps counters and writes the records.
//! - Pure cores the actors call: [`extract`] (HTML to images and links), [`urls`] (normalization),
//!   [`paths`] (safe file names), [`sniff`] (real image type), [`http`] (fetch with limits and error
//!   classification, `Retry-After`), [`frontier`] (queues, seen sets, per-host politeness),
//!   [`robots`] (robots.txt rules per host), [`decode`] (page bytes to text in their charset).
//! - [`settings`]: configuration layers (defaults < file < environment < flags), validated once.
//! - [`records`]: the manifest, error and stats records and the final report.
//! - [`cluster`]: the shared crawl on Redis (key layout, leases, publish and take) that several
//!   processes on several machines join with `distributed.redis_url` and `distributed.crawl_id`.
//! - [`metrics`]: `/metrics` (Prometheus) and `/status` (JSON) of a running crawl.
//! - [`sample_site`]: the bundled gallery served by `imgcrawl demo` and used by the tests.
//!
//! # Example
//! ```no_run
//! # async fn run() -> Result<(), imgcrawl::Error> {
//! let settings = imgcrawl::Settings::for_urls(["http://127.0.0.1:8080/"], "out")?;
//! let crawl = imgcrawl::Crawl::start(settings).await?;   // inside a running actix System
//! let report = crawl.wait().await?;
//! println!("{report}");
//! # Ok(()) }
//! ```
//!
//! The library never creates a System, installs a logger, exits the process or stops the System it
//! runs in.

pub mod activity;
pub mod actors;
pub mod admission;
pub mod check;
pub mod cli;
pub mod cluster;
mod crawl;
pub mod decode;
pub mod error;
pub mod extract;
pub mod fetch;
pub mod frontier;
pub mod http;
pub mod job;
mod kind;
pub mod metrics;
pub mod netguard;
pub mod output;
pub mod paths;
pub mod progress;
pub mod records;
pub mod retry;
pub mod robots;
pub mod sample_site;
pub mod seen;
pub mod settings;
pub mod sniff;
pub mod state;
pub mod trap;
pub mod urls;

pub use actors::logger::CrawlEvent;
pub use crawl::{Crawl, CrawlBuilder};
pub use error::{Error, Failure, FailureKind};
pub use kind::Kind;
pub use records::{CrawlReport, Outcome, Stats};
pub use settings::{ConfigSources, Settings, SettingsError};
