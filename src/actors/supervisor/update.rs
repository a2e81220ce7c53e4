//! The Supervisor's side of update runs: a page an earlier run fetched that answers 304 has what
//! it held then read back from the state (no parse) and queued like a fetched page's; one that
//! answers 404 or 410 is recorded as gone, its images kept.

use actix::prelude::*;

use super::Supervisor;
use crate::actors::disk_writer::LoadFound;
use crate::actors::logger::{CrawlEvent, PageChange};
use crate::error::{Error, Failure, FailureKind};
use crate::extract::Extracted;
use crate::job::{Job, PageJob, Validators};
use crate::state::StateOp;
use crate::Kind;

/// How a page's request ended, for [`Supervisor::page_done`].
#[derive(Debug)]
pub(super) enum PageOutcome {
    /// Fetched whole, with these validators.
    Fetched(Validators),
    /// Unchanged since an earlier run (a 304); what it held comes from the state.
    Unchanged,
}

impl PageOutcome {
    /// How the page compares with what earlier runs saw of it.
    pub(super) fn change(&self, job: &PageJob) -> PageChange {
        match (self, &job.before) {
            (PageOutcome::Unchanged, _) => PageChange::Unchanged,
            (PageOutcome::Fetched(_), Some(_)) => PageChange::Changed,
            (PageOutcome::Fetched(_), None) => PageChange::New,
        }
    }
}

impl Supervisor {
    /// A page answered 304: reads what it held from the state (or takes it from the job, in a
    /// shared crawl), then queues that as if it had been fetched. Until then the page counts as in flight, so the crawl cannot end under it.
    /// Reads go in batches, one at a time: the pages that answer 304 while one is being read wait
    /// for the next. Should nothing be kept after all, a page is asked for again without
    /// validators.
    pub(super) fn page_unchanged(&mut self, mut job: PageJob, ctx: &mut Context<Self>) {
        // A shared crawl's job brings what the page held.
        if let Some(found) = job.before.as_mut().and_then(|b| b.found.take()) {
            return self.page_done(job, Extracted::decode(&found), PageOutcome::Unchanged);
        }
        self.pages_reloading += 1;
        self.reload_waiting.push(job);
        if !self.reload_in_flight {
            self.reload(ctx);
        }
    }

    /// Sends the waiting 304 pages' read, if any.
    fn reload(&mut self, ctx: &mut Context<Self>) {
        if self.reload_waiting.is_empty() {
            return;
        }
        let jobs = std::mem::take(&mut self.reload_waiting);
        let urls = jobs.iter().map(|j| j.url.clone()).collect();
        self.reload_in_flight = true;
        let load = self.writer.send(LoadFound(urls));
        ctx.spawn(load.into_actor(self).map(move |res, act, ctx| {
            act.reload_in_flight = false;
            act.pages_reloading -= jobs.len();
            match res {
                Ok(Ok(found)) => {
                    for (job, text) in jobs.into_iter().zip(found) {
                        act.reloaded(job, text);
                    }
                }
                Ok(Err(e)) => act.fail(e, ctx),
                Err(e) => act.fail(Error::aborted("the disk writer", e), ctx),
            }
            act.reload(ctx);
            act.pump(ctx);
        }));
    }

    /// What a 304 page held was read: queues it (or, with nothing kept, asks for the page again).
    fn reloaded(&mut self, mut job: PageJob, text: Option<String>) {
        match text {
            Some(text) => self.page_done(job, Extracted::decode(&text), PageOutcome::Unchanged),
            None => {
                log::warn!(
                    "{}: answered 304 but nothing is kept of it; asking again",
                    job.url
                );
                job.before = None;
                self.frontier.push(Job::Page(job));
            }
        }
    }

    /// Whether `failure` of `job` means a page an earlier run fetched, or a saved image asked for
    /// again, is gone (404 or 410 now); if so it is recorded as gone, not failed: the images stay.
    pub(super) fn gone(&mut self, job: &Job, failure: &Failure) -> bool {
        let status = match failure.kind {
            FailureKind::Status(s @ (404 | 410)) => s,
            _ => return false,
        };
        match job {
            Job::Page(page) if page.before.is_some() => {
                self.pending.push(StateOp::PageGone(page.url.clone()));
                self.frontier.done(Kind::Page, &page.url, None);
                self.logger.do_send(CrawlEvent::PageGone {
                    url: page.url.clone(),
                    status,
                });
            }
            Job::Image(image) if image.revalidate => {
                self.pending.push(StateOp::ImageGone(image.url.clone()));
                self.frontier.done(Kind::Image, &image.url, None);
                self.logger.do_send(CrawlEvent::ImageRevalidated {
                    url: image.url.clone(),
                    gone: Some(status),
                });
            }
            _ => return false,
        }
        true
    }
}
