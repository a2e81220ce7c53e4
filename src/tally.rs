//! The counters a crawl's events add up to (the Logger's, for `stats.json` and its status lines,
//! and the progress display's own), with the estimate of the jobs the whole crawl will have.

use crate::actors::logger::{CrawlEvent, PageChange};
use crate::records::{ErrorRow, Stats};
use crate::Kind;

/// What a crawl's events add up to: the counters of `stats.json` and the latest queue snapshot.
/// The Logger keeps one for the records and status lines, the progress display another.
#[derive(Debug, Default, Clone)]
pub struct Tally {
    /// The counters.
    pub stats: Stats,
    /// Pages waiting, images waiting and requests in flight, from the latest
    /// [`CrawlEvent::Progress`].
    pub queues: (usize, usize, usize),
}

impl Tally {
    /// Counts one event.
    pub fn count(&mut self, event: &CrawlEvent) {
        let s = &mut self.stats;
        let mut error = |row: &ErrorRow| {
            *s.errors_by_kind.entry(row.error.clone()).or_default() += 1;
            s.error_examples
                .entry(row.error.clone())
                .or_insert_with(|| row.url.clone());
        };
        match event {
            CrawlEvent::PageFetched {
                images_dropped,
                links_dropped,
                links_out_of_scope,
                change,
                ..
            } => {
                match change {
                    PageChange::Unchanged => s.pages_unchanged += 1,
                    PageChange::Changed => s.pages_changed += 1,
                    PageChange::New => {}
                }
                if *change != PageChange::Unchanged {
                    s.pages_fetched += 1;
                }
                s.links_out_of_scope += *links_out_of_scope as u64;
                s.images_over_page_cap += *images_dropped as u64;
                s.links_over_page_cap += *links_dropped as u64;
            }
            CrawlEvent::Failed(row) => {
                error(row);
                match row.kind {
                    Kind::Page => s.pages_failed += 1,
                    Kind::Image => s.images_failed += 1,
                }
            }
            CrawlEvent::ImageSaved(row) => {
                if row.previous.is_some() {
                    // New bytes of a saved image, asked for again.
                    s.images_changed += 1;
                    s.images_revalidated += 1;
                } else {
                    s.images_new += 1;
                }
                if row.duplicate_of.is_some() {
                    s.duplicates += 1;
                } else {
                    s.images_saved += 1;
                    s.bytes_saved += row.bytes;
                }
            }
            CrawlEvent::ImageRevalidated { gone, .. } => {
                s.images_revalidated += 1;
                match gone {
                    Some(_) => s.images_gone += 1,
                    None => s.images_unchanged += 1,
                }
            }
            CrawlEvent::ImageAlreadySaved { .. } => {
                s.images_already_saved += 1;
                s.images_unchanged += 1;
            }
            CrawlEvent::PageGone { .. } => s.pages_gone += 1,
            CrawlEvent::Skipped { row, shape } => {
                let by_reason = match row.kind {
                    Kind::Page => &mut s.pages_skipped,
                    Kind::Image => &mut s.images_skipped,
                };
                *by_reason.entry(row.reason.clone()).or_default() += 1;
                if let Some(shape) = shape {
                    *s.trap_shapes.entry(shape.clone()).or_default() += 1;
                }
            }
            CrawlEvent::ImageOutOfScope { .. } => s.images_out_of_scope += 1,
            CrawlEvent::Retrying { .. } => s.retries += 1,
            CrawlEvent::WorkerRestarted { .. } => s.worker_restarts += 1,
            CrawlEvent::Progress {
                pages_waiting,
                images_waiting,
                in_flight,
            } => self.queues = (*pages_waiting, *images_waiting, *in_flight),
            CrawlEvent::Started { run, update, .. } => {
                s.run = *run;
                s.update = *update;
            }
        }
    }

    /// Jobs finished so far, whatever their outcome.
    pub fn jobs_done(&self) -> u64 {
        let s = &self.stats;
        s.pages_fetched
            + s.pages_unchanged
            + s.pages_gone
            + s.pages_failed
            + s.pages_skipped.values().sum::<u64>()
            + s.images_saved
            + s.duplicates
            + (s.images_revalidated - s.images_changed)
            + s.images_skipped.values().sum::<u64>()
            + s.images_failed
    }

    /// Jobs waiting or in flight.
    pub fn jobs_open(&self) -> u64 {
        let (pw, iw, fl) = self.queues;
        (pw + iw + fl) as u64
    }

    /// The jobs the whole crawl will probably have: those known (done, waiting, in flight), plus,
    /// while pages wait, as many images for each of them as the pages fetched so far brought on
    /// average. With a `page_template` every list page is known from the start, so this settles
    /// early; it is exact once no page waits.
    pub fn estimated_total(&self) -> u64 {
        let s = &self.stats;
        let (pages_waiting, images_waiting, in_flight) = self.queues;
        let known = self.jobs_done() + self.jobs_open();
        if pages_waiting == 0 || s.pages_fetched == 0 {
            return known;
        }
        let images_found = self.jobs_done() - s.pages_fetched - s.pages_failed
            + (images_waiting + in_flight) as u64;
        known + pages_waiting as u64 * images_found / s.pages_fetched
    }

    /// The counters in two parts: pages and images, then the rest (skipped, in flight, MB).
    pub fn status_parts(&self) -> (String, String) {
        let s = &self.stats;
        let (pw, iw, fl) = self.queues;
        (
            format!(
                "pages {} done, {pw} waiting | images {} saved, {} duplicates, {} failed, {iw} waiting",
                s.pages_fetched,
                s.images_saved,
                s.duplicates,
                s.images_failed + s.pages_failed,
            ),
            format!(
                "{} skipped | {fl} in flight | {:.1} MB",
                s.images_skipped.values().sum::<u64>() + s.pages_skipped.values().sum::<u64>(),
                s.bytes_saved as f64 / 1e6
            ),
        )
    }

    /// One line of counters, e.g. `pages 120 done, 14 waiting | images 96 saved, ... | 2.1 MB`.
    pub fn status(&self) -> String {
        let (counts, rest) = self.status_parts();
        format!("{counts} | {rest}")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_total_is_extrapolated_while_pages_wait_and_exact_after() {
        let mut t = Tally::default();
        t.stats.pages_fetched = 2;
        t.stats.images_saved = 30;
        // 2 pages brought 30 + 10 waiting images: 20 each. 8 pages wait, 2 requests in flight.
        t.queues = (8, 10, 0);
        assert_eq!(t.jobs_done(), 32);
        assert_eq!(t.estimated_total(), 32 + 18 + 8 * 20);
        // No page waits: what is known is the total.
        t.queues = (0, 10, 2);
        assert_eq!(t.estimated_total(), 32 + 12);
        // Nothing fetched yet: nothing to extrapolate from.
        t.stats = Stats::default();
        t.queues = (8, 0, 0);
        assert_eq!(t.estimated_total(), 8);
    }
}
