//! Sitemaps (sitemaps.org): a `<urlset>` of pages, with the `<image:image>` entries of Google's
//! image extension, or a `<sitemapindex>` of further sitemaps; plain or gzip-compressed. Read as a
//! stream of XML events straight from the (possibly compressed) body, so the XML text is never
//! held whole: only the URLs found are kept, at most [`MAX_URLS`] of each kind per file and at
//! most [`MAX_XML_BYTES`] of XML. Pure: the PageFetcher hands the body in.

use std::io::{BufRead, BufReader, Read};

use quick_xml::events::Event;
use quick_xml::name::ResolveResult;
use quick_xml::NsReader;
use url::Url;

/// URLs (of each kind) taken from one sitemap file; the protocol allows 50,000.
pub const MAX_URLS: usize = 50_000;

/// Uncompressed XML read from one sitemap file; the protocol allows 50 MB.
pub const MAX_XML_BYTES: u64 = 50 * 1024 * 1024;

/// Google's image sitemap namespace.
const IMAGE_NS: &str = "http://www.google.com/schemas/sitemap-image/1.1";

/// What a sitemap lists.
#[derive(Debug, Default, PartialEq, Eq)]
pub struct Sitemap {
    /// Pages (`<url><loc>`), in order.
    pub pages: Vec<Url>,
    /// Images (`<image:image><image:loc>`) with the page they are listed under.
    pub images: Vec<(Url, Url)>,
    /// Further sitemaps (`<sitemapindex><sitemap><loc>`).
    pub sitemaps: Vec<Url>,
    /// URLs left out: over [`MAX_URLS`], or not http(s) URLs.
    pub dropped: usize,
}

/// Whether a body looks like a sitemap worth parsing: gzip data, or XML.
pub fn looks_like(content_type: Option<&str>, url: &Url, body_start: &[u8]) -> bool {
    let ct = content_type.unwrap_or("").to_ascii_lowercase();
    let path = url.path().to_ascii_lowercase();
    body_start.starts_with(&[0x1f, 0x8b])
        || ct.contains("xml")
        || path.ends_with(".xml")
        || path.ends_with(".xml.gz")
        || String::from_utf8_lossy(&body_start[..body_start.len().min(512)])
            .trim_start_matches('\u{feff}')
            .trim_start()
            .starts_with("<?xml")
}

/// Reads a sitemap found at `base`. `Ok(None)` when the XML is not a sitemap (another root
/// element); an error names what is wrong (bad XML, bad gzip, too large).
pub fn parse(body: &[u8], base: &Url) -> Result<Option<Sitemap>, String> {
    let reader: Box<dyn BufRead + '_> = if body.starts_with(&[0x1f, 0x8b]) {
        Box::new(BufReader::new(
            flate2::read::MultiGzDecoder::new(body).take(MAX_XML_BYTES + 1),
        ))
    } else {
        Box::new(body.take(MAX_XML_BYTES + 1))
    };
    let mut xml = NsReader::from_reader(reader);
    xml.config_mut().trim_text(true);
    let mut out = Sitemap::default();
    let mut buf = Vec::new();
    let mut root: Option<bool> = None; // Some(true): urlset, Some(false): sitemapindex
    let mut stack: Vec<(bool, String)> = Vec::new(); // (in the image namespace, local name)
    let mut text: Option<String> = None;
    let mut page: Option<Url> = None;
    loop {
        if xml.buffer_position() > MAX_XML_BYTES {
            return Err(format!("more than {MAX_XML_BYTES} bytes of XML"));
        }
        let event = xml.read_resolved_event_into(&mut buf);
        match event.map_err(|e| format!("not valid XML: {e}"))? {
            (ns, Event::Start(e)) => {
                let name = e.local_name().as_ref().to_string();
                let image = matches!(ns, ResolveResult::Bound(n) if n.as_ref() == IMAGE_NS);
                if root.is_none() {
                    root = match name.as_str() {
                        "urlset" => Some(true),
                        "sitemapindex" => Some(false),
                        _ => return Ok(None),
                    };
                }
                if name == "loc" {
                    text = Some(String::new());
                }
                stack.push((image, name));
            }
            (_, Event::Text(t)) => {
                if let Some(s) = &mut text {
                    s.push_str(&t.xml10_content());
                }
            }
            (_, Event::CData(c)) => {
                if let Some(s) = &mut text {
                    s.push_str(&c.xml10_content());
                }
            }
            (_, Event::GeneralRef(r)) => {
                if let Some(s) = &mut text {
                    let name = r.xml10_content();
                    match r.resolve_char_ref().ok().flatten() {
                        Some(c) => s.push(c),
                        None => match quick_xml::escape::resolve_predefined_entity(&name) {
                            Some(v) => s.push_str(v),
                            None => return Err(format!("unknown entity &{name};")),
                        },
                    }
                }
            }
            (_, Event::End(_)) => {
                let Some((image, name)) = stack.pop() else {
                    continue;
                };
                if name == "loc" {
                    let loc = text.take().unwrap_or_default();
                    let parent = stack.last().map(|(i, n)| (*i, n.as_str()));
                    out.take(&loc, parent, image, &mut page, base);
                } else if name == "url" && !image {
                    page = None;
                }
            }
            (_, Event::Eof) => break,
            _ => {}
        }
        buf.clear();
    }
    if xml.buffer_position() > MAX_XML_BYTES {
        return Err(format!("more than {MAX_XML_BYTES} bytes of XML"));
    }
    Ok(root.map(|_| out))
}

impl Sitemap {
    /// Files the URL of a `<loc>` under its parent element.
    fn take(
        &mut self,
        loc: &str,
        parent: Option<(bool, &str)>,
        image: bool,
        page: &mut Option<Url>,
        base: &Url,
    ) {
        let Some(url) = base
            .join(loc.trim())
            .ok()
            .filter(|u| matches!(u.scheme(), "http" | "https"))
        else {
            self.dropped += 1;
            return;
        };
        let full = |list_len: usize, dropped: &mut usize| {
            if list_len >= MAX_URLS {
                *dropped += 1;
                true
            } else {
                false
            }
        };
        match parent {
            Some((false, "url")) if !image => {
                *page = Some(url.clone());
                if !full(self.pages.len(), &mut self.dropped) {
                    self.pages.push(url);
                }
            }
            Some((true, "image")) if image => {
                let on = page.clone().unwrap_or_else(|| base.clone());
                if !full(self.images.len(), &mut self.dropped) {
                    self.images.push((url, on));
                }
            }
            Some((false, "sitemap")) => {
                if !full(self.sitemaps.len(), &mut self.dropped) {
                    self.sitemaps.push(url);
                }
            }
            _ => self.dropped += 1,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::Write;

    fn base() -> Url {
        Url::parse("https://site.example/sitemap.xml").unwrap()
    }

    const URLSET: &str = r#"<?xml version="1.0" encoding="UTF-8"?>
<urlset xmlns="http://www.sitemaps.org/schemas/sitemap/0.9"
        xmlns:image="http://www.google.com/schemas/sitemap-image/1.1">
  <url>
    <loc>https://site.example/gallery?id=1&amp;page=2</loc>
    <lastmod>2026-01-01</lastmod>
    <image:image><image:loc>https://cdn.example/a.jpg?w=1&amp;h=2</image:loc></image:image>
    <image:image><image:loc><![CDATA[https://cdn.example/b.jpg]]></image:loc></image:image>
  </url>
  <url><loc> /relative/page </loc></url>
  <url><loc>ftp://site.example/nope</loc></url>
</urlset>"#;

    #[test]
    fn pages_and_images_with_their_page() {
        let s = parse(URLSET.as_bytes(), &base()).unwrap().unwrap();
        let pages: Vec<&str> = s.pages.iter().map(Url::as_str).collect();
        assert_eq!(
            pages,
            [
                "https://site.example/gallery?id=1&page=2",
                "https://site.example/relative/page"
            ]
        );
        let images: Vec<(&str, &str)> = s
            .images
            .iter()
            .map(|(i, p)| (i.as_str(), p.as_str()))
            .collect();
        assert_eq!(
            images,
            [
                (
                    "https://cdn.example/a.jpg?w=1&h=2",
                    "https://site.example/gallery?id=1&page=2"
                ),
                (
                    "https://cdn.example/b.jpg",
                    "https://site.example/gallery?id=1&page=2"
                )
            ]
        );
        assert_eq!(s.dropped, 1, "the ftp URL");
        assert!(s.sitemaps.is_empty());
    }

    #[test]
    fn an_index_compressed_and_the_limits() {
        let index = "<sitemapindex xmlns=\"http://www.sitemaps.org/schemas/sitemap/0.9\">\
            <sitemap><loc>https://site.example/s1.xml.gz</loc></sitemap>\
            <sitemap><loc>https://site.example/s2.xml</loc></sitemap></sitemapindex>";
        let mut gz = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::default());
        gz.write_all(index.as_bytes()).unwrap();
        let gz = gz.finish().unwrap();
        assert!(looks_like(None, &base(), &gz));
        let s = parse(&gz, &base()).unwrap().unwrap();
        assert_eq!(s.sitemaps.len(), 2);
        assert!(s.pages.is_empty());

        let mut big =
            String::from("<urlset xmlns=\"http://www.sitemaps.org/schemas/sitemap/0.9\">");
        for i in 0..MAX_URLS + 5 {
            big.push_str(&format!("<url><loc>https://site.example/p{i}</loc></url>"));
        }
        big.push_str("</urlset>");
        let s = parse(big.as_bytes(), &base()).unwrap().unwrap();
        assert_eq!((s.pages.len(), s.dropped), (MAX_URLS, 5));

        // A bomb: far more XML than allowed, compressed small.
        let mut gz = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::best());
        gz.write_all(b"<urlset>").unwrap();
        let pad = vec![b' '; 1 << 20];
        for _ in 0..60 {
            gz.write_all(&pad).unwrap();
        }
        let bomb = gz.finish().unwrap();
        assert!(parse(&bomb, &base()).unwrap_err().contains("more than"));
    }

    #[test]
    fn other_xml_and_broken_xml() {
        assert_eq!(parse(b"<rss><channel/></rss>", &base()).unwrap(), None);
        assert!(parse(b"<urlset><url><loc>x</url>", &base()).is_err());
        let html = Url::parse("https://site.example/page.html").unwrap();
        assert!(!looks_like(Some("text/html"), &html, b"<!doctype html>"));
        assert!(looks_like(Some("application/xml"), &html, b""));
    }
}
