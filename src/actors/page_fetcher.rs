//! PageFetcher: fetches one list or detail page at a time per request, parses it and reports the
//! images and links it holds. A pool of them runs spread over arbiter threads, each with its own
//! awc client (clients are not `Send`), so HTML parsing uses every core.
//!
//! Takes: [`FetchPage`] (answers `Result<PageDone, Failure>`), [`Crash`]. Several `FetchPage`s may
//! be in flight at once on one fetcher (the Supervisor bounds how many). Holds a [`DeathGuard`] that
//! tells the Supervisor when the actor dies; jobs in flight then fail with `MailboxError` and the
//! Supervisor puts them back in the frontier.

use std::panic::{catch_unwind, AssertUnwindSafe};
use std::sync::Arc;

use actix::prelude::*;
use url::Url;

use super::{Crash, DeathGuard};
use crate::error::{Failure, FailureKind};
use crate::extract::{extract, Extracted};
use crate::frontier::PageJob;
use crate::http;
use crate::settings::Settings;

/// Fetch and parse one page.
#[derive(Debug, Message)]
#[rtype(result = "Result<PageDone, Failure>")]
pub struct FetchPage {
    /// The page.
    pub job: PageJob,
}

/// A page fetched and parsed.
#[derive(Debug)]
pub struct PageDone {
    /// The URL that answered, after redirects.
    pub final_url: Url,
    /// What the page holds.
    pub extracted: Extracted,
}

/// A page-fetching actor; see the module documentation.
pub struct PageFetcher {
    /// This fetcher's HTTP client, built on its arbiter thread.
    client: awc::Client,
    /// The crawl's configuration.
    settings: Arc<Settings>,
    /// Reports this actor's death to the Supervisor when dropped.
    _guard: DeathGuard,
}

impl PageFetcher {
    /// A fetcher for `settings`; call on the arbiter thread it will run on.
    pub fn new(settings: Arc<Settings>, guard: DeathGuard) -> Self {
        PageFetcher {
            client: http::client(&settings.http),
            settings,
            _guard: guard,
        }
    }
}

impl Actor for PageFetcher {
    type Context = Context<Self>;

    fn started(&mut self, ctx: &mut Context<Self>) {
        // The Supervisor bounds the jobs it hands out; this only needs to hold them.
        ctx.set_mailbox_capacity(64);
    }
}

/// Whether a Content-Type is worth parsing as HTML (a missing one is tried).
fn is_html(content_type: Option<&str>) -> bool {
    content_type.is_none_or(|ct| {
        let ct = ct.to_ascii_lowercase();
        ct.contains("html") || ct.starts_with("text/plain")
    })
}

impl Handler<FetchPage> for PageFetcher {
    type Result = ResponseActFuture<Self, Result<PageDone, Failure>>;

    fn handle(&mut self, m: FetchPage, _: &mut Context<Self>) -> Self::Result {
        let client = self.client.clone();
        let settings = self.settings.clone();
        Box::pin(
            async move {
                let mut fetched =
                    http::get(&client, &m.job.url, &settings.http, &settings.scope).await?;
                let content_type = fetched
                    .response
                    .headers()
                    .get(awc::http::header::CONTENT_TYPE)
                    .and_then(|v| v.to_str().ok())
                    .map(str::to_string);
                let final_url = fetched.final_url.clone();
                if !is_html(content_type.as_deref()) {
                    // Not a page (an image or a download linked as a page): nothing to extract.
                    return Ok(PageDone {
                        final_url,
                        extracted: Extracted::default(),
                    });
                }
                let body = http::read_body(&mut fetched, settings.http.max_page_bytes).await?;
                let html = String::from_utf8_lossy(&body);
                // The parse tree is built and dropped here, never held across an await.
                let extracted = catch_unwind(AssertUnwindSafe(|| {
                    extract(&html, &final_url, &settings.extract)
                }))
                .map_err(|_| {
                    Failure::new(FailureKind::Body, "the HTML parser panicked on this page")
                })?;
                Ok(PageDone {
                    final_url,
                    extracted,
                })
            }
            .into_actor(self),
        )
    }
}

impl Handler<Crash> for PageFetcher {
    type Result = ();

    fn handle(&mut self, _: Crash, _: &mut Context<Self>) {
        panic!("PageFetcher crashed on request (fault injection)");
    }
}
