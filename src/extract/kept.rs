//! What a page held, kept in the state as text (one line per image, link or sitemap) so that an
//! update finding the page unchanged (a 304) can queue it again without fetching or parsing it.

use url::Url;

use super::{Extracted, ImageCandidate};

impl Extracted {
    /// The text form kept in the state: `i URL [NAME [PAGE]]`, `l URL`, `s URL` and `d IMAGES
    /// LINKS` (the counts dropped), tab-separated, one per line. URLs hold no tab or newline;
    /// names have theirs made spaces.
    pub fn encode(&self) -> String {
        let mut out = String::with_capacity(64 * (self.images.len() + self.links.len()));
        for c in &self.images {
            out.push_str("i\t");
            out.push_str(c.url.as_str());
            if c.name.is_some() || c.page.is_some() {
                out.push('\t');
                if let Some(name) = &c.name {
                    out.extend(
                        name.chars()
                            .map(|ch| if ch == '\t' || ch == '\n' { ' ' } else { ch }),
                    );
                }
            }
            if let Some(page) = &c.page {
                out.push('\t');
                out.push_str(page.as_str());
            }
            out.push('\n');
        }
        for (tag, urls) in [("l\t", &self.links), ("s\t", &self.sitemaps)] {
            for url in urls {
                out.push_str(tag);
                out.push_str(url.as_str());
                out.push('\n');
            }
        }
        if self.images_dropped + self.links_dropped > 0 {
            out.push_str(&format!(
                "d\t{}\t{}\n",
                self.images_dropped, self.links_dropped
            ));
        }
        out
    }

    /// Reads the form [`encode`](Self::encode) writes; lines it cannot read are passed over.
    pub fn decode(text: &str) -> Extracted {
        let mut found = Extracted::default();
        for line in text.lines() {
            let mut fields = line.split('\t');
            let (Some(tag), Some(first)) = (fields.next(), fields.next()) else {
                continue;
            };
            match tag {
                "i" => {
                    let Ok(url) = Url::parse(first) else { continue };
                    let name = fields.next().filter(|n| !n.is_empty()).map(str::to_string);
                    let page = fields.next().and_then(|p| Url::parse(p).ok());
                    found.images.push(ImageCandidate { url, name, page });
                }
                "l" => found.links.extend(Url::parse(first).ok()),
                "s" => found.sitemaps.extend(Url::parse(first).ok()),
                "d" => {
                    found.images_dropped = first.parse().unwrap_or(0);
                    found.links_dropped = fields.next().and_then(|n| n.parse().ok()).unwrap_or(0);
                }
                _ => {}
            }
        }
        found
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn url(s: &str) -> Url {
        Url::parse(s).unwrap()
    }

    #[test]
    fn what_a_page_held_round_trips_through_its_text() {
        let found = Extracted {
            images: vec![
                ImageCandidate {
                    url: url("http://h/a%09b.png?x=1&y=%0A"),
                    name: Some("猫\tcat\nnight".into()),
                    page: None,
                },
                ImageCandidate {
                    url: url("http://h/b.jpg"),
                    name: None,
                    page: Some(url("http://h/detail/2")),
                },
                ImageCandidate {
                    url: url("http://h/c.gif"),
                    name: None,
                    page: None,
                },
            ],
            links: vec![url("http://h/list/2"), url("http://other.example/")],
            images_dropped: 3,
            links_dropped: 0,
            sitemaps: vec![url("http://h/sitemap-2.xml.gz")],
        };
        let back = Extracted::decode(&found.encode());
        assert_eq!(back.images[0].name.as_deref(), Some("猫 cat night"));
        let mut expected = found.clone();
        expected.images[0].name = Some("猫 cat night".into());
        assert_eq!(back, expected);
        assert_eq!(Extracted::decode(""), Extracted::default());
        let junk = Extracted::decode("i\tnot a url\nl\thttp://h/ok\nzz\nd\tx\n");
        assert_eq!(junk.links, vec![url("http://h/ok")]);
        assert!(junk.images.is_empty());
    }
}
