//! PageFetcher: fetches one list or detail page at a time per request, parses it and reports the
//! images and links it holds. A pool of them runs spread over arbiter threads, each with its own
//! awc client (clients are not `Send`), so HTML parsing uses every core.
//!
//! Takes: [`FetchPage`] (answers `Result<PageDone, Failure>`), [`FetchRobots`] (answers the host's
//! parsed rules), [`Crash`]. Several requests may be in flight at once on one fetcher (the
//! Supervisor bounds how many). Redirects are reported, not followed, except for robots.txt. Holds a [`DeathGuard`] that
//! tells the Supervisor when the actor dies; jobs in flight then fail with `MailboxError` and the
//! Supervisor puts them back in the frontier.

use std::sync::Arc;

use actix::prelude::*;
use url::Url;

use super::supervisor::BodyDone;
use super::{Crash, DeathGuard, Retire};
use crate::error::Failure;
use crate::extract::Extracted;
use crate::fetch;
use crate::fetch::RobotsFound;
use crate::http;
use crate::job::{PageJob, Validators};
use crate::settings::Settings;

/// Fetch and parse one page.
#[derive(Debug, Message)]
#[rtype(result = "Result<PageDone, Failure>")]
pub struct FetchPage {
    /// The page.
    pub job: PageJob,
    /// Fired once the body is in, before parsing.
    pub body_done: BodyDone,
}

/// What fetching a page gave.
#[derive(Debug)]
pub enum PageDone {
    /// The page was fetched and parsed (a response that is not HTML gives nothing to extract).
    Parsed {
        /// What it holds.
        found: Extracted,
        /// Its `ETag` and `Last-Modified`, for the next update.
        validators: Validators,
    },
    /// The page has not changed since an earlier run fetched it (a 304 to a conditional request):
    /// what it held then is in the state.
    NotModified,
    /// The page redirects to this URL; the Supervisor decides whether to follow.
    Redirected(Url),
    /// The sitemap guessed at `/sitemap.xml` is not there (404 or 410): nothing to record.
    NoSitemap,
}

/// Fetch `url` (a host's robots.txt, redirects followed) and parse it for the configured user
/// agent, then find the host's sitemaps. Answers the rules and sitemaps, or the failure that
/// prevented fetching it.
#[derive(Debug, Message)]
#[rtype(result = "Result<RobotsFound, Failure>")]
pub struct FetchRobots {
    /// The robots.txt URL.
    pub url: Url,
    /// Fired once the body is in.
    pub body_done: BodyDone,
}

/// A page-fetching actor; see the module documentation.
pub struct PageFetcher {
    /// This fetcher's HTTP client, built on its arbiter thread.
    client: http::Client,
    /// The crawl's configuration.
    settings: Arc<Settings>,
    /// Reports this actor's death to the Supervisor when dropped.
    _guard: DeathGuard,
}

impl PageFetcher {
    /// A fetcher for `settings` using `client` (its thread's); call on the arbiter thread it will
    /// run on.
    pub fn new(settings: Arc<Settings>, client: http::Client, guard: DeathGuard) -> Self {
        PageFetcher {
            client,
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

impl Handler<FetchPage> for PageFetcher {
    type Result = ResponseActFuture<Self, Result<PageDone, Failure>>;

    fn handle(&mut self, m: FetchPage, _: &mut Context<Self>) -> Self::Result {
        let client = self.client.clone();
        let settings = self.settings.clone();
        Box::pin(
            async move {
                let before = m.job.before.as_ref().map(|b| &b.validators);
                fetch_page(&client, &settings, &m.job.url, before, m.body_done).await
            }
            .into_actor(self),
        )
    }
}

/// Fetches and parses one page (only if it changed since `before`, when given); `done` fires
/// once the body is in.
async fn fetch_page(
    client: &http::Client,
    settings: &Settings,
    url: &Url,
    before: Option<&Validators>,
    mut done: BodyDone,
) -> Result<PageDone, Failure> {
    let (page, validators) = match fetch::page(client, settings, url, before, || done.fire()).await
    {
        Err(f) if fetch::no_guessed_sitemap(settings, url, &f) => return Ok(PageDone::NoSitemap),
        page => page?,
    };
    let found = match page {
        fetch::Page::Redirect(to) => return Ok(PageDone::Redirected(to)),
        fetch::Page::NotModified => return Ok(PageDone::NotModified),
        fetch::Page::NotHtml => Extracted::default(),
        fetch::Page::Sitemap(body) => fetch::parse_sitemap(url, &body)?,
        fetch::Page::Body { content_type, body } => {
            fetch::parse(settings, url, content_type.as_deref(), &body)?.0
        }
    };
    Ok(PageDone::Parsed { found, validators })
}

impl Handler<FetchRobots> for PageFetcher {
    type Result = ResponseActFuture<Self, Result<RobotsFound, Failure>>;

    fn handle(&mut self, m: FetchRobots, _: &mut Context<Self>) -> Self::Result {
        let client = self.client.clone();
        let settings = self.settings.clone();
        Box::pin(
            async move {
                let mut done = m.body_done;
                fetch::robots(&client, &settings, &m.url, || done.fire()).await
            }
            .into_actor(self),
        )
    }
}

impl Handler<Retire> for PageFetcher {
    type Result = ();

    fn handle(&mut self, _: Retire, ctx: &mut Context<Self>) {
        ctx.stop();
    }
}

impl Handler<Crash> for PageFetcher {
    type Result = ();

    fn handle(&mut self, _: Crash, _: &mut Context<Self>) {
        panic!("PageFetcher crashed on request (fault injection)");
    }
}
