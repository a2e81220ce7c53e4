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
    ImageSaved(ManifestRow),
    /// An image an earlier run saved was found again and skipped.
    ImageAlreadySaved {
        /// Its URL.
        url: Url,
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

/// What a crawl's events add up to: the counters of `stats.json` and the latest queue snapshot.
/// The Logger keeps one for the records and status lines, the progress display another.
#[derive(Debug, Default, Clone)]
pub struct Tally {
    /// The counters.
    pub stats: Stats,
    /// Pages waiting, images waiting and requests in flight, from the latest
    /// [`CrawlEvent::Progress`].
    pub queues: (usize, usize, usize),
}

impl Tally {
    /// Counts one event.
    pub fn count(&mut self, event: &CrawlEvent) {
        let s = &mut self.stats;
        let mut error = |row: &ErrorRow| {
            *s.errors_by_kind.entry(row.error.clone()).or_default() += 1;
            s.error_examples
                .entry(row.error.clone())
                .or_insert_with(|| row.url.clone());
        };
        match event {
            CrawlEvent::PageFetched {
                images_dropped,
                links_dropped,
                links_out_of_scope,
                change,
                ..
            } => {
                match change {
                    PageChange::Unchanged => s.pages_unchanged += 1,
                    PageChange::Changed => s.pages_changed += 1,
                    PageChange::New => {}
                }
                if *change != PageChange::Unchanged {
                    s.pages_fetched += 1;
                }
                s.links_out_of_scope += *links_out_of_scope as u64;
                s.images_over_page_cap += *images_dropped as u64;
                s.links_over_page_cap += *links_dropped as u64;
            }
            CrawlEvent::Failed(row) => {
                error(row);
                match row.kind {
                    Kind::Page => s.pages_failed += 1,
                    Kind::Image => s.images_failed += 1,
                }
            }
            CrawlEvent::ImageSaved(row) if row.duplicate_of.is_some() => {
                s.duplicates += 1;
                s.images_new += 1;
            }
            CrawlEvent::ImageSaved(row) => {
                s.images_saved += 1;
                s.images_new += 1;
                s.bytes_saved += row.bytes;
            }
            CrawlEvent::ImageAlreadySaved { .. } => {
                s.images_already_saved += 1;
                s.images_unchanged += 1;
            }
            CrawlEvent::PageGone { .. } => s.pages_gone += 1,
            CrawlEvent::Skipped { row, shape } => {
                let by_reason = match row.kind {
                    Kind::Page => &mut s.pages_skipped,
                    Kind::Image => &mut s.images_skipped,
                };
                *by_reason.entry(row.reason.clone()).or_default() += 1;
                if let Some(shape) = shape {
                    *s.trap_shapes.entry(shape.clone()).or_default() += 1;
                }
            }
            CrawlEvent::ImageOutOfScope { .. } => s.images_out_of_scope += 1,
            CrawlEvent::Retrying { .. } => s.retries += 1,
            CrawlEvent::WorkerRestarted { .. } => s.worker_restarts += 1,
            CrawlEvent::Progress {
                pages_waiting,
                images_waiting,
                in_flight,
            } => self.queues = (*pages_waiting, *images_waiting, *in_flight),
            CrawlEvent::Started { run, update, .. } => {
                s.run = *run;
                s.update = *update;
            }
        }
    }

    /// Jobs finished so far, whatever their outcome.
    pub fn jobs_done(&self) -> u64 {
        let s = &self.stats;
        s.pages_fetched
            + s.pages_unchanged
            + s.pages_gone
            + s.pages_failed
            + s.pages_skipped.values().sum::<u64>()
            + s.images_saved
            + s.duplicates
            + s.images_skipped.values().sum::<u64>()
            + s.images_failed
    }

    /// Jobs waiting or in flight.
    pub fn jobs_open(&self) -> u64 {
        let (pw, iw, fl) = self.queues;
        (pw + iw + fl) as u64
    }

    /// The jobs the whole crawl will probably have: those known (done, waiting, in flight), plus,
    /// while pages wait, as many images for each of them as the pages fetched so far brought on
    /// average. With a `page_template` every list page is known from the start, so this settles
    /// early; it is exact once no page waits.
    pub fn estimated_total(&self) -> u64 {
        let s = &self.stats;
        let (pages_waiting, images_waiting, in_flight) = self.queues;
        let known = self.jobs_done() + self.jobs_open();
        if pages_waiting == 0 || s.pages_fetched == 0 {
            return known;
        }
        let images_found = self.jobs_done() - s.pages_fetched - s.pages_failed
            + (images_waiting + in_flight) as u64;
        known + pages_waiting as u64 * images_found / s.pages_fetched
    }

    /// The counters in two parts: pages and images, then the rest (skipped, in flight, MB).
    pub fn status_parts(&self) -> (String, String) {
        let s = &self.stats;
        let (pw, iw, fl) = self.queues;
        (
            format!(
                "pages {} done, {pw} waiting | images {} saved, {} duplicates, {} failed, {iw} waiting",
                s.pages_fetched,
                s.images_saved,
                s.duplicates,
                s.images_failed + s.pages_failed,
            ),
            format!(
                "{} skipped | {fl} in flight | {:.1} MB",
                s.images_skipped.values().sum::<u64>() + s.pages_skipped.values().sum::<u64>(),
                s.bytes_saved as f64 / 1e6
            ),
        )
    }

    /// One line of counters, e.g. `pages 120 done, 14 waiting | images 96 saved, ... | 2.1 MB`.
    pub fn status(&self) -> String {
        let (counts, rest) = self.status_parts();
        format!("{counts} | {rest}")
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_total_is_extrapolated_while_pages_wait_and_exact_after() {
        let mut t = Tally::default();
        t.stats.pages_fetched = 2;
        t.stats.images_saved = 30;
        // 2 pages brought 30 + 10 waiting images: 20 each. 8 pages wait, 2 requests in flight.
        t.queues = (8, 10, 0);
        assert_eq!(t.jobs_done(), 32);
        assert_eq!(t.estimated_total(), 32 + 18 + 8 * 20);
        // No page waits: what is known is the total.
        t.queues = (0, 10, 2);
        assert_eq!(t.estimated_total(), 32 + 12);
        // Nothing fetched yet: nothing to extrapolate from.
        t.stats = Stats::default();
        t.queues = (8, 0, 0);
        assert_eq!(t.estimated_total(), 8);
    }
}
