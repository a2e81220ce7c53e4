//! The Supervisor in a shared crawl (`distributed.redis_url`): new pages and images go to the shared
//! queue instead of the local frontier; the local frontier holds only the jobs leased to this
//! process (taken as workers have room), still ordered by per-host politeness; a job is
//! acknowledged once its outcome is stored; leases are renewed while jobs are held, and given back
//! when the process stops. The crawl ends when Redis says that nothing is open anywhere.

use std::collections::HashMap;
use std::time::Duration;

use actix::prelude::*;
use tokio::time::Instant;
use url::Url;

use super::permits::Permits;
use super::{Delayed, Supervisor, IMAGE_CREDIT, PAGE_CREDIT};
use crate::actors::image_saver::ClaimBytes;
use crate::actors::logger::CrawlEvent;
use crate::cluster::{encode_image, encode_page, BytesClaim, Cluster, Op, Outcome, Taken};
use crate::frontier::{ImageJob, PageJob};
use crate::records::{ManifestRow, WholeCrawl};
use crate::settings::Role;
use crate::state::StateOp;
use crate::Kind;

/// How often an idle process asks for work (and whether the crawl is complete).
const POLL_EVERY: Duration = Duration::from_millis(150);
/// The longest pause between attempts while Redis is unreachable.
const MAX_BACKOFF: Duration = Duration::from_secs(5);

/// A job leased to this process.
#[derive(Debug)]
struct Lease {
    /// Its stream entry id.
    id: String,
    /// The job as it was handed out, to give back unchanged if this process stops.
    json: String,
}

/// The shared-crawl state of a Supervisor.
pub(super) struct Shared {
    /// The connection to the shared crawl.
    cluster: Cluster,
    /// What this process does.
    role: Role,
    /// Jobs leased to this process (waiting here, retrying or in flight), by kind and URL.
    leases: HashMap<(Kind, Url), Lease>,
    /// Changes not yet sent to Redis, in order.
    outbox: Vec<Op>,
    /// Changes that may only be sent once the local state is committed (saved images).
    after_commit: Vec<Op>,
    /// A publish is in flight (one at a time, so batches land in order).
    publishing: bool,
    /// A take is in flight.
    taking: bool,
    /// Redis said the crawl is complete.
    complete: bool,
    /// Where each stream's scan for expired leases goes on.
    claim_from: HashMap<Kind, String>,
    /// Redis failed this many times in a row (for the backoff).
    failures: u32,
    /// No Redis call before this (backing off after a failure).
    paused_until: Option<Instant>,
    /// A poll for work is scheduled.
    poll_scheduled: bool,
    /// This process took a job (else a crawl found complete is reported as such).
    worked: bool,
    /// Request starts granted by the cluster, in use, or being asked for.
    pub(super) gate: Permits,
}

impl Shared {
    /// The shared state for a process with `role` on `cluster`.
    pub(super) fn new(cluster: Cluster, role: Role) -> Shared {
        Shared {
            cluster,
            role,
            leases: HashMap::new(),
            outbox: Vec::new(),
            after_commit: Vec::new(),
            publishing: false,
            taking: false,
            complete: false,
            claim_from: HashMap::new(),
            failures: 0,
            paused_until: None,
            poll_scheduled: false,
            worked: false,
            gate: Permits::default(),
        }
    }

    /// The connection to the shared crawl.
    pub(super) fn cluster(&self) -> &Cluster {
        &self.cluster
    }

    pub(super) fn backoff(&mut self, what: &str, e: &redis::RedisError) {
        self.failures += 1;
        let wait = (Duration::from_millis(100) * 2u32.saturating_pow(self.failures.min(10)))
            .min(MAX_BACKOFF);
        log::warn!(
            "Redis: cannot {what}: {e}; pausing the shared crawl, next try in {:.1} s",
            wait.as_secs_f64()
        );
        self.paused_until = Some(Instant::now() + wait);
    }

    pub(super) fn recovered(&mut self) {
        if self.failures > 0 {
            log::info!("Redis is back; the shared crawl goes on");
        }
        self.failures = 0;
        self.paused_until = None;
    }

    pub(super) fn paused(&self) -> bool {
        self.paused_until.is_some_and(|t| t > Instant::now())
    }
}

impl Supervisor {
    /// In a shared crawl, sends a newly found page to the shared queue (which drops it if any
    /// process saw its URL before); returns `false` for a local crawl.
    pub(super) fn share_page(&mut self, url: &Url, depth: u32, barren: u32, from: &[Url]) -> bool {
        let Some(sh) = &mut self.shared else {
            return false;
        };
        sh.outbox.push(Op::Page(PageJob {
            url: url.clone(),
            depth,
            barren,
            attempts: 0,
            losses: 0,
            redirected_from: from.to_vec(),
        }));
        true
    }

    /// In a shared crawl, sends a newly found image to the shared queue (which drops it if any
    /// process saw its URL before).
    pub(super) fn share_image(&mut self, job: ImageJob) {
        if let Some(sh) = &mut self.shared {
            sh.outbox.push(Op::Image(job));
        }
    }

    /// The job of `kind` at `url` has its outcome: acknowledge it (counting one in `count`) in
    /// the next publish. Does nothing in a local crawl.
    pub(super) fn shared_done(&mut self, kind: Kind, url: &Url, count: Option<&'static str>) {
        let Some(sh) = &mut self.shared else {
            return;
        };
        if let Some(lease) = sh.leases.remove(&(kind, url.clone())) {
            let outcome = Outcome {
                count,
                ..Outcome::default()
            };
            sh.outbox.push(Op::Ack(kind, lease.id, outcome));
        }
    }

    /// An image was saved: once the local state says so, acknowledge it, count it and add its row
    /// to the whole crawl's manifest.
    pub(super) fn shared_saved(&mut self, url: &Url, row: &ManifestRow) {
        let Some(sh) = &mut self.shared else {
            return;
        };
        let Some(lease) = sh.leases.remove(&(Kind::Image, url.clone())) else {
            return;
        };
        let mut json = serde_json::to_value(row).expect("a manifest row always serialises");
        json["process"] = sh.cluster.consumer().into();
        let duplicate = row.duplicate_of.is_some();
        let outcome = Outcome {
            count: Some(if duplicate {
                "duplicates"
            } else {
                "images_saved"
            }),
            row: Some(json.to_string()),
            bytes: if duplicate { 0 } else { row.bytes },
            // Bytes on this disk (new, or a copy of a file here): other processes link to them.
            stored: row
                .duplicate_on
                .is_none()
                .then(|| (row.sha256.clone(), row.path.display().to_string())),
        };
        sh.after_commit
            .push(Op::Ack(Kind::Image, lease.id, outcome));
    }

    /// What waits for the local commit being sent now (taken with its batch: changes made while
    /// it is in flight wait for the next one).
    pub(super) fn shared_batch(&mut self) -> Vec<Op> {
        self.shared
            .as_mut()
            .map(|sh| std::mem::take(&mut sh.after_commit))
            .unwrap_or_default()
    }

    /// The local commit that carried `ops`' changes is durable: they may be published.
    pub(super) fn shared_committed(&mut self, ops: Vec<Op>) {
        if let Some(sh) = &mut self.shared {
            sh.outbox.extend(ops);
        }
    }

    /// Publishes what is waiting and takes more work when workers have room. Called by `pump`.
    pub(super) fn shared_pump(&mut self, ctx: &mut Context<Self>) {
        let Some(sh) = &self.shared else {
            return;
        };
        if sh.paused() {
            return;
        }
        self.publish(ctx);
        self.send_pauses(ctx);
        self.retry_releases(ctx);
        if !self.stopping && self.fatal.is_none() {
            self.take(ctx);
            self.ask_permits(ctx);
        }
    }

    fn publish(&mut self, ctx: &mut Context<Self>) {
        let Some(sh) = &mut self.shared else {
            return;
        };
        if sh.publishing || sh.outbox.is_empty() || sh.paused() {
            return;
        }
        sh.publishing = true;
        let ops = std::mem::take(&mut sh.outbox);
        let cluster = sh.cluster.clone();
        let fut = async move {
            let res = cluster.publish(&ops).await;
            (ops, res)
        };
        ctx.spawn(fut.into_actor(self).map(|(ops, res), act, ctx| {
            let sh = act.shared.as_mut().expect("publishing means shared");
            sh.publishing = false;
            match res {
                Ok(_) => sh.recovered(),
                Err(e) => {
                    // Sent again, first: admission and acknowledgement are idempotent.
                    sh.backoff("publish", &e);
                    let later = std::mem::take(&mut sh.outbox);
                    sh.outbox = ops;
                    sh.outbox.extend(later);
                    act.retry_later(ctx);
                }
            }
            act.pump(ctx);
        }));
    }

    /// How many jobs of each kind to take now: enough to keep the workers busy (twice their
    /// credit), asked for only when at least half of that is missing.
    fn wanted(&self, role: Role) -> (usize, usize) {
        let delayed = |kind| {
            self.delayed
                .iter()
                .filter(|(_, d)| matches!(d, Delayed::Job(j) if j.kind() == kind))
                .count()
        };
        let (delayed_pages, delayed_images) = (delayed(Kind::Page), delayed(Kind::Image));
        let want = |on: bool, capacity: usize, have: usize| {
            let missing = capacity.saturating_sub(have);
            if on && missing * 2 >= capacity {
                missing
            } else {
                0
            }
        };
        (
            want(
                role.pages(),
                self.fetchers.len() * PAGE_CREDIT * 2,
                self.frontier.pages_waiting() + delayed_pages + self.pages_in_flight,
            ),
            want(
                role.images(),
                self.savers.len() * IMAGE_CREDIT * 2,
                self.frontier.images_waiting() + delayed_images + self.images_in_flight,
            ),
        )
    }

    fn take(&mut self, ctx: &mut Context<Self>) {
        let Some(sh) = &self.shared else {
            return;
        };
        if sh.taking || sh.poll_scheduled {
            return;
        }
        let (pages, images) = self.wanted(sh.role);
        if pages == 0 && images == 0 {
            return;
        }
        let sh = self.shared.as_mut().expect("checked above");
        sh.taking = true;
        let cluster = sh.cluster.clone();
        let mut claim_from = std::mem::take(&mut sh.claim_from);
        let fut = async move {
            let res = cluster.take(pages, images, &mut claim_from).await;
            (claim_from, res)
        };
        ctx.spawn(fut.into_actor(self).map(|(claim_from, res), act, ctx| {
            let sh = act.shared.as_mut().expect("taking means shared");
            sh.taking = false;
            sh.claim_from = claim_from;
            match res {
                Ok(taken) => {
                    sh.recovered();
                    act.took(taken, ctx);
                }
                Err(e) => {
                    sh.backoff("take jobs", &e);
                    act.retry_later(ctx);
                }
            }
            act.pump(ctx);
        }));
    }

    /// Queues the jobs just leased; when there were none, polls again a little later (or notes
    /// that the crawl is complete).
    fn took(&mut self, taken: Taken, ctx: &mut Context<Self>) {
        let sh = self.shared.as_mut().expect("took means shared");
        if taken.pages.is_empty() && taken.images.is_empty() {
            if taken.complete {
                if !sh.complete && !sh.worked {
                    log::info!(
                        "the shared crawl {} is complete: nothing is left to do",
                        sh.cluster.keys().id()
                    );
                }
                sh.complete = true;
            } else if !sh.poll_scheduled {
                sh.poll_scheduled = true;
                ctx.run_later(POLL_EVERY, |act, ctx| {
                    if let Some(sh) = &mut act.shared {
                        sh.poll_scheduled = false;
                    }
                    act.pump(ctx);
                });
            }
            return;
        }
        sh.worked = true;
        let mut pages = Vec::with_capacity(taken.pages.len());
        for l in taken.pages {
            let json = encode_page(&l.job);
            sh.leases
                .insert((Kind::Page, l.job.url.clone()), Lease { id: l.id, json });
            self.pending.push(StateOp::PageQueued {
                url: l.job.url.clone(),
                depth: l.job.depth,
                barren: l.job.barren,
                redirected_from: l.job.redirected_from.clone(),
                spilled: false,
            });
            pages.push(l.job);
        }
        let mut images = Vec::with_capacity(taken.images.len());
        let mut already = Vec::new();
        for l in taken.images {
            if self.admission.saved().contains(&l.job.url) {
                already.push((l.job.url, l.id));
                continue;
            }
            let json = encode_image(&l.job);
            sh.leases
                .insert((Kind::Image, l.job.url.clone()), Lease { id: l.id, json });
            self.pending.push(StateOp::ImageQueued {
                url: l.job.url.clone(),
                page: l.job.page.clone(),
                name: l.job.name.clone(),
                redirected_from: l.job.redirected_from.clone(),
                spilled: false,
            });
            images.push(l.job);
        }
        for (url, id) in already {
            sh.outbox.push(Op::Ack(Kind::Image, id, Outcome::default()));
            self.logger.do_send(CrawlEvent::ImageAlreadySaved { url });
        }
        self.queue_waiting(pages, images);
    }

    pub(super) fn retry_later(&mut self, ctx: &mut Context<Self>) {
        let Some(at) = self.shared.as_ref().and_then(|sh| sh.paused_until) else {
            return;
        };
        ctx.run_later(at.saturating_duration_since(Instant::now()), |act, ctx| {
            act.pump(ctx);
            act.check_done(ctx);
        });
    }

    /// Renews the leases of every job this process holds. Runs every `lease_secs / 3`.
    pub(super) fn renew_leases(&mut self, ctx: &mut Context<Self>) {
        let Some(sh) = &self.shared else {
            return;
        };
        let mut ids: HashMap<Kind, Vec<String>> = HashMap::new();
        for ((kind, _), lease) in &sh.leases {
            ids.entry(*kind).or_default().push(lease.id.clone());
        }
        let mut slots: Vec<(String, String)> = sh.gate.in_use.values().cloned().collect();
        for (host, tokens) in &sh.gate.permits {
            slots.extend(tokens.iter().map(|t| (host.clone(), t.clone())));
        }
        if ids.is_empty() && slots.is_empty() {
            return;
        }
        let cluster = sh.cluster.clone();
        let fut = async move {
            for (kind, ids) in ids {
                cluster.renew(kind, &ids).await?;
            }
            cluster.renew_slots(&slots).await
        };
        ctx.spawn(fut.into_actor(self).map(|res, _, _| {
            if let Err(e) = res {
                log::warn!("Redis: cannot renew the leases of the jobs held here: {e}");
            }
        }));
    }

    /// Whether the shared side lets the crawl end now: everything published, and the crawl
    /// complete (or this process stopping, after giving back the jobs it held). Starts what is
    /// missing otherwise. Always true for a local crawl.
    pub(super) fn shared_settled(&mut self, ctx: &mut Context<Self>) -> bool {
        let Some(sh) = &mut self.shared else {
            return true;
        };
        if self.fatal.is_some() {
            // The disk failed: what this process held goes back to the others when its leases
            // run out.
            return true;
        }
        if self.stopping && !sh.leases.is_empty() {
            let n = sh.leases.len();
            for ((kind, _), lease) in sh.leases.drain() {
                sh.outbox.push(Op::GiveBack(kind, lease.id, lease.json));
            }
            log::info!("giving back {n} jobs held here to the shared crawl");
        }
        let unused: Vec<String> = sh.gate.permits.keys().cloned().collect();
        for host in unused {
            self.drop_permits(&host, ctx);
        }
        let sh = self.shared.as_mut().expect("checked above");
        if sh.publishing || !sh.outbox.is_empty() || !sh.after_commit.is_empty() {
            self.publish(ctx);
            return false;
        }
        if self.stopping || sh.complete {
            return true;
        }
        self.take(ctx);
        false
    }

    /// Reads the whole crawl's counters (shared by every process) at the end, for the report;
    /// `None` outside a shared crawl. When Redis cannot be asked, says so and answers `None`.
    pub(super) fn whole_crawl_counts(
        &self,
    ) -> Option<impl std::future::Future<Output = Option<WholeCrawl>>> {
        let cluster = self.shared.as_ref()?.cluster().clone();
        Some(async move {
            match cluster.stats().await {
                Ok(s) => {
                    let n = |k: &str| s.get(k).map_or(0, |&v| u64::try_from(v).unwrap_or(0));
                    Some(WholeCrawl {
                        pages_fetched: n("pages_fetched"),
                        pages_failed: n("pages_failed"),
                        images_saved: n("images_saved"),
                        duplicates: n("duplicates"),
                        images_failed: n("images_failed"),
                        bytes_saved: n("bytes_saved"),
                    })
                }
                Err(e) => {
                    log::warn!("Redis: cannot read the whole crawl's counters: {e}");
                    None
                }
            }
        })
    }
}

impl Handler<ClaimBytes> for Supervisor {
    type Result = ResponseFuture<Result<BytesClaim, String>>;

    /// Asked by an ImageSaver before it stores bytes: Redis answers, the Supervisor's state is
    /// not touched (the connection is the Supervisor's; the savers only ask through it).
    fn handle(&mut self, m: ClaimBytes, _: &mut Context<Self>) -> Self::Result {
        let cluster = self.shared.as_ref().map(|sh| sh.cluster.clone());
        Box::pin(async move {
            match cluster {
                Some(c) => c.claim_bytes(&m.sha256).await.map_err(|e| e.to_string()),
                None => Ok(BytesClaim::Mine),
            }
        })
    }
}
