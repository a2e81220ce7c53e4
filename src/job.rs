//! Jobs: a page to fetch or an image to download, as they wait, travel to a worker and are
//! recorded, and the politeness key of their host.

use std::collections::HashMap;

use url::Url;

use crate::seen::SeenSet;
use crate::Kind;

/// A page waiting to be fetched.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PageJob {
    /// Normalized URL.
    pub url: Url,
    /// Link hops from a start page.
    pub depth: u32,
    /// Pages in a row, along the links that led here, that brought no new image (the trap rule's
    /// barren run, see [`crate::trap`]).
    pub barren: u32,
    /// Failed HTTP attempts so far.
    pub attempts: u32,
    /// Times a worker died while holding this job.
    pub losses: u32,
    /// The URLs whose redirects led here, first the one found (empty when `url` was found itself).
    pub redirected_from: Vec<Url>,
    /// What an earlier run learnt of this page (`None` for a page new to the crawl): an update
    /// asks for it again only if it changed, and a 404 means it is gone.
    pub before: Option<Box<Before>>,
}

/// A page as an earlier run of the crawl fetched it.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Before {
    /// Its validators then, sent as `If-None-Match` / `If-Modified-Since`.
    pub validators: Validators,
    /// What it held then (see [`crate::extract::Extracted::encode`]), when the job brings it (a
    /// shared crawl); otherwise a 304 has it read from the local state.
    pub found: Option<String>,
}

/// The validators of a response: what a conditional request sends back to learn whether it
/// changed.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Validators {
    /// `ETag`.
    pub etag: Option<String>,
    /// `Last-Modified`, as sent.
    pub modified: Option<String>,
}

impl Validators {
    /// Whether there is nothing to send.
    pub fn is_empty(&self) -> bool {
        self.etag.is_none() && self.modified.is_none()
    }
}

/// What earlier runs learnt of the pages an update has not reached yet, by URL: handed to each
/// page's job when it is admitted again.
#[derive(Debug, Default)]
pub struct Earlier {
    /// By [`SeenSet::key`] of the page's URL.
    pages: HashMap<[u8; 16], Box<Before>>,
}

impl Earlier {
    /// Records what an earlier run learnt of `url`.
    pub fn insert(&mut self, url: &Url, before: Before) {
        self.pages.insert(SeenSet::key(url), Box::new(before));
    }

    /// Takes what an earlier run learnt of `url`, if anything.
    pub fn take(&mut self, url: &Url) -> Option<Box<Before>> {
        if self.pages.is_empty() {
            return None;
        }
        self.pages.remove(&SeenSet::key(url))
    }

    /// Pages held.
    pub fn len(&self) -> usize {
        self.pages.len()
    }

    /// Whether no page is held.
    pub fn is_empty(&self) -> bool {
        self.pages.is_empty()
    }
}

/// An image waiting to be downloaded.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ImageJob {
    /// Normalized URL.
    pub url: Url,
    /// The page it was found on.
    pub page: Url,
    /// Caption or alt text, when the page gave one.
    pub name: Option<String>,
    /// Failed HTTP attempts so far.
    pub attempts: u32,
    /// Times a worker died while holding this job.
    pub losses: u32,
    /// The URLs whose redirects led here, first the one found (empty when `url` was found itself).
    pub redirected_from: Vec<Url>,
    /// An image an earlier run saved, asked for again by an update with `--revalidate-images`:
    /// conditionally, and its file replaced only when the bytes changed.
    pub revalidate: bool,
}

/// A job of either kind, for the rules that treat pages and images alike (retries, losses,
/// redirects, records).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Job {
    /// A page to fetch.
    Page(PageJob),
    /// An image to download.
    Image(ImageJob),
}

impl Job {
    /// Page or image.
    pub fn kind(&self) -> Kind {
        match self {
            Job::Page(_) => Kind::Page,
            Job::Image(_) => Kind::Image,
        }
    }

    /// The URL requested.
    pub fn url(&self) -> &Url {
        match self {
            Job::Page(j) => &j.url,
            Job::Image(j) => &j.url,
        }
    }

    /// The URL as it was found (before redirects): the one records name.
    pub fn found_as(&self) -> &Url {
        let (url, from) = match self {
            Job::Page(j) => (&j.url, &j.redirected_from),
            Job::Image(j) => (&j.url, &j.redirected_from),
        };
        from.first().unwrap_or(url)
    }

    /// The page an image was found on (`None` for a page).
    pub fn page(&self) -> Option<&Url> {
        match self {
            Job::Page(_) => None,
            Job::Image(j) => Some(&j.page),
        }
    }

    /// Failed attempts so far, to count one more.
    pub fn attempts(&mut self) -> &mut u32 {
        match self {
            Job::Page(j) => &mut j.attempts,
            Job::Image(j) => &mut j.attempts,
        }
    }

    /// Times a worker died holding it, to count one more.
    pub fn losses(&mut self) -> &mut u32 {
        match self {
            Job::Page(j) => &mut j.losses,
            Job::Image(j) => &mut j.losses,
        }
    }

    /// The redirect chain that led here.
    pub fn redirected_from(&mut self) -> &mut Vec<Url> {
        match self {
            Job::Page(j) => &mut j.redirected_from,
            Job::Image(j) => &mut j.redirected_from,
        }
    }
}

/// The politeness key of a URL: host and port (`example.com:443`).
pub fn host_key(url: &Url) -> String {
    format!(
        "{}:{}",
        url.host_str().unwrap_or(""),
        url.port_or_known_default().unwrap_or(0)
    )
}
