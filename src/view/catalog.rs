//! What the gallery shows, read from a crawl's output directory: its saved images (from the state
//! database, dated like the manifest), its failures and skips (`errors.jsonl`, `skipped.jsonl`),
//! and the filters, pages, duplicate groups and per-host counters made of them. Pure once read:
//! the server holds one [`Catalog`] and reads it again when the state changes.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use serde::Deserialize;

use crate::error::Error;
use crate::output::manifest::RunDates;
use crate::output::{Layout, RecordFile};
use crate::records::{ErrorRow, ManifestRow, SkipRow};
use crate::state::StateDb;

/// One saved image URL as the gallery shows it.
#[derive(Debug, Clone, PartialEq)]
pub struct Entry {
    /// Its number in the gallery (the order images were saved), which its URLs use.
    pub id: usize,
    /// Its manifest row, dated.
    pub row: ManifestRow,
    /// The host of its URL.
    pub host: String,
    /// Whether its bytes arrived in the latest run (first saved, or changed), when there was
    /// more than one run.
    pub new: bool,
}

impl Entry {
    /// The file holding its bytes, relative to the output directory.
    pub fn file(&self) -> &Path {
        self.row.duplicate_of.as_deref().unwrap_or(&self.row.path)
    }
}

/// Everything the gallery shows of one crawl.
#[derive(Debug, Default)]
pub struct Catalog {
    /// Saved image URLs, in the order they were saved.
    pub entries: Vec<Entry>,
    /// Pages and images that failed for good.
    pub errors: Vec<ErrorRow>,
    /// URLs left out on purpose.
    pub skipped: Vec<SkipRow>,
}

impl Catalog {
    /// Reads the crawl in `out_dir` (its state only read, so a crawl may be running there).
    pub fn read(out_dir: &Path) -> Result<Catalog, Error> {
        let layout = Layout::new(out_dir);
        let db_path = layout.state_db();
        if !db_path.exists() {
            return Err(Error::io(
                "no imgcrawl crawl here: cannot find",
                &db_path,
                std::io::ErrorKind::NotFound.into(),
            ));
        }
        let db = StateDb::open_read_only(&db_path)?;
        let err = |e| Error::state("cannot read saved images from", &db_path, e);
        let dates = RunDates::read(&db).map_err(err)?;
        let last_run = db.runs().map_err(err)?.last().map_or(0, |r| r.id);
        let mut entries = Vec::new();
        db.each_saved_row(|saved| {
            let Ok(mut row) = serde_json::from_str::<ManifestRow>(saved.json) else {
                return;
            };
            dates.date(&mut row, saved);
            // On a first crawl everything is new: only later runs mark what they brought.
            let new = last_run > 1
                && (saved.first_run == last_run || saved.changed_run == Some(last_run));
            let host = host_of(&row.url);
            entries.push(Entry {
                id: entries.len(),
                row,
                host,
                new,
            });
        })
        .map_err(err)?;
        Ok(Catalog {
            entries,
            errors: read_lines(&layout.record(RecordFile::Errors)),
            skipped: read_lines(&layout.record(RecordFile::Skipped)),
        })
    }

    /// The entries `filter` selects, in order.
    pub fn select<'a>(&'a self, filter: &'a Filter) -> impl Iterator<Item = &'a Entry> + 'a {
        self.entries.iter().filter(move |e| filter.matches(e))
    }

    /// The groups of image URLs that brought the same bytes (two or more), largest first: the
    /// file and the entries.
    pub fn duplicates(&self) -> Vec<(PathBuf, Vec<&Entry>)> {
        let mut groups: BTreeMap<&Path, Vec<&Entry>> = BTreeMap::new();
        for e in &self.entries {
            groups.entry(e.file()).or_default().push(e);
        }
        let mut out: Vec<(PathBuf, Vec<&Entry>)> = groups
            .into_iter()
            .filter(|(_, v)| v.len() > 1)
            .map(|(p, v)| (p.to_path_buf(), v))
            .collect();
        out.sort_by(|a, b| b.1.len().cmp(&a.1.len()).then_with(|| a.0.cmp(&b.0)));
        out
    }

    /// Per host: images saved (distinct files and duplicates), bytes, failures and skips.
    pub fn hosts(&self) -> BTreeMap<String, HostCounts> {
        let mut out: BTreeMap<String, HostCounts> = BTreeMap::new();
        for e in &self.entries {
            let c = out.entry(e.host.clone()).or_default();
            match e.row.duplicate_of {
                Some(_) => c.duplicates += 1,
                None => {
                    c.images += 1;
                    c.bytes += e.row.bytes;
                }
            }
        }
        for r in &self.errors {
            out.entry(host_of(&r.url)).or_default().failed += 1;
        }
        for r in &self.skipped {
            out.entry(host_of(&r.url)).or_default().skipped += 1;
        }
        out
    }
}

/// The host of the URL `url` (empty when it has none).
fn host_of(url: &str) -> String {
    url::Url::parse(url)
        .ok()
        .and_then(|u| u.host_str().map(str::to_string))
        .unwrap_or_default()
}

/// The counters of one host.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct HostCounts {
    /// Distinct files saved.
    pub images: u64,
    /// URLs whose bytes were already saved.
    pub duplicates: u64,
    /// Bytes of the distinct files.
    pub bytes: u64,
    /// Pages and images failed.
    pub failed: u64,
    /// URLs left out on purpose.
    pub skipped: u64,
}

/// The JSON lines of a record file (a missing file is empty; a line that does not parse is
/// passed over).
fn read_lines<T: for<'de> Deserialize<'de>>(path: &Path) -> Vec<T> {
    std::fs::read_to_string(path)
        .map(|text| {
            text.lines()
                .filter_map(|l| serde_json::from_str(l).ok())
                .collect()
        })
        .unwrap_or_default()
}

/// What the gallery's query string asks for: a search, filters and a page.
#[derive(Debug, Clone, Default, PartialEq, Eq, Deserialize)]
#[serde(default)]
pub struct Filter {
    /// Words that must all appear (case-insensitive) in the name, URL, page or path.
    pub q: String,
    /// Only this host.
    pub host: String,
    /// Only images found on pages whose URL contains this.
    pub page: String,
    /// At least this wide (pixels); 0: any.
    #[serde(deserialize_with = "number")]
    pub min_width: u32,
    /// At least this high (pixels); 0: any.
    #[serde(deserialize_with = "number")]
    pub min_height: u32,
    /// At least this many kilobytes; 0: any.
    #[serde(deserialize_with = "number")]
    pub min_kb: u64,
    /// At most this many kilobytes; 0: any.
    #[serde(deserialize_with = "number")]
    pub max_kb: u64,
    /// Only images whose bytes arrived in the latest run.
    pub new: bool,
    /// The page of results, from 1.
    #[serde(deserialize_with = "number")]
    pub p: usize,
}

/// A number from a query parameter, where an empty field (a form's number input left blank) or
/// text that is not a number means no limit (0), rather than an error page.
fn number<'de, D, T>(d: D) -> Result<T, D::Error>
where
    D: serde::Deserializer<'de>,
    T: std::str::FromStr + Default,
{
    let text = String::deserialize(d)?;
    Ok(text.trim().parse().unwrap_or_default())
}

impl Filter {
    /// Whether `e` passes.
    pub fn matches(&self, e: &Entry) -> bool {
        let r = &e.row;
        let words_found = self.q.split_whitespace().all(|w| {
            let w = w.to_lowercase();
            [&r.name, &r.url, &r.page]
                .iter()
                .any(|f| f.to_lowercase().contains(&w))
                || r.path.to_string_lossy().to_lowercase().contains(&w)
        });
        words_found
            && (self.host.is_empty() || e.host == self.host)
            && (self.page.is_empty() || r.page.contains(&self.page))
            && (self.min_width == 0 || r.width.is_some_and(|w| w >= self.min_width))
            && (self.min_height == 0 || r.height.is_some_and(|h| h >= self.min_height))
            && (self.min_kb == 0 || r.bytes >= self.min_kb * 1024)
            && (self.max_kb == 0 || r.bytes <= self.max_kb * 1024)
            && (!self.new || e.new)
    }

    /// The query string of this filter on page `p` (for links), empty fields left out.
    pub fn query(&self, p: usize) -> String {
        let mut parts: Vec<(&str, String)> = Vec::new();
        let text = [("q", &self.q), ("host", &self.host), ("page", &self.page)];
        for (k, v) in text {
            if !v.is_empty() {
                parts.push((k, v.clone()));
            }
        }
        let numbers = [
            ("min_width", u64::from(self.min_width)),
            ("min_height", u64::from(self.min_height)),
            ("min_kb", self.min_kb),
            ("max_kb", self.max_kb),
        ];
        for (k, v) in numbers {
            if v > 0 {
                parts.push((k, v.to_string()));
            }
        }
        if self.new {
            parts.push(("new", "true".into()));
        }
        if p > 1 {
            parts.push(("p", p.to_string()));
        }
        let enc = |s: &str| {
            percent_encoding::utf8_percent_encode(s, percent_encoding::NON_ALPHANUMERIC).to_string()
        };
        let joined: Vec<String> = parts
            .iter()
            .map(|(k, v)| format!("{k}={}", enc(v)))
            .collect();
        match joined.is_empty() {
            true => String::new(),
            false => format!("?{}", joined.join("&")),
        }
    }
}

/// One page of `total` results, `per` a page: the page shown (the asked one, within range), the
/// number of pages, and the range of results on it.
pub fn page_of(asked: usize, total: usize, per: usize) -> (usize, usize, std::ops::Range<usize>) {
    let pages = total.div_ceil(per).max(1);
    let p = asked.clamp(1, pages);
    let start = (p - 1) * per;
    (p, pages, start..(start + per).min(total))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn entry(id: usize, name: &str, w: u32, kb: u64, new: bool) -> Entry {
        Entry {
            id,
            row: ManifestRow {
                url: format!("http://h.example/img/{name}.png"),
                page: "http://h.example/list/1".into(),
                name: name.into(),
                path: PathBuf::from(format!("h.example/{name}.png")),
                bytes: kb * 1024,
                sha256: "00".into(),
                content_type: "image/png".into(),
                width: Some(w),
                height: Some(w),
                duplicate_of: None,
                duplicate_on: None,
                first_seen: None,
                last_seen: None,
                gone_since: None,
                previous: None,
                changed: None,
            },
            host: "h.example".into(),
            new,
        }
    }

    #[test]
    fn filters_combine_and_their_query_strings_round_trip() {
        let all = [
            entry(0, "Red Cat", 800, 120, false),
            entry(1, "blue cat", 200, 20, true),
            entry(2, "dog", 900, 300, true),
        ];
        let pick = |f: &Filter| -> Vec<usize> {
            all.iter().filter(|e| f.matches(e)).map(|e| e.id).collect()
        };
        let cats = Filter {
            q: "CAT".into(),
            ..Filter::default()
        };
        assert_eq!(pick(&cats), [0, 1]);
        let big_cats = Filter {
            min_width: 500,
            ..cats.clone()
        };
        assert_eq!(pick(&big_cats), [0]);
        let new = Filter {
            new: true,
            max_kb: 100,
            ..Filter::default()
        };
        assert_eq!(pick(&new), [1]);
        let other_host = Filter {
            host: "elsewhere".into(),
            ..Filter::default()
        };
        assert!(pick(&other_host).is_empty());
        // Two words must both appear, anywhere in the name, URL, page or path.
        let two = Filter {
            q: "red list".into(),
            ..Filter::default()
        };
        assert_eq!(pick(&two), [0]);
        let q = big_cats.query(3);
        assert_eq!(q, "?q=CAT&min_width=500&p=3");
        let back: Filter = serde_urlencoded_like(&q);
        assert_eq!(back, Filter { p: 3, ..big_cats });
        // What the form sends with its number fields left blank.
        let blank = "q=CAT&host=&page=&min_width=&min_height=&min_kb=&max_kb=";
        assert_eq!(serde_urlencoded_like(blank), cats);
    }

    /// Reads a query string the way the server does.
    fn serde_urlencoded_like(q: &str) -> Filter {
        actix_web::web::Query::<Filter>::from_query(q.trim_start_matches('?'))
            .unwrap()
            .into_inner()
    }

    #[test]
    fn pages_stay_in_range() {
        assert_eq!(page_of(1, 0, 60), (1, 1, 0..0));
        assert_eq!(page_of(0, 130, 60), (1, 3, 0..60));
        assert_eq!(page_of(3, 130, 60), (3, 3, 120..130));
        assert_eq!(page_of(9, 130, 60), (3, 3, 120..130));
    }

    #[test]
    fn duplicate_groups_gather_every_url_of_the_same_file() {
        let mut a = entry(0, "a", 10, 1, false);
        let mut b = entry(1, "b", 10, 1, false);
        let c = entry(2, "c", 10, 1, false);
        b.row.duplicate_of = Some(a.row.path.clone());
        b.row.path = a.row.path.clone();
        a.host = "h.example".into();
        let catalog = Catalog {
            entries: vec![a, b, c],
            ..Catalog::default()
        };
        let groups = catalog.duplicates();
        assert_eq!(groups.len(), 1);
        assert_eq!(groups[0].0, Path::new("h.example/a.png"));
        let ids: Vec<usize> = groups[0].1.iter().map(|e| e.id).collect();
        assert_eq!(ids, [0, 1]);
        let hosts = catalog.hosts();
        assert_eq!(hosts["h.example"].images, 2);
        assert_eq!(hosts["h.example"].duplicates, 1);
    }
}
