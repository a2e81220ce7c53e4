//! The Supervisor's request starts in a shared crawl: a request to a host starts only with a permit
//! from the cluster (see [`crate::cluster::Cluster::acquire`]), so per-host concurrency, delays,
//! Crawl-delay and `Retry-After` pauses hold for all processes together. Permits are asked for
//! while a worker has room, one per host at a time; the slot is freed in the cluster when the
//! request's slot is freed here; permits left unused are given back.

use std::collections::{HashMap, HashSet};
use std::time::Duration;

use actix::prelude::*;

use super::{free_slot, Supervisor, IMAGE_CREDIT, PAGE_CREDIT};
use crate::cluster::Acquired;

/// How soon to ask again for a host that is at its in-flight limit across the cluster.
const BUSY_POLL: Duration = Duration::from_millis(20);

/// Request starts of this process in the cluster.
#[derive(Debug, Default)]
pub(super) struct Permits {
    /// Granted and not used yet: tokens by host.
    pub(super) permits: HashMap<String, Vec<String>>,
    /// Hosts whose permit request is in flight or scheduled.
    asking: HashSet<String>,
    /// Request slots in use: (host, token) by booking id.
    pub(super) in_use: HashMap<u64, (String, String)>,
    /// Numbers the tokens.
    next_token: u64,
    /// `Retry-After` pauses to tell the cluster: (host, how long).
    pauses: Vec<(String, Duration)>,
    /// Request slots to free whose first attempt failed (Redis was away): (host, token, delay).
    to_release: Vec<(String, String, Duration)>,
}

impl Supervisor {
    /// Asks the cluster for one request start to each host with jobs waiting here that has no
    /// unused permit, while a worker has room; gives back permits of hosts with nothing waiting.
    pub(super) fn ask_permits(&mut self, ctx: &mut Context<Self>) {
        let Some(sh) = &self.shared else {
            return;
        };
        let waiting = self.frontier.waiting_hosts();
        let idle: Vec<String> = sh
            .gate
            .permits
            .keys()
            .filter(|h| !waiting.contains(h))
            .cloned()
            .collect();
        for host in idle {
            self.drop_permits(&host, ctx);
        }
        let room = free_slot(&self.fetchers, PAGE_CREDIT).is_some()
            || free_slot(&self.savers, IMAGE_CREDIT).is_some();
        if !room {
            return;
        }
        let per_host = self.settings.http.per_host_concurrency.get();
        let sh = self.shared.as_ref().expect("checked above");
        let ask: Vec<String> = waiting
            .into_iter()
            .filter(|h| {
                !sh.gate.asking.contains(h)
                    && self.politeness.permits(h) == 0
                    && !self.politeness.held(h)
                    && self.politeness.inflight(h) < per_host
            })
            .collect();
        for host in ask {
            self.ask_permit(host, per_host, ctx);
        }
    }

    fn ask_permit(&mut self, host: String, limit: usize, ctx: &mut Context<Self>) {
        let delay = self.politeness.delay_for(&host);
        let sh = self.shared.as_mut().expect("asking means shared");
        sh.gate.asking.insert(host.clone());
        sh.gate.next_token += 1;
        let token = format!("{}#{}", sh.cluster().consumer(), sh.gate.next_token);
        let cluster = sh.cluster().clone();
        let fut = async move {
            let r = cluster.acquire(&host, &token, limit, delay).await;
            (host, token, r)
        };
        ctx.spawn(fut.into_actor(self).map(|(host, token, r), act, ctx| {
            let sh = act.shared.as_mut().expect("asking means shared");
            let again = match r {
                Ok(Acquired::Granted) => {
                    sh.recovered();
                    sh.gate.asking.remove(&host);
                    sh.gate.permits.entry(host.clone()).or_default().push(token);
                    act.politeness.grant(&host);
                    None
                }
                Ok(Acquired::Busy) => Some(BUSY_POLL),
                Ok(Acquired::Wait(d)) => Some(d),
                Err(e) => {
                    sh.gate.asking.remove(&host);
                    sh.backoff("ask for a request slot", &e);
                    act.retry_later(ctx);
                    None
                }
            };
            if let Some(wait) = again {
                ctx.run_later(wait, move |act, ctx| {
                    if let Some(sh) = &mut act.shared {
                        sh.gate.asking.remove(&host);
                    }
                    act.pump(ctx);
                });
            }
            act.pump(ctx);
        }));
    }

    /// Gives back the unused permits of `host`.
    pub(super) fn drop_permits(&mut self, host: &str, ctx: &mut Context<Self>) {
        let Some(sh) = &mut self.shared else {
            return;
        };
        let tokens = sh.gate.permits.remove(host).unwrap_or_default();
        for _ in &tokens {
            self.politeness.revoke(host);
        }
        for token in tokens {
            self.release(host.to_string(), token, Duration::ZERO, ctx);
        }
    }

    /// Frees a request slot in the cluster; `delay` after a request was made (see
    /// [`Cluster::release`]).
    fn release(&mut self, host: String, token: String, delay: Duration, ctx: &mut Context<Self>) {
        let Some(sh) = &self.shared else {
            return;
        };
        let cluster = sh.cluster().clone();
        let fut = async move {
            let r = cluster.release(&host, &token, delay).await;
            (host, token, r)
        };
        ctx.spawn(fut.into_actor(self).map(move |(host, token, r), act, _| {
            if let (Err(e), Some(sh)) = (r, &mut act.shared) {
                // Tried again with the next pump; until then the slot's lease keeps it.
                log::debug!("Redis: cannot free a request slot of {host}: {e}");
                sh.gate.to_release.push((host, token, delay));
            }
        }));
    }

    pub(super) fn retry_releases(&mut self, ctx: &mut Context<Self>) {
        let Some(sh) = &mut self.shared else {
            return;
        };
        for (host, token, delay) in std::mem::take(&mut sh.gate.to_release) {
            self.release(host, token, delay, ctx);
        }
    }

    /// A request booked as `id` to `host` starts: it uses one of the host's permits.
    pub(super) fn use_permit(&mut self, id: u64, host: &str) {
        if let Some(sh) = &mut self.shared {
            if let Some(token) = sh.gate.permits.get_mut(host).and_then(Vec::pop) {
                sh.gate.in_use.insert(id, (host.to_string(), token));
            }
        }
    }

    /// The request booked as `id` no longer holds its host's slot: free it in the cluster too.
    pub(super) fn free_permit(&mut self, id: u64, ctx: &mut Context<Self>) {
        let Some(sh) = &mut self.shared else {
            return;
        };
        if let Some((host, token)) = sh.gate.in_use.remove(&id) {
            let delay = self.politeness.delay_for(&host);
            self.release(host, token, delay, ctx);
        }
    }

    /// A host asked (with `Retry-After`) for no requests during `wait`: tell every process.
    pub(super) fn shared_pause(&mut self, host: &str, wait: Duration) {
        if let Some(sh) = &mut self.shared {
            sh.gate.pauses.push((host.to_string(), wait));
        }
    }

    pub(super) fn send_pauses(&mut self, ctx: &mut Context<Self>) {
        let Some(sh) = &mut self.shared else {
            return;
        };
        let pauses = std::mem::take(&mut sh.gate.pauses);
        let cluster = sh.cluster().clone();
        for (host, wait) in pauses {
            let cluster = cluster.clone();
            ctx.spawn(
                async move {
                    if let Err(e) = cluster.pause_host(&host, wait).await {
                        log::warn!("Redis: cannot pause {host} for the other processes: {e}");
                    }
                }
                .into_actor(self),
            );
        }
    }
}
