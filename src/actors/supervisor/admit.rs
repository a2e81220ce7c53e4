//! The Supervisor's admission rules: which discovered URLs become jobs (canonical form, seen sets,
//! scope, depth, page budget and the trap rule), the robots.txt fetch a new host needs first, and
//! redirect hops, which are admitted like links. URLs left out on purpose are reported as skipped,
//! never as failures.

use url::Url;

use super::{RobotsJob, Spill, Supervisor};
use crate::actors::logger::CrawlEvent;
use crate::cluster::Kind;
use crate::error::{Failure, FailureKind};
use crate::extract::Extracted;
use crate::frontier::{host_key, ImageJob, PageJob};
use crate::records::{ItemKind, SkipRow};
use crate::robots::robots_url;
use crate::state::{Resume, StateOp};
use crate::trap::TrapRule;

impl Supervisor {
    /// Puts back what earlier runs left: every URL they admitted counts as seen, and what was
    /// waiting (or in flight when they stopped) is queued again.
    pub(super) fn restore(&mut self, resume: Resume) {
        if self.shared.is_some() {
            // The shared crawl's frontier and seen sets live in Redis; what this directory's
            // state holds beyond the saved images is only this process's share of it.
            return;
        }
        self.pages_admitted = resume.seen_pages.len() as u64;
        // Saved images stay out of the seen set, so that meeting one again is counted as "already
        // saved" (see `admit_image`).
        let images = resume.seen_images.without(&self.previously_saved);
        self.frontier.restore_seen(resume.seen_pages, images);
        self.queue_waiting(resume.pages, resume.images);
        self.spill_pages = Spill::committed(resume.pages_spilled);
        self.spill_images = Spill::committed(resume.images_spilled);
    }

    /// Queues jobs that were already admitted and recorded (left by an earlier run, or read back
    /// from the state database after a spill).
    pub(super) fn queue_waiting(&mut self, pages: Vec<PageJob>, images: Vec<ImageJob>) {
        for job in pages {
            self.note_host(&job.url);
            self.frontier.push_page(job);
        }
        for job in images {
            self.note_host(&job.url);
            self.frontier.push_image(job);
        }
    }

    pub(super) fn seed(&mut self) {
        for url in self.settings.start_urls.clone() {
            self.admit_page(url, 0, 0, Vec::new(), None);
        }
    }

    /// Whether `scope.max_pages` pages were admitted already.
    pub(super) fn page_budget_spent(&self) -> bool {
        self.settings
            .scope
            .max_pages
            .is_some_and(|max| self.pages_admitted >= max)
    }

    /// Queues a page never seen before (in its canonical form) at `depth` with the trap rule's
    /// `barren` run, found on `page` (for the records of a skip); returns whether it was queued.
    pub(super) fn admit_page(
        &mut self,
        url: Url,
        depth: u32,
        barren: u32,
        redirected_from: Vec<Url>,
        page: Option<&Url>,
    ) -> bool {
        let Some(url) = self.canonical(url) else {
            return false;
        };
        // A shared crawl's page budget is kept by Redis, for all processes together.
        if (self.shared.is_none() && self.page_budget_spent()) || self.frontier.page_seen(&url) {
            return false;
        }
        if let Err(trapped) = self.trap.check(&url, barren) {
            // Not marked as seen: a page that yields may still lead here.
            self.skipped(
                SkipRow {
                    url: url.to_string(),
                    kind: ItemKind::Page,
                    reason: "trap".into(),
                    detail: trapped.record_detail(),
                    page: page.map(Url::to_string),
                },
                Some(trapped.shape),
            );
            return false;
        }
        if !self.frontier.admit_page(&url) {
            return false;
        }
        self.pages_admitted += 1;
        if self.share_page(&url, depth, barren, &redirected_from) {
            return true;
        }
        self.note_host(&url);
        let spilled = self
            .spill_pages
            .spills(self.frontier.pages_waiting(), self.in_memory());
        self.pending.push(StateOp::PageQueued {
            url: url.clone(),
            depth,
            barren,
            redirected_from: redirected_from.clone(),
            spilled,
        });
        if !spilled {
            self.frontier.push_page(PageJob {
                url,
                depth,
                barren,
                attempts: 0,
                losses: 0,
                redirected_from,
            });
        }
        true
    }

    /// Queues an image never seen before; returns whether it was queued.
    pub(super) fn admit_image(
        &mut self,
        url: Url,
        page: Url,
        name: Option<String>,
        from: Vec<Url>,
    ) -> bool {
        let Some(url) = self.canonical(url) else {
            return false;
        };
        if !self.settings.scope.host_allowed(&url) {
            // Counted where met, and not kept in the seen set: other sites' URLs must not grow
            // this crawl's memory.
            self.logger.do_send(CrawlEvent::ImageOutOfScope { url });
            return false;
        }
        if !self.frontier.admit_image(&url) {
            return false;
        }
        if self.previously_saved.contains(&url) {
            self.logger.do_send(CrawlEvent::ImageAlreadySaved { url });
            return false;
        }
        if let Some(pattern) = self.settings.filter.excluded(&url) {
            let detail = format!("matches {pattern}");
            self.skipped(
                SkipRow {
                    url: url.to_string(),
                    kind: ItemKind::Image,
                    reason: "filter.exclude".into(),
                    detail,
                    page: Some(page.to_string()),
                },
                None,
            );
            return false;
        }
        let job = ImageJob {
            url,
            page,
            name,
            attempts: 0,
            losses: 0,
            redirected_from: from,
        };
        if self.shared.is_some() {
            self.share_image(job);
            return true;
        }
        self.note_host(&job.url);
        let spilled = self
            .spill_images
            .spills(self.frontier.images_waiting(), self.in_memory());
        self.pending.push(StateOp::ImageQueued {
            url: job.url.clone(),
            page: job.page.clone(),
            name: job.name.clone(),
            redirected_from: job.redirected_from.clone(),
            spilled,
        });
        if !spilled {
            self.frontier.push_image(job);
        }
        true
    }

    /// The canonical form of a discovered URL, or `None` (logged) when it is too long to be real.
    pub(super) fn canonical(&self, url: Url) -> Option<Url> {
        let len = url.as_str().len();
        let canonical = self.settings.scope.canonical(url);
        if canonical.is_none() {
            log::debug!(
                "skipping a URL of {len} bytes (scope.max_url_length is {})",
                self.settings.scope.max_url_length
            );
        }
        canonical
    }

    /// On the first URL of a host, holds the host and queues a fetch of its robots.txt.
    pub(super) fn note_host(&mut self, url: &Url) {
        let Some(book) = &mut self.robots else {
            return;
        };
        let host = host_key(url);
        if book.begin(&host) {
            self.politeness.hold(&host);
            self.robots_waiting.push_back(RobotsJob {
                url: robots_url(url),
                host,
                attempts: 0,
                losses: 0,
            });
        }
    }

    /// Whether robots.txt lets `url` be requested (always, when robots are not obeyed).
    pub(super) fn robots_verdict(&self, url: &Url) -> Result<(), Failure> {
        match self.robots.as_ref().and_then(|b| b.rules(&host_key(url))) {
            Some(rules) => rules.check(url),
            None => Ok(()),
        }
    }

    pub(super) fn page_done(&mut self, job: PageJob, extracted: Extracted) {
        let depth = job.depth + 1;
        // Images first: whether the page yielded decides the barren run of its links.
        let (mut images, mut novel) = (0, 0);
        let trap_on = self.trap.enabled();
        for c in extracted.images {
            let url = trap_on.then(|| c.url.clone());
            if self.admit_image(c.url, job.url.clone(), c.name, Vec::new()) {
                images += 1;
                if url.is_some_and(|u| self.trap.note_image(&u)) {
                    novel += 1;
                }
            }
        }
        let yielded = if trap_on { novel > 0 } else { images > 0 };
        self.trap.page_done(&job.url, job.barren, yielded);
        let barren = TrapRule::child_run(job.barren, yielded);
        let (mut links, mut links_out_of_scope) = (0, 0);
        if self.settings.scope.max_depth.is_none_or(|max| depth <= max) {
            for url in extracted.links {
                if !self.settings.scope.follow_allowed(&url) {
                    links_out_of_scope += 1;
                } else if self.admit_page(url, depth, barren, Vec::new(), Some(&job.url)) {
                    links += 1;
                }
            }
        }
        // In the same batch as the links and images it queued: done means they are known.
        self.pending.push(StateOp::PageDone(job.url.clone()));
        self.shared_done(Kind::Page, &job.url, Some("pages_fetched"));
        self.logger.do_send(CrawlEvent::PageFetched {
            url: job.url,
            depth: job.depth,
            images,
            links,
            images_dropped: extracted.images_dropped,
            links_dropped: extracted.links_dropped,
            links_out_of_scope,
        });
    }

    /// Checks one redirect hop (see [`crate::admission::redirect_target`], which `imgcrawl check`
    /// uses too).
    pub(super) fn redirect_target(&self, from: &[Url], to: Url) -> Result<Url, Failure> {
        crate::admission::redirect_target(&self.settings, from, to)
    }

    pub(super) fn page_redirected(&mut self, mut job: PageJob, to: Url) {
        let mut chain = std::mem::take(&mut job.redirected_from);
        chain.push(job.url.clone());
        match self.redirect_target(&chain, to) {
            Ok(to) => {
                log::debug!("{} redirects to {to}", job.url);
                self.admit_page(to, job.depth, job.barren, chain, None);
                self.shared_done(Kind::Page, &job.url, None);
                self.pending.push(StateOp::PageDone(job.url));
            }
            Err(failure) if failure.kind == FailureKind::OutOfScope => {
                job.redirected_from = chain;
                self.page_skipped(job, "out of scope", failure.detail, None);
            }
            Err(failure) => {
                job.attempts += 1;
                job.redirected_from = chain;
                self.page_gave_up(job, failure);
            }
        }
    }

    pub(super) fn image_redirected(&mut self, mut job: ImageJob, to: Url) {
        let mut chain = std::mem::take(&mut job.redirected_from);
        chain.push(job.url.clone());
        match self.redirect_target(&chain, to) {
            Ok(to) => {
                log::debug!("{} redirects to {to}", job.url);
                self.admit_image(to, job.page, job.name, chain);
                self.shared_done(Kind::Image, &job.url, None);
                self.pending.push(StateOp::ImageRedirected(job.url));
            }
            Err(failure) if failure.kind == FailureKind::OutOfScope => {
                job.redirected_from = chain;
                self.image_skipped(job, "out of scope", failure.detail);
            }
            Err(failure) => {
                job.attempts += 1;
                job.redirected_from = chain;
                self.image_gave_up(job, failure);
            }
        }
    }

    /// Reports a URL left out on purpose (recorded in `skipped.jsonl`, counted by reason).
    pub(super) fn skipped(&self, row: SkipRow, shape: Option<String>) {
        self.logger.do_send(CrawlEvent::Skipped { row, shape });
    }

    /// Whether the trap rule still lets a waiting page be fetched (its shape's budget may have
    /// been spent since it was admitted); if not, the page is done as skipped.
    pub(super) fn trap_allows(&mut self, job: &PageJob) -> bool {
        match self.trap.check(&job.url, job.barren) {
            Ok(()) => true,
            Err(trapped) => {
                let detail = trapped.record_detail();
                self.page_skipped(job.clone(), "trap", detail, Some(trapped.shape));
                false
            }
        }
    }
}
