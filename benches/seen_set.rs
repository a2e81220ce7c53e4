//! Memory per URL of the seen sets at a million URLs (issue target: at most 40 bytes per URL,
//! whatever the URLs' length). Run with `cargo bench --bench seen_set`; it prints the figures.

use std::sync::atomic::Ordering;

use imgcrawl::seen::SeenSet;
use url::Url;

#[path = "support/counting.rs"]
mod counting;

use counting::{Counting, LIVE};

#[global_allocator]
static ALLOCATOR: Counting = Counting;

fn main() {
    for n in [100_000usize, 1_000_000, 1_500_000] {
        let before = LIVE.load(Ordering::Relaxed);
        let mut seen = SeenSet::default();
        let mut longest = 0;
        for i in 0..n {
            // Long, realistic URLs: the set's cost must not depend on them.
            let url = Url::parse(&format!(
                "https://gallery.example/photos/2026/11/album-{}/very-long-descriptive-name-of-the-picture-{i}.jpg?size=original&ref=list-{}",
                i % 977,
                i % 31
            ))
            .expect("a valid URL");
            longest = longest.max(url.as_str().len());
            seen.insert(&url);
        }
        let bytes = LIVE.load(Ordering::Relaxed) - before;
        println!(
            "seen set: {n:>9} URLs (up to {longest} bytes each) take {:>6.1} MB: {:.1} bytes per URL",
            bytes as f64 / 1e6,
            bytes as f64 / n as f64
        );
        assert_eq!(seen.len(), n);
    }
}
