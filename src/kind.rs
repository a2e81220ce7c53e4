//! The one distinction that runs through the whole crawl: a job, a worker pool, a record or a
//! shared queue is about a page or about an image.

use std::fmt;

use serde::{Deserialize, Serialize};

/// A page or an image: what a job fetches, which pool does it, what a record is about.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Kind {
    /// A list or detail page, fetched and parsed by a page fetcher.
    Page,
    /// An image, downloaded and stored by an image saver.
    Image,
}

impl Kind {
    /// The worker pool that does jobs of this kind, as people call it.
    pub fn worker(self) -> &'static str {
        match self {
            Kind::Page => "page fetcher",
            Kind::Image => "image saver",
        }
    }
}

impl fmt::Display for Kind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Kind::Page => "page",
            Kind::Image => "image",
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn records_spell_the_kind_in_lowercase() {
        assert_eq!(serde_json::to_string(&Kind::Image).unwrap(), "\"image\"");
        let back: Kind = serde_json::from_str("\"page\"").unwrap();
        assert_eq!(back, Kind::Page);
        assert_eq!(Kind::Page.to_string(), "page");
    }
}
