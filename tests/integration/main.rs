//! imgcrawl's integration tests: one binary, every test against real HTTP servers on 127.0.0.1
//! started by the test itself, each in a fresh temporary output directory. Where to look, by the
//! part under test (the pure cores have unit tests beside them in `src/`: admission, retry,
//! trap, output/names, frontier/local, state, extract, robots, urls, paths, sniff):

/// The binary: exit statuses, signals, the demo, closed pipes.
mod binary;
/// The gallery in a real browser: Chromium over WebDriver.
mod browser;
/// `imgcrawl check` (the dry run), and that it agrees with a crawl.
mod check;
/// Configuration layers: file, environment, flags, `imgcrawl config`.
mod config;
/// A whole crawl: every actor together on a local gallery.
mod crawl;
/// The shared frontier: several processes on one crawl through Redis.
mod distributed;
/// The library inside an application's own System.
mod embed;
/// The example configurations in `examples/`.
mod examples;
/// The Supervisor's outcome rules: retries, `Retry-After`, dead workers, failures recorded.
mod failures;
/// Filters (size, dimensions, `filter.exclude`) in the ImageSaver and the admission.
mod filters;
/// Hostile servers and pages: the PageFetcher and ImageSaver's limits.
mod hostile;
/// `/metrics` and `/status`.
mod metrics;
/// Real programs between crawler and site: nginx with TLS from a test CA and HTTP/2, tinyproxy.
mod network;
/// The output directory (its owner, the DiskWriter): names, lock, links, full disks.
mod outdir;
/// Politeness: per-host concurrency, delays, robots.txt.
mod polite;
/// Resuming after a stop or kill -9: the state database and the group commit.
mod resume;
/// Update runs that ask for saved images again: replaced files, kept old ones, kill -9.
mod revalidate;
/// Sites behind a login: cookies, headers per host, Referer, the session across kill -9.
mod session;
/// Update runs of a crawl shared through Redis.
mod shared_update;
/// Sitemaps: robots.txt lines, indexes, gzip, image sitemaps, `/sitemap.xml`.
mod sitemaps;
/// Shared helpers: the test HTTP server, settings, reading records.
mod support;
/// The trap rule and the scope in whole crawls.
mod traps;
/// Update runs (`crawl --update`) on a site that changes between runs.
mod update;
/// The gallery (`imgcrawl view`) over HTTP: pages, search, thumbnails, what it refuses.
mod view;
