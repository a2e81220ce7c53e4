//! The Supervisor's side of admission: it asks the [`Admission`](crate::admission::Admission) core
//! what becomes of each discovered URL and redirect hop, queues the jobs it admits, fetches the
//! robots.txt a new host needs first, and tells the Logger about the URLs left out.

use url::Url;

use super::update::PageOutcome;
use super::{RobotsJob, Supervisor};
use crate::actors::logger::CrawlEvent;
use crate::admission::{Left, Reason, Verdict};
use crate::error::FailureKind;
use crate::extract::Extracted;
use crate::frontier::Placed;
use crate::job::{ImageJob, Job, PageJob};
use crate::records::SkipRow;
use crate::robots::robots_url;
use crate::seen::SeenSet;
use crate::state::{Resume, StateOp};
use crate::Kind;

impl Supervisor {
    /// Puts back what earlier runs left: every URL they admitted counts as seen, the images they
    /// saved as saved, and what was waiting (or in flight when they stopped) is queued again.
    pub(super) fn restore(&mut self, mut resume: Resume) {
        self.run = std::mem::take(&mut resume.run);
        self.earlier = std::mem::take(&mut resume.earlier);
        if let Some(json) = resume.cookies.take() {
            if let Err(e) = self.settings.http.cookies.restore(&json) {
                log::warn!("the session's cookies are not resumed: {e}");
            }
        }
        // A saved image waiting to be asked for again stays seen: found again, it is not queued
        // a second time.
        let mut saved = SeenSet::default();
        for row in std::mem::take(&mut resume.saved) {
            if let Ok(url) = Url::parse(&row.url) {
                if !resume.revalidating.contains(&url) {
                    saved.insert(&url);
                }
            }
        }
        let restored = self.frontier.restore(resume);
        self.admission
            .resume(restored.pages, restored.images, saved);
        for job in restored.waiting {
            self.queue_known(job);
        }
    }

    /// Queues a job that was already admitted and recorded (left by an earlier run, or read back
    /// from the state database after a spill).
    pub(super) fn queue_known(&mut self, job: Job) {
        self.note_host(job.url());
        self.frontier.push(job);
    }

    /// A job the shared crawl handed to this process: recorded in the local state and queued
    /// here, unless it is an image an earlier run in this directory saved.
    pub(super) fn took(&mut self, job: Job) {
        if job.kind() == Kind::Image && self.admission.saved().contains(job.url()) {
            self.frontier.done(Kind::Image, job.url(), None);
            let url = job.url().clone();
            self.logger.do_send(CrawlEvent::ImageAlreadySaved { url });
            return;
        }
        self.pending.push(StateOp::queued(&job, false));
        self.queue_known(job);
    }

    pub(super) fn seed(&mut self) {
        for url in self.settings.start_urls.clone() {
            let verdict = self.admission.page(url, 0);
            self.queue_page(verdict, 0, 0, Vec::new(), None);
        }
    }

    /// Queues the page a verdict admitted at `depth` with the trap rule's `barren` run (or reports
    /// why it was left, as found on `page`); returns whether it was queued.
    pub(super) fn queue_page(
        &mut self,
        verdict: Verdict,
        depth: u32,
        barren: u32,
        redirected_from: Vec<Url>,
        page: Option<&Url>,
    ) -> bool {
        match verdict {
            Verdict::Admit(url) => {
                // A page an earlier run fetched: asked for again only if it changed.
                let before = self.earlier.take(&url);
                self.queue_new(Job::Page(PageJob {
                    url,
                    depth,
                    barren,
                    attempts: 0,
                    losses: 0,
                    redirected_from,
                    before,
                }));
                true
            }
            Verdict::Leave(left) => {
                self.left(Kind::Page, left, page);
                false
            }
        }
    }

    /// Queues the image a verdict admitted, found on `page` (or reports why it was left);
    /// returns whether it was queued.
    pub(super) fn queue_image(
        &mut self,
        verdict: Verdict,
        page: Url,
        name: Option<String>,
        from: Vec<Url>,
    ) -> bool {
        match verdict {
            Verdict::Admit(url) => {
                self.queue_new(Job::Image(ImageJob {
                    url,
                    page,
                    name,
                    attempts: 0,
                    losses: 0,
                    redirected_from: from,
                    revalidate: false,
                }));
                true
            }
            // Saved before, and an update asks for saved images again.
            Verdict::Leave(left)
                if left.reason == Reason::AlreadySaved && self.settings.revalidate_images =>
            {
                self.queue_new(Job::Image(ImageJob {
                    url: left.url,
                    page,
                    name,
                    attempts: 0,
                    losses: 0,
                    redirected_from: from,
                    revalidate: true,
                }));
                true
            }
            Verdict::Leave(left) => {
                self.left(Kind::Image, left, Some(&page));
                false
            }
        }
    }

    /// Hands a newly admitted job to the frontier; one queued here is recorded in the local
    /// state (in the batch that says what found it) and its host's robots.txt is fetched.
    fn queue_new(&mut self, job: Job) {
        let op = StateOp::queued(&job, false);
        let url = job.url().clone();
        if let Placed::Here { spilled } = self.frontier.add(job) {
            self.note_host(&url);
            self.pending.push(op.spilled(spilled));
        }
    }

    /// Tells what is to be told of a URL of `kind` left out, found on `page`: recorded reasons go
    /// to `skipped.jsonl`; images off the site and saved before are counted.
    fn left(&mut self, kind: Kind, left: Left, page: Option<&Url>) {
        match (left.reason.recorded(), left.reason) {
            (Some(reason), _) => self.skipped(
                SkipRow {
                    url: left.url.to_string(),
                    kind,
                    reason: reason.into(),
                    detail: left.detail,
                    page: page.map(Url::to_string),
                },
                left.shape,
            ),
            (None, Reason::TooLong) => log::debug!("skipping a {}", left.detail),
            (None, Reason::OffSite) if kind == Kind::Image => {
                self.logger
                    .do_send(CrawlEvent::ImageOutOfScope { url: left.url });
            }
            (None, Reason::AlreadySaved) => {
                // Found again: its manifest row's last_seen moves to this run.
                self.pending.push(StateOp::ImageSeen(left.url.clone()));
                self.logger
                    .do_send(CrawlEvent::ImageAlreadySaved { url: left.url });
            }
            (None, _) => {}
        }
    }

    /// On the first URL of a host, holds the host and queues a fetch of its robots.txt.
    pub(super) fn note_host(&mut self, url: &Url) {
        if let Some(host) = self.admission.new_host(url) {
            self.politeness.hold(&host);
            self.robots_waiting.push_back(RobotsJob {
                url: robots_url(url),
                host,
                attempts: 0,
                losses: 0,
            });
        }
    }

    /// Queues what a page held (fetched now, or kept from an earlier run when `outcome` says it
    /// is unchanged) and records it done.
    pub(super) fn page_done(&mut self, job: PageJob, extracted: Extracted, outcome: PageOutcome) {
        let depth = job.depth + 1;
        let change = outcome.change(&job);
        let op = match outcome {
            PageOutcome::Fetched(validators) => {
                let found = extracted.encode();
                self.frontier.keep_page(&job.url, &validators, &found);
                StateOp::PageFetched {
                    url: job.url.clone(),
                    validators,
                    found,
                }
            }
            PageOutcome::Unchanged => StateOp::PageUnchanged(job.url.clone()),
        };
        // Images first: whether the page yielded decides the barren run of its links.
        let (mut images, mut novel) = (0, 0);
        let counts_yield = self.admission.counts_yield();
        for c in extracted.images {
            let found = counts_yield.then(|| c.url.clone());
            let verdict = self.admission.image(c.url);
            let page = c.page.unwrap_or_else(|| job.url.clone());
            if self.queue_image(verdict, page, c.name, Vec::new()) {
                images += 1;
                if found.is_some_and(|u| self.admission.note_yield(&u)) {
                    novel += 1;
                }
            }
        }
        let yielded = if counts_yield { novel > 0 } else { images > 0 };
        let barren = self.admission.page_done(&job.url, job.barren, yielded);
        let (mut links, mut links_out_of_scope) = (0, 0);
        for url in extracted.links {
            let verdict = self.admission.link(url, depth, barren);
            match &verdict {
                Verdict::Leave(l) if l.reason == Reason::Depth => break,
                Verdict::Leave(l) if l.reason.out_of_scope() => links_out_of_scope += 1,
                _ => {}
            }
            if self.queue_page(verdict, depth, barren, Vec::new(), Some(&job.url)) {
                links += 1;
            }
        }
        self.queue_sitemaps(extracted.sitemaps, job.depth);
        // In the same batch as the links and images it queued: done means they are known.
        self.pending.push(op);
        self.frontier
            .done(Kind::Page, &job.url, Some(change.counter()));
        self.logger.do_send(CrawlEvent::PageFetched {
            url: job.url,
            depth: job.depth,
            images,
            links,
            images_dropped: extracted.images_dropped,
            links_dropped: extracted.links_dropped,
            links_out_of_scope,
            change,
        });
    }

    /// The sitemap guessed for a host is not there: the page ends as done, counted nowhere.
    pub(super) fn no_sitemap(&mut self, job: PageJob) {
        log::debug!("{}: no sitemap", job.url);
        self.pending.push(StateOp::PageDone(job.url.clone()));
        self.frontier.done(Kind::Page, &job.url, None);
    }

    /// Queues the sitemaps of a host (from its robots.txt, or found at `/sitemap.xml`) or of a
    /// sitemap index as pages at `depth` (a sitemap is a start page; what it lists is one hop
    /// from it). Those off the allowed sites are ignored.
    pub(super) fn queue_sitemaps(&mut self, sitemaps: Vec<Url>, depth: u32) {
        for url in sitemaps {
            if let Some(verdict) = self.admission.sitemap(url) {
                self.queue_page(verdict, depth, 0, Vec::new(), None);
            }
        }
    }

    /// A job redirected to `to`: the target is admitted like a new URL of the same kind (a
    /// page keeps its depth and barren run, an image its page and name), or the chain ends as
    /// skipped (off the site) or failed (a loop, too many hops).
    pub(super) fn redirected(&mut self, mut job: Job, to: Url) {
        let mut chain = std::mem::take(job.redirected_from());
        chain.push(job.url().clone());
        let to = match self.admission.redirect(&chain, to) {
            Ok(to) => to,
            Err(failure) => {
                *job.redirected_from() = chain;
                if failure.kind == FailureKind::OutOfScope {
                    let left = Left {
                        url: job.url().clone(),
                        reason: Reason::RedirectOffSite,
                        detail: failure.detail,
                        shape: None,
                    };
                    return self.job_skipped(job, left);
                }
                *job.attempts() += 1;
                return self.gave_up(job, failure);
            }
        };
        log::debug!("{} redirects to {to}", job.url());
        let (kind, url) = (job.kind(), job.url().clone());
        match job {
            Job::Page(j) => {
                let verdict = self.admission.page(to, j.barren);
                self.queue_page(verdict, j.depth, j.barren, chain, None);
            }
            Job::Image(j) => {
                let verdict = self.admission.image(to);
                self.queue_image(verdict, j.page, j.name, chain);
            }
        }
        self.frontier.done(kind, &url, None);
        self.pending.push(StateOp::Redirected(kind, url));
    }

    /// Reports a URL left out on purpose (recorded in `skipped.jsonl`, counted by reason).
    pub(super) fn skipped(&self, row: SkipRow, shape: Option<String>) {
        self.logger.do_send(CrawlEvent::Skipped { row, shape });
    }
}
