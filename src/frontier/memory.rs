//! The in-memory frontier: per-host queues and hash seen-sets in this process.

use tokio::time::Instant;

use super::{host_key, Blocked, Frontier, HostQueues, ImageJob, PageJob, Politeness};

/// A [`Frontier`] held in memory.
#[derive(Debug, Default)]
pub struct MemoryFrontier {
    /// Pages waiting, by host.
    pages: HostQueues<PageJob>,
    /// Images waiting, by host.
    images: HostQueues<ImageJob>,
}

impl Frontier for MemoryFrontier {
    fn push_page(&mut self, job: PageJob) {
        self.pages.push(host_key(&job.url), job);
    }

    fn push_image(&mut self, job: ImageJob) {
        self.images.push(host_key(&job.url), job);
    }

    fn pop_page(&mut self, politeness: &Politeness, now: Instant) -> Result<PageJob, Blocked> {
        self.pages.pop(politeness, now).map(|(_, j)| j)
    }

    fn pop_image(&mut self, politeness: &Politeness, now: Instant) -> Result<ImageJob, Blocked> {
        self.images.pop(politeness, now).map(|(_, j)| j)
    }

    fn pages_waiting(&self) -> usize {
        self.pages.len()
    }

    fn images_waiting(&self) -> usize {
        self.images.len()
    }

    fn waiting_hosts(&self) -> Vec<String> {
        let mut seen = std::collections::HashSet::new();
        self.pages
            .hosts()
            .chain(self.images.hosts())
            .filter(|h| seen.insert(*h))
            .cloned()
            .collect()
    }
}
