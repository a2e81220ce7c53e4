//! The crawl loop: [`Supervisor::pump`] hands out as much work as workers, hosts and retry times
//! allow, books each request (politeness, in-flight counts, the frontier's request slots), turns
//! each answer into an outcome, drives the frontier, and ends the crawl when nothing is waiting or
//! in flight anywhere.

use std::sync::Arc;

use actix::prelude::*;
use tokio::time::Instant;

use super::update::PageOutcome;
use super::{Booking, Delayed, RobotsJob, Supervisor, IMAGE_CREDIT, PAGE_CREDIT, STOP_GRACE};
use crate::activity::QueueState;
use crate::actors::disk_writer::{CloseOutput, ExportManifest, FinishRun};
use crate::actors::image_saver::{ImageDone, SaveImage};
use crate::actors::logger::{CrawlEvent, Finish};
use crate::actors::page_fetcher::{FetchPage, FetchRobots, PageDone};
use crate::actors::supervisor::BodyDone;
use crate::admission::{Left, Reason};
use crate::error::{Error, FailureKind};
use crate::frontier::{Blocked, Drive};
use crate::job::{host_key, ImageJob, Job, PageJob};
use crate::records::Outcome;
use crate::state::StateOp;
use crate::Kind;

impl Supervisor {
    /// Hands out as much work as workers, hosts and retry times allow, then checks for the end.
    pub(super) fn pump(&mut self, ctx: &mut Context<Self>) {
        if self.ending {
            return;
        }
        let now = Instant::now();
        for job in self.frontier.absorb(&mut self.politeness) {
            self.took(job);
        }
        if !self.stopping {
            self.release_delayed(now);
            // robots.txt first: every other request to a new host waits for it.
            while !self.robots_waiting.is_empty() {
                let Some(slot) = self.fetchers.free_slot(PAGE_CREDIT) else {
                    break;
                };
                let job = self.robots_waiting.pop_front().expect("checked not empty");
                self.send_robots(slot, job, now, ctx);
            }
            // Images next: finishing known work keeps the frontier small.
            self.dispatch(Kind::Image, now, ctx);
            self.dispatch(Kind::Page, now, ctx);
            if let Some(at) = self.delayed.iter().map(|(t, _)| *t).min() {
                self.wake(at, ctx);
            }
        }
        if self.commit_due() {
            self.commit(ctx);
        }
        self.drive_frontier(false);
        self.check_done(ctx);
    }

    /// Hands jobs of `kind` to the workers of its pool while they have room and a host may be
    /// contacted; robots.txt and the trap rule have the last word on each.
    fn dispatch(&mut self, kind: Kind, now: Instant, ctx: &mut Context<Self>) {
        loop {
            let slot = match kind {
                Kind::Page => self.fetchers.free_slot(PAGE_CREDIT),
                Kind::Image => self.savers.free_slot(IMAGE_CREDIT),
            };
            let Some(slot) = slot else {
                return;
            };
            let job = match self.frontier.pop(kind, &self.politeness, now) {
                Ok(job) => job,
                Err(blocked) => {
                    if let Blocked::Until(at) = blocked {
                        self.wake(at, ctx);
                    }
                    return;
                }
            };
            match self.robots_allow(job) {
                Some(Job::Image(job)) => self.send_image(slot, job, now, ctx),
                Some(Job::Page(job)) => match self.admission.trapped(&job.url, job.barren) {
                    None => self.send_page(slot, job, now, ctx),
                    Some(left) => self.job_skipped(Job::Page(job), left),
                },
                None => {}
            }
        }
    }

    /// Drives the frontier (see [`Frontier::drive`](crate::frontier::Frontier::drive)), or with
    /// `settle` asks whether it has settled (see
    /// [`Frontier::settled`](crate::frontier::Frontier::settled)).
    fn drive_frontier(&mut self, settle: bool) -> bool {
        let delayed = |kind| {
            self.delayed
                .iter()
                .filter(|(_, d)| d.kind() == kind)
                .count()
        };
        let held = [
            self.frontier.waiting(Kind::Page) + delayed(Kind::Page) + self.pages_in_flight,
            self.frontier.waiting(Kind::Image) + delayed(Kind::Image) + self.images_in_flight,
        ];
        let capacity = [
            self.fetchers.len() * PAGE_CREDIT * 2,
            self.savers.len() * IMAGE_CREDIT * 2,
        ];
        let room = self.fetchers.free_slot(PAGE_CREDIT).is_some()
            || self.savers.free_slot(IMAGE_CREDIT).is_some();
        let mut drive = Drive {
            capacity,
            held,
            room,
            stopping: self.stopping,
            failed: self.fatal.is_some(),
            politeness: &mut self.politeness,
        };
        if settle {
            return self.frontier.settled(&mut drive);
        }
        self.frontier.drive(&mut drive);
        false
    }

    fn release_delayed(&mut self, now: Instant) {
        let (due, later): (Vec<_>, Vec<_>) = std::mem::take(&mut self.delayed)
            .into_iter()
            .partition(|(t, _)| *t <= now);
        self.delayed = later;
        for (_, job) in due {
            match job {
                Delayed::Job(j) => self.frontier.push(j),
                Delayed::Robots(j) => self.robots_waiting.push_back(j),
            }
        }
    }

    /// Runs the loop again at `at` (unless a wake-up comes earlier already).
    fn wake(&mut self, at: Instant, ctx: &mut Context<Self>) {
        if self.wake_at.is_some_and(|w| w <= at) {
            return;
        }
        self.wake_at = Some(at);
        ctx.run_later(at.saturating_duration_since(Instant::now()), |act, ctx| {
            act.wake_at = None;
            act.pump(ctx);
        });
    }

    /// Books a request to `host` on worker `slot` of `kind`: politeness, in-flight counts. Returns
    /// the booking id, to hand back to [`end`](Self::end), and the signal the worker fires once the
    /// body is in ([`BodyIn`](super::BodyIn)): the host's slot is free from then on, while the
    /// worker parses or stores. A job that ends without firing it (a failure, a redirect, a dead
    /// worker) frees the slot in `end`, after its outcome (a `Retry-After` pause, say) is known.
    fn begin(
        &mut self,
        kind: Kind,
        slot: usize,
        host: &str,
        now: Instant,
        ctx: &mut Context<Self>,
    ) -> (u64, BodyDone) {
        self.politeness.started(host, now);
        let id = self.next_id();
        self.frontier.request_started(id, host);
        let generation = match kind {
            Kind::Page => {
                self.pages_in_flight += 1;
                self.fetchers.took(slot);
                self.fetchers.generation(slot)
            }
            Kind::Image => {
                self.images_in_flight += 1;
                self.savers.took(slot);
                self.savers.generation(slot)
            }
        };
        let booking = Booking {
            kind,
            started: now,
            generation,
            host: host.to_string(),
            freed: false,
        };
        self.bookings.insert(id, booking);
        (id, BodyDone::new(ctx.address().recipient(), id))
    }

    /// The body of booking `id` is in: its host's slot is free. Answers whether it was still
    /// held (an answer that came first has freed it and removed the booking).
    pub(super) fn body_in(&mut self, id: u64) -> bool {
        let Some(b) = self.bookings.get_mut(&id) else {
            return false;
        };
        if b.freed {
            return false;
        }
        b.freed = true;
        self.response_times.observe(b.kind, b.started.elapsed());
        self.politeness.finished(&b.host);
        self.frontier.request_freed(id, &b.host, &self.politeness);
        true
    }

    /// Undoes [`begin`](Self::begin) when the answer comes; `lost` when the worker died holding
    /// the job, which then gets a replacement (unless it already has one).
    fn end(&mut self, kind: Kind, slot: usize, id: u64, lost: bool, ctx: &mut Context<Self>) {
        let booking = self
            .bookings
            .remove(&id)
            .expect("every answer has its booking");
        if !booking.freed {
            if !lost {
                self.response_times
                    .observe(booking.kind, booking.started.elapsed());
            }
            self.politeness.finished(&booking.host);
            self.frontier
                .request_freed(id, &booking.host, &self.politeness);
        }
        match kind {
            Kind::Page => {
                self.pages_in_flight -= 1;
                self.fetchers.answered(slot, booking.generation);
            }
            Kind::Image => {
                self.images_in_flight -= 1;
                self.savers.answered(slot, booking.generation);
            }
        }
        if lost && self.is_current(kind, slot, booking.generation) {
            self.replace(kind, slot, ctx);
        }
    }

    fn send_robots(&mut self, slot: usize, job: RobotsJob, now: Instant, ctx: &mut Context<Self>) {
        let (id, body_done) = self.begin(Kind::Page, slot, &job.host, now, ctx);
        let request = self.fetchers.addr(slot).send(FetchRobots {
            url: job.url.clone(),
            body_done,
        });
        ctx.spawn(request.into_actor(self).map(move |res, act, ctx| {
            act.end(Kind::Page, slot, id, res.is_err(), ctx);
            match res {
                Ok(Ok(found)) => {
                    act.learn_robots(job.host, found.rules);
                    act.queue_sitemaps(found.sitemaps, 0);
                }
                Ok(Err(failure)) => act.robots_failed(job, failure),
                Err(_) => act.robots_lost(job),
            }
            act.pump(ctx);
        }));
    }

    fn send_page(&mut self, slot: usize, job: PageJob, now: Instant, ctx: &mut Context<Self>) {
        let (id, body_done) = self.begin(Kind::Page, slot, &host_key(&job.url), now, ctx);
        let request = self.fetchers.addr(slot).send(FetchPage {
            job: job.clone(),
            body_done,
        });
        ctx.spawn(request.into_actor(self).map(move |res, act, ctx| {
            act.end(Kind::Page, slot, id, res.is_err(), ctx);
            match res {
                Ok(Ok(PageDone::Parsed { found, validators })) => {
                    act.page_done(job, found, PageOutcome::Fetched(validators))
                }
                Ok(Ok(PageDone::NotModified)) => act.page_unchanged(job, ctx),
                Ok(Ok(PageDone::Redirected(to))) => act.redirected(Job::Page(job), to),
                Ok(Ok(PageDone::NoSitemap)) => act.no_sitemap(job),
                Ok(Err(failure)) => act.failed(Job::Page(job), failure),
                Err(_) => act.lost(Job::Page(job)),
            }
            act.pump(ctx);
        }));
    }

    fn send_image(&mut self, slot: usize, job: ImageJob, now: Instant, ctx: &mut Context<Self>) {
        let (id, body_done) = self.begin(Kind::Image, slot, &host_key(&job.url), now, ctx);
        let tmp = self.next_id();
        let request = self.savers.addr(slot).send(SaveImage {
            job: job.clone(),
            tmp,
            body_done,
        });
        ctx.spawn(request.into_actor(self).map(move |res, act, ctx| {
            act.end(Kind::Image, slot, id, res.is_err(), ctx);
            match res {
                Ok(Ok(done)) => act.image_done(job, done),
                Ok(Err(failure)) if failure.kind == FailureKind::Disk => {
                    // The image stays waiting in the state; the crawl cannot go on.
                    let url = job.url.to_string();
                    act.fail(
                        Error::ImageWrite {
                            url,
                            source: failure,
                        },
                        ctx,
                    );
                }
                Ok(Err(failure)) => act.failed(Job::Image(job), failure),
                Err(_) => act.lost(Job::Image(job)),
            }
            act.pump(ctx);
        }));
    }

    /// What a saver did with an image: saved (told once the state says so), redirected, or left
    /// out by a filter.
    fn image_done(&mut self, job: ImageJob, done: ImageDone) {
        match done {
            ImageDone::Saved {
                row,
                temp,
                validators,
            } => {
                let mut row = row;
                let started = self.run.started_text();
                if row.previous.is_some() {
                    // New bytes of a saved image: first seen when the old ones were.
                    row.changed = Some(started.clone());
                } else {
                    row.first_seen = Some(started.clone());
                }
                row.last_seen = Some(started);
                self.frontier.saved(&job.url, &row);
                self.after_commit.push(CrawlEvent::ImageSaved(row.clone()));
                self.pending.push(StateOp::ImageSaved {
                    url: job.url,
                    row,
                    temp,
                    validators,
                });
            }
            ImageDone::Unchanged { validators } => {
                self.frontier.done(Kind::Image, &job.url, None);
                self.logger.do_send(CrawlEvent::ImageRevalidated {
                    url: job.url.clone(),
                    gone: None,
                });
                self.pending.push(StateOp::ImageUnchanged {
                    url: job.url,
                    validators,
                });
            }
            ImageDone::Redirected(to) => self.redirected(Job::Image(job), to),
            ImageDone::Skipped(key) => {
                let left = Left {
                    url: job.url.clone(),
                    reason: Reason::Filter(key),
                    detail: String::new(),
                    shape: None,
                };
                self.job_skipped(Job::Image(job), left);
            }
        }
    }

    /// The sizes of the queues, wherever the jobs wait.
    pub(super) fn queues(&self) -> QueueState {
        let delayed_pages = self
            .delayed
            .iter()
            .filter(|(_, d)| d.kind() == Kind::Page)
            .count();
        let (pages_spilled, images_spilled) = (
            self.frontier.spilled(Kind::Page),
            self.frontier.spilled(Kind::Image),
        );
        QueueState {
            pages_waiting: self.frontier.waiting(Kind::Page)
                + self.robots_waiting.len()
                + delayed_pages
                + pages_spilled,
            images_waiting: self.frontier.waiting(Kind::Image) + self.delayed.len() - delayed_pages
                + images_spilled,
            pages_in_flight: self.pages_in_flight,
            images_in_flight: self.images_in_flight,
            pages_spilled,
            images_spilled,
            images_committing: self.after_commit.len() + self.committing,
        }
    }

    /// Stops handing out work; requests in flight have [`STOP_GRACE`] to finish.
    pub(super) fn stop(&mut self, ctx: &mut Context<Self>) {
        if !self.stopping {
            log::info!(
                "stopping: no new work is handed out; waiting for {} requests in flight",
                self.pages_in_flight + self.images_in_flight
            );
            ctx.run_later(STOP_GRACE, |act, ctx| {
                if !act.ending {
                    log::info!("abandoning the requests still in flight; the next run does them");
                    act.abandon = true;
                    act.check_done(ctx);
                }
            });
        }
        self.stopping = true;
        self.check_done(ctx);
    }

    /// Ends the crawl after an error the crawl cannot go on with (the disk is full or unwritable).
    /// What is committed stays; what was in flight is done again by the next run.
    pub(super) fn fail(&mut self, why: Error, ctx: &mut Context<Self>) {
        if self.fatal.is_none() {
            log::error!("{why}");
            self.fatal = Some(Arc::new(why));
        }
        self.stopping = true;
        self.abandon = true;
        self.check_done(ctx);
    }

    /// Ends the crawl once nothing waits or is in flight (or it is stopping), the last changes
    /// are durable and the frontier has settled.
    pub(super) fn check_done(&mut self, ctx: &mut Context<Self>) {
        let q = self.queues();
        let idle = self.abandon
            || (q.pages_in_flight == 0 && q.images_in_flight == 0 && self.pages_reloading == 0);
        let empty = q.pages_waiting == 0 && q.images_waiting == 0;
        if self.ending || !idle || !(empty || self.stopping) {
            return;
        }
        if self.fatal.is_none() && (self.commit_in_flight || !self.pending.is_empty()) {
            // The last changes first: the crawl is over only once they are durable.
            self.commit(ctx);
            return;
        }
        if !self.drive_frontier(true) {
            return;
        }
        self.ending = true;
        for timer in self.timers.drain(..) {
            ctx.cancel_future(timer);
        }
        self.finish(ctx);
    }

    /// Has the Logger finish the report and the DiskWriter write the manifest and close the
    /// output; then tells everyone who waits for the report.
    fn finish(&mut self, ctx: &mut Context<Self>) {
        let outcome = if self.stopping {
            Outcome::Stopped
        } else {
            Outcome::Finished
        };
        let (logger, writer) = (self.logger.clone(), self.writer.clone());
        let fatal = self.fatal.clone();
        let whole = self.frontier.whole_crawl();
        let ran_dry = !self.stopping;
        let finish = async move {
            let whole_crawl = match whole {
                Some(counts) => counts.await,
                None => None,
            };
            let report = match logger
                .send(Finish {
                    outcome,
                    whole_crawl,
                })
                .await
            {
                Ok(report) => report,
                Err(e) => Err(Error::aborted("the Logger", e)),
            };
            // A frontier that ran dry is a finished run: the next one without --update says so.
            let marked = match (&fatal, ran_dry) {
                (None, true) => match writer.send(FinishRun).await {
                    Ok(Ok(())) => Ok(()),
                    Ok(Err(e)) => Err(Error::Disk(Arc::new(e))),
                    Err(e) => Err(Error::aborted("the disk writer", e)),
                },
                _ => Ok(()),
            };
            let ended = match (fatal, marked) {
                (Some(why), _) => Err(Error::Disk(why)),
                (None, Err(e)) => Err(e),
                // The manifest is rewritten from the committed state, so the two always agree.
                (None, Ok(())) => match writer.send(ExportManifest).await {
                    Ok(Ok(_)) => report,
                    Ok(Err(e)) => Err(Error::Disk(Arc::new(e))),
                    Err(e) => Err(Error::aborted("the disk writer", e)),
                },
            };
            let _ = writer.send(CloseOutput).await;
            ended
        };
        ctx.spawn(finish.into_actor(self).map(|report, act, _| {
            let report = report.map_err(Arc::new);
            act.retire_workers();
            for w in act.waiters.drain(..) {
                let _ = w.send(report.clone());
            }
            act.report = Some(report);
        }));
    }
}
