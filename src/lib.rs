//! imgcrawl: a fast, polite, crash-safe image crawler built as an actix actor system.
//!
//! # The map
//! - [`Crawl`] (`crawl.rs`) starts a crawl inside any running actix System and is the handle to it:
//!   subscribe to events, read stats, stop, await the [`CrawlReport`]. It is where the two modes
//!   part: a [`frontier::LocalFrontier`] or a [`frontier::SharedFrontier`].
//! - [`actors`]: the **Supervisor** runs the one crawl loop over the cores below (in-flight jobs,
//!   dispatch, replacement of dead workers, group commit, completion); **PageFetcher**s fetch and
//!   parse pages on their own arbiter threads; **ImageSaver**s download and verify images; the
//!   **DiskWriter** `SyncArbiter` does every blocking write through [`output`]; the **Logger**
//!   keeps counters and writes the error and skip records.
//! - Pure cores, unit-tested without a System: [`admission`] (which URLs become jobs; shared with
//!   [`check`], the dry run), [`retry`] (retry, pause, give up), [`trap`] (the trap rule),
//!   [`output::names`] (the name index), [`extract`] (HTML to images and links), [`urls`]
//!   (normalization), [`paths`] (safe file names), [`sniff`] (real image type), [`robots`]
//!   (robots.txt rules), [`sitemap`] (sitemaps read as a stream), [`decode`] (page bytes to text),
//!   [`job`] and [`seen`] (jobs, seen sets).
//! - [`frontier`]: where waiting work lives (the seam: in this process with the state database, or
//!   in Redis), per-host queues and politeness.
//! - I/O: [`http`] (the client of each thread: headers, cookie jar, Referer, proxies, trusted
//!   roots and HTTP/2; requests with limits and error classification), [`fetch`] (a page or
//!   robots.txt, as crawl and check make them), [`output`] (the output directory's only owner:
//!   layout, files, manifest), [`state`] (the SQLite state), [`cluster`] (the shared crawl on
//!   Redis: key layout, leases, publish and take), [`netguard`] (private-address blocking).
//! - [`settings`]: configuration layers (defaults < file < environment < flags), validated once.
//! - [`records`]: the manifest, error and stats records, the final report and the exit status;
//!   [`tally`]: the counters the events add up to;
//!   [`error`]: fatal errors with their sources, and per-URL failures.
//! - [`activity`] and [`metrics`]: what a running crawl is doing; `/metrics` (Prometheus) and
//!   `/status` (JSON).
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
pub mod sitemap;
pub mod sniff;
pub mod state;
pub mod tally;
pub mod trap;
pub mod urls;
pub mod view;

pub use actors::logger::CrawlEvent;
pub use crawl::{Crawl, CrawlBuilder};
pub use error::{Error, Failure, FailureKind};
pub use kind::Kind;
pub use records::{CrawlReport, Outcome, Stats};
pub use settings::{ConfigSources, Settings, SettingsError};
