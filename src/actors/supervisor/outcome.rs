//! The Supervisor's outcome rules, the same for pages and images: robots.txt rules learnt or given
//! up on, retries (decided by the [`RetryPolicy`](crate::retry::RetryPolicy), which may also pause
//! the host), jobs lost with a dying worker, and jobs ended for good as failed or skipped.

use url::Url;

use super::{Delayed, RobotsJob, Supervisor};
use crate::actors::logger::CrawlEvent;
use crate::admission::{Left, RobotsVerdict};
use crate::error::Failure;
use crate::job::{host_key, Job};
use crate::records::{ErrorRow, SkipRow};
use crate::retry::after_loss;
use crate::robots::Rules;
use crate::state::StateOp;
use crate::Kind;

/// The shared crawl's counter of jobs of `kind` that ended as failed (or, if not, as skipped).
fn counter(kind: Kind, failed: bool) -> &'static str {
    match (kind, failed) {
        (Kind::Page, true) => "pages_failed",
        (Kind::Image, true) => "images_failed",
        (Kind::Page, false) => "pages_skipped",
        (Kind::Image, false) => "images_skipped",
    }
}

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
        self.admission.learn_robots(&host, rules);
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
        if let Some(failure) = after_loss(Kind::Page, job.losses) {
            return self.learn_robots(job.host, Rules::after_failure(&failure));
        }
        self.robots_waiting.push_front(job);
    }

    /// When to try again after `failure` on attempt number `attempts`, or `None` to give up;
    /// pauses the host when it asked to (`Retry-After`).
    fn retry_at(
        &mut self,
        url: &Url,
        attempts: u32,
        failure: &mut Failure,
    ) -> Option<tokio::time::Instant> {
        let now = tokio::time::Instant::now();
        let salt = self.next_id();
        let decision = self.retry.decide(failure, attempts, salt);
        if let Some(wait) = decision.pause_host {
            self.politeness.pause(&host_key(url), now + wait);
            self.frontier.host_paused(&host_key(url), wait);
        }
        decision.retry_in.map(|d| now + d)
    }

    fn retrying(&self, url: Url, attempt: u32, failure: &Failure) {
        self.logger.do_send(CrawlEvent::Retrying {
            url,
            attempt,
            error: failure.to_string(),
        });
    }

    /// A job's attempt failed: it waits for a retry, or ends as failed.
    pub(super) fn failed(&mut self, mut job: Job, mut failure: Failure) {
        if self.gone(&job, &failure) {
            return;
        }
        *job.attempts() += 1;
        let attempts = *job.attempts();
        match self.retry_at(job.url(), attempts, &mut failure) {
            Some(at) => {
                self.retrying(job.url().clone(), attempts, &failure);
                self.pending.push(StateOp::Retry {
                    kind: job.kind(),
                    url: job.url().clone(),
                    attempts,
                });
                self.delayed.push((at, Delayed::Job(job)));
            }
            None => self.gave_up(job, failure),
        }
    }

    /// Records a job as failed for good.
    pub(super) fn gave_up(&mut self, mut job: Job, failure: Failure) {
        let kind = job.kind();
        self.pending.push(StateOp::Failed(kind, job.url().clone()));
        self.frontier
            .done(kind, job.url(), Some(counter(kind, true)));
        let attempts = *job.attempts();
        self.logger.do_send(CrawlEvent::Failed(ErrorRow {
            url: job.found_as().to_string(),
            kind,
            error: failure.kind.to_string(),
            detail: failure.detail,
            attempts,
            page: job.page().map(Url::to_string),
        }));
    }

    /// A job left out on purpose (robots.txt, the trap rule, a redirect off the site, a filter):
    /// done, without a file and without an error.
    pub(super) fn job_skipped(&mut self, job: Job, left: Left) {
        let kind = job.kind();
        self.pending.push(StateOp::Failed(kind, job.url().clone()));
        self.frontier
            .done(kind, job.url(), Some(counter(kind, false)));
        self.skipped(
            SkipRow {
                url: job.found_as().to_string(),
                kind,
                reason: left.reason.recorded().unwrap_or("skipped").to_string(),
                detail: left.detail,
                page: job.page().map(Url::to_string),
            },
            left.shape,
        );
    }

    /// A worker died holding the job: it waits again, unless it keeps killing workers.
    pub(super) fn lost(&mut self, mut job: Job) {
        *job.losses() += 1;
        if let Some(failure) = after_loss(job.kind(), *job.losses()) {
            *job.attempts() += 1;
            return self.gave_up(job, failure);
        }
        self.frontier.push(job);
    }

    /// What robots.txt lets be done with a job taken from the frontier: `Some(job)` to send it,
    /// `None` when it ended here (disallowed, or the host's robots.txt could not be had).
    pub(super) fn robots_allow(&mut self, job: Job) -> Option<Job> {
        match self.admission.robots(job.url()) {
            RobotsVerdict::Allowed => Some(job),
            RobotsVerdict::Disallowed(left) => {
                self.job_skipped(job, left);
                None
            }
            // robots.txt could not be reached: the host is down, a real failure.
            RobotsVerdict::Unavailable(failure) => {
                self.gave_up(job, failure);
                None
            }
        }
    }
}
