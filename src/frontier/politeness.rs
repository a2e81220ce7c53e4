//! Politeness: per-host limits shared by pages and images (requests in flight, the pause between
//! starts, `Crawl-delay`, `Retry-After` pauses, holds while robots.txt is fetched, and in a shared
//! crawl the permits the cluster grants).

use std::collections::HashMap;
use std::time::Duration;

use tokio::time::Instant;

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

#[cfg(test)]
mod tests {
    use super::*;
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
}
