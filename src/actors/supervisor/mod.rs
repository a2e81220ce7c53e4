//! Supervisor: owns the crawl. It asks the admission core which discovered URLs become jobs, keeps
//! per-host politeness, hands jobs to the worker pools (bounded per worker and per host), applies
//! the retry policy, replaces workers that die and requeues the jobs they held, commits the crawl's
//! state in groups, and ends the crawl when nothing is waiting or in flight. Where waiting work
//! lives (this process, or a shared crawl in Redis) is the [`Frontier`]'s business: the loop is
//! the same.
//!
//! - `inbox.rs`: every message it takes ([`WorkerDown`], [`BodyIn`], [`Wake`], [`ClaimBytes`],
//!   [`StopCrawl`], [`AwaitReport`], [`GetWorkers`], [`GetQueues`], [`GetActivity`]) and its
//!   handlers;
//! - `pump.rs`: the crawl loop ([`Supervisor::pump`]): hand out work, book requests, end;
//! - `commit.rs`: the group commit of state changes, after which saved images are told;
//! - `admit.rs`: discovered URLs and redirect hops become jobs (or are reported as left out);
//! - `outcome.rs`: what happens after a job fails, is lost, or is left out;
//! - `workers.rs`: the worker pools.
//!
//! Sends [`FetchRobots`](super::page_fetcher::FetchRobots), [`FetchPage`] and [`SaveImage`] with
//! `send` (each job is tracked until its answer), [`CommitState`], [`ExportManifest`] and
//! [`CloseOutput`] to the DiskWriter, [`CrawlEvent`]s and [`Finish`] to the Logger. Runs on the
//! System's arbiter with the savers and the Logger, the fetchers on threads of their own
//! ([`Supervisor::launch`]). Its handlers never block.
//!
//! [`FetchPage`]: super::page_fetcher::FetchPage
//! [`SaveImage`]: super::image_saver::SaveImage
//! [`CommitState`]: super::disk_writer::CommitState
//! [`ExportManifest`]: super::disk_writer::ExportManifest
//! [`CloseOutput`]: super::disk_writer::CloseOutput
//! [`Finish`]: super::logger::Finish

mod admit;
mod commit;
mod inbox;
mod outcome;
mod pump;
mod update;
mod workers;

use std::collections::{HashMap, VecDeque};
use std::sync::Arc;
use std::time::Duration;

use actix::prelude::*;
use tokio::sync::oneshot;
use tokio::time::Instant;
use url::Url;

use super::disk_writer::DiskWriter;
use super::image_saver::ImageSaver;
use super::logger::{CrawlEvent, Logger};
use super::page_fetcher::PageFetcher;
use crate::activity::ResponseTimes;
use crate::admission::Admission;
use crate::error::Error;
use crate::frontier::{Frontier, Politeness};
use crate::job::Job;
use crate::records::CrawlReport;
use crate::retry::RetryPolicy;
use crate::settings::Settings;
use crate::state::{Resume, StateOp};
use crate::Kind;
use workers::Pool;

pub use inbox::{
    AwaitReport, BodyDone, BodyIn, ClaimBytes, GetActivity, GetQueues, GetWorkers, StopCrawl,
    WorkerAddrs, WorkerDown,
};

/// Pages one fetcher may have in flight at once.
const PAGE_CREDIT: usize = 4;
/// Images one saver downloads at once.
const IMAGE_CREDIT: usize = 1;
/// How often dead workers are looked for and queue sizes reported (often enough for the progress
/// display's total and estimate to follow the crawl; a sweep looks at each worker's mailbox once).
const SWEEP_EVERY: Duration = Duration::from_millis(250);
/// State changes that trigger a commit at once rather than at the next tick.
const COMMIT_BATCH: usize = 2048;
/// How often pending state changes are committed (the group commit's latency).
const COMMIT_EVERY: Duration = Duration::from_millis(200);
/// How long requests in flight may finish after a stop before they are abandoned.
const STOP_GRACE: Duration = Duration::from_secs(3);

/// A job waiting for its retry time.
#[derive(Debug)]
enum Delayed {
    /// A page or an image.
    Job(Job),
    /// A host's robots.txt.
    Robots(RobotsJob),
}

impl Delayed {
    /// Counts as a waiting job of this kind (robots.txt fetches count as pages).
    fn kind(&self) -> Kind {
        match self {
            Delayed::Job(job) => job.kind(),
            Delayed::Robots(_) => Kind::Page,
        }
    }
}

/// A host's robots.txt to fetch.
#[derive(Debug)]
struct RobotsJob {
    /// The politeness key of the host.
    host: String,
    /// Its robots.txt URL.
    url: Url,
    /// Failed attempts so far.
    attempts: u32,
    /// Times a worker died while holding this job.
    losses: u32,
}

/// A request booked by [`Supervisor::begin`].
#[derive(Debug)]
struct Booking {
    /// Which pool took it.
    kind: Kind,
    /// When it was handed out.
    started: Instant,
    /// The generation of the worker that took it.
    generation: u64,
    /// The politeness key of its host.
    host: String,
    /// The host's slot was given back (the body was in).
    freed: bool,
}

/// The Supervisor actor; see the module documentation.
pub struct Supervisor {
    /// The crawl's configuration.
    settings: Arc<Settings>,
    /// Where waiting work lives (this process, or the shared crawl).
    frontier: Box<dyn Frontier>,
    /// Per-host in-flight counts and delays.
    politeness: Politeness,
    /// Which URLs become jobs: seen sets, page budget, trap rule, robots.txt rules.
    admission: Admission,
    /// When failed jobs are tried again.
    retry: RetryPolicy,
    /// robots.txt fetches waiting for a fetcher.
    robots_waiting: VecDeque<RobotsJob>,
    /// The HTTP client of each thread, shared by its workers (the savers all run on this one):
    /// one connection pool per thread, so an HTTP/2 host gets few connections, each carrying
    /// many streams.
    clients: crate::http::SharedClient,
    /// The cookie jar's change count when it was last saved.
    cookies_saved: u64,
    /// The run being recorded (its number and start time go into manifest rows).
    run: crate::state::Run,
    /// What earlier runs learnt of the pages this update has not reached yet; each page's is
    /// handed to its job when the walk admits it again.
    earlier: crate::job::Earlier,
    /// The page fetchers' threads (see [`Supervisor::launch`]); stopped at the end.
    arbiters: Vec<Arbiter>,
    /// The page-fetcher pool.
    fetchers: Pool<PageFetcher>,
    /// The image-saver pool.
    savers: Pool<ImageSaver>,
    /// Disk writes (handed to savers).
    writer: Addr<DiskWriter>,
    /// Events and records.
    logger: Addr<Logger>,
    /// What earlier runs left, until `started` puts it back in the frontier.
    restored: Option<Resume>,
    /// State changes not yet sent to the DiskWriter (the next group commit).
    pending: Vec<StateOp>,
    /// Events that may only be told once the pending changes are committed (saved images).
    after_commit: Vec<CrawlEvent>,
    /// Events of the commit in flight, told once it is done.
    committing: usize,
    /// A commit is in flight (one at a time, so batches land in order).
    commit_in_flight: bool,
    /// A fatal error (disk trouble) that ends the crawl.
    fatal: Option<Arc<Error>>,
    /// Stop waiting for requests in flight (the grace period after a stop has passed).
    abandon: bool,
    /// Job ids, also naming temporary files.
    next_id: u64,
    /// Pages being fetched.
    pages_in_flight: usize,
    /// Pages an update found unchanged whose links and images are being read from the state.
    pages_reloading: usize,
    /// Of those, the ones waiting for the next read (see `page_unchanged`).
    reload_waiting: Vec<crate::job::PageJob>,
    /// A read of what 304 pages held is in flight.
    reload_in_flight: bool,
    /// Images being downloaded.
    images_in_flight: usize,
    /// Requests handed out and not answered, by booking id.
    bookings: HashMap<u64, Booking>,
    /// How long requests took until their response was in.
    response_times: ResponseTimes,
    /// Jobs waiting for their retry time.
    delayed: Vec<(Instant, Delayed)>,
    /// The earliest pending wake-up, to avoid scheduling many.
    wake_at: Option<Instant>,
    /// No new work is handed out.
    stopping: bool,
    /// The Logger was told to finish.
    ending: bool,
    /// The timers (sweep, group commit), cancelled at the end so that the Supervisor stops once
    /// nobody holds its address.
    timers: Vec<SpawnHandle>,
    /// The final report, once known.
    report: Option<Result<CrawlReport, Arc<Error>>>,
    /// Callers of [`AwaitReport`] before the end.
    waiters: Vec<oneshot::Sender<Result<CrawlReport, Arc<Error>>>>,
}

impl Supervisor {
    /// A Supervisor for `settings`, running its page fetchers on `workers.threads` new arbiters,
    /// keeping its waiting work in `frontier`, carrying on from what earlier runs left (`resume`,
    /// empty for a new crawl).
    pub fn new(
        settings: Arc<Settings>,
        frontier: Box<dyn Frontier>,
        writer: Addr<DiskWriter>,
        logger: Addr<Logger>,
        resume: Resume,
    ) -> Self {
        let http = &settings.http;
        Supervisor {
            politeness: Politeness::new(http.per_host_concurrency.get(), http.delay),
            arbiters: (0..settings.workers.threads.get())
                .map(|_| Arbiter::new())
                .collect(),
            admission: Admission::new(settings.clone(), frontier.admission_keeps_budget()),
            retry: RetryPolicy::new(http),
            frontier,
            robots_waiting: VecDeque::new(),
            clients: crate::http::SharedClient::default(),
            cookies_saved: 0,
            pages_reloading: 0,
            reload_waiting: Vec::new(),
            reload_in_flight: false,
            run: crate::state::Run::default(),
            earlier: crate::job::Earlier::default(),
            settings,
            fetchers: Pool::default(),
            savers: Pool::default(),
            writer,
            logger,
            restored: Some(resume),
            pending: Vec::new(),
            after_commit: Vec::new(),
            committing: 0,
            commit_in_flight: false,
            fatal: None,
            abandon: false,
            next_id: 0,
            pages_in_flight: 0,
            images_in_flight: 0,
            bookings: HashMap::new(),
            response_times: ResponseTimes::default(),
            delayed: Vec::new(),
            wake_at: None,
            stopping: false,
            ending: false,
            timers: Vec::new(),
            report: None,
            waiters: Vec::new(),
        }
    }

    /// Starts the Supervisor on the System's arbiter, where it starts the image savers; the page
    /// fetchers run on threads of their own.
    ///
    /// That thread is where the `SyncArbiter` of the DiskWriter forwards its messages from (actix
    /// runs that step there, whoever started it), and most of the Supervisor's messages are to or
    /// from a saver or the Logger (started there by [`crate::Crawl`]): on one thread, none of them
    /// wakes another. The fetchers stay apart because parsing a large page holds a thread for
    /// milliseconds, and the Supervisor must answer at once.
    pub fn launch(self) -> Addr<Self> {
        Supervisor::start_in_arbiter(System::current().arbiter(), move |_| self)
    }

    fn next_id(&mut self) -> u64 {
        self.next_id += 1;
        self.next_id
    }
}

impl Actor for Supervisor {
    type Context = Context<Self>;

    fn started(&mut self, ctx: &mut Context<Self>) {
        ctx.set_mailbox_capacity(1024);
        self.start_workers(ctx);
        self.frontier
            .start(&mut self.politeness, ctx.address().recipient());
        let resume = self.restored.take().unwrap_or_default();
        let resumed_pages = (!resume.is_empty()).then_some(resume.pages.len());
        self.restore(resume);
        self.logger.do_send(CrawlEvent::Started {
            fetchers: self.fetchers.len(),
            savers: self.savers.len(),
            writers: self.settings.workers.writers.get(),
            threads: self.arbiters.len(),
            previously_saved: self.admission.saved().len(),
            resumed_pages,
            run: self.run.id.max(1) as u64,
            update: self.run.kind == crate::state::RunKind::Update,
        });
        self.timers
            .push(ctx.run_interval(SWEEP_EVERY, |act, ctx| act.sweep(ctx)));
        self.timers
            .push(ctx.run_interval(COMMIT_EVERY, |act, ctx| act.commit(ctx)));
        self.seed();
        self.pump(ctx);
    }
}
