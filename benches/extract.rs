//! The cost of reading hostile pages: wall time and peak heap of `extract` on 10 MiB pathological
//! pages (800,000 `<img>` of one URL in one `<figure>`, 2,000,000 nested `<div>`s, 700,000 links)
//! and on an ordinary gallery page, with the default rules. Run with `cargo bench --bench extract`;
//! it prints one line per page. The nested page is expected to end as "too complex" at the
//! default budget (`extract.parse_timeout_secs`); the others well inside it.

use std::sync::atomic::Ordering;
use std::time::Instant;

use imgcrawl::extract::extract;
use imgcrawl::settings::ExtractRules;
use url::Url;

#[path = "support/counting.rs"]
mod counting;

use counting::{Counting, LIVE, PEAK};

#[global_allocator]
static ALLOCATOR: Counting = Counting;

fn main() {
    let rules = ExtractRules::default();
    let url = Url::parse("http://bench.example/list/1.html").unwrap();
    let gallery: String = (0..40)
        .map(|n| {
            format!("<li class=item><a href=/d/{n}.html><img src=/t/{n}.jpg data-src=/i/{n}.jpg alt=a{n}></a><p>Caption {n}</p></li>")
        })
        .collect();
    let one_url = format!(
        "<figure>{}<figcaption>one</figcaption></figure>",
        "<img src=/same.png>".repeat(800_000)
    );
    let nested = "<div>".repeat(2_000_000) + "<img src=/deep.png>";
    let links: String = (0..700_000)
        .map(|n| format!("<a href=/l{n}>x</a>"))
        .collect();
    println!(
        "{:<34} {:>9} {:>10} {:>12}  outcome",
        "page", "MiB", "seconds", "peak heap MB"
    );
    for (name, html, repeat) in [
        ("gallery page (40 items)", &gallery, 1000),
        ("800,000 <img> of one URL", &one_url, 1),
        ("700,000 links", &links, 1),
        ("2,000,000 nested <div>", &nested, 1),
    ] {
        let base = LIVE.load(Ordering::Relaxed);
        PEAK.store(base, Ordering::Relaxed);
        let t = Instant::now();
        let mut outcome = String::new();
        for _ in 0..repeat {
            outcome = match extract(html, &url, &rules) {
                Ok(e) => format!(
                    "{} images, {} links ({} + {} left out)",
                    e.images.len(),
                    e.links.len(),
                    e.images_dropped,
                    e.links_dropped
                ),
                Err(e) => format!("too complex: {e}"),
            };
        }
        let secs = t.elapsed().as_secs_f64() / repeat as f64;
        let peak = (PEAK.load(Ordering::Relaxed) - base) as f64 / 1e6;
        println!(
            "{name:<34} {:>9.2} {secs:>10.4} {peak:>12.1}  {outcome}",
            html.len() as f64 / (1 << 20) as f64
        );
    }
}
