//! The frontier of a crawl of this process alone: per-host queues in memory, and beyond
//! `workers.frontier_in_memory` jobs of a kind, the state database. Jobs admitted while the
//! queue is full are spilled (recorded, not kept in memory) and read back, oldest first, with a
//! commit once the queue is down to half.

use std::time::Duration;

use url::Url;

use super::queues::KindQueues;
use super::{CommitTicket, Drive, Frontier, LocalFuture, Placed, Politeness, Restored};
use crate::cluster::BytesClaim;
use crate::job::Job;
use crate::records::{ManifestRow, WholeCrawl};
use crate::state::{LoadSpilled, Loaded, Resume, StateOp};
use crate::Kind;

/// Jobs of one kind admitted while the queue was full: kept only in the state database until the
/// queue drains and they are read back (oldest first) with a commit.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
struct Spill {
    /// Spilled jobs not yet read back.
    total: u64,
    /// Of those, the ones whose batch is committed (only these can be read back).
    committed: u64,
}

impl Spill {
    /// Spilled jobs an earlier run left.
    fn committed(n: u64) -> Spill {
        Spill {
            total: n,
            committed: n,
        }
    }

    /// Whether a new job goes to the database only: while any job is spilled, every new one is
    /// too, so that the database gives them back in the order they came. Counts it if so.
    fn spills(&mut self, in_memory: usize, bound: usize) -> bool {
        let spill = self.total > 0 || in_memory >= bound;
        self.total += u64::from(spill);
        spill
    }

    /// What to read back with the next commit, which carries `in_batch` newly spilled jobs, when
    /// `in_memory` jobs are waiting in memory: nothing until the queue is down to half.
    fn load(&self, in_batch: u64, in_memory: usize, bound: usize) -> LoadSpilled {
        let available = self.committed + in_batch;
        if available == 0 || in_memory > bound / 2 {
            return LoadSpilled::default();
        }
        LoadSpilled {
            take: available.min((bound - in_memory) as u64),
            spilled: available,
        }
    }

    /// Accounts for a commit that carried `in_batch` spilled jobs and read back `loaded` of the
    /// `asked` ones.
    fn after(&mut self, in_batch: u64, asked: LoadSpilled, loaded: usize) {
        self.committed += in_batch;
        let loaded = loaded as u64;
        if loaded < asked.take {
            // Fewer were there than counted (which should not happen): the database has no more,
            // so none are counted any more, or the crawl would wait for them for ever.
            log::warn!(
                "the state database gave back {loaded} of {} waiting jobs",
                asked.take
            );
            self.total -= self.committed;
            self.committed = 0;
            return;
        }
        self.total -= loaded;
        self.committed -= loaded;
    }
}

/// The [`Frontier`] of a crawl of this process alone; see the module documentation.
#[derive(Debug)]
pub struct LocalFrontier {
    /// The jobs waiting in memory.
    queues: KindQueues,
    /// Pages kept only in the state database.
    spill_pages: Spill,
    /// Images kept only in the state database.
    spill_images: Spill,
    /// Waiting jobs of each kind kept in memory (`workers.frontier_in_memory`).
    bound: usize,
}

impl LocalFrontier {
    /// A frontier keeping up to `bound` waiting jobs of each kind in memory.
    pub fn new(bound: usize) -> Self {
        LocalFrontier {
            queues: KindQueues::default(),
            spill_pages: Spill::default(),
            spill_images: Spill::default(),
            bound,
        }
    }

    /// Spilled jobs to read back with a commit carrying `pages`/`images` newly spilled ones.
    fn loads(&self, pages: u64, images: u64) -> (LoadSpilled, LoadSpilled) {
        (
            self.spill_pages
                .load(pages, self.queues.len(Kind::Page), self.bound),
            self.spill_images
                .load(images, self.queues.len(Kind::Image), self.bound),
        )
    }
}

impl Frontier for LocalFrontier {
    fn admission_keeps_budget(&self) -> bool {
        true
    }

    fn shares_bytes(&self) -> bool {
        false
    }

    fn start(&mut self, _: &mut Politeness, _: actix::Recipient<super::Wake>) {}

    fn restore(&mut self, resume: Resume) -> Restored {
        self.spill_pages = Spill::committed(resume.pages_spilled);
        self.spill_images = Spill::committed(resume.images_spilled);
        let waiting = resume
            .pages
            .into_iter()
            .map(Job::Page)
            .chain(resume.images.into_iter().map(Job::Image))
            .collect();
        Restored {
            pages: resume.seen_pages,
            images: resume.seen_images,
            waiting,
        }
    }

    fn add(&mut self, job: Job) -> Placed {
        let waiting = self.queues.len(job.kind());
        let spill = match job.kind() {
            Kind::Page => &mut self.spill_pages,
            Kind::Image => &mut self.spill_images,
        };
        let spilled = spill.spills(waiting, self.bound);
        if !spilled {
            self.push(job);
        }
        Placed::Here { spilled }
    }

    fn queues(&self) -> &KindQueues {
        &self.queues
    }

    fn queues_mut(&mut self) -> &mut KindQueues {
        &mut self.queues
    }

    fn spilled(&self, kind: Kind) -> usize {
        let spill = match kind {
            Kind::Page => self.spill_pages,
            Kind::Image => self.spill_images,
        };
        spill.total as usize
    }

    fn done(&mut self, _: Kind, _: &Url, _: Option<&'static str>) {}

    fn saved(&mut self, _: &Url, _: &ManifestRow) {}

    fn commit_begins(&mut self, ops: &[StateOp], stopping: bool) -> CommitTicket {
        let (mut pages, mut images) = (0, 0);
        for op in ops {
            match op {
                StateOp::PageQueued { spilled: true, .. } => pages += 1,
                StateOp::ImageQueued { spilled: true, .. }
                | StateOp::ImageRevalidating { spilled: true, .. } => images += 1,
                _ => {}
            }
        }
        let (load_pages, load_images) = if stopping {
            Default::default()
        } else {
            self.loads(pages, images)
        };
        CommitTicket {
            load_pages,
            load_images,
            spilled: (pages, images),
            after: Vec::new(),
        }
    }

    fn commit_done(&mut self, ticket: CommitTicket, loaded: Loaded) -> Vec<Job> {
        let (pages, images) = ticket.spilled;
        self.spill_pages
            .after(pages, ticket.load_pages, loaded.pages.len());
        self.spill_images
            .after(images, ticket.load_images, loaded.images.len());
        let pages = loaded.pages.into_iter().map(Job::Page);
        pages
            .chain(loaded.images.into_iter().map(Job::Image))
            .collect()
    }

    fn refill_due(&self) -> bool {
        let (p, i) = self.loads(0, 0);
        p.take > 0 || i.take > 0
    }

    fn absorb(&mut self, _: &mut Politeness) -> Vec<Job> {
        Vec::new()
    }

    fn drive(&mut self, _: &mut Drive<'_>) {}

    fn settled(&mut self, _: &mut Drive<'_>) -> bool {
        true
    }

    fn request_started(&mut self, _: u64, _: &str) {}

    fn request_freed(&mut self, _: u64, _: &str, _: &Politeness) {}

    fn host_paused(&mut self, _: &str, _: Duration) {}

    fn whole_crawl(&self) -> Option<LocalFuture<Option<WholeCrawl>>> {
        None
    }

    fn claim_bytes(&self, _: String) -> LocalFuture<Result<BytesClaim, String>> {
        Box::pin(std::future::ready(Ok(BytesClaim::Mine)))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::job::PageJob;
    use tokio::time::Instant;

    fn page(n: u32) -> Job {
        Job::Page(PageJob {
            url: Url::parse(&format!("http://h/{n}")).unwrap(),
            depth: 1,
            barren: 0,
            attempts: 0,
            losses: 0,
            redirected_from: Vec::new(),
            before: None,
        })
    }

    #[test]
    fn jobs_beyond_the_bound_spill_and_come_back_once_the_queue_is_down_to_half() {
        let mut f = LocalFrontier::new(4);
        let placed: Vec<Placed> = (0..6).map(|n| f.add(page(n))).collect();
        assert_eq!(placed[3], Placed::Here { spilled: false });
        assert_eq!(placed[4], Placed::Here { spilled: true });
        assert_eq!((f.waiting(Kind::Page), f.spilled(Kind::Page)), (4, 2));
        // Spilled jobs are read back only once their batch is committed and the queue is at half.
        let ops: Vec<StateOp> = (0..2)
            .map(|_| StateOp::PageQueued {
                url: Url::parse("http://h/x").unwrap(),
                depth: 1,
                barren: 0,
                redirected_from: Vec::new(),
                spilled: true,
            })
            .collect();
        let ticket = f.commit_begins(&ops, false);
        assert_eq!(ticket.load_pages.take, 0, "the queue is full");
        f.commit_done(ticket, Loaded::default());
        let politeness = Politeness::new(8, Duration::ZERO);
        f.pop(Kind::Page, &politeness, Instant::now()).unwrap();
        assert!(!f.refill_due(), "3 of 4 still wait: not yet");
        for _ in 0..2 {
            f.pop(Kind::Page, &politeness, Instant::now()).unwrap();
        }
        assert!(f.refill_due());
        let ticket = f.commit_begins(&[], false);
        assert_eq!(ticket.load_pages.take, 2);
        assert_eq!(
            f.commit_begins(&[], true).load_pages.take,
            0,
            "not while stopping"
        );
        let loaded = Loaded {
            pages: vec![],
            images: vec![],
        };
        // The database had fewer than counted: none are counted any more.
        f.commit_done(ticket, loaded);
        assert_eq!(f.spilled(Kind::Page), 0);
    }
}
