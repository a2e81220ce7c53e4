//! The crawl's two page-like requests, made the same way by the PageFetcher and by `imgcrawl
//! check`: a page (a redirect to report, or a body to parse into images and links) and a host's
//! robots.txt (redirects followed within the site, read up to its cap, parsed for our agent).

use std::panic::{catch_unwind, AssertUnwindSafe};

use bytes::Bytes;
use url::Url;

use crate::decode::decode_html;
use crate::error::{Failure, FailureKind};
use crate::extract::{extract, Extracted};
use crate::http;
use crate::job::Validators;
use crate::robots::{agent_token, Rules, MAX_ROBOTS_BYTES, MAX_ROBOTS_REDIRECTS};
use crate::settings::Settings;

/// What a page request brought.
#[derive(Debug)]
pub enum Page {
    /// A redirect to this URL (not followed: the caller judges each hop).
    Redirect(Url),
    /// Unchanged since the validators sent (a 304).
    NotModified,
    /// A response that is not HTML (an image or a download linked as a page): nothing to parse.
    NotHtml,
    /// What looks like a sitemap (XML or gzip, with `scope.sitemaps` on): the body, whole and
    /// undecoded past its Content-Encoding (a `.xml.gz` stays compressed), for
    /// [`crate::sitemap::parse`].
    Sitemap(Bytes),
    /// An HTML (or untyped, or plain-text) body, whole.
    Body {
        /// Its Content-Type, if given.
        content_type: Option<String>,
        /// The bytes, decompressed.
        body: Bytes,
    },
}

/// Whether a Content-Type is worth parsing as HTML (a missing one is tried).
fn is_html(content_type: Option<&str>) -> bool {
    content_type.is_none_or(|ct| {
        let ct = ct.to_ascii_lowercase();
        ct.contains("html") || ct.starts_with("text/plain")
    })
}

/// Requests the page `url`, only if it changed since `before` when given; `body_in` is called
/// once its body is in (the host's request slot can be given back before the parse). Answers
/// with the response's validators (empty for a redirect or a 304).
pub async fn page(
    client: &http::Client,
    settings: &Settings,
    url: &Url,
    before: Option<&Validators>,
    body_in: impl FnOnce(),
) -> Result<(Page, Validators), Failure> {
    let answer = http::get_if_changed(client, url, &settings.http, None, before).await?;
    let mut fetched = match answer {
        http::Answer::Redirect(to) => return Ok((Page::Redirect(to), Validators::default())),
        http::Answer::NotModified => return Ok((Page::NotModified, Validators::default())),
        http::Answer::Body(fetched) => fetched,
    };
    let validators = fetched.validators();
    let page = read_page(settings, url, &mut fetched, body_in).await?;
    Ok((page, validators))
}

/// Reads the body of a page's response as what it looks like: a sitemap, HTML, or neither.
async fn read_page<S>(
    settings: &Settings,
    url: &Url,
    fetched: &mut http::Fetched<S>,
    body_in: impl FnOnce(),
) -> Result<Page, Failure>
where
    S: futures_util::Stream<Item = Result<bytes::Bytes, awc::error::PayloadError>> + Unpin,
{
    let content_type = fetched
        .response
        .headers()
        .get(awc::http::header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .map(str::to_string);
    let sitemap = settings.scope.sitemaps
        && crate::sitemap::looks_like(content_type.as_deref(), url, b"")
        && !content_type
            .as_deref()
            .is_some_and(|ct| ct.contains("html"));
    if sitemap {
        let limit = settings
            .http
            .max_page_bytes
            .max(crate::sitemap::MAX_XML_BYTES);
        let body = http::read_body(fetched, limit).await?;
        body_in();
        return Ok(Page::Sitemap(body));
    }
    if !is_html(content_type.as_deref()) {
        return Ok(Page::NotHtml);
    }
    let body = http::read_body(fetched, settings.http.max_page_bytes).await?;
    body_in();
    Ok(Page::Body { content_type, body })
}

/// Parses a page body found at `url` into its images and links, with the name of the encoding it
/// was read in. The parse tree is built and dropped here, never held across an await; a parser
/// panic fails this page only.
pub fn parse(
    settings: &Settings,
    url: &Url,
    content_type: Option<&str>,
    body: &[u8],
) -> Result<(Extracted, &'static str), Failure> {
    let (html, encoding) = decode_html(body, content_type);
    let extracted = catch_unwind(AssertUnwindSafe(|| extract(&html, url, &settings.extract)))
        .map_err(|_| Failure::new(FailureKind::Body, "the HTML parser panicked on this page"))?
        .map_err(|e| Failure::new(FailureKind::TooComplex, e.to_string()))?;
    Ok((extracted, encoding.name()))
}

/// Reads a sitemap body found at `url` into what it lists (an empty list for XML that is not a
/// sitemap).
pub fn parse_sitemap(url: &Url, body: &[u8]) -> Result<Extracted, Failure> {
    match crate::sitemap::parse(body, url) {
        Ok(Some(sitemap)) => Ok(Extracted::from_sitemap(sitemap)),
        Ok(None) => Ok(Extracted::default()),
        Err(e) => Err(Failure::new(FailureKind::Body, format!("sitemap: {e}"))),
    }
}

/// The path of the sitemap tried on a host whose robots.txt lists none. A 404 or 410 for it is
/// no failure: the host has no sitemap there.
pub const GUESSED_SITEMAP: &str = "/sitemap.xml";

/// Whether a failure of the page `url` only means that the sitemap guessed there does not exist.
pub fn no_guessed_sitemap(settings: &Settings, url: &Url, failure: &Failure) -> bool {
    settings.scope.sitemaps
        && url.path() == GUESSED_SITEMAP
        && url.query().is_none()
        && matches!(failure.kind, FailureKind::Status(404 | 410))
}

/// What a host's robots.txt request brought: its rules, and its sitemaps.
#[derive(Debug)]
pub struct RobotsFound {
    /// The rules for our user agent.
    pub rules: Rules,
    /// The sitemaps to read (with `scope.sitemaps` on, for a host in scope): those robots.txt
    /// lists, or else `/sitemap.xml` (which may not exist: see [`GUESSED_SITEMAP`]).
    pub sitemaps: Vec<Url>,
}

/// Fetches and parses the robots.txt at `url` for the configured user agent, then finds the
/// host's sitemaps; `body_in` is called once its body is in. A failure here is judged by
/// [`Rules::after_failure`] (or retried).
pub async fn robots(
    client: &http::Client,
    settings: &Settings,
    url: &Url,
    body_in: impl FnOnce(),
) -> Result<RobotsFound, Failure> {
    let http = &settings.http;
    let rules =
        match http::get_following(client, url, http, MAX_ROBOTS_REDIRECTS, &settings.scope).await {
            Ok(mut fetched) => {
                let body = http::read_prefix(&mut fetched, MAX_ROBOTS_BYTES).await?;
                body_in();
                let host = url.host_str().unwrap_or("");
                Rules::parse(&agent_token(&http.user_agent), &body, host)
            }
            // No robots.txt may still mean a sitemap; anything else is judged by the caller.
            Err(f) if matches!(Rules::after_failure(&f), Rules::AllowAll) => Rules::AllowAll,
            Err(f) => return Err(f),
        };
    let mut sitemaps = Vec::new();
    if settings.scope.sitemaps && settings.scope.host_allowed(url) {
        sitemaps.extend(
            rules
                .sitemaps()
                .iter()
                .filter_map(|s| url.join(s.trim()).ok())
                .filter(|u| matches!(u.scheme(), "http" | "https")),
        );
        if sitemaps.is_empty() {
            sitemaps.push(
                url.join(GUESSED_SITEMAP)
                    .expect("a path joins any http URL"),
            );
        }
    }
    Ok(RobotsFound { rules, sitemaps })
}
