//! Logger: the crawl's one voice. It receives every [`CrawlEvent`], keeps the counters, turns
//! failures and skipped URLs into `errors.jsonl` and `skipped.jsonl` lines (written in batches
//! through the DiskWriter; `manifest.jsonl` is written by the commit that saves each image),
//! prints a status line every few seconds through `log`, forwards events to subscribers, and on
//! [`Finish`] flushes everything, writes `stats.json` and returns the report.
//!
//! Takes: [`CrawlEvent`] (fire-and-forget, from the Supervisor), [`Subscribe`], [`GetStats`],
//! [`Finish`]. Record flushes block its mailbox while they run (`ctx.wait`), so records keep their
//! order and `Finish` sees every earlier event written.

use std::sync::Arc;
use std::time::{Duration, Instant};

use actix::prelude::*;
use url::Url;

use super::disk_writer::{AppendRecords, DiskWriter, WriteFileAtomic};
use crate::error::Error;
use crate::output::RecordFile;
use crate::records::{CrawlReport, ErrorRow, ManifestRow, Outcome, SkipRow, Stats, WholeCrawl};
use crate::settings::Settings;
pub use crate::tally::Tally;
use crate::Kind;

/// Something that happened in a crawl. Subscribers receive every event.
#[derive(Debug, Clone, Message)]
#[rtype(result = "()")]
pub enum CrawlEvent {
    /// The actors are running.
    Started {
        /// PageFetcher actors started.
        fetchers: usize,
        /// ImageSaver actors started.
        savers: usize,
        /// DiskWriter threads started.
        writers: usize,
        /// Arbiter threads the page fetchers are spread over (the savers run on the Supervisor's).
        threads: usize,
        /// Images an earlier run saved, which will not be downloaded again.
        previously_saved: usize,
        /// When an earlier run of this crawl is resumed: the pages it left waiting.
        resumed_pages: Option<usize>,
        /// Which run of the crawl this is (1 for the first crawl, one more for each update).
        run: u64,
        /// Whether it is an update.
        update: bool,
    },
    /// A page was fetched and parsed.
    PageFetched {
        /// Its URL.
        url: Url,
        /// Link hops from a start page.
        depth: u32,
        /// New images it queued.
        images: usize,
        /// New pages it queued.
        links: usize,
        /// Image elements left out over `extract.max_images_per_page`.
        images_dropped: usize,
        /// Links left out over `extract.max_links_per_page`.
        links_dropped: usize,
        /// Links not followed: off the allowed sites, or excluded by `scope.include`/`exclude`.
        links_out_of_scope: usize,
        /// Whether an earlier run fetched it, and if so whether it changed.
        change: PageChange,
    },
    /// An update found a page an earlier run fetched gone (404 or 410); its images are kept.
    PageGone {
        /// Its URL.
        url: Url,
        /// The status it answered.
        status: u16,
    },
    /// A page or an image (the row's `kind`) failed for good.
    Failed(ErrorRow),
    /// An image was stored, or recognised as bytes already stored (`duplicate_of` is set).
    ImageSaved(Box<ManifestRow>),
    /// An image an earlier run saved was found again and skipped.
    ImageAlreadySaved {
        /// Its URL.
        url: Url,
    },
    /// A saved image asked for again (`--revalidate-images`) is as it was (a 304 or the same
    /// bytes), or gone; new bytes are an [`CrawlEvent::ImageSaved`] whose row has `previous`.
    ImageRevalidated {
        /// Its URL.
        url: Url,
        /// The status (404 or 410) when it is gone; its file is kept.
        gone: Option<u16>,
    },
    /// A page or image was not requested, or not kept, on purpose: robots.txt disallows it, the
    /// trap rule ended its chain, a redirect led off the allowed sites, or a `[filter]` key
    /// excluded it before any request or abandoned it as soon as its size or dimensions showed it.
    /// Not a failure.
    Skipped {
        /// The record for `skipped.jsonl`.
        row: SkipRow,
        /// For the trap rule, the URL shape whose budget was spent.
        shape: Option<String>,
    },
    /// An image on a host outside the scope was skipped.
    ImageOutOfScope {
        /// Its URL.
        url: Url,
    },
    /// A retryable failure; the job waits and is tried again.
    Retrying {
        /// The URL.
        url: Url,
        /// The attempt that just failed (1-based).
        attempt: u32,
        /// Why it failed.
        error: String,
    },
    /// A worker died and was replaced.
    WorkerRestarted {
        /// Which pool.
        kind: Kind,
        /// Its slot in the pool.
        slot: usize,
    },
    /// Periodic snapshot of the Supervisor's queues.
    Progress {
        /// Pages waiting in the frontier.
        pages_waiting: usize,
        /// Images waiting in the frontier.
        images_waiting: usize,
        /// Requests in flight, and images stored but not yet committed as saved.
        in_flight: usize,
    },
}

/// How a page fetched compares with what earlier runs saw of it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PageChange {
    /// No earlier run fetched it.
    New,
    /// An earlier run fetched it and it came back whole (changed, or the server cannot tell).
    Changed,
    /// It answered 304: what it held was taken from the state.
    Unchanged,
}

impl PageChange {
    /// The shared crawl's counter of a page done so.
    pub fn counter(self) -> &'static str {
        match self {
            PageChange::Unchanged => "pages_unchanged",
            PageChange::New | PageChange::Changed => "pages_fetched",
        }
    }
}

/// Adds a subscriber that receives every later event.
#[derive(Message)]
#[rtype(result = "()")]
pub struct Subscribe(pub Recipient<CrawlEvent>);

/// Asks for the counters so far.
#[derive(Debug, Message)]
#[rtype(result = "Stats")]
pub struct GetStats;

/// Ends the crawl's records: flush, write `stats.json`, answer with the report.
#[derive(Debug, Message)]
#[rtype(result = "Result<CrawlReport, Error>")]
pub struct Finish {
    /// Finished or stopped.
    pub outcome: Outcome,
    /// In a shared crawl, the whole crawl's counters, for the report.
    pub whole_crawl: Option<WholeCrawl>,
}

/// How often a status line is logged (off a terminal; on one, the progress display shows the
/// same).
const STATUS_EVERY: Duration = Duration::from_secs(3);
/// How often buffered records are written.
const FLUSH_EVERY: Duration = Duration::from_millis(250);
/// Buffered record bytes that trigger a write at once.
const FLUSH_BYTES: usize = 256 * 1024;

/// The Logger actor; see the module documentation.
pub struct Logger {
    /// The crawl's configuration (for `out_dir`).
    settings: Arc<Settings>,
    /// Where records are written.
    writer: Addr<DiskWriter>,
    /// Who else wants the events.
    subscribers: Vec<Recipient<CrawlEvent>>,
    /// The counters.
    tally: Tally,
    /// When the crawl started, for rates.
    started: Instant,
    /// Error lines not yet written.
    errors: String,
    /// Skipped-URL lines not yet written.
    skipped: String,
    /// The first record write that failed; the crawl's end reports it.
    write_error: Option<Error>,
    /// Set by [`Finish`]: the counters and timings are final.
    finished: bool,
    /// The flush and status timers, cancelled by [`Finish`].
    timers: Vec<SpawnHandle>,
}

impl Logger {
    /// A Logger writing through `writer`, with initial subscribers.
    pub fn new(
        settings: Arc<Settings>,
        writer: Addr<DiskWriter>,
        subscribers: Vec<Recipient<CrawlEvent>>,
    ) -> Self {
        Logger {
            settings,
            writer,
            subscribers,
            tally: Tally::default(),
            started: Instant::now(),
            errors: String::new(),
            skipped: String::new(),
            write_error: None,
            finished: false,
            timers: Vec::new(),
        }
    }

    /// Logs and records `event`, then counts it.
    fn count(&mut self, event: &CrawlEvent) {
        match event {
            CrawlEvent::Failed(row) => {
                // A failed page loses what it links to; an image is one file.
                let level = match row.kind {
                    Kind::Page => log::Level::Warn,
                    Kind::Image => log::Level::Debug,
                };
                let (kind, url, error, detail) = (row.kind, &row.url, &row.error, &row.detail);
                log::log!(level, "{kind} failed: {url} ({error}: {detail})");
                push_json(&mut self.errors, row);
            }
            CrawlEvent::Skipped { row, shape } => {
                self.log_skip(row, shape.as_deref());
                push_json(&mut self.skipped, row);
            }
            event => self.log(event),
        }
        self.tally.count(event);
    }

    /// Logs a URL left out on purpose; the first of a trap shape at info level.
    fn log_skip(&self, row: &SkipRow, shape: Option<&str>) {
        if let Some(shape) = shape {
            if !self.tally.stats.trap_shapes.contains_key(shape) {
                log::info!(
                    "trap rule: skipping pages shaped like {shape} ({}); scope.trap_pages sets the limit",
                    row.detail
                );
            }
        }
        let detail = if row.detail.is_empty() {
            String::new()
        } else {
            format!(": {}", row.detail)
        };
        log::debug!("skipped {} ({}{detail})", row.url, row.reason);
    }

    /// Logs an event that writes no record.
    fn log(&self, event: &CrawlEvent) {
        match event {
            CrawlEvent::Started {
                fetchers,
                savers,
                writers,
                threads,
                previously_saved,
                resumed_pages,
                run,
                update,
            } => {
                if *update {
                    log::info!("update run {run}: asking for every page again, only if it changed");
                }
                log::info!(
                    "started {fetchers} page fetchers on {threads} threads, {savers} image savers and {writers} disk writers; writing to {}",
                    self.settings.out_dir.display()
                );
                if let Some(pages) = resumed_pages {
                    log::info!("resuming: {pages} pages waiting, {previously_saved} images saved");
                } else if *previously_saved > 0 {
                    log::info!("{previously_saved} images saved by earlier runs will not be downloaded again");
                }
            }
            CrawlEvent::PageFetched {
                url,
                depth,
                images,
                links,
                images_dropped,
                links_dropped,
                ..
            } => {
                log::debug!("page {url} (depth {depth}): {images} new images, {links} new pages");
                if images_dropped + links_dropped > 0 {
                    log::info!(
                        "{url}: {images_dropped} images and {links_dropped} links over extract.max_images_per_page / extract.max_links_per_page left out"
                    );
                }
            }
            CrawlEvent::ImageSaved(row) => match &row.duplicate_of {
                Some(first) => log::debug!("{} has the bytes of {}", row.url, first.display()),
                None => log::debug!(
                    "saved {} as {} ({} bytes)",
                    row.url,
                    row.path.display(),
                    row.bytes
                ),
            },
            CrawlEvent::ImageOutOfScope { url } if self.tally.stats.images_out_of_scope == 0 => {
                log::info!("skipping images on hosts outside the scope, e.g. {url}; add the host to scope.allowed_hosts to get them");
            }
            CrawlEvent::Retrying {
                url,
                attempt,
                error,
            } => log::debug!("retrying {url} after attempt {attempt}: {error}"),
            CrawlEvent::PageGone { url, status } => {
                log::info!("{url} is gone ({status}); the images found on it are kept");
            }
            CrawlEvent::WorkerRestarted { kind, slot } => {
                log::warn!(
                    "{} {slot} died; replaced it and put its jobs back in the queue",
                    kind.worker()
                );
            }
            _ => {}
        }
    }

    fn status_line(&self) {
        log::info!(target: "imgcrawl::progress", "{}", self.tally.status());
    }

    /// Writes buffered records, pausing the mailbox until the DiskWriter is done.
    fn flush(&mut self, ctx: &mut Context<Self>) {
        let mut batches = Vec::new();
        if !self.errors.is_empty() {
            batches.push(AppendRecords {
                file: RecordFile::Errors,
                text: std::mem::take(&mut self.errors),
            });
        }
        if !self.skipped.is_empty() {
            batches.push(AppendRecords {
                file: RecordFile::Skipped,
                text: std::mem::take(&mut self.skipped),
            });
        }
        if batches.is_empty() {
            return;
        }
        let writer = self.writer.clone();
        let fut = async move {
            for b in batches {
                writer
                    .send(b)
                    .await
                    .map_err(|e| Error::aborted("the disk writer", e))??;
            }
            Ok::<(), Error>(())
        };
        ctx.wait(fut.into_actor(self).map(|res, act, _| {
            if let Err(e) = res {
                log::error!("cannot write records: {e}");
                act.write_error.get_or_insert(e);
            }
        }));
    }
}

fn push_json<T: serde::Serialize>(buf: &mut String, row: &T) {
    // Serialising these plain structs cannot fail.
    buf.push_str(&serde_json::to_string(row).expect("records serialise to JSON"));
    buf.push('\n');
}

impl Actor for Logger {
    type Context = Context<Self>;

    fn started(&mut self, ctx: &mut Context<Self>) {
        ctx.set_mailbox_capacity(1024);
        self.timers
            .push(ctx.run_interval(FLUSH_EVERY, |act, ctx| act.flush(ctx)));
        self.timers
            .push(ctx.run_interval(STATUS_EVERY, |act, _| act.status_line()));
    }
}

impl Handler<CrawlEvent> for Logger {
    type Result = ();

    fn handle(&mut self, event: CrawlEvent, ctx: &mut Context<Self>) {
        self.count(&event);
        for s in &self.subscribers {
            s.do_send(event.clone());
        }
        if self.errors.len() + self.skipped.len() >= FLUSH_BYTES {
            self.flush(ctx);
        }
    }
}

impl Handler<Subscribe> for Logger {
    type Result = ();

    fn handle(&mut self, m: Subscribe, _: &mut Context<Self>) {
        self.subscribers.push(m.0);
    }
}

impl Handler<GetStats> for Logger {
    type Result = MessageResult<GetStats>;

    fn handle(&mut self, _: GetStats, _: &mut Context<Self>) -> Self::Result {
        let mut stats = self.tally.stats.clone();
        if !self.finished {
            stats.finish_timing(self.started.elapsed().as_secs_f64());
        }
        MessageResult(stats)
    }
}

impl Handler<Finish> for Logger {
    type Result = ResponseActFuture<Self, Result<CrawlReport, Error>>;

    fn handle(&mut self, m: Finish, ctx: &mut Context<Self>) -> Self::Result {
        self.flush(ctx);
        // Final from now on: no more status lines, and the counters and timings stay as reported.
        for timer in self.timers.drain(..) {
            ctx.cancel_future(timer);
        }
        self.finished = true;
        self.tally
            .stats
            .finish_timing(self.started.elapsed().as_secs_f64());
        for (shape, n) in &self.tally.stats.trap_shapes {
            log::debug!("trap rule skipped {n} URLs shaped like {shape}");
        }
        let report = CrawlReport {
            stats: self.tally.stats.clone(),
            whole_crawl: m.whole_crawl,
            outcome: m.outcome,
            out_dir: self.settings.out_dir.clone(),
        };
        let stats_json =
            serde_json::to_string_pretty(&report.stats).expect("stats serialise to JSON") + "\n";
        let writer = self.writer.clone();
        Box::pin(
            async move {
                writer
                    .send(WriteFileAtomic {
                        file: RecordFile::Stats,
                        contents: stats_json,
                    })
                    .await
            }
            .into_actor(self)
            .map(move |res, act, _| {
                if let Some(e) = act.write_error.take() {
                    return Err(Error::Disk(Arc::new(e)));
                }
                res.map_err(|e| Error::aborted("the disk writer", e))??;
                Ok(report)
            }),
        )
    }
}
