//! Pure extraction: HTML + the page's URL + the configured rules -> image candidates (with their
//! human names) and links to follow. No I/O; the `scraper` document never leaves this module, so the
//! actors never hold a non-`Send` parse tree across an `.await`.

use std::collections::HashSet;

use scraper::{ElementRef, Html, Selector};
use url::Url;

use crate::settings::ExtractRules;
use crate::urls;

/// An image found on a page.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ImageCandidate {
    /// Normalized absolute URL.
    pub url: Url,
    /// Caption or alt text, whitespace-collapsed; `None` when the page gives none.
    pub name: Option<String>,
}

/// Everything a page yields.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Extracted {
    /// Images, in page order, each URL once.
    pub images: Vec<ImageCandidate>,
    /// Links matched by `extract.follow`, in page order, each once (scope is decided by the caller).
    pub links: Vec<Url>,
}

/// Longest name kept from a caption, in characters; longer ones are cut (paths cut further).
const MAX_NAME_CHARS: usize = 200;

/// Parses `html` fetched from `page_url` and applies `rules`.
pub fn extract(html: &str, page_url: &Url, rules: &ExtractRules) -> Extracted {
    let doc = Html::parse_document(html);
    let base = base_url(&doc, page_url);
    let mut out = Extracted::default();
    let mut seen_images = HashSet::new();
    for rule in &rules.images {
        for el in doc.select(&rule.selector) {
            let Some(url) = image_url(el, &rule.attrs, &base) else {
                continue;
            };
            if seen_images.insert(url.clone()) {
                out.images.push(ImageCandidate {
                    name: caption(el, rules),
                    url,
                });
            } else if let Some(name) = caption(el, rules) {
                // The same URL seen again, e.g. as a thumbnail without caption first: keep a name.
                if let Some(c) = out
                    .images
                    .iter_mut()
                    .find(|c| c.url == url && c.name.is_none())
                {
                    c.name = Some(name);
                }
            }
        }
    }
    let mut seen_links = HashSet::new();
    for el in doc.select(&rules.follow) {
        if let Some(url) = el
            .value()
            .attr("href")
            .and_then(|v| urls::resolve(&base, v))
        {
            // A link this page already gives as an image (a thumbnail's link to the full-size
            // file, a directory listing's files) is not a page to fetch as well.
            if !seen_images.contains(&url) && seen_links.insert(url.clone()) {
                out.links.push(url);
            }
        }
    }
    out
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

/// The image's human name: the caption inside the nearest item that has one (the element itself,
/// or an ancestor: `<figure><a><img></a><figcaption>` names the image by the figure's caption even
/// though the link is an item too), else its `alt`, else `None`.
fn caption(el: ElementRef<'_>, rules: &ExtractRules) -> Option<String> {
    let from_item = std::iter::once(el)
        .chain(el.ancestors().filter_map(ElementRef::wrap))
        .filter(|a| rules.item.matches(a))
        .find_map(|item| {
            item.select(&rules.name)
                .map(text_of)
                .find(|t| !t.is_empty())
        });
    from_item.or_else(|| {
        let is_img = |e: &ElementRef<'_>| e.value().name() == "img";
        let img = if is_img(&el) {
            Some(el)
        } else {
            // A link to a full-size image: the thumbnail inside it. A <picture><source>: the
            // <img> beside it.
            el.descendants()
                .filter_map(ElementRef::wrap)
                .find(is_img)
                .or_else(|| {
                    el.parent()
                        .and_then(ElementRef::wrap)
                        .and_then(|p| p.children().filter_map(ElementRef::wrap).find(is_img))
                })
        };
        img.and_then(|i| i.value().attr("alt"))
            .map(collapse)
            .filter(|t| !t.is_empty())
    })
}

fn text_of(el: ElementRef<'_>) -> String {
    collapse(&el.text().collect::<String>())
}

/// Collapses runs of white space into one space, trims, and cuts to [`MAX_NAME_CHARS`].
fn collapse(s: &str) -> String {
    s.split_whitespace()
        .collect::<Vec<_>>()
        .join(" ")
        .chars()
        .take(MAX_NAME_CHARS)
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn run(html: &str) -> Extracted {
        extract(
            html,
            &Url::parse("https://site.example/list/1.html").unwrap(),
            &ExtractRules::default(),
        )
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
        };
        let e = extract(
            r#"<a class="thumb" href="/full/1.jpg"><img src="/thumb/1.jpg" alt="Harbour at dusk"></a>
               <figure><a class="thumb" href="/full/2.jpg"><img src="/thumb/2.jpg" alt="alt 2"></a>
                 <figcaption>Old mill</figcaption></figure>
               <a class="thumb" href="/full/3.jpg"><img src="/thumb/3.jpg"><span class="caption">Bridge</span></a>
               <a href="/full/1.jpg">download</a> <a href="/page/2.html">next</a>"#,
            &Url::parse("https://site.example/g/").unwrap(),
            &rules,
        );
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
}
