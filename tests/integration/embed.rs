//! The library inside a running actix System, beside the application's own actors.

use actix::prelude::*;
use imgcrawl::sample_site::{SampleServer, SampleSite};
use imgcrawl::{Crawl, CrawlEvent};

use crate::support::settings;

/// An application actor that counts the crawl's events it receives.
#[derive(Default)]
struct Counter {
    saved: usize,
    pages: usize,
}

impl Actor for Counter {
    type Context = Context<Self>;
}

impl Handler<CrawlEvent> for Counter {
    type Result = ();
    fn handle(&mut self, e: CrawlEvent, _: &mut Context<Self>) {
        match e {
            CrawlEvent::ImageSaved(_) => self.saved += 1,
            CrawlEvent::PageFetched { .. } => self.pages += 1,
            _ => {}
        }
    }
}

#[derive(Message)]
#[rtype(result = "(usize, usize)")]
struct Counts;

impl Handler<Counts> for Counter {
    type Result = MessageResult<Counts>;
    fn handle(&mut self, _: Counts, _: &mut Context<Self>) -> Self::Result {
        MessageResult((self.saved, self.pages))
    }
}

#[actix_rt::test]
async fn a_crawl_runs_inside_the_callers_system_beside_its_actors() {
    // The sample site itself is an actix-web server in this same System.
    let site = SampleSite {
        pages: 2,
        per_page: 5,
        page_kb: 0,
    };
    let server = SampleServer::start(site, 0).unwrap();
    let counter = Counter::default().start();
    let out = tempfile::tempdir().unwrap();
    let s = settings(
        &[server.url() + "list/1.html"],
        out.path(),
        "[http]\nretries = 0\n",
    );
    let crawl = Crawl::builder(s)
        .subscribe(counter.clone().recipient())
        .start()
        .await
        .unwrap();
    let report = crawl.wait().await.unwrap();

    assert_eq!(report.stats.images_saved + report.stats.duplicates, 10);
    let (saved, pages) = counter.send(Counts).await.unwrap();
    assert_eq!(
        saved as u64,
        report.stats.images_saved + report.stats.duplicates
    );
    assert_eq!(pages as u64, report.stats.pages_fetched);
    // The crawl is over but the System, the server and the caller's actors live on.
    assert_eq!(
        crawl.stats().await.unwrap().images_saved,
        report.stats.images_saved
    );
    assert_eq!(
        crawl.wait().await.unwrap(),
        report,
        "the report can be asked for again"
    );
    assert!(server.hits.snapshot().contains_key("/list/2.html"));
    assert_eq!(counter.send(Counts).await.unwrap().0, saved);
    server.stop().await;
}
