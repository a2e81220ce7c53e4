//! The frontier of a shared crawl (`distributed.redis_url`): new pages and images go to the shared
//! queue in Redis; this process leases jobs from it as its workers have room and queues them here,
//! still ordered by per-host politeness; a job is acknowledged once its outcome is stored here;
//! leases are renewed while jobs are held, and given back when the process stops. The crawl ends
//! when Redis says that nothing is open anywhere.
//!
//! Redis calls run as tasks on the Supervisor's thread. What they bring back (jobs taken, request
//! starts granted, failures) is kept in the state they share with the frontier, and the crawl
//! loop is woken to [`absorb`](Frontier::absorb) it.

use std::collections::HashMap;
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;

use tokio::time::Instant;
use url::Url;

use super::permits::Permits;
use super::queues::KindQueues;
use super::{CommitTicket, Drive, Frontier, LocalFuture, Placed, Politeness, Restored, Wake};
use crate::cluster::{encode_image, encode_page, BytesClaim, Cluster, Op, Outcome, Taken};
use crate::job::Job;
use crate::records::{ManifestRow, WholeCrawl};
use crate::settings::Role;
use crate::state::{Loaded, Resume, StateOp};
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

/// What the frontier and its Redis tasks share.
#[derive(Debug, Default)]
pub(super) struct State {
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
    /// Jobs taken and not yet handed to the crawl loop.
    taken: Vec<Job>,
    /// Request starts granted by the cluster, in use, or being asked for.
    pub(super) gate: Permits,
}

impl State {
    /// Redis failed at `what`: pause the shared crawl for a growing while.
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

    /// Redis answered again.
    pub(super) fn recovered(&mut self) {
        if self.failures > 0 {
            log::info!("Redis is back; the shared crawl goes on");
        }
        self.failures = 0;
        self.paused_until = None;
    }

    /// Whether Redis calls wait (backing off).
    fn paused(&self) -> bool {
        self.paused_until.is_some_and(|t| t > Instant::now())
    }
}

/// The [`Frontier`] of a shared crawl; see the module documentation.
pub struct SharedFrontier {
    /// The connection to the shared crawl.
    cluster: Cluster,
    /// What this process does.
    role: Role,
    /// Requests one host may have in flight across the cluster (`http.per_host_concurrency`).
    pub(super) per_host: usize,
    /// The jobs leased to this process and waiting here.
    pub(super) queues: KindQueues,
    /// What the Redis tasks share with the frontier.
    state: Arc<Mutex<State>>,
    /// When the leases are renewed next (every third of their length).
    renew_at: Instant,
    /// Whom the Redis tasks wake when they are done (the Supervisor, once started).
    wake: Option<actix::Recipient<Wake>>,
}

impl SharedFrontier {
    /// The frontier of a process with `role` in the shared crawl `cluster`, where one host may
    /// have `per_host` requests in flight.
    pub fn new(cluster: Cluster, role: Role, per_host: usize) -> Self {
        SharedFrontier {
            cluster,
            role,
            per_host,
            queues: KindQueues::default(),
            state: Arc::default(),
            renew_at: Instant::now(),
            wake: None,
        }
    }

    /// The shared state, locked (a task that panicked holding it left it usable).
    pub(super) fn state(&self) -> MutexGuard<'_, State> {
        lock(&self.state)
    }

    /// The connection to the shared crawl.
    pub(super) fn cluster(&self) -> &Cluster {
        &self.cluster
    }

    /// The state the Redis tasks share, for a task to keep.
    pub(super) fn shared(&self) -> Arc<Mutex<State>> {
        self.state.clone()
    }

    /// Runs `task` on this thread; then the crawl loop is woken.
    pub(super) fn spawn(&self, task: impl std::future::Future<Output = ()> + 'static) {
        let wake = self.wake.clone();
        actix_rt::spawn(async move {
            task.await;
            if let Some(w) = wake {
                w.do_send(Wake);
            }
        });
    }

    /// Waits for the backoff after a Redis failure to be over, if there is one (the task that
    /// waits then wakes the crawl loop).
    pub(super) async fn backoff_over(state: &Mutex<State>) {
        let at = lock(state).paused_until;
        if let Some(at) = at {
            tokio::time::sleep_until(at).await;
        }
    }

    fn publish(&self) {
        let mut st = self.state();
        if st.publishing || st.outbox.is_empty() || st.paused() {
            return;
        }
        st.publishing = true;
        let ops = std::mem::take(&mut st.outbox);
        drop(st);
        let (cluster, state) = (self.cluster.clone(), self.shared());
        self.spawn(async move {
            let res = cluster.publish(&ops).await;
            let failed = {
                let mut st = lock(&state);
                st.publishing = false;
                match res {
                    Ok(_) => st.recovered(),
                    Err(e) => {
                        // Sent again, first: admission and acknowledgement are idempotent.
                        st.backoff("publish", &e);
                        let later = std::mem::replace(&mut st.outbox, ops);
                        st.outbox.extend(later);
                    }
                }
                st.paused_until.is_some()
            };
            if failed {
                Self::backoff_over(&state).await;
            }
        });
    }

    /// How many jobs of each kind to take now: enough to keep the workers busy, asked for only
    /// when at least half of that is missing.
    fn wanted(&self, d: &Drive<'_>) -> (usize, usize) {
        let want = |on: bool, capacity: usize, have: usize| {
            let missing = capacity.saturating_sub(have);
            if on && missing * 2 >= capacity {
                missing
            } else {
                0
            }
        };
        (
            want(self.role.pages(), d.capacity[0], d.held[0]),
            want(self.role.images(), d.capacity[1], d.held[1]),
        )
    }

    fn take(&self, d: &Drive<'_>) {
        let (pages, images) = self.wanted(d);
        let mut st = self.state();
        if st.taking || st.poll_scheduled || (pages == 0 && images == 0) {
            return;
        }
        st.taking = true;
        let mut claim_from = std::mem::take(&mut st.claim_from);
        drop(st);
        let (cluster, state) = (self.cluster.clone(), self.shared());
        self.spawn(async move {
            let res = cluster.take(pages, images, &mut claim_from).await;
            let poll = {
                let mut st = lock(&state);
                st.taking = false;
                st.claim_from = claim_from;
                match res {
                    Ok(taken) => {
                        st.recovered();
                        took(&mut st, &cluster, taken)
                    }
                    Err(e) => {
                        st.backoff("take jobs", &e);
                        false
                    }
                }
            };
            if poll {
                actix_rt::time::sleep(POLL_EVERY).await;
                lock(&state).poll_scheduled = false;
            } else {
                Self::backoff_over(&state).await;
            }
        });
    }

    /// Renews the leases of every job and request slot this process holds, every third of the
    /// lease's length.
    fn renew(&mut self) {
        let now = Instant::now();
        if now < self.renew_at {
            return;
        }
        self.renew_at = now + self.cluster.lease() / 3;
        let st = self.state();
        let mut ids: HashMap<Kind, Vec<String>> = HashMap::new();
        for ((kind, _), lease) in &st.leases {
            ids.entry(*kind).or_default().push(lease.id.clone());
        }
        let slots = st.gate.slots();
        drop(st);
        if ids.is_empty() && slots.is_empty() {
            return;
        }
        let cluster = self.cluster.clone();
        let renew = async move {
            for (kind, ids) in ids {
                cluster.renew(kind, &ids).await?;
            }
            cluster.renew_slots(&slots).await
        };
        self.spawn(async move {
            if let Err(e) = renew.await {
                log::warn!("Redis: cannot renew the leases of the jobs held here: {e}");
            }
        });
    }
}

/// Locks the shared state (a task that panicked holding it left it usable).
pub(super) fn lock(state: &Mutex<State>) -> MutexGuard<'_, State> {
    state.lock().unwrap_or_else(|p| p.into_inner())
}

/// Keeps the jobs just leased, to be handed to the crawl loop; answers whether to poll again a
/// little later (none came and the crawl is not complete).
fn took(st: &mut State, cluster: &Cluster, taken: Taken) -> bool {
    if taken.pages.is_empty() && taken.images.is_empty() {
        if taken.complete {
            if !st.complete && !st.worked {
                log::info!(
                    "the shared crawl {} is complete: nothing is left to do",
                    cluster.keys().id()
                );
            }
            st.complete = true;
            return false;
        }
        let poll = !st.poll_scheduled;
        st.poll_scheduled = true;
        return poll;
    }
    st.worked = true;
    for l in taken.pages {
        let json = encode_page(&l.job);
        let key = (Kind::Page, l.job.url.clone());
        st.leases.insert(key, Lease { id: l.id, json });
        st.taken.push(Job::Page(l.job));
    }
    for l in taken.images {
        let json = encode_image(&l.job);
        let key = (Kind::Image, l.job.url.clone());
        st.leases.insert(key, Lease { id: l.id, json });
        st.taken.push(Job::Image(l.job));
    }
    false
}

impl Frontier for SharedFrontier {
    fn admission_keeps_budget(&self) -> bool {
        false
    }

    fn shares_bytes(&self) -> bool {
        true
    }

    fn start(&mut self, politeness: &mut Politeness, wake: actix::Recipient<Wake>) {
        self.wake = Some(wake);
        // Delays, pauses and in-flight limits per host hold for the whole cluster.
        politeness.gate();
    }

    fn restore(&mut self, _: Resume) -> Restored {
        // The shared crawl's frontier and seen sets live in Redis; what this directory's state
        // holds beyond the saved images is only this process's share of it.
        Restored::default()
    }

    fn add(&mut self, job: Job) -> Placed {
        // Redis drops it if any process saw its URL before.
        let op = match job {
            Job::Page(j) => Op::Page(j),
            Job::Image(j) => Op::Image(j),
        };
        self.state().outbox.push(op);
        Placed::Shared
    }

    fn queues(&self) -> &KindQueues {
        &self.queues
    }

    fn queues_mut(&mut self) -> &mut KindQueues {
        &mut self.queues
    }

    fn spilled(&self, _: Kind) -> usize {
        0
    }

    fn done(&mut self, kind: Kind, url: &Url, count: Option<&'static str>) {
        let mut st = self.state();
        if let Some(lease) = st.leases.remove(&(kind, url.clone())) {
            let outcome = Outcome {
                count,
                ..Outcome::default()
            };
            st.outbox.push(Op::Ack(kind, lease.id, outcome));
        }
    }

    fn keep_page(&mut self, url: &Url, validators: &crate::job::Validators, found: &str) {
        let text = crate::cluster::kept_page(validators, found);
        self.state().outbox.push(Op::Keep(url.clone(), text));
    }

    fn saved(&mut self, url: &Url, row: &ManifestRow) {
        let mut st = self.state();
        let Some(lease) = st.leases.remove(&(Kind::Image, url.clone())) else {
            return;
        };
        let mut json = serde_json::to_value(row).expect("a manifest row always serialises");
        json["process"] = self.cluster.consumer().into();
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
        st.after_commit
            .push(Op::Ack(Kind::Image, lease.id, outcome));
    }

    fn commit_begins(&mut self, _: &[StateOp], _: bool) -> CommitTicket {
        // Taken with its batch: changes made while it is in flight wait for the next one.
        CommitTicket {
            after: std::mem::take(&mut self.state().after_commit),
            ..CommitTicket::default()
        }
    }

    fn commit_done(&mut self, ticket: CommitTicket, _: Loaded) -> Vec<Job> {
        self.state().outbox.extend(ticket.after);
        Vec::new()
    }

    fn refill_due(&self) -> bool {
        false
    }

    fn absorb(&mut self, politeness: &mut Politeness) -> Vec<Job> {
        let mut st = self.state();
        for host in st.gate.take_granted() {
            politeness.grant(&host);
        }
        std::mem::take(&mut st.taken)
    }

    fn drive(&mut self, d: &mut Drive<'_>) {
        if self.state().paused() {
            return;
        }
        self.publish();
        self.send_pauses();
        self.retry_releases();
        if !d.stopping && !d.failed {
            self.take(d);
            self.ask_permits(d);
        }
        self.renew();
    }

    fn settled(&mut self, d: &mut Drive<'_>) -> bool {
        if d.failed {
            // The disk failed: what this process held goes back to the others when its leases
            // run out.
            return true;
        }
        let mut st = self.state();
        if d.stopping && !st.leases.is_empty() {
            let n = st.leases.len();
            let leases: Vec<_> = st.leases.drain().collect();
            for ((kind, _), lease) in leases {
                st.outbox.push(Op::GiveBack(kind, lease.id, lease.json));
            }
            log::info!("giving back {n} jobs held here to the shared crawl");
        }
        let unused = st.gate.hosts_with_permits();
        drop(st);
        for host in unused {
            self.drop_permits(&host, d.politeness);
        }
        let st = self.state();
        if st.publishing || !st.outbox.is_empty() || !st.after_commit.is_empty() {
            drop(st);
            self.publish();
            return false;
        }
        if d.stopping || st.complete {
            return true;
        }
        drop(st);
        self.take(d);
        false
    }

    fn request_started(&mut self, id: u64, host: &str) {
        self.state().gate.use_permit(id, host);
    }

    fn request_freed(&mut self, id: u64, host: &str, politeness: &Politeness) {
        self.free_permit(id, politeness.delay_for(host));
    }

    fn host_paused(&mut self, host: &str, wait: Duration) {
        self.state().gate.pause(host, wait);
    }

    fn whole_crawl(&self) -> Option<LocalFuture<Option<WholeCrawl>>> {
        let cluster = self.cluster.clone();
        Some(Box::pin(async move {
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
                        pages_unchanged: n("pages_unchanged"),
                    })
                }
                Err(e) => {
                    log::warn!("Redis: cannot read the whole crawl's counters: {e}");
                    None
                }
            }
        }))
    }

    fn claim_bytes(&self, sha256: String) -> LocalFuture<Result<BytesClaim, String>> {
        // Redis answers; the savers only ask through the Supervisor, whose connection it is.
        let cluster = self.cluster.clone();
        Box::pin(async move {
            cluster
                .claim_bytes(&sha256)
                .await
                .map_err(|e| e.to_string())
        })
    }
}
