//! The crawl's records (DESIGN §4): rows of `manifest.jsonl` and `errors.jsonl`, the counters of
//! `stats.json`, and the final report with its human summary. Pure data; the Logger fills them and
//! the DiskWriter writes them.

use std::collections::BTreeMap;
use std::fmt;
use std::path::PathBuf;

use serde::{Deserialize, Serialize};

/// One line of `manifest.jsonl`: an image URL and the file that holds its bytes.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ManifestRow {
    /// The image URL (normalized).
    pub url: String,
    /// The page it was found on.
    pub page: String,
    /// The human name chosen (caption, alt text or URL stem).
    pub name: String,
    /// The file, relative to `out_dir`. For a duplicate, the file holding the same bytes.
    pub path: PathBuf,
    /// Size in bytes.
    pub bytes: u64,
    /// Hex SHA-256 of the bytes.
    pub sha256: String,
    /// The real type, from the bytes.
    pub content_type: String,
    /// Width in pixels, when the header tells.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub width: Option<u32>,
    /// Height in pixels, when the header tells.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub height: Option<u32>,
    /// When these bytes were already saved under another URL: that file (then nothing new was
    /// written for this URL).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub duplicate_of: Option<PathBuf>,
    /// In a shared crawl, when another process holds those bytes: that process (its consumer
    /// name); `path` and `duplicate_of` are then in its output directory, not this one.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub duplicate_on: Option<String>,
}

/// What failed: a page or an image.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum ItemKind {
    /// A list or detail page.
    Page,
    /// An image.
    Image,
}

/// One line of `errors.jsonl`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ErrorRow {
    /// The URL that failed.
    pub url: String,
    /// Page or image.
    pub kind: ItemKind,
    /// The failure kind, e.g. "status 404", "timeout", "not an image".
    pub error: String,
    /// The underlying error text.
    pub detail: String,
    /// Attempts made.
    pub attempts: u32,
    /// For an image, the page it was found on.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub page: Option<String>,
}

/// The counters of `stats.json`.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct Stats {
    /// Pages fetched and parsed.
    pub pages_fetched: u64,
    /// Pages that failed for good.
    pub pages_failed: u64,
    /// Images written to disk in this run (new files).
    pub images_saved: u64,
    /// Images that failed for good.
    pub images_failed: u64,
    /// Image URLs whose bytes were already saved under another URL (not written again).
    pub duplicates: u64,
    /// Image URLs skipped because an earlier run already saved them.
    pub images_already_saved: u64,
    /// Image URLs not requested because their host is outside `scope.allowed_hosts`.
    pub images_out_of_scope: u64,
    /// Images not kept because of a `[filter]` key, by that key (e.g. "filter.min_width": 3).
    #[serde(default)]
    pub images_skipped: BTreeMap<String, u64>,
    /// Bytes of the new files written.
    pub bytes_saved: u64,
    /// Retries made after retryable failures.
    pub retries: u64,
    /// Workers that died and were replaced.
    pub worker_restarts: u64,
    /// Wall time of the crawl, in seconds.
    pub elapsed_secs: f64,
    /// Pages fetched per second.
    pub pages_per_sec: f64,
    /// Images saved (new files and duplicates) per second.
    pub images_per_sec: f64,
    /// Failures by kind (e.g. "status 404": 2).
    pub errors_by_kind: BTreeMap<String, u64>,
}

impl Stats {
    /// Whether any page or image failed for good.
    pub fn has_failures(&self) -> bool {
        self.pages_failed > 0 || self.images_failed > 0
    }

    /// Fills the elapsed time and the rates.
    pub fn finish_timing(&mut self, elapsed_secs: f64) {
        self.elapsed_secs = elapsed_secs;
        let secs = elapsed_secs.max(1e-6);
        self.pages_per_sec = self.pages_fetched as f64 / secs;
        self.images_per_sec = (self.images_saved + self.duplicates) as f64 / secs;
    }
}

/// How a crawl ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Outcome {
    /// Everything reachable was done.
    Finished,
    /// It was stopped before the end (Ctrl-C or [`crate::Crawl::stop`]).
    Stopped,
}

/// The final report of a crawl.
#[derive(Debug, Clone, PartialEq)]
pub struct CrawlReport {
    /// The counters.
    pub stats: Stats,
    /// Finished or stopped.
    pub outcome: Outcome,
    /// Where the images and records are.
    pub out_dir: PathBuf,
}

impl CrawlReport {
    /// The process exit status of DESIGN §2: 0 all done, 3 some failures, 130 stopped.
    pub fn exit_code(&self) -> i32 {
        match (self.outcome, self.stats.has_failures()) {
            (Outcome::Stopped, _) => 130,
            (Outcome::Finished, true) => 3,
            (Outcome::Finished, false) => 0,
        }
    }
}

impl fmt::Display for CrawlReport {
    /// The human summary printed at the end.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let s = &self.stats;
        let state = match self.outcome {
            Outcome::Finished => "finished",
            Outcome::Stopped => "stopped before the end (run again to continue)",
        };
        writeln!(f, "imgcrawl {state} in {:.1} s", s.elapsed_secs)?;
        writeln!(
            f,
            "  pages   {:>8} fetched  {:>6} failed   {:>8.1}/s",
            s.pages_fetched, s.pages_failed, s.pages_per_sec
        )?;
        writeln!(
            f,
            "  images  {:>8} saved    {:>6} failed   {:>8.1}/s  {} duplicates, {} already saved",
            s.images_saved, s.images_failed, s.images_per_sec, s.duplicates, s.images_already_saved
        )?;
        writeln!(
            f,
            "  bytes   {:>8.1} MB written",
            s.bytes_saved as f64 / 1e6
        )?;
        if s.images_out_of_scope > 0 {
            writeln!(
                f,
                "  skipped {:>8} images on hosts outside scope.allowed_hosts",
                s.images_out_of_scope
            )?;
        }
        if s.retries > 0 || s.worker_restarts > 0 {
            writeln!(
                f,
                "  retries {:>8}          restarts {}",
                s.retries, s.worker_restarts
            )?;
        }
        for (kind, n) in &s.errors_by_kind {
            writeln!(f, "  error   {n:>8} × {kind}")?;
        }
        write!(
            f,
            "  output  {} (manifest.jsonl, errors.jsonl, stats.json)",
            self.out_dir.display()
        )
    }
}
