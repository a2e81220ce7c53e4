//! Request starts in a shared crawl: a request to a host starts only with a permit from the
//! cluster (see [`crate::cluster::Cluster::acquire`]), so per-host concurrency, delays,
//! Crawl-delay and `Retry-After` pauses hold for all processes together. Permits are asked for
//! while a worker has room, one per host at a time; the slot is freed in the cluster when the
//! request's slot is freed here; permits left unused are given back.

use std::collections::{HashMap, HashSet};
use std::time::Duration;

use super::shared::{lock, SharedFrontier};
use super::{Drive, Politeness};
use crate::cluster::Acquired;

/// How soon to ask again for a host that is at its in-flight limit across the cluster.
const BUSY_POLL: Duration = Duration::from_millis(20);

/// Request starts of this process in the cluster.
#[derive(Debug, Default)]
pub(super) struct Permits {
    /// Granted and not used yet: tokens by host.
    permits: HashMap<String, Vec<String>>,
    /// Hosts granted a permit since the crawl loop last looked.
    granted: Vec<String>,
    /// Hosts whose permit request is in flight or scheduled.
    asking: HashSet<String>,
    /// Request slots in use: (host, token) by booking id.
    in_use: HashMap<u64, (String, String)>,
    /// Numbers the tokens.
    next_token: u64,
    /// `Retry-After` pauses to tell the cluster: (host, how long).
    pauses: Vec<(String, Duration)>,
    /// Request slots to free whose first attempt failed (Redis was away): (host, token, delay).
    to_release: Vec<(String, String, Duration)>,
}

impl Permits {
    /// Hosts granted a permit since the last call.
    pub(super) fn take_granted(&mut self) -> Vec<String> {
        std::mem::take(&mut self.granted)
    }

    /// Hosts holding unused permits.
    pub(super) fn hosts_with_permits(&self) -> Vec<String> {
        self.permits.keys().cloned().collect()
    }

    /// Every request slot held, used or not: (host, token).
    pub(super) fn slots(&self) -> Vec<(String, String)> {
        let mut slots: Vec<(String, String)> = self.in_use.values().cloned().collect();
        for (host, tokens) in &self.permits {
            slots.extend(tokens.iter().map(|t| (host.clone(), t.clone())));
        }
        slots
    }

    /// A request booked as `id` starts: it uses one of the host's permits.
    pub(super) fn use_permit(&mut self, id: u64, host: &str) {
        if let Some(token) = self.permits.get_mut(host).and_then(Vec::pop) {
            self.in_use.insert(id, (host.to_string(), token));
        }
    }

    /// A host asked (with `Retry-After`) for no requests during `wait`: tell every process.
    pub(super) fn pause(&mut self, host: &str, wait: Duration) {
        self.pauses.push((host.to_string(), wait));
    }
}

impl SharedFrontier {
    /// Asks the cluster for one request start to each host with jobs waiting here that has no
    /// unused permit, while a worker has room; gives back permits of hosts with nothing waiting.
    pub(super) fn ask_permits(&mut self, d: &mut Drive<'_>) {
        let waiting = self.queues.hosts();
        let idle: Vec<String> = self
            .state()
            .gate
            .permits
            .keys()
            .filter(|h| !waiting.contains(h))
            .cloned()
            .collect();
        for host in idle {
            self.drop_permits(&host, d.politeness);
        }
        if !d.room {
            return;
        }
        let per_host = self.per_host;
        let st = self.state();
        let ask: Vec<String> = waiting
            .iter()
            .filter(|h| {
                !st.gate.asking.contains(*h)
                    && d.politeness.permits(h) == 0
                    && !d.politeness.held(h)
                    && d.politeness.inflight(h) < per_host
            })
            .cloned()
            .collect();
        drop(st);
        for host in ask {
            self.ask_permit(host, d.politeness);
        }
    }

    fn ask_permit(&mut self, host: String, politeness: &Politeness) {
        let delay = politeness.delay_for(&host);
        let mut st = self.state();
        st.gate.asking.insert(host.clone());
        st.gate.next_token += 1;
        let token = format!("{}#{}", self.cluster().consumer(), st.gate.next_token);
        drop(st);
        let (cluster, state) = (self.cluster().clone(), self.shared());
        let limit = self.per_host;
        self.spawn(async move {
            let again = match cluster.acquire(&host, &token, limit, delay).await {
                Ok(Acquired::Granted) => {
                    let mut st = lock(&state);
                    st.recovered();
                    st.gate.asking.remove(&host);
                    st.gate.permits.entry(host.clone()).or_default().push(token);
                    st.gate.granted.push(host.clone());
                    None
                }
                Ok(Acquired::Busy) => Some(BUSY_POLL),
                Ok(Acquired::Wait(d)) => Some(d),
                Err(e) => {
                    let mut st = lock(&state);
                    st.gate.asking.remove(&host);
                    st.backoff("ask for a request slot", &e);
                    None
                }
            };
            SharedFrontier::backoff_over(&state).await;
            if let Some(wait) = again {
                actix_rt::time::sleep(wait).await;
                lock(&state).gate.asking.remove(&host);
            }
        });
    }

    /// Gives back the unused permits of `host`.
    pub(super) fn drop_permits(&mut self, host: &str, politeness: &mut Politeness) {
        let tokens = self.state().gate.permits.remove(host).unwrap_or_default();
        for _ in &tokens {
            politeness.revoke(host);
        }
        for token in tokens {
            self.release(host.to_string(), token, Duration::ZERO);
        }
    }

    /// Frees a request slot in the cluster; `delay` after a request was made (see
    /// [`crate::cluster::Cluster::release`]).
    fn release(&self, host: String, token: String, delay: Duration) {
        let (cluster, state) = (self.cluster().clone(), self.shared());
        self.spawn(async move {
            if let Err(e) = cluster.release(&host, &token, delay).await {
                // Tried again with the next drive; until then the slot's lease keeps it.
                log::debug!("Redis: cannot free a request slot of {host}: {e}");
                lock(&state).gate.to_release.push((host, token, delay));
            }
        });
    }

    /// Frees again the request slots whose release failed.
    pub(super) fn retry_releases(&self) {
        let again = std::mem::take(&mut self.state().gate.to_release);
        for (host, token, delay) in again {
            self.release(host, token, delay);
        }
    }

    /// The request booked as `id` no longer holds its host's slot: free it in the cluster too,
    /// `delay` (the host's pause between requests) from now.
    pub(super) fn free_permit(&mut self, id: u64, delay: Duration) {
        let Some((host, token)) = self.state().gate.in_use.remove(&id) else {
            return;
        };
        self.release(host, token, delay);
    }

    /// Tells the cluster the `Retry-After` pauses hosts asked for.
    pub(super) fn send_pauses(&self) {
        let pauses = std::mem::take(&mut self.state().gate.pauses);
        for (host, wait) in pauses {
            let cluster = self.cluster().clone();
            self.spawn(async move {
                if let Err(e) = cluster.pause_host(&host, wait).await {
                    log::warn!("Redis: cannot pause {host} for the other processes: {e}");
                }
            });
        }
    }
}
