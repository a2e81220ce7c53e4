//! The dry run (`imgcrawl check URL`): fetches one page with the configured rules and tells what a
//! crawl would do with everything on it (each image with its name and file path, each link
//! followed or skipped, and why), without saving anything. This is how selectors are tuned for a
//! new site.

use std::collections::{HashMap, HashSet};
use std::fmt;
use std::path::PathBuf;

use url::Url;

use crate::decode::decode_html;
use crate::error::{Error, Failure};
use crate::extract::extract;
use crate::http;
use crate::paths::{with_suffix, NameFields};
use crate::robots::{agent_token, robots_url, Rules, MAX_ROBOTS_BYTES, MAX_ROBOTS_REDIRECTS};
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
/// and links. Only the page and robots.txt files are requested; nothing is written.
pub async fn check(settings: &Settings, url: &Url) -> Result<CheckReport, Error> {
    let client = http::client(&settings.http);
    let mut robots = RobotsCache::default();
    let fail = |f: Failure| Error::Check(format!("cannot fetch {url}: {f}"));
    // Redirects followed the way a crawl follows them: each hop must stay in scope.
    let mut chain = vec![url.clone()];
    let mut fetched = loop {
        let current = chain.last().expect("the chain starts with the URL").clone();
        match http::get(&client, &current, &settings.http)
            .await
            .map_err(fail)?
        {
            http::Answer::Body(fetched) => break fetched,
            http::Answer::Redirect(to) => {
                // The same rule as the crawl's.
                match crate::admission::redirect_target(settings, &chain, to.clone()) {
                    Ok(to) => chain.push(to),
                    Err(f) => {
                        return Err(Error::Check(format!(
                            "{current} redirects to {to}, which a crawl would not follow: {f}"
                        )))
                    }
                }
            }
        }
    };
    let page = chain.pop().expect("the chain holds the page");
    let content_type = fetched
        .response
        .headers()
        .get(awc::http::header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .map(str::to_string);
    let body = http::read_body(&mut fetched, settings.http.max_page_bytes)
        .await
        .map_err(fail)?;
    let (html, encoding) = decode_html(&body, content_type.as_deref());
    let found = extract(&html, &page, &settings.extract)
        .map_err(|e| Error::Check(format!("{page}: too complex: {e}")))?;
    let page_disallowed = robots.verdict(&client, settings, &page).await.err();

    let scope = &settings.scope;
    let mut images = Vec::new();
    let mut seen = HashSet::new();
    let mut taken: HashSet<PathBuf> = HashSet::new();
    for c in found.images {
        let Some(u) = scope.canonical(c.url.clone()) else {
            images.push(image(
                settings,
                &page,
                c.url,
                c.name,
                &mut taken,
                Verdict::Skip("URL longer than scope.max_url_length".into()),
            ));
            continue;
        };
        if !seen.insert(u.clone()) {
            continue;
        }
        let verdict = if !scope.host_allowed(&u) {
            Verdict::Skip(format!(
                "out of scope: host {} is not in scope.allowed_hosts",
                u.host_str().unwrap_or("?")
            ))
        } else if let Some(r) = settings.filter.excluded(&u) {
            Verdict::Skip(format!("excluded by filter.exclude `{r}`"))
        } else if let Err(why) = robots.verdict(&client, settings, &u).await {
            Verdict::Skip(why)
        } else {
            Verdict::Take
        };
        images.push(image(settings, &page, u, c.name, &mut taken, verdict));
    }

    let deep_enough = scope.max_depth.is_none_or(|max| max >= 1);
    let mut links = Vec::new();
    let mut seen = HashSet::new();
    for l in found.links {
        let Some(u) = scope.canonical(l.clone()) else {
            links.push(CheckedLink {
                url: l,
                verdict: Verdict::Skip("URL longer than scope.max_url_length".into()),
            });
            continue;
        };
        if !seen.insert(u.clone()) {
            continue;
        }
        let s = u.as_str();
        let verdict = if u == page || chain.contains(&u) {
            Verdict::Skip("already seen: this page".into())
        } else if !scope.host_allowed(&u) {
            Verdict::Skip(format!(
                "out of scope: host {} is not in scope.allowed_hosts",
                u.host_str().unwrap_or("?")
            ))
        } else if let Some(r) = scope.exclude.iter().find(|r| r.is_match(s)) {
            Verdict::Skip(format!("excluded by scope.exclude `{r}`"))
        } else if !scope.include.is_empty() && !scope.include.iter().any(|r| r.is_match(s)) {
            Verdict::Skip("matches no scope.include pattern".into())
        } else if !deep_enough {
            Verdict::Skip(format!(
                "depth: scope.max_depth is {}",
                scope.max_depth.unwrap_or(0)
            ))
        } else if let Err(why) = robots.verdict(&client, settings, &u).await {
            Verdict::Skip(why)
        } else {
            Verdict::Take
        };
        links.push(CheckedLink { url: u, verdict });
    }
    Ok(CheckReport {
        page,
        redirects: chain,
        content_type,
        encoding: encoding.name(),
        bytes: body.len(),
        page_disallowed,
        images,
        links,
        out_dir: settings.out_dir.clone(),
    })
}

/// The name and path an image would get.
fn image(
    settings: &Settings,
    page: &Url,
    url: Url,
    name: Option<String>,
    taken: &mut HashSet<PathBuf>,
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
    let mut path = wanted.clone();
    if verdict == Verdict::Take {
        let mut n = 1;
        while !taken.insert(path.clone()) {
            n += 1;
            path = with_suffix(&wanted, n);
        }
    }
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

/// robots.txt rules per host, fetched once each (only when `http.obey_robots` is on).
#[derive(Default)]
struct RobotsCache {
    rules: HashMap<String, Rules>,
}

impl RobotsCache {
    /// `Ok` when robots.txt lets a crawl request `url`; else why not.
    async fn verdict(
        &mut self,
        client: &awc::Client,
        settings: &Settings,
        url: &Url,
    ) -> Result<(), String> {
        if !settings.http.obey_robots {
            return Ok(());
        }
        let host = format!(
            "{}:{}",
            url.host_str().unwrap_or(""),
            url.port_or_known_default().unwrap_or(0)
        );
        if !self.rules.contains_key(&host) {
            let robots = robots_url(url);
            let rules = match http::get_following(
                client,
                &robots,
                &settings.http,
                MAX_ROBOTS_REDIRECTS,
                &settings.scope,
            )
            .await
            {
                Ok(mut fetched) => match http::read_prefix(&mut fetched, MAX_ROBOTS_BYTES).await {
                    Ok(body) => Rules::parse(
                        &agent_token(&settings.http.user_agent),
                        &body,
                        url.host_str().unwrap_or(""),
                    ),
                    Err(f) => Rules::after_failure(&f),
                },
                Err(f) => Rules::after_failure(&f),
            };
            self.rules.insert(host.clone(), rules);
        }
        self.rules[&host]
            .check(url)
            .map_err(|f| format!("robots: {}", f.detail))
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
