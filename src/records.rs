//! The crawl's records: rows of `manifest.jsonl`, `errors.jsonl` and `skipped.jsonl`, the counters
//! of `stats.json`, and the final report with its human summary. Pure data; the Logger fills them and
//! the DiskWriter writes them.

use std::collections::BTreeMap;
use std::fmt;
use std::path::PathBuf;

use serde::{Deserialize, Serialize};

use crate::error::Error;
use crate::Kind;

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
    /// When the run that saved it started (RFC 3339, UTC).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub first_seen: Option<String>,
    /// When the last run that found it on a page started.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub last_seen: Option<String>,
    /// When the run started in which the page it was found on answered 404 or 410 (the file is
    /// kept); absent while the page is there or the image was found again elsewhere.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub gone_since: Option<String>,
    /// When the URL's bytes changed (an update with `--revalidate-images` found new ones): the
    /// file that holds the bytes it had before (`NAME.prev.EXT`, or the file it was a duplicate
    /// of).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub previous: Option<PathBuf>,
    /// When the run started that found its bytes changed (the last time they did).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub changed: Option<String>,
}

/// One line of `errors.jsonl`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ErrorRow {
    /// The URL that failed.
    pub url: String,
    /// Page or image.
    pub kind: Kind,
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

/// One line of `skipped.jsonl`: a URL deliberately not requested (robots.txt, the trap rule, a
/// filter, a redirect out of scope). Not a failure: it does not change the exit status.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SkipRow {
    /// The URL not requested.
    pub url: String,
    /// Page or image.
    pub kind: Kind,
    /// Why: "robots", "trap", "out of scope", or the filter key ("filter.exclude", ...).
    pub reason: String,
    /// More for people: the trap rule's URL shape and what it saw, the redirect's target, ...
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub detail: String,
    /// The page it was found on, when known.
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
    /// Which run of the crawl in its output directory this is (1 for the first crawl, one more
    /// for each update).
    #[serde(default)]
    pub run: u64,
    /// Whether this run is an update (`crawl --update`).
    #[serde(default)]
    pub update: bool,
    /// Pages an update found unchanged (304 to a conditional request): not parsed, what they held
    /// taken from the state. Not counted in `pages_fetched`.
    #[serde(default)]
    pub pages_unchanged: u64,
    /// Pages an earlier run fetched that came back whole (changed, or from a server that does not
    /// answer conditional requests); counted in `pages_fetched` too.
    #[serde(default)]
    pub pages_changed: u64,
    /// Pages an earlier run fetched that now answer 404 or 410 (their images are kept, marked
    /// `gone_since` in the manifest). Not counted in `pages_failed`.
    #[serde(default)]
    pub pages_gone: u64,
    /// Image URLs this run found for the first time and saved (new files and duplicates).
    #[serde(default)]
    pub images_new: u64,
    /// Image URLs an earlier run saved that this run found again and left as they were: not
    /// requested again (the same count as `images_already_saved`), or, with
    /// `--revalidate-images`, asked and answered 304 or the same bytes.
    #[serde(default)]
    pub images_unchanged: u64,
    /// Saved images asked for again by an update with `--revalidate-images` (whatever the
    /// answer).
    #[serde(default)]
    pub images_revalidated: u64,
    /// Saved images an update with `--revalidate-images` downloaded again and found with other
    /// bytes: the file replaced, the old one kept (see the manifest's `previous`).
    #[serde(default)]
    pub images_changed: u64,
    /// Saved images whose URL answered 404 or 410 to an update with `--revalidate-images`: the
    /// file is kept. Not counted in `images_failed`.
    #[serde(default)]
    pub images_gone: u64,
    /// Image URLs not requested because their host is outside `scope.allowed_hosts`.
    pub images_out_of_scope: u64,
    /// Images not requested or not kept on purpose, by reason: a `[filter]` key (e.g.
    /// "filter.min_width": 3), "robots" (robots.txt disallows them).
    #[serde(default)]
    pub images_skipped: BTreeMap<String, u64>,
    /// Pages not requested on purpose, by reason: "robots", "trap" (the trap rule), "out of scope"
    /// (a redirect off the allowed sites).
    #[serde(default)]
    pub pages_skipped: BTreeMap<String, u64>,
    /// URLs the trap rule skipped, by URL shape (see `scope.trap_pages`).
    #[serde(default)]
    pub trap_shapes: BTreeMap<String, u64>,
    /// Image elements left out because a page held more than `extract.max_images_per_page`.
    #[serde(default)]
    pub images_over_page_cap: u64,
    /// Links left out because a page held more than `extract.max_links_per_page`.
    #[serde(default)]
    pub links_over_page_cap: u64,
    /// Links not followed because they lead off the allowed sites or are excluded by
    /// `scope.include`/`scope.exclude`, counted each time a page gives one (not listed).
    #[serde(default)]
    pub links_out_of_scope: u64,
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
    /// One URL that failed, for each kind of failure.
    #[serde(default)]
    pub error_examples: BTreeMap<String, String>,
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

/// The counters of a whole shared crawl, all processes together.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct WholeCrawl {
    /// Pages fetched and parsed.
    pub pages_fetched: u64,
    /// Pages that failed for good.
    pub pages_failed: u64,
    /// Images stored (each distinct bytes once in the crawl).
    pub images_saved: u64,
    /// Image URLs whose bytes were already stored under another URL.
    pub duplicates: u64,
    /// Images that failed for good.
    pub images_failed: u64,
    /// Bytes of the images stored.
    pub bytes_saved: u64,
    /// Pages an update run found unchanged (304), not counted in `pages_fetched`.
    #[serde(default)]
    pub pages_unchanged: u64,
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
    /// In a shared crawl, the counters of all its processes together (read from Redis at the end).
    pub whole_crawl: Option<WholeCrawl>,
    /// Finished or stopped.
    pub outcome: Outcome,
    /// Where the images and records are.
    pub out_dir: PathBuf,
}

impl CrawlReport {
    /// The process exit status of this report (see [`exit_status`]): 0 all done
    /// (URLs skipped on purpose included), 3 some pages or images failed, 130 stopped.
    pub fn exit_code(&self) -> i32 {
        exit_status(Ok(Some(self)), false).into()
    }
}

impl CrawlReport {
    /// The final counters as one JSON object, with the outcome and the output directory (what
    /// `--json` prints).
    pub fn to_json(&self) -> String {
        let mut v = serde_json::to_value(&self.stats).expect("stats serialise to JSON");
        v["outcome"] = serde_json::to_value(self.outcome).expect("an outcome serialises");
        v["out_dir"] = self.out_dir.display().to_string().into();
        if let Some(whole) = &self.whole_crawl {
            v["whole_crawl"] = serde_json::to_value(whole).expect("counters serialise to JSON");
        }
        v.to_string()
    }
}

/// One row of the summary table: what, how many, the rate (when `rate`), and a note.
fn row(
    f: &mut fmt::Formatter<'_>,
    secs: f64,
    what: &str,
    n: u64,
    rate: bool,
    note: &str,
) -> fmt::Result {
    let per_sec = if rate {
        format!("{:.1}", n as f64 / secs)
    } else {
        String::new()
    };
    let line = format!("  {what:<16} {n:>9} {per_sec:>10}  {note}");
    writeln!(f, "{}", line.trim_end())
}

/// Counts by reason, as `reason n, reason n`.
fn by_reason(counts: &BTreeMap<String, u64>) -> String {
    let why: Vec<String> = counts.iter().map(|(k, n)| format!("{k} {n}")).collect();
    why.join(", ")
}

impl CrawlReport {
    /// The table's rows of pages and images done, each with its rate or a note.
    fn outcomes(&self, f: &mut fmt::Formatter<'_>, secs: f64) -> fmt::Result {
        let s = &self.stats;
        row(f, secs, "pages fetched", s.pages_fetched, true, "")?;
        row(f, secs, "pages failed", s.pages_failed, false, "")?;
        let mb = s.bytes_saved as f64 / 1e6;
        let note = format!("{mb:.1} MB, {:.2} MB/s", mb / secs);
        row(f, secs, "images saved", s.images_saved, true, &note)?;
        let same = "same bytes as a saved file";
        row(f, secs, "duplicates", s.duplicates, false, same)?;
        row(f, secs, "images failed", s.images_failed, false, "")?;
        if s.update {
            self.changes(f, secs)?;
        } else if s.images_already_saved > 0 {
            let n = s.images_already_saved;
            row(f, secs, "already saved", n, false, "by an earlier run")?;
        }
        let skipped: u64 = s.images_skipped.values().sum();
        if skipped > 0 {
            let why = by_reason(&s.images_skipped);
            row(f, secs, "images skipped", skipped, false, &why)?;
        }
        let pages_skipped: u64 = s.pages_skipped.values().sum();
        if pages_skipped > 0 {
            let why = by_reason(&s.pages_skipped);
            row(f, secs, "pages skipped", pages_skipped, false, &why)?;
        }
        Ok(())
    }

    /// The rows of an update: what changed since the earlier runs.
    fn changes(&self, f: &mut fmt::Formatter<'_>, secs: f64) -> fmt::Result {
        let s = &self.stats;
        let note = "304, not parsed: links and images from the state";
        row(f, secs, "pages unchanged", s.pages_unchanged, false, note)?;
        let note = "fetched whole again and parsed";
        row(f, secs, "pages changed", s.pages_changed, false, note)?;
        if s.pages_gone > 0 {
            let note = "404 or 410 now; their images are kept";
            row(f, secs, "pages gone", s.pages_gone, false, note)?;
        }
        row(
            f,
            secs,
            "new images",
            s.images_new,
            false,
            "found in this run",
        )?;
        if s.images_revalidated == 0 {
            let note = "saved before, not requested again";
            return row(f, secs, "images unchanged", s.images_unchanged, false, note);
        }
        let note = format!(
            "saved before; {} asked again (--revalidate-images)",
            crate::state::grouped(s.images_revalidated)
        );
        row(
            f,
            secs,
            "images unchanged",
            s.images_unchanged,
            false,
            &note,
        )?;
        let note = "other bytes now: file replaced, old one kept as .prev";
        row(f, secs, "images changed", s.images_changed, false, note)?;
        if s.images_gone > 0 {
            let note = "404 or 410 now; the files are kept";
            row(f, secs, "images gone", s.images_gone, false, note)?;
        }
        Ok(())
    }

    /// The lines about what the crawl left alone: trap shapes, page caps, scope, retries.
    fn left_alone(&self, f: &mut fmt::Formatter<'_>, secs: f64) -> fmt::Result {
        let s = &self.stats;
        if !s.trap_shapes.is_empty() {
            let mut shapes: Vec<(&String, &u64)> = s.trap_shapes.iter().collect();
            shapes.sort_by(|a, b| b.1.cmp(a.1).then(a.0.cmp(b.0)));
            let shown: Vec<String> = shapes
                .iter()
                .take(3)
                .map(|(shape, n)| format!("{shape} ({n})"))
                .collect();
            let more = shapes.len().saturating_sub(3);
            let more = if more > 0 {
                format!(" and {more} more (-v lists them)")
            } else {
                String::new()
            };
            writeln!(f, "  trap shapes      {}{more}", shown.join(", "))?;
        }
        if s.images_over_page_cap + s.links_over_page_cap > 0 {
            writeln!(
                f,
                "  over page caps   {} images, {} links left out (extract.max_images_per_page, extract.max_links_per_page)",
                s.images_over_page_cap, s.links_over_page_cap
            )?;
        }
        if s.links_out_of_scope > 0 {
            let note = "off the allowed sites or excluded (scope)";
            row(
                f,
                secs,
                "links not taken",
                s.links_out_of_scope,
                false,
                note,
            )?;
        }
        if s.images_out_of_scope > 0 {
            let note = "images on hosts outside scope.allowed_hosts";
            row(f, secs, "out of scope", s.images_out_of_scope, false, note)?;
        }
        if s.retries > 0 || s.worker_restarts > 0 {
            let note = format!("{} worker restarts", s.worker_restarts);
            row(f, secs, "retries", s.retries, false, &note)?;
        }
        Ok(())
    }

    /// The errors by kind, each with an example URL, and the whole shared crawl's counters.
    fn errors_and_whole(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let s = &self.stats;
        if !s.errors_by_kind.is_empty() {
            writeln!(f, "  errors by kind")?;
            for (kind, n) in &s.errors_by_kind {
                let example = s
                    .error_examples
                    .get(kind)
                    .map(|u| format!("e.g. {u}"))
                    .unwrap_or_default();
                writeln!(f, "    {kind:<22} {n:>5}  {example}")?;
            }
        }
        if let Some(w) = &self.whole_crawl {
            writeln!(f, "  whole shared crawl, all processes:")?;
            let unchanged = match w.pages_unchanged {
                0 => String::new(),
                n => format!(" ({n} more unchanged)"),
            };
            writeln!(
                f,
                "    pages fetched {}{unchanged}, failed {}; images saved {}, duplicates {}, failed {}; {:.1} MB",
                w.pages_fetched,
                w.pages_failed,
                w.images_saved,
                w.duplicates,
                w.images_failed,
                w.bytes_saved as f64 / 1e6
            )?;
        }
        Ok(())
    }
}

impl fmt::Display for CrawlReport {
    /// The human summary printed at the end: a compact table of counts, bytes and rates, the
    /// errors by kind with an example URL each, and where the outputs are.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let s = &self.stats;
        let state = match self.outcome {
            Outcome::Finished => "finished",
            Outcome::Stopped => "stopped before the end (run again to continue)",
        };
        let secs = s.elapsed_secs.max(1e-6);
        writeln!(f, "imgcrawl {state} in {:.1} s", s.elapsed_secs)?;
        writeln!(f, "  {:<16} {:>9} {:>10}", "", "count", "per second")?;
        self.outcomes(f, secs)?;
        self.left_alone(f, secs)?;
        self.errors_and_whole(f)?;
        let out = self.out_dir.display();
        write!(
            f,
            "  output  {out}/ (images), {out}/manifest.jsonl, {out}/errors.jsonl, {out}/skipped.jsonl, {out}/stats.json"
        )
    }
}

/// The process exit status of a command's result (its crawl report, if it crawled), the one
/// place it is decided:
/// - 0: done (URLs skipped on purpose included; with `failures_expected`, failed ones too);
/// - 1: an error during the run (the disk, the network, the actors);
/// - 2: the command could not start as asked (the configuration, the output directory held by
///   another crawl or by another crawl's state, a planted link, Redis credentials);
/// - 3: the crawl finished, and some pages or images failed;
/// - 130: the crawl was stopped (Ctrl-C, SIGTERM).
pub fn exit_status(result: Result<Option<&CrawlReport>, &Error>, failures_expected: bool) -> u8 {
    match result {
        Ok(None) => 0,
        Ok(Some(r)) => match (r.outcome, r.stats.has_failures() && !failures_expected) {
            (Outcome::Stopped, _) => 130,
            (Outcome::Finished, true) => 3,
            (Outcome::Finished, false) => 0,
        },
        Err(e) if e.is_usage() => 2,
        Err(_) => 1,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_shared_crawl_report_carries_the_whole_crawl_in_text_and_json() {
        let mut report = CrawlReport {
            stats: Stats {
                images_saved: 7,
                ..Stats::default()
            },
            whole_crawl: None,
            outcome: Outcome::Finished,
            out_dir: PathBuf::from("out"),
        };
        assert!(!report.to_string().contains("whole shared crawl"));
        assert!(!report.to_json().contains("whole_crawl"));
        report.whole_crawl = Some(WholeCrawl {
            pages_fetched: 4200,
            pages_failed: 1,
            images_saved: 3800,
            duplicates: 200,
            images_failed: 2,
            bytes_saved: 98_700_000,
            pages_unchanged: 0,
        });
        let text = report.to_string();
        assert!(
            text.contains("whole shared crawl, all processes:\n    pages fetched 4200, failed 1; images saved 3800, duplicates 200, failed 2; 98.7 MB"),
            "{text}"
        );
        let json: serde_json::Value = serde_json::from_str(&report.to_json()).unwrap();
        assert_eq!(json["images_saved"], 7);
        assert_eq!(json["whole_crawl"]["images_saved"], 3800);
        assert_eq!(json["whole_crawl"]["bytes_saved"], 98_700_000);
    }
}
