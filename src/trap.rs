//! The trap rule (`scope.trap_pages`): ends chains of pages that bring nothing new (a calendar that
//! links one more day for ever, list pages numbered past the last real one, paths that grow on
//! every visit, links that differ only by a counter) without cutting deep galleries short. Pure: the
//! Supervisor asks it about each new link and tells it what each fetched page yielded.
//!
//! The rule, judged from what pages *yield* (a page yields when it brings at least one new image;
//! an image URL counts as new only if it differs from those seen before by more than a session
//! token, so a site that puts a session id in every path, images included, does not yield
//! "new" images on every visit):
//! - every page carries its **barren run**: how many pages in a row, along the links that led to
//!   it, yielded nothing. Start pages have 0; a link found on a page that yielded gets 0, a link
//!   found on a page that did not gets that page's run + 1;
//! - a link whose run would pass the limit is skipped: a chain of `limit` barren pages ends there;
//! - pages are also counted by **URL shape** (host and path with every run of digits made `0`, and
//!   the query's parameter names): a fetched page that came through a barren page (run >= 1) and
//!   yields nothing spends one from its shape's budget of `limit`; a page of that shape that yields
//!   refills it. Once a shape's budget is spent, pages of that shape reached through two or more
//!   barren pages in a row are skipped, so a trap that fans out (a calendar linking every day of
//!   a month, each linking more) ends as well. Pages one step from a page that yielded are left
//!   alone by this budget (an index of 500 profile pages without pictures, each leading to a
//!   gallery, is crawled whole); the run limit still holds for them.
//!
//! A gallery whose list pages each bring new images never spends anything, however long its chain
//! of "next" links; detail pages reached from list pages that yield have run 0 and are never
//! skipped.

use std::collections::{HashMap, HashSet};
use std::hash::BuildHasher;

use url::Url;

/// Whether a path segment or a parameter value looks like a session or request token rather than a
/// name: at least 12 characters, only letters, digits and `-_()!~`, at least two of them digits
/// and two letters, and no dot (so file names such as `a1b2c3d4e5f6.jpg` are names).
pub fn is_token(s: &str) -> bool {
    s.len() >= 12
        && s.chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '(' | ')' | '!' | '~'))
        && s.chars().filter(char::is_ascii_digit).count() >= 2
        && s.chars().filter(char::is_ascii_alphabetic).count() >= 2
}

/// The URL shape used by the trap rule: host, port when not the default, path with session-like
/// tokens (see [`is_token`]) replaced by `*` and every run of ASCII digits by `0`, and the sorted
/// query parameters folded the same way. `/day/2026-12-04` and `/day/2027-01-01` have one shape,
/// and so do `/s/A1B2C3D4E5F6/list` and `/s/Z9Y8X7W6V5U4/list`.
pub fn shape(url: &Url) -> String {
    let mut s = origin(url);
    let segments: Vec<String> = url
        .path()
        .split('/')
        .map(|seg| {
            let mut folded = String::new();
            if is_token(seg) {
                folded.push('*');
            } else {
                push_digits_folded(&mut folded, seg);
            }
            folded
        })
        .collect();
    s.push_str(&segments.join("/"));
    if let Some(query) = url.query() {
        let mut pairs: Vec<String> = query
            .split('&')
            .filter(|p| !p.is_empty())
            .map(|p| {
                let mut folded = String::new();
                match p.split_once('=') {
                    Some((name, value)) if is_token(value) => {
                        push_digits_folded(&mut folded, name);
                        folded.push_str("=*");
                    }
                    _ => push_digits_folded(&mut folded, p),
                }
                folded
            })
            .collect();
        pairs.sort();
        pairs.dedup();
        s.push('?');
        s.push_str(&pairs.join("&"));
    }
    // A shape is a label in records: keep it readable however long the URL.
    if s.len() > 200 {
        let mut end = 200;
        while !s.is_char_boundary(end) {
            end -= 1;
        }
        s.truncate(end);
        s.push('…');
    }
    s
}

/// `host` or `host:port` (when not the scheme's default) of `url`, with room for the rest.
fn origin(url: &Url) -> String {
    let mut s = String::with_capacity(url.as_str().len());
    s.push_str(url.host_str().unwrap_or(""));
    if let Some(port) = url.port() {
        s.push(':');
        s.push_str(&port.to_string());
    }
    s
}

fn push_digits_folded(out: &mut String, s: &str) {
    let mut in_digits = false;
    for c in s.chars() {
        if c.is_ascii_digit() {
            if !in_digits {
                out.push('0');
            }
            in_digits = true;
        } else {
            out.push(c);
            in_digits = false;
        }
    }
}

/// What makes an image URL new for the trap rule: the URL with session-like tokens (see
/// [`is_token`]) in its directories and query values replaced by `*`; its file name and numbers
/// are kept, so every picture of a gallery is new.
pub fn novelty_key(url: &Url) -> String {
    let mut s = origin(url);
    let path = url.path();
    let (dirs, file) = path.rsplit_once('/').unwrap_or(("", path));
    for seg in dirs.split('/') {
        s.push_str(if is_token(seg) { "*" } else { seg });
        s.push('/');
    }
    s.push_str(file);
    if let Some(query) = url.query() {
        s.push('?');
        for pair in query.split('&') {
            match pair.split_once('=') {
                Some((name, value)) if is_token(value) => {
                    s.push_str(name);
                    s.push_str("=*");
                }
                _ => s.push_str(pair),
            }
            s.push('&');
        }
    }
    s
}

/// The trap rule's state for one crawl; see the module documentation.
#[derive(Debug, Clone)]
pub struct TrapRule {
    /// Barren pages allowed in a row, and per shape; 0 turns the rule off.
    limit: u32,
    /// What each shape has spent of its budget: barren pages of that shape reached through
    /// barren pages since one of the shape last yielded (only shapes that spent something).
    spent: HashMap<String, u32>,
    /// Fingerprints of the novelty keys of the images seen (see [`novelty_key`]).
    images: HashSet<u64>,
    /// The fingerprints' key.
    keys: std::collections::hash_map::RandomState,
}

/// Why the trap rule skips a URL.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Trapped {
    /// The URL's shape.
    pub shape: String,
    /// What the rule saw, for people.
    pub detail: String,
}

impl Trapped {
    /// The detail of the skip's record: the shape and what the rule saw.
    pub fn record_detail(&self) -> String {
        format!("shape {}: {}", self.shape, self.detail)
    }
}

impl TrapRule {
    /// The rule with `limit` barren pages (`scope.trap_pages`); 0 turns it off.
    pub fn new(limit: u32) -> Self {
        TrapRule {
            limit,
            spent: HashMap::new(),
            images: HashSet::new(),
            keys: Default::default(),
        }
    }

    /// Notes an image a page brought; answers whether it is new for the rule (it differs from
    /// every image seen before by more than a session token). Always new when the rule is off.
    pub fn note_image(&mut self, url: &Url) -> bool {
        if self.limit == 0 {
            return true;
        }
        self.images.insert(self.keys.hash_one(novelty_key(url)))
    }

    /// Whether the rule is on.
    pub fn enabled(&self) -> bool {
        self.limit > 0
    }

    /// The barren run of links found on a page whose own run is `page_run`, given whether it
    /// yielded a new image.
    pub fn child_run(page_run: u32, yielded: bool) -> u32 {
        if yielded {
            0
        } else {
            page_run.saturating_add(1)
        }
    }

    /// Whether a new page `url` with barren run `run` may be crawled; `Err` says why not.
    pub fn check(&mut self, url: &Url, run: u32) -> Result<(), Trapped> {
        if self.limit == 0 || run == 0 {
            return Ok(());
        }
        let too_long = run > self.limit;
        let shape = shape(url);
        let spent = self.spent.get(&shape).copied().unwrap_or(0);
        let detail = if too_long {
            format!("{} pages in a row brought no new image", run - 1)
        } else if run >= 2 && spent >= self.limit {
            format!("{spent} pages of this shape brought no new image")
        } else {
            return Ok(());
        };
        Err(Trapped { shape, detail })
    }

    /// Records what a fetched page (barren run `run`) yielded.
    pub fn page_done(&mut self, url: &Url, run: u32, yielded: bool) {
        if self.limit == 0 {
            return;
        }
        if yielded {
            if !self.spent.is_empty() {
                self.spent.remove(&shape(url));
            }
        } else if run > 0 {
            *self.spent.entry(shape(url)).or_default() += 1;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn url(s: &str) -> Url {
        Url::parse(s).unwrap()
    }

    #[test]
    fn shapes_fold_digits_and_sort_query_names() {
        assert_eq!(shape(&url("http://h/day/2026-12-04")), "h/day/0-0-0");
        assert_eq!(
            shape(&url("http://h:8080/list?page=13&sort=new")),
            shape(&url("http://h:8080/list?sort=new&page=2"))
        );
        assert_ne!(shape(&url("http://h/a/b")), shape(&url("http://h/a/b/a")));
        assert!(shape(&url(&format!("http://h/{}", "x".repeat(500)))).len() < 210);
    }

    /// Crawls a chain of pages `0, 1, 2, ...` where page `n` yields when `yields(n)`, and answers
    /// how many were fetched before the rule ended it (or `cap`).
    fn chain(rule: &mut TrapRule, cap: u32, yields: impl Fn(u32) -> bool) -> u32 {
        let mut run = 0;
        for n in 0..cap {
            let u = url(&format!("http://h/day/{n}"));
            if rule.check(&u, run).is_err() {
                return n;
            }
            rule.page_done(&u, run, yields(n));
            run = TrapRule::child_run(run, yields(n));
        }
        cap
    }

    #[test]
    fn a_barren_chain_ends_and_a_yielding_one_does_not() {
        assert_eq!(chain(&mut TrapRule::new(30), 10_000, |_| false), 31);
        assert_eq!(chain(&mut TrapRule::new(30), 5_000, |_| true), 5_000);
        // Page 13 of 12: twelve real pages, then a run of empty ones.
        assert_eq!(chain(&mut TrapRule::new(30), 10_000, |n| n < 12), 12 + 31);
        // Off.
        assert_eq!(chain(&mut TrapRule::new(0), 1_000, |_| false), 1_000);
        let mut rule = TrapRule::new(30);
        chain(&mut rule, 10_000, |_| false);
        let trapped = rule.check(&url("http://h/day/31"), 31).unwrap_err();
        assert_eq!(trapped.shape, "h/day/0");
        assert_eq!(
            trapped.record_detail(),
            "shape h/day/0: 30 pages in a row brought no new image"
        );
    }

    #[test]
    fn a_fanning_trap_is_ended_by_its_shape_budget() {
        let mut rule = TrapRule::new(5);
        // Barren pages link 100 new pages of one shape (run 2 each); they are fetched one by one.
        let mut fetched = 0;
        for n in 0..100 {
            let u = url(&format!("http://h/cal?d={n}"));
            if rule.check(&u, 2).is_ok() {
                fetched += 1;
                rule.page_done(&u, 2, false);
            }
        }
        assert_eq!(fetched, 5);
        // One step from a page that yielded, the shape's budget does not apply.
        assert!(rule.check(&url("http://h/cal?d=200"), 1).is_ok());
        // A page of that shape that yields refills the budget.
        rule.page_done(&url("http://h/cal?d=500"), 0, true);
        assert!(rule.check(&url("http://h/cal?d=501"), 2).is_ok());
        // Pages reached from pages that yield are never skipped.
        for n in 0..100 {
            rule.page_done(&url(&format!("http://h/photo/{n}")), 0, false);
        }
        assert!(rule.check(&url("http://h/photo/1000"), 0).is_ok());
    }

    #[test]
    fn session_tokens_are_not_novelty() {
        assert!(is_token("A1B2C3D4E5F6G7"));
        assert!(is_token("(S(lit3py55t21z5v55vlm25s55))"));
        assert!(!is_token("2026-12-04"));
        assert!(!is_token("holiday-photos"));
        assert!(!is_token("a1b2c3d4e5f6.jpg"));
        let mut rule = TrapRule::new(30);
        assert!(rule.note_image(&url("http://h/s/A1B2C3D4E5F6G7/img/1.jpg")));
        assert!(!rule.note_image(&url("http://h/s/Z9Y8X7W6V5U4T3/img/1.jpg")));
        assert!(rule.note_image(&url("http://h/s/Z9Y8X7W6V5U4T3/img/2.jpg")));
        assert!(!rule.note_image(&url("http://h/s/Q1W2E3R4T5Y6U7/img/2.jpg")));
        assert!(rule.note_image(&url("http://h/i.jpg?sid=A1B2C3D4E5F6G7&n=1")));
        assert!(!rule.note_image(&url("http://h/i.jpg?sid=Z9Y8X7W6V5U4T3&n=1")));
        assert_eq!(
            shape(&url("http://h/s/A1B2C3D4E5F6G7/list/2")),
            shape(&url("http://h/s/Z9Y8X7W6V5U4T3/list/3"))
        );
    }
}
