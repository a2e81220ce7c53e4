//! What a running crawl is doing now, for `/metrics`, `/status` and embedding applications: where
//! it is in its life, the sizes of its queues, the requests in flight per host, and how long
//! requests took.

use std::collections::BTreeMap;
use std::time::Duration;

use crate::Kind;

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

/// Upper bounds of the response-time buckets, in seconds.
pub const BUCKETS: [f64; 12] = [
    0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0,
];

/// A histogram of durations over [`BUCKETS`] (and one bucket above the last bound).
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Histogram {
    /// Observations per bucket (not cumulative); the last one is above every bound.
    counts: [u64; BUCKETS.len() + 1],
    /// Sum of the observations, in seconds.
    sum: f64,
}

impl Histogram {
    /// Records one duration of `secs` seconds.
    pub fn observe(&mut self, secs: f64) {
        let i = BUCKETS.partition_point(|&bound| bound < secs);
        self.counts[i] += 1;
        self.sum += secs;
    }

    /// Number of observations.
    pub fn count(&self) -> u64 {
        self.counts.iter().sum()
    }

    /// Sum of the observations, in seconds.
    pub fn sum(&self) -> f64 {
        self.sum
    }

    /// `(upper bound, observations at or below it)` for each bound, cumulative as Prometheus wants
    /// them; the `+Inf` bucket is [`count`](Self::count).
    pub fn cumulative(&self) -> impl Iterator<Item = (f64, u64)> + '_ {
        BUCKETS
            .iter()
            .zip(self.counts)
            .scan(0, |total, (&bound, n)| {
                *total += n;
                Some((bound, *total))
            })
    }
}

/// How long requests took, from the moment one was started to the moment its response was in
/// (the body read in full, or the failure known), by what they fetched.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct ResponseTimes {
    /// Pages (robots.txt included).
    pub pages: Histogram,
    /// Images.
    pub images: Histogram,
}

impl ResponseTimes {
    /// Records a request of the `kind` of worker that took `took`.
    pub fn observe(&mut self, kind: Kind, took: Duration) {
        match kind {
            Kind::Page => &mut self.pages,
            Kind::Image => &mut self.images,
        }
        .observe(took.as_secs_f64());
    }
}
