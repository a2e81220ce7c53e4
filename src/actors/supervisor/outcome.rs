//! The Supervisor's outcome rules: robots.txt rules learnt or given up on, retries with backoff and
//! `Retry-After` (which also pauses the host), jobs lost with a dying worker, and failures recorded
//! for good.

use tokio::time::Instant;
use url::Url;

use super::{Delayed, RobotsJob, Supervisor, MAX_LOSSES};
use crate::actors::logger::CrawlEvent;
use crate::cluster::Kind;
use crate::error::{Failure, FailureKind};
use crate::frontier::{host_key, ImageJob, PageJob};
use crate::http::backoff;
use crate::records::{ErrorRow, ItemKind, SkipRow};
use crate::robots::Rules;
use crate::state::StateOp;

impl Supervisor {
    pub(super) fn learn_robots(&mut self, host: String, rules: Rules) {
        if let Some(delay) = rules.crawl_delay() {
            let max = self.settings.http.max_wait;
            if delay > max {
                log::warn!(
                    "{host} asks for a Crawl-delay of {delay:?}; using http.max_wait_secs ({max:?})"
                );
            }
            self.politeness.set_delay(&host, delay.min(max));
        }
        if let Rules::DisallowAll(failure) = &rules {
            log::warn!("{host}: {}", failure.detail);
        }
        self.politeness.release(&host);
        if let Some(book) = &mut self.robots {
            book.learn(&host, rules);
        }
    }

    pub(super) fn robots_failed(&mut self, mut job: RobotsJob, mut failure: Failure) {
        job.attempts += 1;
        if let Some(at) = self.retry_at(&job.url, job.attempts, &mut failure) {
            self.retrying(job.url.clone(), job.attempts, &failure);
            self.delayed.push((at, Delayed::Robots(job)));
            return;
        }
        let rules = Rules::after_failure(&failure);
        self.learn_robots(job.host, rules);
    }

    pub(super) fn robots_lost(&mut self, mut job: RobotsJob) {
        job.losses += 1;
        if job.losses > MAX_LOSSES {
            let failure = Failure::new(FailureKind::WorkerLost, "the fetcher kept dying");
            return self.learn_robots(job.host, Rules::after_failure(&failure));
        }
        self.robots_waiting.push_front(job);
    }

    /// When to try again after `failure` on attempt number `attempts`, or `None` to give up. A
    /// `Retry-After` also pauses the whole host; one longer than `http.max_wait_secs` gives up.
    pub(super) fn retry_at(
        &mut self,
        url: &Url,
        attempts: u32,
        failure: &mut Failure,
    ) -> Option<Instant> {
        let now = Instant::now();
        let asked = failure.retry_after.unwrap_or_default();
        if asked > self.settings.http.max_wait {
            failure.detail = format!(
                "{} (Retry-After of {} s is longer than http.max_wait_secs)",
                failure.detail,
                asked.as_secs()
            );
            return None;
        }
        if !asked.is_zero() {
            self.politeness.pause(&host_key(url), now + asked);
            self.shared_pause(&host_key(url), asked);
        }
        if !failure.kind.is_retryable() || attempts > self.settings.http.retries {
            return None;
        }
        let id = self.next_id();
        Some(now + backoff(self.settings.http.retry_backoff, attempts, id).max(asked))
    }

    pub(super) fn retrying(&self, url: Url, attempt: u32, failure: &Failure) {
        self.logger.do_send(CrawlEvent::Retrying {
            url,
            attempt,
            error: failure.to_string(),
        });
    }

    pub(super) fn page_failed(&mut self, mut job: PageJob, mut failure: Failure) {
        job.attempts += 1;
        match self.retry_at(&job.url, job.attempts, &mut failure) {
            Some(at) => {
                self.retrying(job.url.clone(), job.attempts, &failure);
                self.pending.push(StateOp::PageRetry {
                    url: job.url.clone(),
                    attempts: job.attempts,
                });
                self.delayed.push((at, Delayed::Page(job)));
            }
            None => self.page_gave_up(job, failure),
        }
    }

    /// Records a page as failed for good.
    pub(super) fn page_gave_up(&mut self, job: PageJob, failure: Failure) {
        self.pending.push(StateOp::PageFailed(job.url.clone()));
        self.shared_done(Kind::Page, &job.url, Some("pages_failed"));
        let url = job.redirected_from.first().unwrap_or(&job.url);
        self.logger.do_send(CrawlEvent::PageFailed(ErrorRow {
            url: url.to_string(),
            kind: ItemKind::Page,
            error: failure.kind.to_string(),
            detail: failure.detail,
            attempts: job.attempts,
            page: None,
        }));
    }

    pub(super) fn page_lost(&mut self, mut job: PageJob) {
        job.losses += 1;
        if job.losses > MAX_LOSSES {
            let detail = format!(
                "a page fetcher died each of the {} times it held this page",
                job.losses
            );
            job.attempts += 1;
            return self.page_gave_up(job, Failure::new(FailureKind::WorkerLost, detail));
        }
        self.frontier.push_page(job);
    }

    pub(super) fn image_failed(&mut self, mut job: ImageJob, mut failure: Failure) {
        job.attempts += 1;
        match self.retry_at(&job.url, job.attempts, &mut failure) {
            Some(at) => {
                self.retrying(job.url.clone(), job.attempts, &failure);
                self.pending.push(StateOp::ImageRetry {
                    url: job.url.clone(),
                    attempts: job.attempts,
                });
                self.delayed.push((at, Delayed::Image(job)));
            }
            None => self.image_gave_up(job, failure),
        }
    }

    /// Records an image as failed for good.
    pub(super) fn image_gave_up(&mut self, job: ImageJob, failure: Failure) {
        self.pending.push(StateOp::ImageFailed(job.url.clone()));
        self.shared_done(Kind::Image, &job.url, Some("images_failed"));
        let url = job.redirected_from.first().unwrap_or(&job.url);
        self.logger.do_send(CrawlEvent::ImageFailed(ErrorRow {
            url: url.to_string(),
            kind: ItemKind::Image,
            error: failure.kind.to_string(),
            detail: failure.detail,
            attempts: job.attempts,
            page: Some(job.page.to_string()),
        }));
    }

    /// An image was left out on purpose (`reason`: a `[filter]` key, "robots", "out of scope"):
    /// done, without a file and without an error.
    pub(super) fn image_skipped(&mut self, job: ImageJob, reason: &str, detail: String) {
        self.pending.push(StateOp::ImageFailed(job.url.clone()));
        self.shared_done(Kind::Image, &job.url, Some("images_skipped"));
        let url = job.redirected_from.first().cloned().unwrap_or(job.url);
        self.skipped(
            SkipRow {
                url: url.to_string(),
                kind: ItemKind::Image,
                reason: reason.to_string(),
                detail,
                page: Some(job.page.to_string()),
            },
            None,
        );
    }

    /// A page was left out on purpose (`reason`: "robots", "trap", "out of scope"): done, without
    /// an error. `shape` is the trap rule's URL shape.
    pub(super) fn page_skipped(
        &mut self,
        job: PageJob,
        reason: &str,
        detail: String,
        shape: Option<String>,
    ) {
        self.pending.push(StateOp::PageFailed(job.url.clone()));
        self.shared_done(Kind::Page, &job.url, Some("pages_skipped"));
        let url = job.redirected_from.first().cloned().unwrap_or(job.url);
        self.skipped(
            SkipRow {
                url: url.to_string(),
                kind: ItemKind::Page,
                reason: reason.to_string(),
                detail,
                page: None,
            },
            shape,
        );
    }

    pub(super) fn image_lost(&mut self, mut job: ImageJob) {
        job.losses += 1;
        if job.losses > MAX_LOSSES {
            let detail = format!(
                "an image saver died each of the {} times it held this image",
                job.losses
            );
            job.attempts += 1;
            return self.image_gave_up(job, Failure::new(FailureKind::WorkerLost, detail));
        }
        self.frontier.push_image(job);
    }
}
