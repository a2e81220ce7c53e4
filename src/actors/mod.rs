//! The actors and who sends what to whom (every message):
//!
//! ```text
//! Supervisor ──FetchRobots, FetchPage──▶ PageFetcher ×fetchers  (answers RobotsFound | PageDone | Failure)
//!   │  ▲ ▲   ──SaveImage──▶ ImageSaver ×savers  (answers ImageDone | Failure)
//!   │  │ │       │  └─AppendTemp, WriteImage, DiscardTemp──▶ DiskWriter ×writers
//!   │  │ └───────┴─ BodyIn (a body is in: its host's slot is free), ClaimBytes (shared crawl)
//!   │  └─ WorkerDown (a worker's DeathGuard), Wake (the frontier's Redis tasks)
//!   ├──CommitState (the group commit; answers spilled jobs read back), ExportManifest,
//!   │  CloseOutput──▶ DiskWriter
//!   └──CrawlEvent (do_send), Finish──▶ Logger ──AppendRecords, WriteFileAtomic──▶ DiskWriter
//! Crawl (the handle) ──StopCrawl, AwaitReport, GetWorkers, GetQueues, GetActivity──▶ Supervisor
//!                    ──Subscribe, GetStats──▶ Logger
//! ```
//!
//! The Supervisor owns every job until its outcome arrives. Workers hold a [`DeathGuard`]; when a
//! worker dies (a panic in a handler stops an actix actor for good, it is not restarted), the guard
//! sends [`supervisor::WorkerDown`], the jobs it held fail with `MailboxError`, and the
//! Supervisor requeues them and starts a replacement on the same arbiter thread.

pub mod disk_writer;
pub mod image_saver;
pub mod logger;
pub mod page_fetcher;
pub mod supervisor;

use actix::prelude::*;

use supervisor::WorkerDown;

use crate::Kind;

/// Held by every worker; when the worker's state is dropped (the actor died or was stopped), tells
/// the Supervisor which slot, and which generation of it, is gone.
#[derive(Debug)]
pub struct DeathGuard {
    /// Which pool.
    pub kind: Kind,
    /// The slot in the pool.
    pub slot: usize,
    /// Which incarnation of the slot this worker is (a replacement gets the next).
    pub generation: u64,
    /// Whom to tell.
    pub supervisor: Recipient<WorkerDown>,
}

impl Drop for DeathGuard {
    fn drop(&mut self) {
        self.supervisor.do_send(WorkerDown {
            kind: self.kind,
            slot: self.slot,
            generation: self.generation,
        });
    }
}

/// The crawl is over: the worker stops. Sent to every worker at the end, so that those sharing the
/// Supervisor's thread (which outlives the crawl, to answer questions about it) stop too.
#[derive(Debug, Clone, Copy, Message)]
#[rtype(result = "()")]
pub struct Retire;

/// Fault injection: the worker receiving it panics in its handler, as a bug would make it. Used to
/// test that the Supervisor replaces dead workers and loses none of their jobs.
#[derive(Debug, Clone, Copy, Message)]
#[rtype(result = "()")]
pub struct Crash;
