//! The frontier: what is waiting to be fetched, what was already seen, and per-host politeness.
//! The [`Frontier`] trait is the seam between the Supervisor and where this state lives: the
//! [`MemoryFrontier`], backed by the state database (jobs beyond `frontier_in_memory` wait there).
//! In a shared crawl the waiting work and seen sets live in Redis ([`crate::cluster`], whose calls
//! are asynchronous, so they sit beside this synchronous trait rather than behind it); the local
//! frontier then holds the jobs leased to this process, still ordered by per-host politeness, and
//! [`Politeness`] starts requests only with permits from the cluster.

mod memory;

use std::collections::{HashMap, HashSet, VecDeque};
use std::time::Duration;

use sha2::{Digest, Sha256};
use tokio::time::Instant;
use url::Url;

pub use memory::MemoryFrontier;

use crate::Kind;

/// A page waiting to be fetched.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PageJob {
    /// Normalized URL.
    pub url: Url,
    /// Link hops from a start page.
    pub depth: u32,
    /// Pages in a row, along the links that led here, that brought no new image (the trap rule's
    /// barren run, see [`crate::trap`]).
    pub barren: u32,
    /// Failed HTTP attempts so far.
    pub attempts: u32,
    /// Times a worker died while holding this job.
    pub losses: u32,
    /// The URLs whose redirects led here, first the one found (empty when `url` was found itself).
    pub redirected_from: Vec<Url>,
}

/// An image waiting to be downloaded.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ImageJob {
    /// Normalized URL.
    pub url: Url,
    /// The page it was found on.
    pub page: Url,
    /// Caption or alt text, when the page gave one.
    pub name: Option<String>,
    /// Failed HTTP attempts so far.
    pub attempts: u32,
    /// Times a worker died while holding this job.
    pub losses: u32,
    /// The URLs whose redirects led here, first the one found (empty when `url` was found itself).
    pub redirected_from: Vec<Url>,
}

/// A job of either kind, for the rules that treat pages and images alike (retries, losses,
/// redirects, records).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Job {
    /// A page to fetch.
    Page(PageJob),
    /// An image to download.
    Image(ImageJob),
}

impl Job {
    /// Page or image.
    pub fn kind(&self) -> Kind {
        match self {
            Job::Page(_) => Kind::Page,
            Job::Image(_) => Kind::Image,
        }
    }

    /// The URL requested.
    pub fn url(&self) -> &Url {
        match self {
            Job::Page(j) => &j.url,
            Job::Image(j) => &j.url,
        }
    }

    /// The URL as it was found (before redirects): the one records name.
    pub fn found_as(&self) -> &Url {
        let (url, from) = match self {
            Job::Page(j) => (&j.url, &j.redirected_from),
            Job::Image(j) => (&j.url, &j.redirected_from),
        };
        from.first().unwrap_or(url)
    }

    /// The page an image was found on (`None` for a page).
    pub fn page(&self) -> Option<&Url> {
        match self {
            Job::Page(_) => None,
            Job::Image(j) => Some(&j.page),
        }
    }

    /// Failed attempts so far, to count one more.
    pub fn attempts(&mut self) -> &mut u32 {
        match self {
            Job::Page(j) => &mut j.attempts,
            Job::Image(j) => &mut j.attempts,
        }
    }

    /// Times a worker died holding it, to count one more.
    pub fn losses(&mut self) -> &mut u32 {
        match self {
            Job::Page(j) => &mut j.losses,
            Job::Image(j) => &mut j.losses,
        }
    }

    /// The redirect chain that led here.
    pub fn redirected_from(&mut self) -> &mut Vec<Url> {
        match self {
            Job::Page(j) => &mut j.redirected_from,
            Job::Image(j) => &mut j.redirected_from,
        }
    }
}

/// The politeness key of a URL: host and port (`example.com:443`).
pub fn host_key(url: &Url) -> String {
    format!(
        "{}:{}",
        url.host_str().unwrap_or(""),
        url.port_or_known_default().unwrap_or(0)
    )
}

/// A set of URLs held as 16-byte hashes (SHA-256 prefixes), so memory per URL is fixed whatever the
/// URL's length. The chance of two URLs colliding is negligible (2^-64 at four billion URLs).
#[derive(Debug, Default)]
pub struct SeenSet {
    hashes: HashSet<[u8; 16]>,
}

impl SeenSet {
    fn key(url: &Url) -> [u8; 16] {
        let digest = Sha256::digest(url.as_str().as_bytes());
        let mut key = [0u8; 16];
        key.copy_from_slice(&digest[..16]);
        key
    }

    /// Adds `url`; returns whether it was new.
    pub fn insert(&mut self, url: &Url) -> bool {
        self.hashes.insert(Self::key(url))
    }

    /// Whether `url` was added before.
    pub fn contains(&self, url: &Url) -> bool {
        self.hashes.contains(&Self::key(url))
    }

    /// Number of URLs held.
    pub fn len(&self) -> usize {
        self.hashes.len()
    }

    /// Adds every URL of `other`.
    pub fn merge(&mut self, other: SeenSet) {
        if self.hashes.is_empty() {
            self.hashes = other.hashes;
        } else {
            self.hashes.extend(other.hashes);
        }
    }

    /// This set without the URLs of `other`.
    pub fn without(mut self, other: &SeenSet) -> SeenSet {
        if !other.is_empty() {
            self.hashes.retain(|k| !other.hashes.contains(k));
        }
        self
    }

    /// Whether no URL is held.
    pub fn is_empty(&self) -> bool {
        self.hashes.is_empty()
    }
}

#[derive(Debug, Default)]
struct HostState {
    /// Requests to the host in flight.
    inflight: usize,
    /// When the last request to the host started.
    last_start: Option<Instant>,
    /// The host's own pause between starts when larger than the configured one (Crawl-delay).
    delay: Option<Duration>,
    /// No request starts before this (the host asked us to wait with `Retry-After`).
    paused_until: Option<Instant>,
    /// The host's requests wait for its robots.txt.
    held: bool,
}

impl HostState {
    /// Whether the entry says nothing the defaults would not say at `now`, so it can be dropped.
    fn is_default(&self, delay: Duration, now: Instant) -> bool {
        self.inflight == 0
            && !self.held
            && self.delay.is_none()
            && self.paused_until.is_none_or(|t| t <= now)
            && self
                .last_start
                .is_none_or(|t| t + with_margin(delay) <= now)
    }
}

/// Per-host limits shared by pages and images: requests in flight, the pause between starts (the
/// larger of the configured delay and the host's Crawl-delay), pauses a host asked for with
/// `Retry-After`, and hosts held until their robots.txt is known.
#[derive(Debug)]
pub struct Politeness {
    hosts: HashMap<String, HostState>,
    per_host: usize,
    delay: Duration,
    /// In a shared crawl, request starts granted by the cluster and not yet used, per host: a
    /// host may start a request only with one (delays and pauses are then the cluster's).
    permits: Option<HashMap<String, usize>>,
}

impl Politeness {
    /// Limits of `per_host` requests in flight and `delay` between request starts, per host.
    pub fn new(per_host: usize, delay: Duration) -> Self {
        Politeness {
            hosts: HashMap::new(),
            per_host,
            delay,
            permits: None,
        }
    }

    /// From now on, a request starts only with a permit from [`grant`](Self::grant) (the
    /// cluster keeps the delays, pauses and in-flight limit of every host for all processes).
    pub fn gate(&mut self) {
        self.permits = Some(HashMap::new());
    }

    /// Whether requests need permits.
    pub fn gated(&self) -> bool {
        self.permits.is_some()
    }

    /// One more request to `host` may start.
    pub fn grant(&mut self, host: &str) {
        if let Some(p) = &mut self.permits {
            *p.entry(host.to_string()).or_default() += 1;
        }
    }

    /// Takes back one unused permit of `host`.
    pub fn revoke(&mut self, host: &str) {
        if let Some(n) = self.permits.as_mut().and_then(|p| p.get_mut(host)) {
            *n = n.saturating_sub(1);
        }
    }

    /// Unused permits for `host`.
    pub fn permits(&self, host: &str) -> usize {
        self.permits
            .as_ref()
            .and_then(|p| p.get(host).copied())
            .unwrap_or(0)
    }

    /// The pause between request starts to `host`: the configured delay or the host's own
    /// (Crawl-delay), whichever is longer, with the margin for network jitter.
    pub fn delay_for(&self, host: &str) -> Duration {
        with_margin(
            self.hosts
                .get(host)
                .and_then(|h| h.delay)
                .map_or(self.delay, |d| d.max(self.delay)),
        )
    }

    /// Whether requests to `host` wait for its robots.txt.
    pub fn held(&self, host: &str) -> bool {
        self.hosts.get(host).is_some_and(|h| h.held)
    }

    /// When a request to `host` may start: `None` if it is at its in-flight limit or held, else the
    /// instant its delay and pause allow (`now` or earlier when it may start at once).
    pub fn ready_at(&self, host: &str, now: Instant) -> Option<Instant> {
        if self.permits.is_some() {
            let free = self.permits(host) > 0 && self.inflight(host) < self.per_host;
            return (free && !self.held(host)).then_some(now);
        }
        let Some(h) = self.hosts.get(host) else {
            return Some(now);
        };
        if h.held || h.inflight >= self.per_host {
            return None;
        }
        let after_delay = h
            .last_start
            .map_or(now, |t| t + with_margin(h.delay.unwrap_or(self.delay)));
        Some(h.paused_until.map_or(after_delay, |p| p.max(after_delay)))
    }

    /// Records a request start to `host` at `now`.
    pub fn started(&mut self, host: &str, now: Instant) {
        self.revoke(host);
        let h = self.hosts.entry(host.to_string()).or_default();
        h.inflight += 1;
        h.last_start = Some(now);
    }

    /// Records the end of a request to `host`.
    pub fn finished(&mut self, host: &str) {
        let now = Instant::now();
        if let Some(h) = self.hosts.get_mut(host) {
            h.inflight = h.inflight.saturating_sub(1);
            if h.is_default(self.delay, now) {
                self.hosts.remove(host);
            }
        }
    }

    /// Holds every request to `host` until [`release`](Self::release) (its robots.txt is unknown).
    pub fn hold(&mut self, host: &str) {
        self.hosts.entry(host.to_string()).or_default().held = true;
    }

    /// Lets requests to `host` start again.
    pub fn release(&mut self, host: &str) {
        if let Some(h) = self.hosts.get_mut(host) {
            h.held = false;
        }
    }

    /// Sets the host's own pause between starts; the larger of it and the configured delay is used.
    pub fn set_delay(&mut self, host: &str, delay: Duration) {
        if delay > self.delay {
            self.hosts.entry(host.to_string()).or_default().delay = Some(delay);
        }
    }

    /// No request to `host` starts before `until`.
    pub fn pause(&mut self, host: &str, until: Instant) {
        let h = self.hosts.entry(host.to_string()).or_default();
        h.paused_until = Some(h.paused_until.map_or(until, |p| p.max(until)));
    }

    /// Requests in flight to `host`.
    pub fn inflight(&self, host: &str) -> usize {
        self.hosts.get(host).map_or(0, |h| h.inflight)
    }

    /// Every host with requests in flight, and how many.
    pub fn hosts_in_flight(&self) -> impl Iterator<Item = (&str, usize)> {
        self.hosts
            .iter()
            .filter(|(_, h)| h.inflight > 0)
            .map(|(host, h)| (host.as_str(), h.inflight))
    }
}

/// A pause between request starts, lengthened a little (2 %, at least 5 ms) so that the gap the
/// server sees between two requests is not shorter than asked when the first one happened to
/// reach it later than the second (scheduling and connection set-up jitter).
fn with_margin(delay: Duration) -> Duration {
    if delay.is_zero() {
        return delay;
    }
    delay + (delay / 50).max(Duration::from_millis(5))
}

/// What a pop found when no job could be handed out.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Blocked {
    /// Nothing is waiting.
    Empty,
    /// Jobs wait for hosts at their in-flight limit; try again when a request ends.
    Busy,
    /// Jobs wait for a host's delay; try again at this instant.
    Until(Instant),
}

/// Jobs queued per host, handed out round-robin over hosts that politeness lets start now.
#[derive(Debug)]
pub struct HostQueues<J> {
    queues: HashMap<String, VecDeque<J>>,
    order: VecDeque<String>,
    len: usize,
}

impl<J> Default for HostQueues<J> {
    fn default() -> Self {
        HostQueues {
            queues: HashMap::new(),
            order: VecDeque::new(),
            len: 0,
        }
    }
}

impl<J> HostQueues<J> {
    /// Queues `job` for `host` (at the back).
    pub fn push(&mut self, host: String, job: J) {
        let q = self.queues.entry(host.clone()).or_default();
        if q.is_empty() {
            self.order.push_back(host);
        }
        q.push_back(job);
        self.len += 1;
    }

    /// Takes the next job of the first host (round-robin) that may start a request now.
    pub fn pop(&mut self, politeness: &Politeness, now: Instant) -> Result<(String, J), Blocked> {
        let mut earliest: Option<Instant> = None;
        for _ in 0..self.order.len() {
            let host = self
                .order
                .pop_front()
                .expect("order has as many hosts as the loop count");
            match politeness.ready_at(&host, now) {
                Some(at) if at <= now => {
                    let q = self
                        .queues
                        .get_mut(&host)
                        .expect("every host in order has a queue");
                    let job = q.pop_front().expect("queues in order are not empty");
                    self.len -= 1;
                    if q.is_empty() {
                        self.queues.remove(&host);
                    } else {
                        self.order.push_back(host.clone());
                    }
                    return Ok((host, job));
                }
                Some(at) => earliest = Some(earliest.map_or(at, |e| e.min(at))),
                None => {}
            }
            self.order.push_back(host);
        }
        Err(match (self.len, earliest) {
            (0, _) => Blocked::Empty,
            (_, Some(at)) => Blocked::Until(at),
            (_, None) => Blocked::Busy,
        })
    }

    /// Jobs waiting.
    pub fn len(&self) -> usize {
        self.len
    }

    /// The hosts with jobs waiting.
    pub fn hosts(&self) -> impl Iterator<Item = &String> {
        self.order.iter()
    }

    /// Whether no job waits.
    pub fn is_empty(&self) -> bool {
        self.len == 0
    }
}

/// Where the crawl's waiting work and seen sets live. Implementations decide storage; the
/// Supervisor decides policy (scope, depth, limits) before calling `admit_*`.
pub trait Frontier: Send {
    /// Queues a page to fetch (new or retried).
    fn push_page(&mut self, job: PageJob);
    /// Queues an image to download (new or retried).
    fn push_image(&mut self, job: ImageJob);
    /// Queues a job of either kind.
    fn push(&mut self, job: Job) {
        match job {
            Job::Page(j) => self.push_page(j),
            Job::Image(j) => self.push_image(j),
        }
    }
    /// Takes the next page whose host may be contacted now.
    fn pop_page(&mut self, politeness: &Politeness, now: Instant) -> Result<PageJob, Blocked>;
    /// Takes the next image whose host may be contacted now.
    fn pop_image(&mut self, politeness: &Politeness, now: Instant) -> Result<ImageJob, Blocked>;
    /// Pages waiting.
    fn pages_waiting(&self) -> usize;
    /// Images waiting.
    fn images_waiting(&self) -> usize;
    /// The hosts with pages or images waiting.
    fn waiting_hosts(&self) -> Vec<String>;
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn seen_set_uses_fixed_size_keys() {
        let mut s = SeenSet::default();
        let a = Url::parse("http://a.example/x").unwrap();
        assert!(s.insert(&a));
        assert!(!s.insert(&a));
        assert!(s.contains(&a));
        assert_eq!(s.len(), 1);
    }

    #[test]
    fn seen_sets_merge_and_subtract() {
        let url = |p: &str| Url::parse(&format!("http://a.example/{p}")).unwrap();
        let set = |ps: &[&str]| {
            let mut s = SeenSet::default();
            for p in ps {
                s.insert(&url(p));
            }
            s
        };
        let mut s = set(&["x", "y"]);
        s.merge(set(&["y", "z"]));
        assert_eq!(s.len(), 3);
        let left = s.without(&set(&["x", "w"]));
        assert_eq!(left.len(), 2);
        assert!(!left.contains(&url("x")) && left.contains(&url("y")) && left.contains(&url("z")));
        let mut empty = SeenSet::default();
        empty.merge(left);
        assert_eq!(empty.len(), 2);
    }

    #[test]
    fn holds_pauses_and_own_delays_apply_to_one_host_only() {
        let mut pol = Politeness::new(4, Duration::from_millis(100));
        let now = Instant::now();
        pol.hold("a:80");
        assert_eq!(pol.ready_at("a:80", now), None, "held for robots.txt");
        assert_eq!(pol.ready_at("b:80", now), Some(now));
        pol.release("a:80");
        pol.set_delay("a:80", Duration::from_secs(2));
        pol.set_delay("b:80", Duration::from_millis(10)); // below the configured delay: ignored
        pol.started("a:80", now);
        pol.started("b:80", now);
        pol.finished("a:80");
        pol.finished("b:80");
        assert_eq!(
            pol.ready_at("a:80", now),
            Some(now + Duration::from_millis(2040)),
            "2 s and its 2 % margin"
        );
        assert_eq!(
            pol.ready_at("b:80", now),
            Some(now + Duration::from_millis(105)),
            "100 ms and the 5 ms least margin"
        );
        pol.pause("b:80", now + Duration::from_secs(5));
        pol.pause("b:80", now + Duration::from_secs(1)); // a shorter pause does not shorten it
        assert_eq!(
            pol.ready_at("b:80", now),
            Some(now + Duration::from_secs(5))
        );
        assert_eq!(pol.ready_at("c:80", now), Some(now));
    }

    #[test]
    fn a_gated_host_starts_only_with_a_permit() {
        let mut pol = Politeness::new(2, Duration::from_secs(10));
        pol.gate();
        let now = Instant::now();
        assert_eq!(pol.ready_at("a:80", now), None, "no permit yet");
        pol.grant("a:80");
        pol.grant("a:80");
        assert_eq!(
            pol.ready_at("a:80", now),
            Some(now),
            "the cluster keeps the delay"
        );
        pol.started("a:80", now);
        assert_eq!(pol.permits("a:80"), 1);
        pol.revoke("a:80");
        assert_eq!(
            pol.ready_at("a:80", now),
            None,
            "the unused permit went back"
        );
        pol.grant("a:80");
        pol.started("a:80", now);
        pol.grant("a:80");
        assert_eq!(pol.ready_at("a:80", now), None, "two in flight, the limit");
        pol.finished("a:80");
        assert_eq!(pol.ready_at("a:80", now), Some(now));
    }

    #[test]
    fn host_queues_respect_in_flight_limits_and_delays() {
        let mut pol = Politeness::new(1, Duration::from_secs(10));
        let mut q = HostQueues::default();
        q.push("a:80".to_string(), 1);
        q.push("a:80".to_string(), 2);
        q.push("b:80".to_string(), 3);
        let now = Instant::now();
        let (h, j) = q.pop(&pol, now).unwrap();
        assert_eq!((h.as_str(), j), ("a:80", 1));
        pol.started(&h, now);
        let (h2, j2) = q.pop(&pol, now).unwrap();
        assert_eq!(
            (h2.as_str(), j2),
            ("b:80", 3),
            "a is at its limit, b goes ahead"
        );
        pol.started(&h2, now);
        assert_eq!(q.pop(&pol, now), Err(Blocked::Busy));
        pol.finished("a:80");
        let after = now + Duration::from_millis(10_200);
        assert_eq!(q.pop(&pol, now), Err(Blocked::Until(after)));
        assert_eq!(q.pop(&pol, after).map(|(_, j)| j), Ok(2));
        assert_eq!(
            q.pop(&pol, now + Duration::from_secs(20)),
            Err(Blocked::Empty)
        );
    }
}
