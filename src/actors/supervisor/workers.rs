//! The Supervisor's worker pools: page fetchers on threads of their own, image savers on the
//! Supervisor's thread; a dead worker is replaced on the same thread, and news of a worker that
//! was already replaced is ignored.

use actix::prelude::*;

use super::Supervisor;
use crate::actors::image_saver::ImageSaver;
use crate::actors::logger::CrawlEvent;
use crate::actors::page_fetcher::PageFetcher;
use crate::actors::{DeathGuard, Retire};
use crate::Kind;

/// One place in a worker pool.
struct Slot<A: Actor> {
    /// The current worker.
    addr: Addr<A>,
    /// Incremented on each replacement, so late news of an old worker is ignored.
    generation: u64,
    /// Jobs handed to the current worker and not answered.
    inflight: usize,
}

/// A pool of workers of one kind.
pub(super) struct Pool<A: Actor> {
    /// The places, by slot number.
    slots: Vec<Slot<A>>,
}

impl<A: Actor> Default for Pool<A> {
    fn default() -> Self {
        Pool { slots: Vec::new() }
    }
}

impl<A: Actor> Pool<A> {
    /// Workers in the pool.
    pub(super) fn len(&self) -> usize {
        self.slots.len()
    }

    /// The slot with the fewest jobs, if it has room for another under `credit`.
    pub(super) fn free_slot(&self, credit: usize) -> Option<usize> {
        let (i, s) = self
            .slots
            .iter()
            .enumerate()
            .min_by_key(|(_, s)| s.inflight)?;
        (s.inflight < credit).then_some(i)
    }

    /// Whether the worker of `generation` is the one now in `slot`.
    pub(super) fn is_current(&self, slot: usize, generation: u64) -> bool {
        self.slots.get(slot).map(|s| s.generation) == Some(generation)
    }

    /// The generation of the worker now in `slot`.
    pub(super) fn generation(&self, slot: usize) -> u64 {
        self.slots[slot].generation
    }

    /// The worker now in `slot`.
    pub(super) fn addr(&self, slot: usize) -> &Addr<A> {
        &self.slots[slot].addr
    }

    /// Every worker, by slot.
    pub(super) fn addrs(&self) -> Vec<Addr<A>> {
        self.slots.iter().map(|s| s.addr.clone()).collect()
    }

    /// A job was handed to the worker in `slot`.
    pub(super) fn took(&mut self, slot: usize) {
        self.slots[slot].inflight += 1;
    }

    /// The worker in `slot` answered a job (if it is still of `generation`).
    pub(super) fn answered(&mut self, slot: usize, generation: u64) {
        if self.is_current(slot, generation) {
            self.slots[slot].inflight -= 1;
        }
    }

    /// Puts `addr` in `slot` (a new slot at the end when `slot` is the pool's length).
    fn put(&mut self, slot: usize, addr: Addr<A>) {
        match self.slots.get_mut(slot) {
            Some(s) => {
                s.addr = addr;
                s.generation += 1;
                s.inflight = 0;
            }
            None => self.slots.push(Slot {
                addr,
                generation: 0,
                inflight: 0,
            }),
        }
    }

    /// The slots whose worker has stopped.
    fn dead(&self) -> Vec<usize> {
        (0..self.slots.len())
            .filter(|&i| !self.slots[i].addr.connected())
            .collect()
    }

    /// Tells every worker to stop.
    fn retire(&self)
    where
        A: Handler<Retire>,
        A::Context: actix::dev::ToEnvelope<A, Retire>,
    {
        for s in &self.slots {
            s.addr.do_send(Retire);
        }
    }
}

impl Supervisor {
    /// Starts the pools: fetchers on their own threads, savers on this one (see `launch`).
    pub(super) fn start_workers(&mut self, ctx: &mut Context<Self>) {
        for slot in 0..self.settings.workers.fetchers.get() {
            let addr = self.start_fetcher(slot, 0, ctx);
            self.fetchers.put(slot, addr);
        }
        for slot in 0..self.settings.workers.savers.get() {
            let addr = self.start_saver(slot, 0, ctx);
            self.savers.put(slot, addr);
        }
    }

    /// The guard a worker of `kind` in `slot` holds.
    fn guard(kind: Kind, slot: usize, generation: u64, ctx: &Context<Self>) -> DeathGuard {
        DeathGuard {
            kind,
            slot,
            generation,
            supervisor: ctx.address().recipient(),
        }
    }

    /// Starts a fetcher on its slot's thread (the same for every replacement).
    fn start_fetcher(
        &self,
        slot: usize,
        generation: u64,
        ctx: &Context<Self>,
    ) -> Addr<PageFetcher> {
        let (settings, clients) = (self.settings.clone(), self.clients.clone());
        let guard = Self::guard(Kind::Page, slot, generation, ctx);
        let thread = &self.arbiters[slot % self.arbiters.len()];
        PageFetcher::start_in_arbiter(&thread.handle(), move |_| {
            let client = clients.get(&settings.http);
            PageFetcher::new(settings, client, guard)
        })
    }

    /// Starts a saver on the Supervisor's own thread (see [`Supervisor::launch`]).
    fn start_saver(&self, slot: usize, generation: u64, ctx: &Context<Self>) -> Addr<ImageSaver> {
        let (settings, writer) = (self.settings.clone(), self.writer.clone());
        let client = self.clients.get(&settings.http);
        let claims = self
            .frontier
            .shares_bytes()
            .then(|| ctx.address().recipient());
        let guard = Self::guard(Kind::Image, slot, generation, ctx);
        ImageSaver::new(settings, client, writer, claims, guard).start()
    }

    /// Whether the worker of `kind` and `generation` is the one now in `slot`.
    pub(super) fn is_current(&self, kind: Kind, slot: usize, generation: u64) -> bool {
        match kind {
            Kind::Page => self.fetchers.is_current(slot, generation),
            Kind::Image => self.savers.is_current(slot, generation),
        }
    }

    /// Replaces the worker in `slot` (dead or about to be dropped) with a new one on the same thread.
    pub(super) fn replace(&mut self, kind: Kind, slot: usize, ctx: &mut Context<Self>) {
        match kind {
            Kind::Page => {
                let generation = self.fetchers.generation(slot) + 1;
                let addr = self.start_fetcher(slot, generation, ctx);
                self.fetchers.put(slot, addr);
            }
            Kind::Image => {
                let generation = self.savers.generation(slot) + 1;
                let addr = self.start_saver(slot, generation, ctx);
                self.savers.put(slot, addr);
            }
        }
        self.logger
            .do_send(CrawlEvent::WorkerRestarted { kind, slot });
    }

    /// Replaces dead workers, reports the queues' sizes, and runs the loop.
    pub(super) fn sweep(&mut self, ctx: &mut Context<Self>) {
        for slot in self.fetchers.dead() {
            self.replace(Kind::Page, slot, ctx);
        }
        for slot in self.savers.dead() {
            self.replace(Kind::Image, slot, ctx);
        }
        let q = self.queues();
        self.logger.do_send(CrawlEvent::Progress {
            pages_waiting: q.pages_waiting,
            images_waiting: q.images_waiting,
            in_flight: q.pages_in_flight + q.images_in_flight + q.images_committing,
        });
        self.pump(ctx);
    }

    /// The crawl is over: every worker is told to stop (the savers share the Supervisor's
    /// thread, which is not the crawl's to stop), and the fetchers' threads are stopped.
    pub(super) fn retire_workers(&mut self) {
        self.fetchers.retire();
        self.savers.retire();
        for arbiter in self.arbiters.drain(..) {
            arbiter.stop();
        }
    }
}
