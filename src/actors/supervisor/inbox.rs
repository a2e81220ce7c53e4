//! The Supervisor's inbox: every message it takes, what it answers, and its handlers, each of which
//! unpacks the message and hands it to the crawl loop.

use std::sync::Arc;

use actix::prelude::*;
use tokio::sync::oneshot;

use super::Supervisor;
use crate::activity::{Activity, CrawlState, QueueState};
use crate::actors::image_saver::ImageSaver;
use crate::actors::page_fetcher::PageFetcher;
use crate::cluster::BytesClaim;
use crate::error::Error;
use crate::frontier::Wake;
use crate::records::{CrawlReport, Outcome};
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

/// The body of request `0` (its booking id) has been read in full: its host's slot is free.
#[derive(Debug, Clone, Copy, Message)]
#[rtype(result = "()")]
pub struct BodyIn(pub u64);

/// Fired by a worker once a response's body has been read in full, so that the Supervisor can free
/// the host's request slot while the worker goes on parsing or storing: politeness counts requests
/// the server is serving, not work done afterwards. A job that ends without firing it (a failure, a
/// redirect, a dead worker) has its slot freed when its answer comes.
#[derive(Debug, Default)]
pub struct BodyDone(Option<(Recipient<BodyIn>, u64)>);

impl BodyDone {
    /// The signal for booking `id`, sent to `supervisor`.
    pub fn new(supervisor: Recipient<BodyIn>, id: u64) -> Self {
        BodyDone(Some((supervisor, id)))
    }

    /// Tells the Supervisor the body is in (later calls do nothing).
    pub fn fire(&mut self) {
        if let Some((to, id)) = self.0.take() {
            to.do_send(BodyIn(id));
        }
    }
}

/// Asks the shared crawl, through the Supervisor's connection, whether another process stores
/// these bytes already, or claims them for this one (answers an error text when Redis cannot be
/// asked; always "mine" in a crawl of this process alone).
#[derive(Debug, Message)]
#[rtype(result = "Result<BytesClaim, String>")]
pub struct ClaimBytes {
    /// Hex SHA-256 of the bytes.
    pub sha256: String,
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

/// Answers with what the crawl is doing now (for metrics and status pages).
#[derive(Debug, Message)]
#[rtype(result = "Activity")]
pub struct GetActivity;

impl Handler<WorkerDown> for Supervisor {
    type Result = ();

    fn handle(&mut self, m: WorkerDown, ctx: &mut Context<Self>) {
        if !self.ending && self.is_current(m.kind, m.slot, m.generation) {
            self.replace(m.kind, m.slot, ctx);
            self.pump(ctx);
        }
    }
}

impl Handler<BodyIn> for Supervisor {
    type Result = ();

    fn handle(&mut self, m: BodyIn, ctx: &mut Context<Self>) {
        if self.body_in(m.0) {
            self.pump(ctx);
        }
    }
}

impl Handler<Wake> for Supervisor {
    type Result = ();

    fn handle(&mut self, _: Wake, ctx: &mut Context<Self>) {
        self.pump(ctx);
    }
}

impl Handler<ClaimBytes> for Supervisor {
    type Result = ResponseFuture<Result<BytesClaim, String>>;

    fn handle(&mut self, m: ClaimBytes, _: &mut Context<Self>) -> Self::Result {
        self.frontier.claim_bytes(m.sha256)
    }
}

impl Handler<StopCrawl> for Supervisor {
    type Result = ();

    fn handle(&mut self, _: StopCrawl, ctx: &mut Context<Self>) {
        self.stop(ctx);
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
            fetchers: self.fetchers.addrs(),
            savers: self.savers.addrs(),
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
