//! Pure extraction: HTML + the page's URL + the configured rules -> image candidates (with their
//! human names) and links to follow. No I/O; the `scraper` document never leaves this module, so the
//! actors never hold a non-`Send` parse tree across an `.await`.
//!
//! Hostile pages cannot stall it: the parse is fed in slices and, like every loop over the
//! document, checks a deadline (`extract.parse_timeout_secs`); images and links taken from one
//! page are capped (`extract.max_images_per_page`, `extract.max_links_per_page`); deduplication
//! within the page is hashed, and caption lookup walks a bounded number of ancestors with the
//! work for each item done once, so the cost grows linearly with the page.

mod captions;
mod kept;

use std::collections::HashMap;
use std::fmt;
use std::time::{Duration, Instant};

use html5ever::tendril::TendrilSink;
use scraper::{ElementRef, Html, HtmlTreeSink, Selector};
use url::Url;

use crate::settings::ExtractRules;
use crate::urls;
use captions::name_images;

/// An image found on a page.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ImageCandidate {
    /// Normalized absolute URL.
    pub url: Url,
    /// Caption or alt text, whitespace-collapsed; `None` when the page gives none.
    pub name: Option<String>,
    /// The page it belongs to, when not the page it was found on (an image sitemap lists
    /// images under their pages).
    pub page: Option<Url>,
}

/// Everything a page yields.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Extracted {
    /// Images, in page order, each URL once.
    pub images: Vec<ImageCandidate>,
    /// Links matched by `extract.follow`, in page order, each once (scope is decided by the caller).
    pub links: Vec<Url>,
    /// Image elements dropped because the page held more than `extract.max_images_per_page`.
    pub images_dropped: usize,
    /// Links dropped because the page held more than `extract.max_links_per_page`.
    pub links_dropped: usize,
    /// Further sitemaps a sitemap index lists (empty for an HTML page).
    pub sitemaps: Vec<Url>,
}

impl Extracted {
    /// What a sitemap lists: its pages as links, its images with their pages, its sitemaps.
    pub fn from_sitemap(s: crate::sitemap::Sitemap) -> Extracted {
        Extracted {
            images: s
                .images
                .into_iter()
                .map(|(url, page)| ImageCandidate {
                    url,
                    name: None,
                    page: Some(page),
                })
                .collect(),
            links: s.pages,
            images_dropped: 0,
            links_dropped: s.dropped,
            sitemaps: s.sitemaps,
        }
    }
}

/// A page whose parse and extraction did not finish within `extract.parse_timeout_secs`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TooComplex {
    /// What was being done when time ran out.
    pub stage: &'static str,
    /// The budget that was spent.
    pub budget: Duration,
}

impl fmt::Display for TooComplex {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "{} took longer than extract.parse_timeout_secs ({:.1} s)",
            self.stage,
            self.budget.as_secs_f64()
        )
    }
}

/// Bytes fed to the parser between two looks at the clock: small enough that even the parser's
/// worst cases (hundreds of thousands of open elements) overrun the budget by well under a second.
const PARSE_SLICE: usize = 16 * 1024;
/// Elements handled between two looks at the clock.
const CLOCK_EVERY: usize = 256;
/// A deadline, looked at every [`CLOCK_EVERY`] ticks.
pub(super) struct Clock {
    deadline: Instant,
    budget: Duration,
    ticks: usize,
}

impl Clock {
    fn new(budget: Duration) -> Self {
        Clock {
            deadline: Instant::now() + budget,
            budget,
            ticks: 0,
        }
    }

    fn check(&self, stage: &'static str) -> Result<(), TooComplex> {
        if Instant::now() > self.deadline {
            Err(TooComplex {
                stage,
                budget: self.budget,
            })
        } else {
            Ok(())
        }
    }

    fn tick(&mut self, stage: &'static str) -> Result<(), TooComplex> {
        self.ticks += 1;
        if self.ticks.is_multiple_of(CLOCK_EVERY) {
            self.check(stage)
        } else {
            Ok(())
        }
    }
}

/// Parses `html` in slices, giving up once the clock runs out.
fn parse(html: &str, clock: &Clock) -> Result<Html, TooComplex> {
    let mut parser = html5ever::driver::parse_document(
        HtmlTreeSink::new(Html::new_document()),
        Default::default(),
    );
    let mut rest = html;
    while !rest.is_empty() {
        let mut end = rest.len().min(PARSE_SLICE);
        while !rest.is_char_boundary(end) {
            end += 1;
        }
        parser.process(rest[..end].into());
        rest = &rest[end..];
        clock.check("parsing the page")?;
    }
    Ok(parser.finish())
}

/// Parses `html` fetched from `page_url` and applies `rules`; a page that takes longer than
/// `rules.parse_timeout` is [`TooComplex`].
pub fn extract(html: &str, page_url: &Url, rules: &ExtractRules) -> Result<Extracted, TooComplex> {
    let mut clock = Clock::new(rules.parse_timeout);
    let doc = parse(html, &clock)?;
    let base = base_url(&doc, page_url);
    let mut out = Extracted::default();
    // Every image element with a URL, in rule and page order, for captions.
    let mut found: Vec<(ElementRef<'_>, usize)> = Vec::new();
    let mut index: HashMap<Url, usize> = HashMap::new();
    for rule in &rules.images {
        for el in doc.select(&rule.selector) {
            clock.tick("finding images")?;
            let Some(url) = image_url(el, &rule.attrs, &base) else {
                continue;
            };
            let i = match index.get(&url) {
                Some(&i) => i,
                None if out.images.len() >= rules.max_images_per_page => {
                    out.images_dropped += 1;
                    continue;
                }
                None => {
                    index.insert(url.clone(), out.images.len());
                    out.images.push(ImageCandidate {
                        url,
                        name: None,
                        page: None,
                    });
                    out.images.len() - 1
                }
            };
            found.push((el, i));
        }
    }
    name_images(&doc, &mut out.images, &found, rules, &mut clock)?;
    for el in doc.select(&rules.follow) {
        clock.tick("finding links")?;
        if let Some(url) = el
            .value()
            .attr("href")
            .and_then(|v| urls::resolve(&base, v))
        {
            // A link this page already gives as an image (a thumbnail's link to the full-size
            // file, a directory listing's files) is not a page to fetch as well.
            if index.contains_key(&url) {
                continue;
            }
            if out.links.len() >= rules.max_links_per_page {
                out.links_dropped += 1;
                continue;
            }
            index.insert(url.clone(), usize::MAX);
            out.links.push(url);
        }
    }
    Ok(out)
}

/// The document's `<base href>` resolved against the page URL, or the page URL itself.
fn base_url(doc: &Html, page_url: &Url) -> Url {
    static BASE: std::sync::LazyLock<Selector> =
        std::sync::LazyLock::new(|| Selector::parse("base[href]").expect("static selector"));
    doc.select(&BASE)
        .next()
        .and_then(|b| b.value().attr("href"))
        .and_then(|href| page_url.join(href.trim()).ok())
        .filter(|u| matches!(u.scheme(), "http" | "https"))
        .unwrap_or_else(|| page_url.clone())
}

/// The first attribute in `attrs` that holds a usable URL. Attributes named `*srcset` give their
/// largest candidate; `data:` placeholders and empty values are skipped.
fn image_url(el: ElementRef<'_>, attrs: &[String], base: &Url) -> Option<Url> {
    attrs.iter().find_map(|attr| {
        let value = el.value().attr(attr)?;
        if attr.ends_with("srcset") {
            largest_srcset_candidate(value).and_then(|v| urls::resolve(base, v))
        } else {
            urls::resolve(base, value)
        }
    })
}

/// The URL of the largest candidate of a `srcset` value: highest `w`, else highest `x` density
/// (no descriptor counts as `1x`). Follows the HTML parsing rules closely enough for real pages,
/// including URLs that contain commas.
pub fn largest_srcset_candidate(srcset: &str) -> Option<&str> {
    let mut best: Option<(&str, f64, bool)> = None; // (url, size, is_width)
    let mut rest = srcset;
    loop {
        rest = rest.trim_start_matches(|c: char| c.is_ascii_whitespace() || c == ',');
        if rest.is_empty() {
            break;
        }
        let url_end = rest
            .find(|c: char| c.is_ascii_whitespace())
            .unwrap_or(rest.len());
        let mut url = &rest[..url_end];
        rest = &rest[url_end..];
        let mut descriptor = "";
        if url.ends_with(',') {
            url = url.trim_end_matches(',');
        } else {
            let end = rest.find(',').unwrap_or(rest.len());
            descriptor = rest[..end].trim();
            rest = &rest[end..];
        }
        if url.is_empty() {
            continue;
        }
        let (size, is_width) = parse_descriptor(descriptor);
        let better = match best {
            None => true,
            Some((_, s, w)) => (is_width && !w) || (is_width == w && size > s),
        };
        if better {
            best = Some((url, size, is_width));
        }
    }
    best.map(|(u, _, _)| u)
}

fn parse_descriptor(d: &str) -> (f64, bool) {
    let d = d.split_ascii_whitespace().next().unwrap_or("");
    if let Some(w) = d.strip_suffix('w').and_then(|n| n.parse::<f64>().ok()) {
        (w, true)
    } else if let Some(x) = d.strip_suffix('x').and_then(|n| n.parse::<f64>().ok()) {
        (x, false)
    } else {
        (1.0, false)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use captions::FEW_IMAGES;

    fn run(html: &str) -> Extracted {
        extract(
            html,
            &Url::parse("https://site.example/list/1.html").unwrap(),
            &ExtractRules::default(),
        )
        .unwrap()
    }

    fn image_urls(e: &Extracted) -> Vec<&str> {
        e.images.iter().map(|c| c.url.as_str()).collect()
    }

    #[test]
    fn lazy_attributes_win_over_placeholder_src() {
        let e = run(r#"
            <a href="/d/1.html"><img src="/blank.gif" data-original="/img/1.jpg"><p>第一张 图片</p></a>
            <img src="data:image/gif;base64,R0lGOD" data-src="img/2.png" alt="second">
            <img data-lazy-src="//cdn.example/3.webp" src="/loading.gif">
            <img src="/plain.jpg">"#);
        assert_eq!(
            image_urls(&e),
            [
                "https://site.example/img/1.jpg",
                "https://site.example/list/img/2.png",
                "https://cdn.example/3.webp",
                "https://site.example/plain.jpg"
            ]
        );
        assert_eq!(e.images[0].name.as_deref(), Some("第一张 图片"));
        assert_eq!(e.images[1].name.as_deref(), Some("second"));
        assert_eq!(e.images[2].name, None);
        assert_eq!(
            e.links.iter().map(Url::as_str).collect::<Vec<_>>(),
            ["https://site.example/d/1.html"]
        );
    }

    #[test]
    fn srcset_and_picture_give_the_largest_candidate() {
        let e = run(r#"
            <img srcset="a-320.jpg 320w, a-1280.jpg 1280w, a-640.jpg 640w" src="a-320.jpg">
            <picture><source srcset="p1.webp 1x, p2.webp 2x"><img src="p.jpg" alt="pic"></picture>
            <figure><img src="f.png"><figcaption>  A   caption </figcaption></figure>"#);
        assert_eq!(
            image_urls(&e),
            [
                "https://site.example/list/a-1280.jpg",
                "https://site.example/list/p.jpg",
                "https://site.example/list/f.png",
                "https://site.example/list/p2.webp"
            ]
        );
        assert_eq!(e.images[2].name.as_deref(), Some("A caption"));
        assert_eq!(e.images[3].name.as_deref(), Some("pic"));
        assert_eq!(largest_srcset_candidate("x.jpg 1x,y.jpg 2x"), Some("y.jpg"));
        // Per the HTML rules a URL runs to the next white space, commas included.
        assert_eq!(
            largest_srcset_candidate("x.jpg,y.jpg 2x"),
            Some("x.jpg,y.jpg")
        );
        assert_eq!(
            largest_srcset_candidate("img,with,commas.jpg 1x, b.jpg 0.5x"),
            Some("img,with,commas.jpg")
        );
        assert_eq!(largest_srcset_candidate(" , "), None);
    }

    #[test]
    fn base_href_and_duplicates_are_honoured() {
        let e = run(r##"<head><base href="https://other.example/root/"></head>
            <img src="a.jpg"><img src="a.jpg#x"><a href="next.html">n</a><a href="next.html">again</a>
            <a href="#top">top</a><a href="javascript:go()">js</a>"##);
        assert_eq!(image_urls(&e), ["https://other.example/root/a.jpg"]);
        assert_eq!(
            e.links.iter().map(Url::as_str).collect::<Vec<_>>(),
            ["https://other.example/root/next.html"]
        );
    }

    #[test]
    fn a_link_to_a_full_size_image_is_an_image_not_a_page() {
        let css = |s| scraper::Selector::parse(s).unwrap();
        let rules = ExtractRules {
            images: vec![crate::settings::ImageRule {
                selector: css("a.thumb"),
                attrs: vec!["href".into()],
            }],
            follow: css("a[href]"),
            item: css("a, figure"),
            name: css("figcaption, .caption"),
            ..ExtractRules::default()
        };
        let e = extract(
            r#"<a class="thumb" href="/full/1.jpg"><img src="/thumb/1.jpg" alt="Harbour at dusk"></a>
               <figure><a class="thumb" href="/full/2.jpg"><img src="/thumb/2.jpg" alt="alt 2"></a>
                 <figcaption>Old mill</figcaption></figure>
               <a class="thumb" href="/full/3.jpg"><img src="/thumb/3.jpg"><span class="caption">Bridge</span></a>
               <a href="/full/1.jpg">download</a> <a href="/page/2.html">next</a>"#,
            &Url::parse("https://site.example/g/").unwrap(),
            &rules,
        )
        .unwrap();
        assert_eq!(
            image_urls(&e),
            [
                "https://site.example/full/1.jpg",
                "https://site.example/full/2.jpg",
                "https://site.example/full/3.jpg"
            ],
            "the thumbnails are not images under these rules"
        );
        let names: Vec<_> = e.images.iter().map(|c| c.name.as_deref()).collect();
        assert_eq!(
            names,
            [Some("Harbour at dusk"), Some("Old mill"), Some("Bridge")]
        );
        assert_eq!(
            e.links.iter().map(Url::as_str).collect::<Vec<_>>(),
            ["https://site.example/page/2.html"],
            "links to the images themselves are not followed as pages"
        );
    }

    #[test]
    fn broken_html_does_not_stop_extraction() {
        let e = run("<div><a href='/p/2'><img data-src=\"/i/1.jpg\" alt='x><p>cap'><img src=/i/2.jpg><p>open <b>bold<img src=/i/3.jpg><a href=/p/3>x");
        assert_eq!(
            image_urls(&e),
            [
                "https://site.example/i/1.jpg",
                "https://site.example/i/2.jpg",
                "https://site.example/i/3.jpg"
            ]
        );
        assert_eq!(e.images[0].name.as_deref(), Some("x><p>cap"));
        assert_eq!(e.links.len(), 2);
    }

    #[test]
    fn captions_come_from_the_nearest_element_holding_the_image_alone() {
        let e = run(r#"<ul>
            <li><img data-original="/i/1.jpg" src="/blank.gif"><p style="display:none">Seed caption</p></li>
            <li><div class="card"><img src="/i/2.jpg" alt="alt two"><span>Card title</span></div></li>
            <li><img src="/i/3.jpg" alt="alt three"></li>
            </ul>
            <div class="pair"><img src="/i/4.jpg" alt="four"><img src="/i/5.jpg"><b>shared text</b></div>
            <table><tr><td><img src="/i/6.jpg"> Cell caption </td></tr></table>
            <figure><img src="/i/7.jpg"><span>auto</span><figcaption>Configured</figcaption></figure>"#);
        let names: Vec<_> = e.images.iter().map(|c| c.name.as_deref()).collect();
        assert_eq!(
            names,
            [
                Some("Seed caption"),
                Some("Card title"),
                Some("alt three"),
                Some("four"),
                None,
                Some("Cell caption"),
                Some("Configured"),
            ]
        );
    }

    fn rules_with(f: impl FnOnce(&mut ExtractRules)) -> ExtractRules {
        let mut r = ExtractRules::default();
        f(&mut r);
        r
    }

    #[test]
    fn images_and_links_per_page_are_capped_and_counted() {
        let mut html = String::new();
        for n in 0..50 {
            html.push_str(&format!("<img src='/i/{n}.jpg'><a href='/p/{n}'>p</a>"));
        }
        let rules = rules_with(|r| {
            r.max_images_per_page = 10;
            r.max_links_per_page = 20;
        });
        let url = Url::parse("https://site.example/").unwrap();
        let e = extract(&html, &url, &rules).unwrap();
        assert_eq!((e.images.len(), e.images_dropped), (10, 40));
        assert_eq!((e.links.len(), e.links_dropped), (20, 30));
        assert_eq!(e.images[9].url.as_str(), "https://site.example/i/9.jpg");
    }

    #[test]
    fn one_url_repeated_in_one_element_is_one_image_named_once() {
        // The shape that once kept a core busy for minutes: every caption lookup walked the whole
        // figure, and every repeat searched the list of images.
        let mut html = String::from("<figure>");
        for _ in 0..100_000 {
            html.push_str("<img src=/same.jpg>");
        }
        html.push_str("<figcaption>The one</figcaption></figure>");
        let e = run(&html);
        assert_eq!(e.images.len(), 1);
        assert_eq!(e.images[0].name.as_deref(), Some("The one"));
    }

    #[test]
    fn a_page_over_its_time_budget_is_too_complex() {
        let rules = rules_with(|r| r.parse_timeout = Duration::ZERO);
        let url = Url::parse("https://site.example/").unwrap();
        let err = extract("<div><img src=a.jpg></div>", &url, &rules).unwrap_err();
        assert!(
            err.to_string().contains("extract.parse_timeout_secs"),
            "{err}"
        );
        // Deep nesting is parsed (within the default budget) without exhausting the stack.
        let deep = "<div>".repeat(20_000) + "<img src=deep.jpg alt=deep>";
        let e = run(&deep);
        assert_eq!(e.images.len(), 1);
    }

    #[test]
    fn few_and_many_images_get_the_same_captions() {
        let item = |n: usize| {
            match n % 4 {
            0 => format!("<figure><a href=/d/{n}><img src=/i/{n}.jpg alt=alt{n}></a><figcaption>fig {n}</figcaption></figure>"),
            1 => format!("<a href=/d/{n}><img src=/i/{n}.jpg><p> para {n} </p></a>"),
            2 => format!("<a class=caption href=/d/{n}>self {n}<img src=/i/{n}.jpg></a>"),
            _ => format!("<div><img src=/i/{n}.jpg alt=alt{n}></div>"),
        }
        };
        let page = |count: usize| (0..count).map(item).collect::<String>();
        let few = run(&page(FEW_IMAGES / 2));
        let many = run(&page(FEW_IMAGES * 3));
        for (a, b) in few.images.iter().zip(&many.images) {
            assert_eq!(a, b);
        }
        assert_eq!(few.images[0].name.as_deref(), Some("fig 0"));
        assert_eq!(few.images[1].name.as_deref(), Some("para 1"));
        assert_eq!(few.images[2].name.as_deref(), Some("self 2"));
        assert_eq!(few.images[3].name.as_deref(), Some("alt3"));
    }
}
