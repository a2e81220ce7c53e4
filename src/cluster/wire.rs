//! The wire form of shared jobs (JSON in a stream entry's `j` field) and the fixed-size key of a
//! URL in the shared seen sets.

use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};
use url::Url;

use crate::job::{ImageJob, PageJob};

/// A page as it travels through the shared queue.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
struct WirePage {
    url: String,
    depth: u32,
    #[serde(default, skip_serializing_if = "is_zero")]
    barren: u32,
    #[serde(default, skip_serializing_if = "is_zero")]
    attempts: u32,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    from: Vec<String>,
}

/// An image as it travels through the shared queue.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
struct WireImage {
    url: String,
    page: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    name: Option<String>,
    #[serde(default, skip_serializing_if = "is_zero")]
    attempts: u32,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    from: Vec<String>,
}

fn is_zero(n: &u32) -> bool {
    *n == 0
}

fn urls(from: &[Url]) -> Vec<String> {
    from.iter().map(|u| u.to_string()).collect()
}

fn parse_urls(from: &[String]) -> Option<Vec<Url>> {
    from.iter().map(|u| Url::parse(u).ok()).collect()
}

/// The JSON form of a page job.
pub fn encode_page(job: &PageJob) -> String {
    serde_json::to_string(&WirePage {
        url: job.url.to_string(),
        depth: job.depth,
        barren: job.barren,
        attempts: job.attempts,
        from: urls(&job.redirected_from),
    })
    .expect("a page job always serialises")
}

/// The JSON form of an image job.
pub fn encode_image(job: &ImageJob) -> String {
    serde_json::to_string(&WireImage {
        url: job.url.to_string(),
        page: job.page.to_string(),
        name: job.name.clone(),
        attempts: job.attempts,
        from: urls(&job.redirected_from),
    })
    .expect("an image job always serialises")
}

pub(super) fn decode_page(json: &str) -> Option<PageJob> {
    let w: WirePage = serde_json::from_str(json).ok()?;
    Some(PageJob {
        url: Url::parse(&w.url).ok()?,
        depth: w.depth,
        barren: w.barren,
        attempts: w.attempts,
        losses: 0,
        redirected_from: parse_urls(&w.from)?,
        before: None,
    })
}

pub(super) fn decode_image(json: &str) -> Option<ImageJob> {
    let w: WireImage = serde_json::from_str(json).ok()?;
    Some(ImageJob {
        url: Url::parse(&w.url).ok()?,
        page: Url::parse(&w.page).ok()?,
        name: w.name,
        attempts: w.attempts,
        losses: 0,
        redirected_from: parse_urls(&w.from)?,
        // Shared crawls have no update runs, so never a saved image asked for again.
        revalidate: false,
    })
}

/// The fixed-size key of a URL in the shared seen sets.
pub fn url_hash(url: &Url) -> [u8; 16] {
    let digest = Sha256::digest(url.as_str().as_bytes());
    let mut key = [0u8; 16];
    key.copy_from_slice(&digest[..16]);
    key
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn jobs_survive_the_wire() {
        let page = PageJob {
            url: Url::parse("http://h/list?page=2").unwrap(),
            depth: 3,
            barren: 4,
            attempts: 1,
            losses: 2,
            redirected_from: vec![Url::parse("http://h/old").unwrap()],
            before: None,
        };
        let back = decode_page(&encode_page(&page)).unwrap();
        assert_eq!(back, PageJob { losses: 0, ..page });
        let image = ImageJob {
            url: Url::parse("http://h/a.png").unwrap(),
            page: Url::parse("http://h/list").unwrap(),
            name: Some("猫 cat".into()),
            attempts: 0,
            losses: 0,
            redirected_from: Vec::new(),
            revalidate: false,
        };
        assert_eq!(decode_image(&encode_image(&image)).unwrap(), image);
        assert!(decode_page("{\"url\": \"not a url\", \"depth\": 0}").is_none());
        assert!(decode_image("[]").is_none());
    }
}
