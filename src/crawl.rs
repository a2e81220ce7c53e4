//! The library entry point: [`Crawl`], a handle to a running crawl inside the caller's actix
//! System. Starting a crawl creates the DiskWriter threads, opens the output directory, and starts
//! the Logger and the Supervisor on the System's arbiter (which starts the image savers there and
//! the page fetchers on threads of their own, see [`Supervisor::launch`]).

use std::sync::Arc;

use actix::prelude::*;

use crate::activity::{Activity, QueueState};
use crate::actors::disk_writer::{DiskWriter, OpenOutput};
use crate::actors::logger::{CrawlEvent, GetStats, Logger, Subscribe};
use crate::actors::supervisor::{
    AwaitReport, GetActivity, GetQueues, GetWorkers, StopCrawl, Supervisor, WorkerAddrs,
};
use crate::cluster::Cluster;
use crate::error::Error;
use crate::frontier::{Frontier, LocalFrontier, SharedFrontier};
use crate::records::{CrawlReport, Stats};
use crate::settings::Settings;
use crate::state::fingerprint;

/// Configures a crawl before starting it.
pub struct CrawlBuilder {
    settings: Settings,
    subscribers: Vec<Recipient<CrawlEvent>>,
    fresh: bool,
}

impl CrawlBuilder {
    /// Adds a recipient of every [`CrawlEvent`], from the very first.
    pub fn subscribe(mut self, recipient: Recipient<CrawlEvent>) -> Self {
        self.subscribers.push(recipient);
        self
    }

    /// Starts over instead of resuming: the state and records of an earlier crawl in the output
    /// directory are removed first (its image files are kept, and taken over by the first image
    /// with the same bytes instead of writing a copy).
    pub fn fresh(mut self, fresh: bool) -> Self {
        self.fresh = fresh;
        self
    }

    /// Starts the crawl, resuming the one the output directory holds, if any. Must run inside an actix System (for example in an actix-web handler or
    /// `#[actix::main]`). Fails if the output directory cannot be prepared.
    pub async fn start(self) -> Result<Crawl, Error> {
        let settings = Arc::new(self.settings);
        let in_memory = settings.workers.frontier_in_memory.get();
        // The one place the two modes part: where waiting work lives.
        let frontier: Box<dyn Frontier> = match &settings.distributed {
            Some(d) => {
                let mut cluster = Cluster::connect(d, settings.scope.max_pages).await?;
                if settings.update {
                    let (started, run) =
                        cluster.begin_update().await.map_err(|e| Error::Cluster {
                            url: d.redacted_url(),
                            what: "start of the update run",
                            source: e,
                        })?;
                    match started {
                        true => {
                            log::info!("the shared crawl {}: update run {run} starts", d.crawl_id)
                        }
                        false => log::info!("the shared crawl {}: joining run {run}", d.crawl_id),
                    }
                }
                log::info!(
                    "joined the shared crawl {} on {} as {} (role {})",
                    d.crawl_id,
                    d.redacted_url(),
                    cluster.consumer(),
                    d.role
                );
                let per_host = settings.http.per_host_concurrency.get();
                Box::new(SharedFrontier::new(cluster, d.role, per_host))
            }
            None => Box::new(LocalFrontier::new(in_memory)),
        };
        let prototype = DiskWriter::new(settings.out_dir.clone(), settings.filename.clone());
        let writer = SyncArbiter::start(settings.workers.writers.get(), move || prototype.clone());
        let resume = writer
            .send(OpenOutput {
                fresh: self.fresh,
                fingerprint: fingerprint(&settings.start_urls),
                in_memory,
                update: settings.update,
            })
            .await
            .map_err(|e| Error::aborted("the disk writer", e))??;
        // Beside the Supervisor (see `Supervisor::launch`): most events come from it.
        let logger = Logger::new(settings.clone(), writer.clone(), self.subscribers);
        let logger = Logger::start_in_arbiter(System::current().arbiter(), move |_| logger);
        let supervisor =
            Supervisor::new(settings, frontier, writer, logger.clone(), resume).launch();
        Ok(Crawl { supervisor, logger })
    }
}

/// A running (or finished) crawl. Cheap to clone; every clone talks to the same crawl.
#[derive(Clone)]
pub struct Crawl {
    supervisor: Addr<Supervisor>,
    logger: Addr<Logger>,
}

fn gone(e: MailboxError) -> Error {
    Error::aborted("the crawl's actors", e)
}

impl Crawl {
    /// A builder for a crawl with `settings`.
    pub fn builder(settings: Settings) -> CrawlBuilder {
        CrawlBuilder {
            settings,
            subscribers: Vec::new(),
            fresh: false,
        }
    }

    /// Starts a crawl with `settings` and no subscriber. See [`CrawlBuilder::start`].
    pub async fn start(settings: Settings) -> Result<Crawl, Error> {
        Self::builder(settings).start().await
    }

    /// Adds a recipient of every later [`CrawlEvent`].
    pub fn subscribe(&self, recipient: Recipient<CrawlEvent>) {
        self.logger.do_send(Subscribe(recipient));
    }

    /// The counters so far (final ones once the crawl has ended).
    pub async fn stats(&self) -> Result<Stats, Error> {
        self.logger.send(GetStats).await.map_err(gone)
    }

    /// The sizes of the queues.
    pub async fn queues(&self) -> Result<QueueState, Error> {
        self.supervisor.send(GetQueues).await.map_err(gone)
    }

    /// What the crawl is doing now: its state, queues, requests per host and response times.
    pub async fn activity(&self) -> Result<Activity, Error> {
        self.supervisor.send(GetActivity).await.map_err(gone)
    }

    /// The current workers' addresses (for example to watch or test them).
    pub async fn workers(&self) -> Result<WorkerAddrs, Error> {
        self.supervisor.send(GetWorkers).await.map_err(gone)
    }

    /// Stops handing out work; what is in flight finishes, then the crawl ends as stopped.
    pub fn stop(&self) {
        self.supervisor.do_send(StopCrawl);
    }

    /// Waits for the end of the crawl and returns its report (at once if it has ended).
    pub async fn wait(&self) -> Result<CrawlReport, Error> {
        self.supervisor.send(AwaitReport).await.map_err(gone)?
    }
}

#[cfg(test)]
mod tests {
    use std::time::{Duration, Instant};

    use super::*;
    use crate::sample_site::{SampleServer, SampleSite};
    use crate::ConfigSources;

    /// Polls `done` every 20 ms until it holds or 10 s have passed.
    async fn eventually(mut done: impl FnMut() -> bool) -> bool {
        let deadline = Instant::now() + Duration::from_secs(10);
        while !done() {
            if Instant::now() > deadline {
                return false;
            }
            actix_rt::time::sleep(Duration::from_millis(20)).await;
        }
        true
    }

    #[actix_rt::test]
    async fn the_crawl_answers_after_its_end_and_stops_with_its_last_handle() {
        let site = SampleSite {
            pages: 1,
            per_page: 3,
            page_kb: 0,
        };
        let server = SampleServer::start(site, 0).unwrap();
        let out = tempfile::tempdir().unwrap();
        let mut sources = ConfigSources::default();
        sources.flag("start_urls", "test", vec![server.url() + "list/1.html"]);
        sources.flag("out_dir", "test", out.path().to_string_lossy().into_owned());
        sources.flag("http.retries", "test", 0);
        let crawl = Crawl::start(Settings::load(&sources).unwrap())
            .await
            .unwrap();
        let report = crawl.wait().await.unwrap();
        assert_eq!(report.stats.images_saved + report.stats.duplicates, 3);

        // Every worker stops at the end: the fetchers with their threads, the savers beside the
        // Supervisor too.
        let workers = crawl.workers().await.unwrap();
        assert_eq!(workers.fetchers.len(), 3);
        assert!(
            eventually(|| workers
                .fetchers
                .iter()
                .map(Addr::connected)
                .chain(workers.savers.iter().map(Addr::connected))
                .all(|up| !up))
            .await,
            "a worker is still running after the end"
        );

        // The Supervisor and the Logger answer as long as a handle is held...
        let (supervisor, logger) = (crawl.supervisor.downgrade(), crawl.logger.downgrade());
        let last = crawl.clone();
        drop(crawl);
        actix_rt::time::sleep(Duration::from_millis(100)).await;
        assert_eq!(last.wait().await.unwrap(), report);
        assert_eq!(last.stats().await.unwrap(), report.stats);
        // ...and stop once the last one is dropped.
        drop(last);
        assert!(
            eventually(|| supervisor.upgrade().is_none() && logger.upgrade().is_none()).await,
            "the crawl's actors outlive its last handle"
        );
        server.stop().await;
    }
}
