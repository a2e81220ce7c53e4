//! The dry run (`imgcrawl check URL`): fetches one page with the configured rules and tells what a
//! crawl would do with everything on it (each image with its name and file path, each link
//! followed or skipped, and why), without saving anything. This is how selectors are tuned for a
//! new site.

use std::fmt;
use std::path::PathBuf;
use std::sync::Arc;

use url::Url;

use crate::admission::{Admission, Left, Reason, RobotsVerdict, Verdict as Admitted};
use crate::error::{Error, Failure, FailureKind};
use crate::fetch;
use crate::http;
use crate::output::names::Index;
use crate::paths::NameFields;
use crate::robots::{robots_url, Rules};
use crate::settings::Settings;
use crate::urls;

/// What a crawl would do with one image or link.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Verdict {
    /// Downloaded (an image) or followed (a link).
    Take,
    /// Left alone, for this reason.
    Skip(String),
}

/// An image found on the checked page.
#[derive(Debug, Clone)]
pub struct CheckedImage {
    /// Its URL (canonical form).
    pub url: Url,
    /// The name it would be saved under (caption, alt text or URL stem).
    pub name: String,
    /// The file it would get, relative to `out_dir` (the extension and `{hash}` are known only
    /// from the bytes: guessed from the URL, and zeros).
    pub path: PathBuf,
    /// Downloaded or skipped.
    pub verdict: Verdict,
}

/// A link found on the checked page.
#[derive(Debug, Clone)]
pub struct CheckedLink {
    /// Its URL (canonical form).
    pub url: Url,
    /// Followed or skipped.
    pub verdict: Verdict,
}

/// Everything `check` found on a page.
#[derive(Debug, Clone)]
pub struct CheckReport {
    /// The page checked.
    pub page: Url,
    /// Redirects followed to reach it.
    pub redirects: Vec<Url>,
    /// Its Content-Type, if given.
    pub content_type: Option<String>,
    /// The character encoding the page was read in.
    pub encoding: &'static str,
    /// Bytes of the page body.
    pub bytes: usize,
    /// The page itself is disallowed by robots.txt (a crawl would not fetch it).
    pub page_disallowed: Option<String>,
    /// The images, in page order.
    pub images: Vec<CheckedImage>,
    /// The links matched by `extract.follow`, in page order.
    pub links: Vec<CheckedLink>,
    /// Where the files would go.
    pub out_dir: PathBuf,
}

/// Fetches `url` with `settings`' HTTP rules and reports what a crawl would do with its images
/// and links: the crawl's own [`Admission`] judges each, as for a start page. Only the page and
/// robots.txt files are requested; nothing is written.
pub async fn check(settings: &Settings, url: &Url) -> Result<CheckReport, Error> {
    let client = http::client(&settings.http);
    let mut admission = Admission::new(Arc::new(settings.clone()), true);
    let (mut chain, content_type, body) = follow(&client, settings, &admission, url).await?;
    let page = chain.pop().expect("the chain holds the page");
    let (found, encoding) = fetch::parse(settings, &page, content_type.as_deref(), &body)
        .map_err(|f| fail(&page, f))?;
    for u in chain.iter().chain([&page]) {
        // Seen, as in a crawl that reached the page through these URLs.
        admission.page(u.clone(), 0);
    }
    let mut robots = Robots {
        client: &client,
        settings,
    };
    let page_disallowed = match robots.verdict(&mut admission, &page).await {
        Verdict::Take => None,
        Verdict::Skip(why) => Some(why),
    };

    let mut images = Vec::new();
    let mut taken = Index::default();
    let (mut admitted, mut novel) = (0, 0);
    for c in found.images {
        let (u, verdict) = match admission.image(c.url.clone()) {
            Admitted::Admit(u) => {
                admitted += 1;
                novel += usize::from(admission.note_yield(&c.url));
                (u.clone(), robots.verdict(&mut admission, &u).await)
            }
            Admitted::Leave(left) if left.reason == Reason::Seen => continue,
            Admitted::Leave(left) => (left.url.clone(), describe(&left)),
        };
        images.push(image(settings, &page, u, c.name, &mut taken, verdict));
    }
    let yielded = if admission.counts_yield() {
        novel > 0
    } else {
        admitted > 0
    };
    let barren = admission.page_done(&page, 0, yielded);
    let mut links = Vec::new();
    for l in found.links {
        let (url, verdict) = match admission.link(l, 1, barren) {
            Admitted::Admit(u) => (u.clone(), robots.verdict(&mut admission, &u).await),
            Admitted::Leave(left) if left.reason == Reason::Seen => {
                if left.url != page && !chain.contains(&left.url) {
                    continue;
                }
                (left.url, Verdict::Skip("already seen: this page".into()))
            }
            Admitted::Leave(left) => (left.url.clone(), describe(&left)),
        };
        links.push(CheckedLink { url, verdict });
    }
    Ok(CheckReport {
        page,
        redirects: chain,
        content_type,
        encoding,
        bytes: body.len(),
        page_disallowed,
        images,
        links,
        out_dir: settings.out_dir.clone(),
    })
}

/// The `imgcrawl check` error for `url`.
fn fail(url: &Url, source: Failure) -> Error {
    Error::Check {
        url: url.to_string(),
        source,
    }
}

/// Fetches `url`, following redirects the way a crawl follows them (each hop by the crawl's
/// rule): answers the chain of URLs (the page last), its Content-Type and its body.
async fn follow(
    client: &http::Client,
    settings: &Settings,
    admission: &Admission,
    url: &Url,
) -> Result<(Vec<Url>, Option<String>, bytes::Bytes), Error> {
    let mut chain = vec![url.clone()];
    loop {
        let current = chain.last().expect("the chain starts with the URL").clone();
        let (page, _) = fetch::page(client, settings, &current, None, || {})
            .await
            .map_err(|f| fail(&current, f))?;
        match page {
            // Only a conditional request is answered so; this one is not.
            fetch::Page::NotModified => {
                let why = "answered 304 Not Modified to a request that was not conditional";
                return Err(fail(&current, Failure::new(FailureKind::Status(304), why)));
            }
            fetch::Page::Body { content_type, body } => return Ok((chain, content_type, body)),
            fetch::Page::Sitemap(_) => {
                let why =
                    "a sitemap, not an HTML page: a crawl reads the pages and images it lists";
                return Err(fail(&current, Failure::new(FailureKind::Body, why)));
            }
            fetch::Page::NotHtml => {
                let why = "not an HTML page: a crawl finds nothing on it";
                return Err(fail(&current, Failure::new(FailureKind::Body, why)));
            }
            fetch::Page::Redirect(to) => match admission.redirect(&chain, to.clone()) {
                Ok(to) => chain.push(to),
                Err(f) => {
                    let why = format!("redirects to {to}, which a crawl would not follow: {f}");
                    return Err(fail(&current, Failure::new(f.kind, why)));
                }
            },
        }
    }
}

/// The name and path an image would get.
fn image(
    settings: &Settings,
    page: &Url,
    url: Url,
    name: Option<String>,
    taken: &mut Index,
    verdict: Verdict,
) -> CheckedImage {
    let stem = urls::file_stem(&url).unwrap_or_else(|| "image".to_string());
    let name = name.unwrap_or_else(|| stem.clone());
    let wanted = settings.filename.render(&NameFields {
        host: url.host_str().unwrap_or("unknown-host"),
        page_host: page.host_str().unwrap_or("unknown-host"),
        name: &name,
        stem: &stem,
        dir: &urls::dir_path(&url),
        sha256: &"0".repeat(64),
        ext: guess_extension(&url),
    });
    // Named as the crawl names files (on a fresh output directory).
    let path = if verdict == Verdict::Take {
        taken.pick(&wanted, |_| false).0
    } else {
        wanted
    };
    CheckedImage {
        url,
        name,
        path,
        verdict,
    }
}

/// The extension an image will most likely get (the real one comes from its bytes).
fn guess_extension(url: &Url) -> &'static str {
    let last = url.path().rsplit('/').next().unwrap_or("");
    let ext = last.rsplit_once('.').map(|(_, e)| e.to_ascii_lowercase());
    match ext.as_deref() {
        Some("jpg" | "jpeg" | "jpe") => "jpg",
        Some("png") => "png",
        Some("gif") => "gif",
        Some("webp") => "webp",
        Some("bmp") => "bmp",
        Some("avif") => "avif",
        Some("ico") => "ico",
        Some("tif" | "tiff") => "tiff",
        _ => "jpg",
    }
}

/// Why a crawl leaves a URL, as `check` says it.
fn describe(left: &Left) -> Verdict {
    let d = &left.detail;
    Verdict::Skip(match left.reason {
        Reason::TooLong => "URL longer than scope.max_url_length".into(),
        Reason::OffSite | Reason::RedirectOffSite => format!("out of scope: {d}"),
        Reason::ScopeExclude => format!("excluded by {d}"),
        Reason::ScopeInclude => d.clone(),
        Reason::Filter(key) => format!("excluded by {key}: {d}"),
        Reason::Depth => format!("depth: {d}"),
        Reason::Budget => format!("scope.max_pages: {d}"),
        Reason::Trap => format!("trap: {d}"),
        Reason::Robots => format!("robots: {d}"),
        Reason::Seen => "already seen".into(),
        Reason::AlreadySaved => "already saved".into(),
    })
}

/// robots.txt, fetched once per host as a crawl fetches it (only when `http.obey_robots` is on).
struct Robots<'a> {
    client: &'a http::Client,
    settings: &'a Settings,
}

impl Robots<'_> {
    /// Whether robots.txt lets a crawl request `url`, learning its host's rules first.
    async fn verdict(&mut self, admission: &mut Admission, url: &Url) -> Verdict {
        if let Some(host) = admission.new_host(url) {
            let robots = robots_url(url);
            let rules = fetch::robots(self.client, self.settings, &robots, || {})
                .await
                .map(|found| found.rules)
                .unwrap_or_else(|f| Rules::after_failure(&f));
            admission.learn_robots(&host, rules);
        }
        match admission.robots(url) {
            RobotsVerdict::Allowed => Verdict::Take,
            RobotsVerdict::Disallowed(left) => describe(&left),
            RobotsVerdict::Unavailable(f) => Verdict::Skip(format!("robots: {}", f.detail)),
        }
    }
}

impl fmt::Display for Verdict {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Verdict::Take => Ok(()),
            Verdict::Skip(why) => write!(f, "({why})"),
        }
    }
}

impl fmt::Display for CheckReport {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for hop in &self.redirects {
            writeln!(f, "redirect {hop}")?;
        }
        writeln!(
            f,
            "page     {} ({}, {}, {} bytes)",
            self.page,
            self.content_type.as_deref().unwrap_or("no Content-Type"),
            self.encoding,
            self.bytes
        )?;
        if let Some(why) = &self.page_disallowed {
            writeln!(f, "         a crawl would not fetch this page: {why}")?;
        }
        let saved = self
            .images
            .iter()
            .filter(|i| i.verdict == Verdict::Take)
            .count();
        writeln!(
            f,
            "\nimages   {} found: {saved} to download, {} skipped",
            self.images.len(),
            self.images.len() - saved
        )?;
        for i in &self.images {
            match &i.verdict {
                Verdict::Take => {
                    writeln!(f, "  save   {}", i.url)?;
                    writeln!(
                        f,
                        "         name {:?} -> {}",
                        i.name,
                        self.out_dir.join(&i.path).display()
                    )?;
                }
                skip => writeln!(f, "  skip   {} {skip}", i.url)?,
            }
        }
        let followed = self
            .links
            .iter()
            .filter(|l| l.verdict == Verdict::Take)
            .count();
        writeln!(
            f,
            "\nlinks    {} found: {followed} to follow, {} skipped",
            self.links.len(),
            self.links.len() - followed
        )?;
        for l in &self.links {
            match &l.verdict {
                Verdict::Take => writeln!(f, "  follow {}", l.url)?,
                skip => writeln!(f, "  skip   {} {skip}", l.url)?,
            }
        }
        write!(
            f,
            "\nnothing was saved; file extensions are guessed from the URLs (a crawl takes them from the bytes)"
        )
    }
}
