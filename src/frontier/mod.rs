//! The frontier: where the crawl's waiting work lives. [`Frontier`] is the seam between the
//! Supervisor's one crawl loop and its two homes:
//! - [`LocalFrontier`]: per-host queues in memory, and beyond `workers.frontier_in_memory` jobs of
//!   a kind, in the state database (spilled, read back with a commit when the queue drains);
//! - [`SharedFrontier`]: the shared crawl's queues in Redis, of which this process leases jobs as
//!   its workers have room; new work is published there, outcomes acknowledged, leases renewed,
//!   and request starts granted per host for all processes together.
//!
//! The Supervisor decides policy (admission, retries, politeness); the frontier decides storage
//! and sharing. Either way the jobs handed to this process's workers wait in per-host queues
//! ([`HostQueues`]) ordered by [`Politeness`].

mod local;
mod permits;
mod politeness;
mod queues;
mod shared;

use std::future::Future;
use std::pin::Pin;
use std::time::Duration;

use tokio::time::Instant;
use url::Url;

use crate::cluster::BytesClaim;
use crate::job::Job;
use crate::records::{ManifestRow, WholeCrawl};
use crate::seen::SeenSet;
use crate::state::{LoadSpilled, Loaded, Resume, StateOp};
use crate::Kind;

pub use local::LocalFrontier;
pub use politeness::Politeness;
pub use queues::{Blocked, HostQueues, KindQueues};
pub use shared::SharedFrontier;

/// A future the frontier hands back for the Supervisor to await on its own thread.
pub type LocalFuture<T> = Pin<Box<dyn Future<Output = T>>>;

/// Where a newly admitted job went.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Placed {
    /// Queued in this process (in memory, or `spilled` to the state database): it is recorded
    /// in the local state, and its host's robots.txt is needed here.
    Here {
        /// Kept only in the state database until the queue drains.
        spilled: bool,
    },
    /// Sent to the shared crawl, which hands it to whichever process takes it.
    Shared,
}

/// What the earlier runs left that the crawl loop takes back.
#[derive(Debug, Default)]
pub struct Restored {
    /// Pages admitted before (seen).
    pub pages: SeenSet,
    /// Images admitted before (seen).
    pub images: SeenSet,
    /// Jobs to queue again (waiting, or in flight when the earlier run stopped).
    pub waiting: Vec<Job>,
}

/// A group commit on its way, as the frontier wants it: the spilled jobs to read back with it,
/// and what waits for it to be durable.
#[derive(Debug, Default)]
pub struct CommitTicket {
    /// Spilled pages to read back.
    pub load_pages: LoadSpilled,
    /// Spilled images to read back.
    pub load_images: LoadSpilled,
    /// Jobs the batch spills: pages, images.
    spilled: (u64, u64),
    /// Acknowledgements to publish once the batch is durable (a shared crawl's saved images).
    after: Vec<crate::cluster::Op>,
}

/// What the crawl loop tells the frontier when it drives it, and what it gets back.
pub struct Drive<'a> {
    /// Per-host limits (a shared crawl grants request starts into it).
    pub politeness: &'a mut Politeness,
    /// Jobs of each kind (pages, images) the workers could use: twice their credit.
    pub capacity: [usize; 2],
    /// Jobs of each kind this process holds: waiting, waiting for a retry, in flight.
    pub held: [usize; 2],
    /// Some worker has room for another job.
    pub room: bool,
    /// No new work is handed out (a stop).
    pub stopping: bool,
    /// The crawl cannot go on (the disk failed).
    pub failed: bool,
}

/// Something the frontier waited for has come: the Supervisor's loop runs again.
#[derive(Debug, Clone, Copy, actix::Message)]
#[rtype(result = "()")]
pub struct Wake;

/// Where the crawl's waiting work lives; see the module documentation.
pub trait Frontier: Send {
    /// Whether the admission keeps `scope.max_pages` itself (a shared crawl's budget is kept in
    /// Redis for all processes together).
    fn admission_keeps_budget(&self) -> bool;
    /// Whether image savers must claim bytes from the shared crawl before storing them.
    fn shares_bytes(&self) -> bool;
    /// The crawl starts: sets up per-host limits; `wake` is whom to wake when something the
    /// frontier waited for has come.
    fn start(&mut self, politeness: &mut Politeness, wake: actix::Recipient<Wake>);
    /// Takes back what earlier runs left in this output directory.
    fn restore(&mut self, resume: Resume) -> Restored;
    /// Takes a newly admitted job.
    fn add(&mut self, job: Job) -> Placed;
    /// The jobs waiting in this process, whose hosts this process contacts.
    fn queues(&self) -> &KindQueues;
    /// The same, to change.
    fn queues_mut(&mut self) -> &mut KindQueues;
    /// Queues a job held here again (a retry, a job a dead worker held, one taken or read back).
    fn push(&mut self, job: Job) {
        self.queues_mut().push(job);
    }
    /// Takes the next job of `kind` whose host may be contacted now.
    fn pop(&mut self, kind: Kind, politeness: &Politeness, now: Instant) -> Result<Job, Blocked> {
        self.queues_mut().pop(kind, politeness, now)
    }
    /// Jobs of `kind` waiting in memory here.
    fn waiting(&self, kind: Kind) -> usize {
        self.queues().len(kind)
    }
    /// Jobs of `kind` waiting in the state database only.
    fn spilled(&self, kind: Kind) -> usize;
    /// The job of `kind` at `url` has its outcome (counted in the shared crawl as `count`).
    fn done(&mut self, kind: Kind, url: &Url, count: Option<&'static str>);
    /// The image at `url` was saved with `row` (told once the local state says so).
    fn saved(&mut self, url: &Url, row: &ManifestRow);
    /// The page at `url` was fetched with `validators` and held `found` (see
    /// [`crate::extract::Extracted::encode`]): kept for the next update run where the local state
    /// is not enough (a shared crawl keeps it in Redis; the local state has it already).
    fn keep_page(&mut self, _url: &Url, _validators: &crate::job::Validators, _found: &str) {}
    /// A group commit carrying `ops` is sent: what to read back with it (nothing when
    /// `stopping`), and what waits for it.
    fn commit_begins(&mut self, ops: &[StateOp], stopping: bool) -> CommitTicket;
    /// That commit is durable, and read back `loaded`: answers the jobs to queue here.
    fn commit_done(&mut self, ticket: CommitTicket, loaded: Loaded) -> Vec<Job>;
    /// Whether spilled jobs should be read back now (the queue is down to half).
    fn refill_due(&self) -> bool;
    /// Takes in what came back since the last call: request starts granted (into
    /// `politeness`), and the jobs handed to this process, answered to be recorded and queued.
    fn absorb(&mut self, politeness: &mut Politeness) -> Vec<Job>;
    /// Publishes what waits, takes more work when workers have room, asks for request starts.
    fn drive(&mut self, drive: &mut Drive<'_>);
    /// Whether the crawl may end now as far as the frontier is concerned (everything published,
    /// and nothing left anywhere, or this process stopping); starts what is missing otherwise.
    fn settled(&mut self, drive: &mut Drive<'_>) -> bool;
    /// A request to `host` booked as `id` starts.
    fn request_started(&mut self, id: u64, host: &str);
    /// The request to `host` booked as `id` no longer holds its host's slot.
    fn request_freed(&mut self, id: u64, host: &str, politeness: &Politeness);
    /// `host` asked (with `Retry-After`) for no requests during `wait`.
    fn host_paused(&mut self, host: &str, wait: Duration);
    /// The whole crawl's counters, read at the end (`None` for a crawl of this process alone).
    fn whole_crawl(&self) -> Option<LocalFuture<Option<WholeCrawl>>>;
    /// Asks whether this process should store the image with these bytes (see
    /// [`BytesClaim`]); always yes for a crawl of this process alone.
    fn claim_bytes(&self, sha256: String) -> LocalFuture<Result<BytesClaim, String>>;
}
