//! Supervisor: owns the crawl. It holds the frontier and seen sets, decides what is in scope, keeps
//! per-host politeness and robots.txt rules, hands jobs to the worker pools (bounded per worker and
//! per host), retries retryable failures with backoff and `Retry-After`, replaces workers that die
//! and requeues the jobs they held, and ends the crawl when nothing is waiting or in flight.
//!
//! This file holds the actor, its pools and the dispatching; `admit.rs` decides which URLs become
//! jobs (including redirect hops) and `outcome.rs` what happens after a job fails.
//!
//! Takes: [`WorkerDown`] (from workers' death guards), [`BodyIn`] (a request's body is in: its host
//! slot is free), [`StopCrawl`], [`AwaitReport`],
//! [`GetWorkers`], [`GetQueues`], [`GetActivity`]. Sends [`FetchRobots`], [`FetchPage`] and [`SaveImage`] with `send`
//! (each job is tracked until its answer), [`CrawlEvent`]s and [`Finish`] to the Logger. Runs on
//! the System's arbiter with the savers and the Logger, the fetchers on threads of their own
//! ([`Supervisor::launch`]). Its handlers never block.

mod admit;
mod outcome;
mod permits;
mod shared;

use std::collections::{BTreeMap, HashMap, VecDeque};
use std::sync::Arc;
use std::time::Duration;

use actix::prelude::*;
use tokio::sync::oneshot;
use tokio::time::Instant;
use url::Url;

use super::disk_writer::{CloseOutput, CommitState, DiskWriter, ExportManifest};
use super::image_saver::{ImageDone, ImageSaver, SaveImage};
use super::logger::{CrawlEvent, Finish, Logger};
use super::page_fetcher::{FetchPage, FetchRobots, PageDone, PageFetcher};
use super::{DeathGuard, Retire};
use crate::admission::{Admission, Left, Reason};
use crate::cluster::Cluster;
use crate::error::{Error, FailureKind};
use crate::frontier::{
    host_key, Blocked, Frontier, ImageJob, Job, MemoryFrontier, PageJob, Politeness,
};
use crate::http::{BodyDone, BodyIn};
use crate::metrics::ResponseTimes;
use crate::records::{CrawlReport, Outcome};
use crate::retry::RetryPolicy;
use crate::settings::Settings;
use crate::state::{LoadSpilled, Resume, StateOp};
use crate::Kind;

/// A worker's death guard fired: the worker in `slot` of generation `generation` is gone.
#[derive(Debug, Message)]
#[rtype(result = "()")]
pub struct WorkerDown {
    /// Which pool.
    pub kind: Kind,
    /// The slot.
    pub slot: usize,
    /// The incarnation that died.
    pub generation: u64,
}

/// Stop handing out work; jobs in flight finish, then the crawl ends as [`Outcome::Stopped`].
#[derive(Debug, Message)]
#[rtype(result = "()")]
pub struct StopCrawl;

/// Answers with the final report once the crawl has ended.
#[derive(Debug, Message)]
#[rtype(result = "Result<CrawlReport, Error>")]
pub struct AwaitReport;

/// Answers with the addresses of the current workers.
#[derive(Debug, Message)]
#[rtype(result = "WorkerAddrs")]
pub struct GetWorkers;

/// The current workers.
#[derive(Debug, Clone)]
pub struct WorkerAddrs {
    /// Page fetchers, by slot.
    pub fetchers: Vec<Addr<PageFetcher>>,
    /// Image savers, by slot.
    pub savers: Vec<Addr<ImageSaver>>,
}

/// Answers with the sizes of the queues.
#[derive(Debug, Message)]
#[rtype(result = "QueueState")]
pub struct GetQueues;

/// Sizes of the Supervisor's queues.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize)]
pub struct QueueState {
    /// Pages waiting (including those waiting for a retry).
    pub pages_waiting: usize,
    /// Images waiting (including those waiting for a retry).
    pub images_waiting: usize,
    /// Pages being fetched.
    pub pages_in_flight: usize,
    /// Images being downloaded.
    pub images_in_flight: usize,
    /// Of the waiting pages, those kept only in the state database (the frontier is full).
    pub pages_spilled: usize,
    /// Of the waiting images, those kept only in the state database.
    pub images_spilled: usize,
    /// Images stored, waiting for the group commit after which they count as saved.
    pub images_committing: usize,
}

/// Answers with what the crawl is doing now (for metrics and status pages).
#[derive(Debug, Message)]
#[rtype(result = "Activity")]
pub struct GetActivity;

/// Where a crawl is in its life.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "lowercase")]
pub enum CrawlState {
    /// Handing out work.
    Running,
    /// Stopped handing out work; requests in flight finish.
    Stopping,
    /// Ended: everything reachable was done.
    Finished,
    /// Ended before the end (Ctrl-C or [`crate::Crawl::stop`]).
    Stopped,
    /// Ended by an error (the disk, the actors).
    Failed,
}

/// What a crawl is doing now: its queues, the requests in flight per host, its response times.
#[derive(Debug, Clone)]
pub struct Activity {
    /// Where it is in its life.
    pub state: CrawlState,
    /// The sizes of the queues.
    pub queues: QueueState,
    /// Requests in flight, by host (only hosts with some).
    pub hosts_in_flight: BTreeMap<String, usize>,
    /// How long requests took, by kind.
    pub response_times: ResponseTimes,
}

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
    Job(Job),
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

/// Jobs of one kind admitted while the frontier was full: kept only in the state database until
/// the frontier drains and they are read back (oldest first) with a commit.
#[derive(Debug, Default, Clone, Copy)]
struct Spill {
    /// Spilled jobs not yet read back.
    total: u64,
    /// Of those, the ones whose batch is committed (only these can be read back).
    committed: u64,
}

impl Spill {
    /// Spilled jobs an earlier run left.
    fn committed(n: u64) -> Spill {
        Spill {
            total: n,
            committed: n,
        }
    }

    /// Whether a new job goes to the database only: while any job is spilled, every new one is
    /// too, so that the database gives them back in the order they came. Counts it if so.
    fn spills(&mut self, in_memory: usize, bound: usize) -> bool {
        let spill = self.total > 0 || in_memory >= bound;
        self.total += u64::from(spill);
        spill
    }

    /// What to read back with the next commit, which carries `in_batch` newly spilled jobs, when
    /// `in_memory` jobs are waiting in memory: nothing until the queue is down to half.
    fn load(&self, in_batch: u64, in_memory: usize, bound: usize) -> LoadSpilled {
        let available = self.committed + in_batch;
        if available == 0 || in_memory > bound / 2 {
            return LoadSpilled::default();
        }
        LoadSpilled {
            take: available.min((bound - in_memory) as u64),
            spilled: available,
        }
    }

    /// Accounts for a commit that carried `in_batch` spilled jobs and read back `loaded` of the
    /// `asked` ones.
    fn after(&mut self, in_batch: u64, asked: LoadSpilled, loaded: usize) {
        self.committed += in_batch;
        let loaded = loaded as u64;
        if loaded < asked.take {
            // Fewer were there than counted (which should not happen): the database has no more,
            // so none are counted any more, or the crawl would wait for them for ever.
            log::warn!(
                "the state database gave back {loaded} of {} waiting jobs",
                asked.take
            );
            self.total -= self.committed;
            self.committed = 0;
            return;
        }
        self.total -= loaded;
        self.committed -= loaded;
    }
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

/// One place in a worker pool.
struct Slot<A: Actor> {
    /// The current worker.
    addr: Addr<A>,
    /// Incremented on each replacement, so late news of an old worker is ignored.
    generation: u64,
    /// Jobs handed to the current worker and not answered.
    inflight: usize,
}

/// The Supervisor actor; see the module documentation.
pub struct Supervisor {
    /// The crawl's configuration.
    settings: Arc<Settings>,
    /// Waiting work and seen sets.
    frontier: Box<dyn Frontier>,
    /// Per-host in-flight counts and delays.
    politeness: Politeness,
    /// Which URLs become jobs: seen sets, page budget, trap rule, robots.txt rules.
    admission: Admission,
    /// When failed jobs are tried again.
    retry: RetryPolicy,
    /// robots.txt fetches waiting for a fetcher.
    robots_waiting: VecDeque<RobotsJob>,
    /// The page fetchers' threads (see [`Supervisor::launch`]); stopped at the end.
    arbiters: Vec<Arbiter>,
    /// The page-fetcher pool.
    fetchers: Vec<Slot<PageFetcher>>,
    /// The image-saver pool.
    savers: Vec<Slot<ImageSaver>>,
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
    /// Images being downloaded.
    images_in_flight: usize,
    /// Requests handed out and not answered, by booking id.
    bookings: HashMap<u64, Booking>,
    /// How long requests took until their response was in.
    response_times: ResponseTimes,
    /// Jobs waiting for their retry time.
    delayed: Vec<(Instant, Delayed)>,
    /// Pages kept only in the state database.
    spill_pages: Spill,
    /// Images kept only in the state database.
    spill_images: Spill,
    /// The earliest pending wake-up, to avoid scheduling many.
    wake_at: Option<Instant>,
    /// No new work is handed out.
    stopping: bool,
    /// The Logger was told to finish.
    ending: bool,
    /// The timers (sweep, group commit, lease renewal), cancelled at the end so that the
    /// Supervisor stops once nobody holds its address.
    timers: Vec<SpawnHandle>,
    /// The final report, once known.
    report: Option<Result<CrawlReport, Arc<Error>>>,
    /// Callers of [`AwaitReport`] before the end.
    waiters: Vec<oneshot::Sender<Result<CrawlReport, Arc<Error>>>>,
    /// The shared crawl this process takes part in (`None` for a local crawl).
    shared: Option<shared::Shared>,
}

impl Supervisor {
    /// A Supervisor for `settings`, running its page fetchers on `threads` new arbiters, carrying
    /// on from what earlier runs left (`resume`, empty for a new crawl), taking part in the shared
    /// crawl of `cluster` when given.
    pub fn new(
        settings: Arc<Settings>,
        writer: Addr<DiskWriter>,
        logger: Addr<Logger>,
        resume: Resume,
        cluster: Option<Cluster>,
    ) -> Self {
        let shared = cluster.map(|c| {
            let role = settings
                .distributed
                .as_ref()
                .map_or(crate::settings::Role::All, |d| d.role);
            shared::Shared::new(c, role)
        });
        Supervisor {
            politeness: Politeness::new(
                settings.http.per_host_concurrency.get(),
                settings.http.delay,
            ),
            arbiters: (0..settings.workers.threads.get())
                .map(|_| Arbiter::new())
                .collect(),
            frontier: Box::new(MemoryFrontier::default()),
            admission: Admission::new(settings.clone(), shared.is_none()),
            retry: RetryPolicy::new(&settings.http),
            robots_waiting: VecDeque::new(),
            settings,
            fetchers: Vec::new(),
            savers: Vec::new(),
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
            spill_pages: Spill::default(),
            spill_images: Spill::default(),
            wake_at: None,
            stopping: false,
            ending: false,
            timers: Vec::new(),
            report: None,
            waiters: Vec::new(),
            shared,
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

    /// Starts a fetcher on its slot's thread (the same for every replacement).
    fn start_fetcher(
        &self,
        slot: usize,
        generation: u64,
        ctx: &Context<Self>,
    ) -> Addr<PageFetcher> {
        let settings = self.settings.clone();
        let guard = DeathGuard {
            kind: Kind::Page,
            slot,
            generation,
            supervisor: ctx.address().recipient(),
        };
        let thread = &self.arbiters[slot % self.arbiters.len()];
        PageFetcher::start_in_arbiter(&thread.handle(), move |_| PageFetcher::new(settings, guard))
    }

    /// Starts a saver on the Supervisor's own thread (see [`Supervisor::launch`]).
    fn start_saver(&self, slot: usize, generation: u64, ctx: &Context<Self>) -> Addr<ImageSaver> {
        let (settings, writer) = (self.settings.clone(), self.writer.clone());
        let claims = self.shared.as_ref().map(|_| ctx.address().recipient());
        let guard = DeathGuard {
            kind: Kind::Image,
            slot,
            generation,
            supervisor: ctx.address().recipient(),
        };
        ImageSaver::new(settings, writer, claims, guard).start()
    }

    /// Replaces the worker in `slot` (dead or about to be dropped) with a new one on the same thread.
    fn replace(&mut self, kind: Kind, slot: usize, ctx: &mut Context<Self>) {
        match kind {
            Kind::Page => {
                let generation = self.fetchers[slot].generation + 1;
                let addr = self.start_fetcher(slot, generation, ctx);
                self.fetchers[slot] = Slot {
                    addr,
                    generation,
                    inflight: 0,
                };
            }
            Kind::Image => {
                let generation = self.savers[slot].generation + 1;
                let addr = self.start_saver(slot, generation, ctx);
                self.savers[slot] = Slot {
                    addr,
                    generation,
                    inflight: 0,
                };
            }
        }
        self.logger
            .do_send(CrawlEvent::WorkerRestarted { kind, slot });
    }

    /// Hands out as much work as workers, hosts and retry times allow, then checks for the end.
    fn pump(&mut self, ctx: &mut Context<Self>) {
        if self.ending {
            return;
        }
        let now = Instant::now();
        if !self.stopping {
            self.release_delayed(now);
            // robots.txt first: every other request to a new host waits for it.
            while !self.robots_waiting.is_empty() {
                let Some(slot) = free_slot(&self.fetchers, PAGE_CREDIT) else {
                    break;
                };
                let job = self.robots_waiting.pop_front().expect("checked not empty");
                self.send_robots(slot, job, now, ctx);
            }
            // Images next: finishing known work keeps the frontier small.
            while let Some(slot) = free_slot(&self.savers, IMAGE_CREDIT) {
                match self.frontier.pop_image(&self.politeness, now) {
                    Ok(job) => {
                        if let Some(Job::Image(job)) = self.robots_allow(Job::Image(job)) {
                            self.send_image(slot, job, now, ctx);
                        }
                    }
                    Err(blocked) => {
                        self.wake_if_waiting(blocked, ctx);
                        break;
                    }
                }
            }
            while let Some(slot) = free_slot(&self.fetchers, PAGE_CREDIT) {
                match self.frontier.pop_page(&self.politeness, now) {
                    Ok(job) => {
                        let Some(Job::Page(job)) = self.robots_allow(Job::Page(job)) else {
                            continue;
                        };
                        match self.admission.trapped(&job.url, job.barren) {
                            None => self.send_page(slot, job, now, ctx),
                            Some(left) => self.job_skipped(Job::Page(job), left),
                        }
                    }
                    Err(blocked) => {
                        self.wake_if_waiting(blocked, ctx);
                        break;
                    }
                }
            }
            if let Some(at) = self.delayed.iter().map(|(t, _)| *t).min() {
                self.wake(at, ctx);
            }
        }
        if self.pending.len() >= COMMIT_BATCH || (!self.stopping && self.refill_due()) {
            self.commit(ctx);
        }
        self.shared_pump(ctx);
        self.check_done(ctx);
    }

    fn release_delayed(&mut self, now: Instant) {
        let (due, later): (Vec<_>, Vec<_>) = std::mem::take(&mut self.delayed)
            .into_iter()
            .partition(|(t, _)| *t <= now);
        self.delayed = later;
        for (_, job) in due {
            match job {
                Delayed::Job(j) => self.frontier.push(j),
                Delayed::Robots(j) => self.robots_waiting.push_back(j),
            }
        }
    }

    fn wake_if_waiting(&mut self, blocked: Blocked, ctx: &mut Context<Self>) {
        if let Blocked::Until(at) = blocked {
            self.wake(at, ctx);
        }
    }

    fn wake(&mut self, at: Instant, ctx: &mut Context<Self>) {
        if self.wake_at.is_some_and(|w| w <= at) {
            return;
        }
        self.wake_at = Some(at);
        ctx.run_later(at.saturating_duration_since(Instant::now()), |act, ctx| {
            act.wake_at = None;
            act.pump(ctx);
        });
    }

    fn next_id(&mut self) -> u64 {
        self.next_id += 1;
        self.next_id
    }

    /// Books a request to `host` on worker `slot` of `kind`: politeness, in-flight counts. Returns
    /// the booking id, to hand back to [`end`](Self::end), and the signal the worker fires once the
    /// body is in ([`BodyIn`]): the host's slot is free from then on, while the worker parses or
    /// stores. A job that ends without firing it (a failure, a redirect, a dead worker) frees the
    /// slot in `end`, after its outcome (a `Retry-After` pause, say) is known.
    fn begin(
        &mut self,
        kind: Kind,
        slot: usize,
        host: &str,
        now: Instant,
        ctx: &mut Context<Self>,
    ) -> (u64, BodyDone) {
        self.politeness.started(host, now);
        let id = self.next_id();
        self.use_permit(id, host);
        self.bookings.insert(
            id,
            Booking {
                kind,
                started: now,
                generation: self.generation(kind, slot),
                host: host.to_string(),
                freed: false,
            },
        );
        let done = BodyDone::new(ctx.address().recipient(), id);
        let s = match kind {
            Kind::Page => {
                self.pages_in_flight += 1;
                &mut self.fetchers[slot].inflight
            }
            Kind::Image => {
                self.images_in_flight += 1;
                &mut self.savers[slot].inflight
            }
        };
        *s += 1;
        (id, done)
    }

    /// Undoes [`begin`](Self::begin) when the answer comes; `lost` when the worker died holding
    /// the job, which then gets a replacement (unless it already has one).
    fn end(&mut self, kind: Kind, slot: usize, id: u64, lost: bool, ctx: &mut Context<Self>) {
        let booking = self
            .bookings
            .remove(&id)
            .expect("every answer has its booking");
        if !booking.freed {
            if !lost {
                self.response_times
                    .observe(booking.kind, booking.started.elapsed());
            }
            self.politeness.finished(&booking.host);
            self.free_permit(id, ctx);
        }
        let current = self.generation(kind, slot) == booking.generation;
        let inflight = match kind {
            Kind::Page => {
                self.pages_in_flight -= 1;
                &mut self.fetchers[slot].inflight
            }
            Kind::Image => {
                self.images_in_flight -= 1;
                &mut self.savers[slot].inflight
            }
        };
        if current {
            *inflight -= 1;
            if lost {
                self.replace(kind, slot, ctx);
            }
        }
    }

    fn generation(&self, kind: Kind, slot: usize) -> u64 {
        match kind {
            Kind::Page => self.fetchers[slot].generation,
            Kind::Image => self.savers[slot].generation,
        }
    }

    fn send_robots(&mut self, slot: usize, job: RobotsJob, now: Instant, ctx: &mut Context<Self>) {
        const KIND: Kind = Kind::Page;
        let (id, body_done) = self.begin(KIND, slot, &job.host, now, ctx);
        let request = self.fetchers[slot].addr.send(FetchRobots {
            url: job.url.clone(),
            body_done,
        });
        ctx.spawn(request.into_actor(self).map(move |res, act, ctx| {
            act.end(KIND, slot, id, res.is_err(), ctx);
            match res {
                Ok(Ok(rules)) => act.learn_robots(job.host, rules),
                Ok(Err(failure)) => act.robots_failed(job, failure),
                Err(_) => act.robots_lost(job),
            }
            act.pump(ctx);
        }));
    }

    fn send_page(&mut self, slot: usize, job: PageJob, now: Instant, ctx: &mut Context<Self>) {
        const KIND: Kind = Kind::Page;
        let host = host_key(&job.url);
        let (id, body_done) = self.begin(KIND, slot, &host, now, ctx);
        let request = self.fetchers[slot].addr.send(FetchPage {
            job: job.clone(),
            body_done,
        });
        ctx.spawn(request.into_actor(self).map(move |res, act, ctx| {
            act.end(KIND, slot, id, res.is_err(), ctx);
            match res {
                Ok(Ok(PageDone::Parsed(extracted))) => act.page_done(job, extracted),
                Ok(Ok(PageDone::Redirected(to))) => act.redirected(Job::Page(job), to),
                Ok(Err(failure)) => act.failed(Job::Page(job), failure),
                Err(_) => act.lost(Job::Page(job)),
            }
            act.pump(ctx);
        }));
    }

    fn send_image(&mut self, slot: usize, job: ImageJob, now: Instant, ctx: &mut Context<Self>) {
        const KIND: Kind = Kind::Image;
        let host = host_key(&job.url);
        let (id, body_done) = self.begin(KIND, slot, &host, now, ctx);
        let tmp = self.next_id();
        let request = self.savers[slot].addr.send(SaveImage {
            job: job.clone(),
            tmp,
            body_done,
        });
        ctx.spawn(request.into_actor(self).map(move |res, act, ctx| {
            act.end(KIND, slot, id, res.is_err(), ctx);
            match res {
                Ok(Ok(ImageDone::Saved { row, temp })) => {
                    // Told (and written to the manifest) only once the state says it is saved.
                    act.shared_saved(&job.url, &row);
                    act.after_commit.push(CrawlEvent::ImageSaved(row.clone()));
                    act.pending.push(StateOp::ImageSaved {
                        url: job.url,
                        row,
                        temp,
                    });
                }
                Ok(Ok(ImageDone::Redirected(to))) => act.redirected(Job::Image(job), to),
                Ok(Ok(ImageDone::Skipped(key))) => {
                    let left = Left {
                        url: job.url.clone(),
                        reason: Reason::Filter(key),
                        detail: String::new(),
                        shape: None,
                    };
                    act.job_skipped(Job::Image(job), left);
                }
                Ok(Err(failure)) if failure.kind == FailureKind::Disk => {
                    // The image stays waiting in the state; the crawl cannot go on.
                    let url = job.url.to_string();
                    act.fail(
                        Error::ImageWrite {
                            url,
                            source: failure,
                        },
                        ctx,
                    );
                }
                Ok(Err(failure)) => act.failed(Job::Image(job), failure),
                Err(_) => act.lost(Job::Image(job)),
            }
            act.pump(ctx);
        }));
    }

    fn queues(&self) -> QueueState {
        let delayed_pages = self
            .delayed
            .iter()
            .filter(|(_, d)| d.kind() == Kind::Page)
            .count();
        QueueState {
            pages_waiting: self.frontier.pages_waiting()
                + self.robots_waiting.len()
                + delayed_pages
                + self.spill_pages.total as usize,
            images_waiting: self.frontier.images_waiting() + self.delayed.len() - delayed_pages
                + self.spill_images.total as usize,
            pages_in_flight: self.pages_in_flight,
            images_in_flight: self.images_in_flight,
            pages_spilled: self.spill_pages.total as usize,
            images_spilled: self.spill_images.total as usize,
            images_committing: self.after_commit.len() + self.committing,
        }
    }

    /// Waiting jobs of each kind kept in memory (`frontier_in_memory`).
    fn in_memory(&self) -> usize {
        self.settings.workers.frontier_in_memory.get()
    }

    /// Spilled jobs to read back with a commit carrying `pages`/`images` newly spilled ones.
    fn loads(&self, pages: u64, images: u64) -> (LoadSpilled, LoadSpilled) {
        let bound = self.in_memory();
        (
            self.spill_pages
                .load(pages, self.frontier.pages_waiting(), bound),
            self.spill_images
                .load(images, self.frontier.images_waiting(), bound),
        )
    }

    /// Whether spilled jobs should be read back now (the frontier is down to half).
    fn refill_due(&self) -> bool {
        let (p, i) = self.loads(0, 0);
        p.take > 0 || i.take > 0
    }

    /// Sends the pending state changes as one group commit, unless one is in flight, and reads
    /// back spilled jobs when the frontier has room. Once the changes are durable, the events that
    /// waited for them (saved images) are told, and the crawl may end.
    fn commit(&mut self, ctx: &mut Context<Self>) {
        if self.commit_in_flight
            || self.fatal.is_some()
            || (self.pending.is_empty() && (self.stopping || !self.refill_due()))
        {
            return;
        }
        self.commit_in_flight = true;
        let ops = std::mem::take(&mut self.pending);
        let events = std::mem::take(&mut self.after_commit);
        self.committing = events.len();
        let shared_ops = self.shared_batch();
        let (mut new_pages, mut new_images) = (0, 0);
        for op in &ops {
            match op {
                StateOp::PageQueued { spilled: true, .. } => new_pages += 1,
                StateOp::ImageQueued { spilled: true, .. } => new_images += 1,
                _ => {}
            }
        }
        let (load_pages, load_images) = if self.stopping {
            Default::default()
        } else {
            self.loads(new_pages, new_images)
        };
        let request = self.writer.send(CommitState {
            ops,
            load_pages,
            load_images,
        });
        ctx.spawn(request.into_actor(self).map(move |res, act, ctx| {
            act.commit_in_flight = false;
            act.committing = 0;
            match res {
                Ok(Ok(loaded)) => {
                    for event in events {
                        act.logger.do_send(event);
                    }
                    act.shared_committed(shared_ops);
                    act.spill_pages
                        .after(new_pages, load_pages, loaded.pages.len());
                    act.spill_images
                        .after(new_images, load_images, loaded.images.len());
                    act.queue_waiting(loaded.pages, loaded.images);
                }
                Ok(Err(e)) => act.fail(e, ctx),
                Err(e) => act.fail(Error::aborted("the disk writer", e), ctx),
            }
            if act.pending.len() >= COMMIT_BATCH || act.ending_soon() || act.refill_due() {
                act.commit(ctx);
            }
            act.pump(ctx);
        }));
    }

    /// Whether the crawl is about to end (so the last changes should be committed now).
    fn ending_soon(&self) -> bool {
        let q = self.queues();
        self.stopping
            || (q.pages_waiting + q.images_waiting + q.pages_in_flight + q.images_in_flight) == 0
    }

    /// Ends the crawl after an error the crawl cannot go on with (the disk is full or unwritable).
    /// What is committed stays; what was in flight is done again by the next run.
    fn fail(&mut self, why: Error, ctx: &mut Context<Self>) {
        if self.fatal.is_none() {
            log::error!("{why}");
            self.fatal = Some(Arc::new(why));
        }
        self.stopping = true;
        self.abandon = true;
        self.check_done(ctx);
    }

    fn check_done(&mut self, ctx: &mut Context<Self>) {
        let q = self.queues();
        let idle = self.abandon || (q.pages_in_flight == 0 && q.images_in_flight == 0);
        let empty = q.pages_waiting == 0 && q.images_waiting == 0;
        if self.ending || !idle || !(empty || self.stopping) {
            return;
        }
        if self.fatal.is_none() && (self.commit_in_flight || !self.pending.is_empty()) {
            // The last changes first: the crawl is over only once they are durable.
            self.commit(ctx);
            return;
        }
        if !self.shared_settled(ctx) {
            return;
        }
        self.ending = true;
        for timer in self.timers.drain(..) {
            ctx.cancel_future(timer);
        }
        let outcome = if self.stopping {
            Outcome::Stopped
        } else {
            Outcome::Finished
        };
        let (logger, writer) = (self.logger.clone(), self.writer.clone());
        let fatal = self.fatal.clone();
        let whole = self.whole_crawl_counts();
        let finish = async move {
            let whole_crawl = match whole {
                Some(counts) => counts.await,
                None => None,
            };
            let report = logger
                .send(Finish {
                    outcome,
                    whole_crawl,
                })
                .await;
            let report = match report {
                Ok(Ok(report)) => Ok(report),
                Ok(Err(e)) => Err(e),
                Err(e) => Err(Error::aborted("the Logger", e)),
            };
            let ended = match fatal {
                Some(why) => Err(Error::Disk(why)),
                // The manifest is rewritten from the committed state, so the two always agree.
                None => match writer.send(ExportManifest).await {
                    Ok(Ok(_)) => report,
                    Ok(Err(e)) => Err(Error::Disk(Arc::new(e))),
                    Err(e) => Err(Error::aborted("the disk writer", e)),
                },
            };
            let _ = writer.send(CloseOutput).await;
            ended
        };
        ctx.spawn(finish.into_actor(self).map(|report, act, _| {
            let report = report.map_err(Arc::new);
            // Every worker is told to stop: the savers share the Supervisor's thread, which is
            // not the crawl's to stop. The fetchers' threads are.
            for s in &act.fetchers {
                s.addr.do_send(Retire);
            }
            for s in &act.savers {
                s.addr.do_send(Retire);
            }
            for arbiter in act.arbiters.drain(..) {
                arbiter.stop();
            }
            for w in act.waiters.drain(..) {
                let _ = w.send(report.clone());
            }
            act.report = Some(report);
        }));
    }

    fn sweep(&mut self, ctx: &mut Context<Self>) {
        for slot in 0..self.fetchers.len() {
            if !self.fetchers[slot].addr.connected() {
                self.replace(Kind::Page, slot, ctx);
            }
        }
        for slot in 0..self.savers.len() {
            if !self.savers[slot].addr.connected() {
                self.replace(Kind::Image, slot, ctx);
            }
        }
        let q = self.queues();
        self.logger.do_send(CrawlEvent::Progress {
            pages_waiting: q.pages_waiting,
            images_waiting: q.images_waiting,
            in_flight: q.pages_in_flight + q.images_in_flight + q.images_committing,
        });
        self.pump(ctx);
    }
}

/// The slot with the fewest jobs, if it has room for another.
fn free_slot<A: Actor>(slots: &[Slot<A>], credit: usize) -> Option<usize> {
    let (i, s) = slots.iter().enumerate().min_by_key(|(_, s)| s.inflight)?;
    (s.inflight < credit).then_some(i)
}

impl Actor for Supervisor {
    type Context = Context<Self>;

    fn started(&mut self, ctx: &mut Context<Self>) {
        ctx.set_mailbox_capacity(1024);
        // Fetchers on their own threads, savers on this one (see `launch`).
        for slot in 0..self.settings.workers.fetchers.get() {
            let addr = self.start_fetcher(slot, 0, ctx);
            self.fetchers.push(Slot {
                addr,
                generation: 0,
                inflight: 0,
            });
        }
        for slot in 0..self.settings.workers.savers.get() {
            let addr = self.start_saver(slot, 0, ctx);
            self.savers.push(Slot {
                addr,
                generation: 0,
                inflight: 0,
            });
        }
        let resumed_pages = self
            .restored
            .as_ref()
            .filter(|r| !r.is_empty())
            .map(|r| r.pages.len());
        if let Some(resume) = self.restored.take() {
            self.restore(resume);
        }
        self.logger.do_send(CrawlEvent::Started {
            fetchers: self.fetchers.len(),
            savers: self.savers.len(),
            writers: self.settings.workers.writers.get(),
            threads: self.arbiters.len(),
            previously_saved: self.admission.saved().len(),
            resumed_pages,
        });
        if self.shared.is_some() {
            // Delays, pauses and in-flight limits per host hold for the whole cluster.
            self.politeness.gate();
        }
        self.timers
            .push(ctx.run_interval(SWEEP_EVERY, |act, ctx| act.sweep(ctx)));
        self.timers
            .push(ctx.run_interval(COMMIT_EVERY, |act, ctx| act.commit(ctx)));
        if let Some(sh) = &self.shared {
            let every = sh.cluster().lease() / 3;
            self.timers
                .push(ctx.run_interval(every, |act, ctx| act.renew_leases(ctx)));
        }
        self.seed();
        self.pump(ctx);
    }
}

impl Handler<WorkerDown> for Supervisor {
    type Result = ();

    fn handle(&mut self, m: WorkerDown, ctx: &mut Context<Self>) {
        if self.ending {
            return;
        }
        let current = match m.kind {
            Kind::Page => self.fetchers.get(m.slot).map(|s| s.generation),
            Kind::Image => self.savers.get(m.slot).map(|s| s.generation),
        };
        if current == Some(m.generation) {
            self.replace(m.kind, m.slot, ctx);
            self.pump(ctx);
        }
    }
}

impl Handler<BodyIn> for Supervisor {
    type Result = ();

    fn handle(&mut self, m: BodyIn, ctx: &mut Context<Self>) {
        // An answer that came first has freed the slot and removed the booking.
        if let Some(b) = self.bookings.get_mut(&m.0) {
            if !b.freed {
                b.freed = true;
                self.response_times.observe(b.kind, b.started.elapsed());
                self.politeness.finished(&b.host);
                self.free_permit(m.0, ctx);
                self.pump(ctx);
            }
        }
    }
}

impl Handler<StopCrawl> for Supervisor {
    type Result = ();

    fn handle(&mut self, _: StopCrawl, ctx: &mut Context<Self>) {
        if !self.stopping {
            log::info!(
                "stopping: no new work is handed out; waiting for {} requests in flight",
                self.pages_in_flight + self.images_in_flight
            );
        }
        if !self.stopping {
            ctx.run_later(STOP_GRACE, |act, ctx| {
                if !act.ending {
                    log::info!("abandoning the requests still in flight; the next run does them");
                    act.abandon = true;
                    act.check_done(ctx);
                }
            });
        }
        self.stopping = true;
        self.check_done(ctx);
    }
}

impl Handler<AwaitReport> for Supervisor {
    type Result = ResponseFuture<Result<CrawlReport, Error>>;

    fn handle(&mut self, _: AwaitReport, _: &mut Context<Self>) -> Self::Result {
        let to_error = |r: Result<CrawlReport, Arc<Error>>| r.map_err(Error::Ended);
        if let Some(report) = &self.report {
            let report = to_error(report.clone());
            return Box::pin(async move { report });
        }
        let (tx, rx) = oneshot::channel();
        self.waiters.push(tx);
        Box::pin(async move {
            rx.await
                .map_err(|e| Error::aborted("the Supervisor", e))
                .and_then(to_error)
        })
    }
}

impl Handler<GetWorkers> for Supervisor {
    type Result = MessageResult<GetWorkers>;

    fn handle(&mut self, _: GetWorkers, _: &mut Context<Self>) -> Self::Result {
        MessageResult(WorkerAddrs {
            fetchers: self.fetchers.iter().map(|s| s.addr.clone()).collect(),
            savers: self.savers.iter().map(|s| s.addr.clone()).collect(),
        })
    }
}

impl Handler<GetActivity> for Supervisor {
    type Result = MessageResult<GetActivity>;

    fn handle(&mut self, _: GetActivity, _: &mut Context<Self>) -> Self::Result {
        let state = match &self.report {
            Some(Ok(r)) if r.outcome == Outcome::Finished => CrawlState::Finished,
            Some(Ok(_)) => CrawlState::Stopped,
            Some(Err(_)) => CrawlState::Failed,
            None if self.stopping => CrawlState::Stopping,
            None => CrawlState::Running,
        };
        MessageResult(Activity {
            state,
            queues: self.queues(),
            hosts_in_flight: self
                .politeness
                .hosts_in_flight()
                .map(|(h, n)| (h.to_string(), n))
                .collect(),
            response_times: self.response_times.clone(),
        })
    }
}

impl Handler<GetQueues> for Supervisor {
    type Result = MessageResult<GetQueues>;

    fn handle(&mut self, _: GetQueues, _: &mut Context<Self>) -> Self::Result {
        MessageResult(self.queues())
    }
}
