//! The frontier: what is waiting to be fetched, what was already seen, and per-host politeness.
//! The [`Frontier`] trait is the seam between the Supervisor and where this state lives; today it is
//! [`MemoryFrontier`]; a persistent (SQLite) and a shared (Redis) implementation come later and the
//! actors do not need to know which one they have.

mod memory;

use std::collections::{HashMap, HashSet, VecDeque};
use std::time::Duration;

use sha2::{Digest, Sha256};
use tokio::time::Instant;
use url::Url;

pub use memory::MemoryFrontier;

/// A page waiting to be fetched.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PageJob {
    /// Normalized URL.
    pub url: Url,
    /// Link hops from a start page.
    pub depth: u32,
    /// Failed HTTP attempts so far.
    pub attempts: u32,
    /// Times a worker died while holding this job.
    pub losses: u32,
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

    /// Whether no URL is held.
    pub fn is_empty(&self) -> bool {
        self.hashes.is_empty()
    }
}

#[derive(Debug)]
struct HostState {
    inflight: usize,
    next_start: Instant,
}

/// Per-host limits shared by pages and images: requests in flight and the pause between starts.
#[derive(Debug)]
pub struct Politeness {
    hosts: HashMap<String, HostState>,
    per_host: usize,
    delay: Duration,
}

impl Politeness {
    /// Limits of `per_host` requests in flight and `delay` between request starts, per host.
    pub fn new(per_host: usize, delay: Duration) -> Self {
        Politeness {
            hosts: HashMap::new(),
            per_host,
            delay,
        }
    }

    /// When a request to `host` may start: `None` if it is at its in-flight limit, else the instant
    /// its delay allows (`now` when it may start at once).
    pub fn ready_at(&self, host: &str, now: Instant) -> Option<Instant> {
        match self.hosts.get(host) {
            None => Some(now),
            Some(h) if h.inflight >= self.per_host => None,
            Some(h) => Some(h.next_start),
        }
    }

    /// Records a request start to `host` at `now`.
    pub fn started(&mut self, host: &str, now: Instant) {
        let h = self.hosts.entry(host.to_string()).or_insert(HostState {
            inflight: 0,
            next_start: now,
        });
        h.inflight += 1;
        h.next_start = now + self.delay;
    }

    /// Records the end of a request to `host`.
    pub fn finished(&mut self, host: &str) {
        if let Some(h) = self.hosts.get_mut(host) {
            h.inflight = h.inflight.saturating_sub(1);
            if h.inflight == 0 && h.next_start <= Instant::now() {
                self.hosts.remove(host);
            }
        }
    }

    /// Requests in flight to `host`.
    pub fn inflight(&self, host: &str) -> usize {
        self.hosts.get(host).map_or(0, |h| h.inflight)
    }
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

    /// Whether no job waits.
    pub fn is_empty(&self) -> bool {
        self.len == 0
    }
}

/// Where the crawl's waiting work and seen sets live. Implementations decide storage; the
/// Supervisor decides policy (scope, depth, limits) before calling `admit_*`.
pub trait Frontier {
    /// Marks a page URL as seen; returns `false` if it was seen before (then it must not be queued).
    fn admit_page(&mut self, url: &Url) -> bool;
    /// Marks an image URL as seen; returns `false` if it was seen before.
    fn admit_image(&mut self, url: &Url) -> bool;
    /// Queues a page to fetch (new or retried).
    fn push_page(&mut self, job: PageJob);
    /// Queues an image to download (new or retried).
    fn push_image(&mut self, job: ImageJob);
    /// Takes the next page whose host may be contacted now.
    fn pop_page(&mut self, politeness: &Politeness, now: Instant) -> Result<PageJob, Blocked>;
    /// Takes the next image whose host may be contacted now.
    fn pop_image(&mut self, politeness: &Politeness, now: Instant) -> Result<ImageJob, Blocked>;
    /// Pages waiting.
    fn pages_waiting(&self) -> usize;
    /// Images waiting.
    fn images_waiting(&self) -> usize;
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
        assert_eq!(
            q.pop(&pol, now),
            Err(Blocked::Until(now + Duration::from_secs(10)))
        );
        assert_eq!(
            q.pop(&pol, now + Duration::from_secs(10)).map(|(_, j)| j),
            Ok(2)
        );
        assert_eq!(
            q.pop(&pol, now + Duration::from_secs(20)),
            Err(Blocked::Empty)
        );
    }
}
