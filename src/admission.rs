//! Admission: which discovered URLs become jobs. The crawl and `imgcrawl check` ask the same
//! [`Admission`], so a dry run can never disagree with a crawl about a URL. Pure: no I/O, no
//! actor; what it needs to know (robots.txt rules, what a page yielded) is told to it.
//!
//! A URL is admitted once, in its canonical form. Everything else is *left* with a [`Reason`]:
//! some reasons are recorded in `skipped.jsonl`, some only counted, some are nothing to tell.

use std::sync::Arc;

use url::Url;

use crate::error::{Failure, FailureKind};
use crate::job::host_key;
use crate::robots::{RobotsBook, Rules};
use crate::seen::SeenSet;
use crate::settings::Settings;
use crate::trap::TrapRule;

/// Why a URL is not admitted.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Reason {
    /// Longer than `scope.max_url_length` (a trap or a hostile page).
    TooLong,
    /// Deeper than `scope.max_depth`.
    Depth,
    /// Its site is not in `scope.allowed_hosts` (or it is not http/https).
    OffSite,
    /// A link matched by `scope.exclude`.
    ScopeExclude,
    /// A link matched by no `scope.include` pattern.
    ScopeInclude,
    /// `scope.max_pages` pages were admitted already.
    Budget,
    /// Admitted before.
    Seen,
    /// An image an earlier run saved.
    AlreadySaved,
    /// An image left out by a `[filter]` rule (the key: `filter.exclude`, `filter.min_width`...).
    Filter(&'static str),
    /// The trap rule: too many pages in a row, or of one shape, brought no new image.
    Trap,
    /// robots.txt disallows it.
    Robots,
    /// A redirect that leaves the allowed sites.
    RedirectOffSite,
}

impl Reason {
    /// The reason as `skipped.jsonl` spells it, for the reasons recorded there (URLs left out on
    /// purpose, which a user may want to look at); `None` for those only counted or not told.
    pub fn recorded(self) -> Option<&'static str> {
        match self {
            Reason::Robots => Some("robots"),
            Reason::Trap => Some("trap"),
            Reason::RedirectOffSite => Some("out of scope"),
            Reason::Filter(key) => Some(key),
            _ => None,
        }
    }

    /// Whether a link left for this reason counts as out of scope (`links_out_of_scope`).
    pub fn out_of_scope(self) -> bool {
        matches!(
            self,
            Reason::OffSite | Reason::ScopeExclude | Reason::ScopeInclude
        )
    }
}

/// A URL that is not admitted, and why.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Left {
    /// The URL (canonical when it has a canonical form).
    pub url: Url,
    /// Why.
    pub reason: Reason,
    /// What the rule saw, for people.
    pub detail: String,
    /// The trap rule's URL shape (for [`Reason::Trap`]).
    pub shape: Option<String>,
}

impl Left {
    fn new(url: Url, reason: Reason, detail: impl Into<String>) -> Self {
        Left {
            url,
            reason,
            detail: detail.into(),
            shape: None,
        }
    }
}

/// What becomes of a discovered URL.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Verdict {
    /// A new job, in canonical form; seen from now on.
    Admit(Url),
    /// Not a job.
    Leave(Left),
}

/// What robots.txt says about a waiting job.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum RobotsVerdict {
    /// It may be requested (or robots.txt is not obeyed, or its rules are not known yet).
    Allowed,
    /// Disallowed: left out on purpose.
    Disallowed(Left),
    /// robots.txt could not be had (the host is down): a real failure of the job.
    Unavailable(Failure),
}

/// The admission state of one crawl (or one `imgcrawl check`): the seen sets, the page budget,
/// the trap rule and the robots.txt rules learnt so far.
#[derive(Debug)]
pub struct Admission {
    /// The scope, filter and HTTP rules.
    settings: Arc<Settings>,
    /// Pages admitted (canonical URLs).
    pages: SeenSet,
    /// Images admitted, other than those saved before.
    images: SeenSet,
    /// Images an earlier run saved.
    saved: SeenSet,
    /// Pages admitted so far, for `scope.max_pages` (`None` when another keeps the budget).
    admitted: Option<u64>,
    /// The trap rule (`scope.trap_pages`).
    trap: TrapRule,
    /// robots.txt rules per host; `None` when `http.obey_robots` is off.
    robots: Option<RobotsBook>,
}

impl Admission {
    /// A fresh admission for `settings`; `keeps_budget` is false when the page budget is kept
    /// elsewhere (a shared crawl's is kept by Redis for all processes).
    pub fn new(settings: Arc<Settings>, keeps_budget: bool) -> Self {
        Admission {
            pages: SeenSet::default(),
            images: SeenSet::default(),
            saved: SeenSet::default(),
            admitted: keeps_budget.then_some(0),
            trap: TrapRule::new(settings.scope.trap_pages),
            robots: settings.http.obey_robots.then(RobotsBook::default),
            settings,
        }
    }

    /// Carries on from an earlier run: the URLs it admitted count as seen (and towards the page
    /// budget), the images it saved as saved.
    pub fn resume(&mut self, pages: SeenSet, images: SeenSet, saved: SeenSet) {
        if let Some(n) = &mut self.admitted {
            *n += pages.len() as u64;
        }
        // Saved images stay out of the seen set, so that meeting one again is told apart.
        self.images.merge(images.without(&saved));
        self.pages.merge(pages);
        self.saved.merge(saved);
    }

    /// Images an earlier run saved.
    pub fn saved(&self) -> &SeenSet {
        &self.saved
    }

    /// The canonical form of `url`, or why it has none.
    fn canonical(&self, url: Url) -> Result<Url, Box<Left>> {
        let (len, max) = (url.as_str().len(), self.settings.scope.max_url_length);
        // Stripping parameters never lengthens a URL: only one over the limit may be refused, and
        // only then is it kept for the record.
        let keep = (len > max).then(|| url.clone());
        self.settings.scope.canonical(url).ok_or_else(|| {
            Box::new(Left::new(
                keep.expect("only a URL over scope.max_url_length is refused"),
                Reason::TooLong,
                format!("URL of {len} bytes; scope.max_url_length is {max}"),
            ))
        })
    }

    /// A start URL or a redirect target (already held to the redirect rules): a page job unless
    /// it was seen, the budget is spent or the trap rule stops its barren run.
    pub fn page(&mut self, url: Url, barren: u32) -> Verdict {
        self.admit_page(url, barren, true)
    }

    /// [`page`](Self::page), counted against `scope.max_pages` or not.
    fn admit_page(&mut self, url: Url, barren: u32, budget: bool) -> Verdict {
        let url = match self.canonical(url) {
            Ok(url) => url,
            Err(left) => return Verdict::Leave(*left),
        };
        let max = self.settings.scope.max_pages.filter(|_| budget);
        if let (Some(max), Some(n)) = (max, self.admitted) {
            if n >= max {
                return Verdict::Leave(Left::new(url, Reason::Budget, format!("{max} pages")));
            }
        }
        if self.pages.contains(&url) {
            return Verdict::Leave(Left::new(url, Reason::Seen, ""));
        }
        if let Err(trapped) = self.trap.check(&url, barren) {
            // Not marked as seen: a page that yields may still lead here.
            let mut left = Left::new(url, Reason::Trap, trapped.record_detail());
            left.shape = Some(trapped.shape);
            return Verdict::Leave(left);
        }
        self.pages.insert(&url);
        if let Some(n) = self.admitted.as_mut().filter(|_| budget) {
            *n += 1;
        }
        Verdict::Admit(url)
    }

    /// A sitemap (listed by robots.txt or an index, or guessed at `/sitemap.xml`): `None` when
    /// sitemaps are off or it is off the allowed sites (ignored, not recorded), else admitted like
    /// a start page, but outside the `scope.max_pages` budget (the pages it lists count).
    pub fn sitemap(&mut self, url: Url) -> Option<Verdict> {
        let scope = &self.settings.scope;
        (scope.sitemaps && scope.host_allowed(&url)).then(|| self.admit_page(url, 0, false))
    }

    /// A link found on a page: followed at `depth` (the page's depth plus one) with barren run
    /// `barren` when the scope rules (depth, sites, `scope.include`/`exclude`) allow it and
    /// [`page`](Self::page) admits it.
    pub fn link(&mut self, url: Url, depth: u32, barren: u32) -> Verdict {
        let scope = &self.settings.scope;
        if let Some(max) = scope.max_depth.filter(|max| depth > *max) {
            return Verdict::Leave(Left::new(
                url,
                Reason::Depth,
                format!("scope.max_depth is {max}"),
            ));
        }
        if let Some(left) = self.follow_rule(&url) {
            return Verdict::Leave(left);
        }
        self.page(url, barren)
    }

    /// The scope rule a link breaks, if any (matched on the link as found).
    fn follow_rule(&self, url: &Url) -> Option<Left> {
        let scope = &self.settings.scope;
        let s = url.as_str();
        let (reason, detail) = if !scope.host_allowed(url) {
            let host = url.host_str().unwrap_or("?");
            (
                Reason::OffSite,
                format!("{host} is not in scope.allowed_hosts"),
            )
        } else if !scope.include.is_empty() && !scope.include.iter().any(|r| r.is_match(s)) {
            (
                Reason::ScopeInclude,
                "matches no scope.include pattern".into(),
            )
        } else if let Some(r) = scope.exclude.iter().find(|r| r.is_match(s)) {
            (Reason::ScopeExclude, format!("scope.exclude `{r}`"))
        } else {
            return None;
        };
        Some(Left::new(url.clone(), reason, detail))
    }

    /// An image found on a page: an image job unless it is off the allowed sites, was seen or
    /// saved before, or `filter.exclude` leaves it out. Off-site images are not remembered
    /// (other sites' URLs must not grow the crawl's memory).
    pub fn image(&mut self, url: Url) -> Verdict {
        let url = match self.canonical(url) {
            Ok(url) => url,
            Err(left) => return Verdict::Leave(*left),
        };
        if !self.settings.scope.host_allowed(&url) {
            let host = url.host_str().unwrap_or("?").to_string();
            let detail = format!("{host} is not in scope.allowed_hosts");
            return Verdict::Leave(Left::new(url, Reason::OffSite, detail));
        }
        if !self.images.insert(&url) {
            return Verdict::Leave(Left::new(url, Reason::Seen, ""));
        }
        if self.saved.contains(&url) {
            return Verdict::Leave(Left::new(url, Reason::AlreadySaved, ""));
        }
        if let Some(pattern) = self.settings.filter.excluded(&url) {
            let detail = format!("matches {pattern}");
            return Verdict::Leave(Left::new(url, Reason::Filter("filter.exclude"), detail));
        }
        Verdict::Admit(url)
    }

    /// Notes an image a page brought (as found) for the trap rule; answers whether it is new to
    /// the rule. Always true when the rule is off.
    pub fn note_yield(&mut self, url: &Url) -> bool {
        self.trap.note_image(url)
    }

    /// Whether the trap rule looks at what pages yield.
    pub fn counts_yield(&self) -> bool {
        self.trap.enabled()
    }

    /// A page with barren run `barren` was parsed and `yielded` (brought a new image) or not;
    /// answers the barren run of its links.
    pub fn page_done(&mut self, page: &Url, barren: u32, yielded: bool) -> u32 {
        self.trap.page_done(page, barren, yielded);
        TrapRule::child_run(barren, yielded)
    }

    /// Whether the trap rule still lets a waiting page be fetched (its shape's budget may have
    /// been spent since it was admitted): `None` if so, else why not.
    pub fn trapped(&mut self, url: &Url, barren: u32) -> Option<Left> {
        let trapped = self.trap.check(url, barren).err()?;
        Some(Left {
            url: url.clone(),
            reason: Reason::Trap,
            detail: trapped.record_detail(),
            shape: Some(trapped.shape),
        })
    }

    /// Checks one redirect hop from the chain `from` (the URLs followed so far, ending with the
    /// one that redirected) to `to`: the target in canonical form, or the failure that ends the
    /// chain (a URL over `scope.max_url_length`, a loop, more than `http.max_redirects` hops, a
    /// target off the allowed sites). The target is not held to `scope.include`/`exclude`,
    /// which are about which links to follow, not where a followed URL may lead.
    pub fn redirect(&self, from: &[Url], to: Url) -> Result<Url, Failure> {
        let settings = &self.settings;
        let to = settings.scope.canonical(to).ok_or_else(|| {
            Failure::new(
                FailureKind::BadUrl,
                "redirect to a URL over scope.max_url_length",
            )
        })?;
        if from.contains(&to) {
            let detail = format!("back to {to}");
            return Err(Failure::new(FailureKind::RedirectLoop, detail));
        }
        let max = settings.http.max_redirects;
        if from.len() > max as usize {
            let detail = format!("more than {max} redirects");
            return Err(Failure::new(FailureKind::TooManyRedirects, detail));
        }
        if !settings.scope.host_allowed(&to) {
            let detail = format!("redirect to {to}");
            return Err(Failure::new(FailureKind::OutOfScope, detail));
        }
        Ok(to)
    }

    /// The first URL of a host: answers the politeness key of the host when its robots.txt must
    /// be fetched first (robots.txt is obeyed and nothing is known of the host yet).
    pub fn new_host(&mut self, url: &Url) -> Option<String> {
        let book = self.robots.as_mut()?;
        let host = host_key(url);
        book.begin(&host).then_some(host)
    }

    /// The robots.txt rules of `host` are known.
    pub fn learn_robots(&mut self, host: &str, rules: Rules) {
        if let Some(book) = &mut self.robots {
            book.learn(host, rules);
        }
    }

    /// What robots.txt says about requesting `url`.
    pub fn robots(&self, url: &Url) -> RobotsVerdict {
        let rules = self.robots.as_ref().and_then(|b| b.rules(&host_key(url)));
        match rules.map(|r| r.check(url)) {
            None | Some(Ok(())) => RobotsVerdict::Allowed,
            Some(Err(f)) if f.kind == FailureKind::Robots => {
                RobotsVerdict::Disallowed(Left::new(url.clone(), Reason::Robots, f.detail))
            }
            Some(Err(f)) => RobotsVerdict::Unavailable(f),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::settings::RawSettings;

    fn url(s: &str) -> Url {
        Url::parse(s).unwrap()
    }

    fn admission(edit: impl FnOnce(&mut RawSettings)) -> Admission {
        let mut raw = RawSettings {
            start_urls: vec!["http://site.example/".into()],
            ..Default::default()
        };
        edit(&mut raw);
        Admission::new(Arc::new(raw.validate().unwrap()), true)
    }

    fn reason(v: Verdict) -> Reason {
        match v {
            Verdict::Leave(left) => left.reason,
            Verdict::Admit(u) => panic!("{u} was admitted"),
        }
    }

    #[test]
    fn sitemaps_are_pages_of_the_allowed_sites_outside_the_page_budget() {
        let mut a = admission(|r| r.scope.max_pages = Some(1));
        assert_eq!(
            a.sitemap(url("http://site.example/sitemap.xml")),
            Some(Verdict::Admit(url("http://site.example/sitemap.xml")))
        );
        assert_eq!(a.sitemap(url("http://elsewhere.example/sitemap.xml")), None);
        assert_eq!(
            a.link(url("http://site.example/listed"), 1, 0),
            Verdict::Admit(url("http://site.example/listed")),
            "the sitemap did not use up the budget of one page"
        );
        assert_eq!(
            reason(a.link(url("http://site.example/more"), 1, 0)),
            Reason::Budget
        );
        assert_eq!(
            reason(a.sitemap(url("http://site.example/sitemap.xml")).unwrap()),
            Reason::Seen
        );
        let mut off = admission(|r| r.scope.sitemaps = false);
        assert_eq!(off.sitemap(url("http://site.example/sitemap.xml")), None);
    }

    #[test]
    fn links_are_admitted_once_in_canonical_form() {
        let mut a = admission(|r| r.scope.strip_query = vec!["sid".into()]);
        assert_eq!(
            a.link(url("http://site.example/a?sid=1"), 1, 0),
            Verdict::Admit(url("http://site.example/a"))
        );
        assert_eq!(
            reason(a.link(url("http://site.example/a?sid=2"), 1, 0)),
            Reason::Seen
        );
    }

    #[test]
    fn links_are_held_to_depth_sites_include_and_exclude() {
        let mut a = admission(|r| {
            r.scope.max_depth = Some(2);
            r.scope.include = vec!["/gallery/".into()];
            r.scope.exclude = vec!["/gallery/private/".into()];
        });
        let r = |a: &mut Admission, u: &str, depth| reason(a.link(url(u), depth, 0));
        assert_eq!(r(&mut a, "http://site.example/gallery/3", 3), Reason::Depth);
        assert_eq!(
            r(&mut a, "http://other.example/gallery/", 1),
            Reason::OffSite
        );
        assert_eq!(
            r(&mut a, "http://site.example/about", 1),
            Reason::ScopeInclude
        );
        assert_eq!(
            r(&mut a, "http://site.example/gallery/private/1", 1),
            Reason::ScopeExclude
        );
        assert!(matches!(
            a.link(url("http://site.example/gallery/2"), 2, 0),
            Verdict::Admit(_)
        ));
        assert!(Reason::ScopeExclude.out_of_scope() && Reason::ScopeExclude.recorded().is_none());
    }

    #[test]
    fn the_page_budget_counts_resumed_pages_and_can_be_kept_elsewhere() {
        let mut a = admission(|r| r.scope.max_pages = Some(2));
        let mut earlier = SeenSet::default();
        earlier.insert(&url("http://site.example/old"));
        a.resume(earlier, SeenSet::default(), SeenSet::default());
        assert!(matches!(
            a.page(url("http://site.example/1"), 0),
            Verdict::Admit(_)
        ));
        assert_eq!(
            reason(a.page(url("http://site.example/2"), 0)),
            Reason::Budget
        );

        let mut settings = RawSettings {
            start_urls: vec!["http://site.example/".into()],
            ..Default::default()
        };
        settings.scope.max_pages = Some(1);
        let mut shared = Admission::new(Arc::new(settings.validate().unwrap()), false);
        for n in 0..3 {
            let u = url(&format!("http://site.example/{n}"));
            assert!(matches!(shared.page(u, 0), Verdict::Admit(_)));
        }
    }

    #[test]
    fn images_off_site_saved_or_filtered_are_left_with_their_reason() {
        let mut a = admission(|r| r.filter.exclude = vec!["/thumbs/".into()]);
        let mut saved = SeenSet::default();
        saved.insert(&url("http://site.example/old.jpg"));
        a.resume(SeenSet::default(), SeenSet::default(), saved);
        let mut r = |u: &str| reason(a.image(url(u)));
        assert_eq!(r("http://cdn.example/a.jpg"), Reason::OffSite);
        assert_eq!(r("http://site.example/old.jpg"), Reason::AlreadySaved);
        assert_eq!(
            r("http://site.example/thumbs/a.jpg"),
            Reason::Filter("filter.exclude")
        );
        // Each is told once: met again, it is only seen.
        assert_eq!(r("http://site.example/thumbs/a.jpg"), Reason::Seen);
        assert_eq!(
            Reason::Filter("filter.exclude").recorded(),
            Some("filter.exclude")
        );
        // Off-site URLs are not remembered.
        assert_eq!(r("http://cdn.example/a.jpg"), Reason::OffSite);
    }

    #[test]
    fn the_trap_rule_leaves_long_barren_runs_without_marking_them_seen() {
        let mut a = admission(|r| r.scope.trap_pages = 3);
        let deep = url("http://site.example/day/5");
        let left = a.page(deep.clone(), 4);
        let Verdict::Leave(left) = left else {
            panic!("a run of 4 passed a limit of 3")
        };
        assert_eq!(
            (left.reason, left.shape.as_deref()),
            (Reason::Trap, Some("site.example/day/0"))
        );
        // Reached again through a page that yields, it is admitted.
        assert_eq!(a.page(deep.clone(), 0), Verdict::Admit(deep));
        assert_eq!(a.page_done(&url("http://site.example/x"), 2, false), 3);
        assert_eq!(a.page_done(&url("http://site.example/x"), 2, true), 0);
    }

    #[test]
    fn redirect_hops_are_judged_by_scope_loops_and_length_not_by_link_filters() {
        let a = admission(|r| {
            r.scope.exclude = vec!["/old/".into()];
            r.http.max_redirects = 2;
        });
        let start = url("http://site.example/a");
        let from = std::slice::from_ref(&start);
        // Excluded as a link, followed as a redirect target (session ids stripped on the way).
        assert_eq!(
            a.redirect(from, url("http://site.example/old/b?sid=1")),
            Ok(url("http://site.example/old/b"))
        );
        let kind = |r: Result<Url, Failure>| r.unwrap_err().kind;
        assert_eq!(
            kind(a.redirect(from, start.clone())),
            FailureKind::RedirectLoop
        );
        assert_eq!(
            kind(a.redirect(from, url("http://other.example/"))),
            FailureKind::OutOfScope
        );
        let chain = [
            url("http://site.example/1"),
            url("http://site.example/2"),
            start,
        ];
        assert_eq!(
            kind(a.redirect(&chain, url("http://site.example/3"))),
            FailureKind::TooManyRedirects
        );
    }

    #[test]
    fn robots_rules_allow_disallow_or_fail_a_host() {
        let mut a = admission(|_| {});
        let page = url("http://site.example/private/1");
        assert_eq!(a.new_host(&page).as_deref(), Some("site.example:80"));
        assert_eq!(a.new_host(&page), None, "one fetch per host");
        // Unknown rules do not hold a job back here; the host is held until they are known.
        assert_eq!(a.robots(&page), RobotsVerdict::Allowed);
        let rules = Rules::parse(
            "imgcrawl",
            b"User-agent: *\nDisallow: /private/\n",
            "site.example",
        );
        a.learn_robots("site.example:80", rules);
        assert!(
            matches!(a.robots(&page), RobotsVerdict::Disallowed(l) if l.reason == Reason::Robots)
        );
        assert_eq!(
            a.robots(&url("http://site.example/ok")),
            RobotsVerdict::Allowed
        );
        let down = Failure::new(FailureKind::Timeout, "no answer");
        a.learn_robots("site.example:80", Rules::after_failure(&down));
        assert!(matches!(a.robots(&page), RobotsVerdict::Unavailable(_)));

        let off = admission(|r| r.http.obey_robots = false).new_host(&page);
        assert_eq!(off, None);
    }
}
