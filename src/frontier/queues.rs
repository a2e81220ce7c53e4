//! Jobs queued per host, handed out round-robin over the hosts politeness lets start now.

use std::collections::{HashMap, HashSet, VecDeque};

use tokio::time::Instant;

use super::Politeness;
use crate::job::{host_key, ImageJob, Job, PageJob};
use crate::Kind;

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

/// The jobs waiting in this process, pages and images, each kind queued per host.
#[derive(Debug, Default)]
pub struct KindQueues {
    /// Pages waiting, by host.
    pages: HostQueues<PageJob>,
    /// Images waiting, by host.
    images: HostQueues<ImageJob>,
}

impl KindQueues {
    /// Queues a job at the back of its host's queue.
    pub fn push(&mut self, job: Job) {
        match job {
            Job::Page(j) => self.pages.push(host_key(&j.url), j),
            Job::Image(j) => self.images.push(host_key(&j.url), j),
        }
    }

    /// Takes the next job of `kind` whose host may be contacted now.
    pub fn pop(
        &mut self,
        kind: Kind,
        politeness: &Politeness,
        now: Instant,
    ) -> Result<Job, Blocked> {
        match kind {
            Kind::Page => self.pages.pop(politeness, now).map(|(_, j)| Job::Page(j)),
            Kind::Image => self.images.pop(politeness, now).map(|(_, j)| Job::Image(j)),
        }
    }

    /// Jobs of `kind` waiting.
    pub fn len(&self, kind: Kind) -> usize {
        match kind {
            Kind::Page => self.pages.len(),
            Kind::Image => self.images.len(),
        }
    }

    /// The hosts with jobs of either kind waiting, each once.
    pub fn hosts(&self) -> Vec<String> {
        let mut seen = HashSet::new();
        self.pages
            .hosts()
            .chain(self.images.hosts())
            .filter(|h| seen.insert(*h))
            .cloned()
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;
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
