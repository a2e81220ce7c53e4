//! robots.txt per host: what a fetch of it means (RFC 9309), parsed with the `texting_robots`
//! crate, and the book of hosts whose rules are known or being fetched. Pure: the Supervisor asks a
//! PageFetcher to download the file and feeds the outcome in here.

use std::collections::HashMap;
use std::time::Duration;

use texting_robots::Robot;
use url::{Position, Url};

use crate::error::{Failure, FailureKind};

/// Bytes of a robots.txt that are parsed; the standard asks for at least 500 KiB.
pub const MAX_ROBOTS_BYTES: usize = 512 * 1024;

/// Redirects followed when fetching robots.txt (the standard asks for at least five).
pub const MAX_ROBOTS_REDIRECTS: usize = 5;

/// The product token robots.txt groups are matched against: the user agent up to its first `/`,
/// space or `(` (`imgcrawl/0.1.0` gives `imgcrawl`).
pub fn agent_token(user_agent: &str) -> String {
    let token: String = user_agent
        .trim()
        .chars()
        .take_while(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '_'))
        .collect();
    if token.is_empty() {
        "*".to_string()
    } else {
        token
    }
}

/// The robots.txt URL of the host serving `url` (same scheme, host and port).
pub fn robots_url(url: &Url) -> Url {
    let mut r = url.clone();
    r.set_path("/robots.txt");
    r.set_query(None);
    r.set_fragment(None);
    let _ = r.set_username("");
    let _ = r.set_password(None);
    r
}

/// The rules for one host.
#[derive(Debug)]
pub enum Rules {
    /// No robots.txt (4xx) or nothing in it for us: everything is allowed.
    AllowAll,
    /// robots.txt could not be had (server errors or timeouts after retries): nothing is allowed,
    /// and this is the failure recorded for each URL of the host.
    DisallowAll(Failure),
    /// A parsed robots.txt.
    Parsed(Box<Robot>),
}

impl Rules {
    /// Rules from a robots.txt body, for `agent`. A file the parser rejects as a whole allows
    /// everything (the standard asks parsers to skip what they cannot read), with a warning.
    pub fn parse(agent: &str, body: &[u8], host: &str) -> Rules {
        match Robot::new(agent, body) {
            Ok(robot) => Rules::Parsed(Box::new(robot)),
            Err(e) => {
                log::warn!("robots.txt of {host} cannot be parsed ({e}); treating it as empty");
                Rules::AllowAll
            }
        }
    }

    /// Rules after fetching robots.txt failed for good with `failure`. A client error (4xx other
    /// than 408 and 429) or a redirect problem means "no robots.txt": everything is allowed.
    /// Anything else means "unreachable", which the standard says is a complete disallow; the URLs
    /// of the host are then recorded with the cause (a dead server stays "connection failed").
    pub fn after_failure(failure: &Failure) -> Rules {
        Rules::judge_failure(failure)
    }

    /// The sitemaps robots.txt lists (`Sitemap:` lines, for every agent), as written.
    pub fn sitemaps(&self) -> &[String] {
        match self {
            Rules::Parsed(robot) => &robot.sitemaps,
            _ => &[],
        }
    }

    fn judge_failure(failure: &Failure) -> Rules {
        let no_file = matches!(
            failure.kind,
            FailureKind::Status(_)
                | FailureKind::RedirectLoop
                | FailureKind::TooManyRedirects
                | FailureKind::TooLarge
                | FailureKind::BadUrl
                // Redirected off the site: never followed, and read as no robots.txt.
                | FailureKind::OutOfScope
        );
        if no_file && !failure.kind.is_retryable() {
            return Rules::AllowAll;
        }
        let kind = match failure.kind {
            FailureKind::Connect
            | FailureKind::Timeout
            | FailureKind::Blocked
            | FailureKind::Tls => failure.kind.clone(),
            _ => FailureKind::RobotsUnavailable,
        };
        Rules::DisallowAll(Failure::new(
            kind,
            format!(
                "robots.txt could not be fetched ({failure}), so the host is treated as disallowed"
            ),
        ))
    }

    /// Whether `url` may be requested; when not, the failure to record for it.
    pub fn check(&self, url: &Url) -> Result<(), Failure> {
        match self {
            Rules::AllowAll => Ok(()),
            Rules::DisallowAll(failure) => Err(failure.clone()),
            // Only the path and query are matched. Given the whole URL, the parser would parse it
            // again for every job; given what a parsed URL serialises, already percent-encoded,
            // it matches it as it is.
            Rules::Parsed(robot) if robot.allowed(&url[Position::BeforePath..]) => Ok(()),
            Rules::Parsed(_) => Err(Failure::new(
                FailureKind::Robots,
                "disallowed by robots.txt",
            )),
        }
    }

    /// The Crawl-delay asked for us, if any.
    pub fn crawl_delay(&self) -> Option<Duration> {
        match self {
            Rules::Parsed(robot) => robot
                .delay
                .filter(|d| d.is_finite() && *d > 0.0)
                .map(|d| Duration::from_secs_f64(f64::from(d).min(1e9))),
            _ => None,
        }
    }
}

/// What is known of one host's robots.txt.
#[derive(Debug)]
enum Entry {
    /// Being fetched; the host's other requests wait.
    Pending,
    /// Known.
    Known(Rules),
}

/// robots.txt rules by politeness key (`host:port`), fetched once per host and kept for the crawl.
#[derive(Debug, Default)]
pub struct RobotsBook {
    hosts: HashMap<String, Entry>,
}

impl RobotsBook {
    /// Marks `host` as being fetched if nothing is known of it; returns whether it was new (then a
    /// fetch must be started).
    pub fn begin(&mut self, host: &str) -> bool {
        if self.hosts.contains_key(host) {
            return false;
        }
        self.hosts.insert(host.to_string(), Entry::Pending);
        true
    }

    /// Records the rules of `host`.
    pub fn learn(&mut self, host: &str, rules: Rules) {
        self.hosts.insert(host.to_string(), Entry::Known(rules));
    }

    /// The rules of `host`, once known.
    pub fn rules(&self, host: &str) -> Option<&Rules> {
        match self.hosts.get(host) {
            Some(Entry::Known(r)) => Some(r),
            _ => None,
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
    fn agent_token_is_the_product_name() {
        assert_eq!(agent_token("imgcrawl/0.1.0"), "imgcrawl");
        assert_eq!(agent_token("My-Bot (+https://x.example)"), "My-Bot");
        assert_eq!(agent_token("/weird"), "*");
    }

    #[test]
    fn rules_follow_our_group_and_crawl_delay() {
        let txt = b"User-agent: *\nDisallow: /\n\nUser-agent: ImgCrawl\nDisallow: /private\nAllow: /private/ok\nCrawl-delay: 0.5\n";
        let rules = Rules::parse("imgcrawl", txt, "h");
        assert!(rules.check(&url("http://h/a.html")).is_ok());
        assert!(rules.check(&url("http://h/private/x.jpg")).is_err());
        assert!(rules.check(&url("http://h/private/ok/y.jpg")).is_ok());
        assert_eq!(rules.crawl_delay(), Some(Duration::from_millis(500)));
        let other = Rules::parse("otherbot", txt, "h");
        assert!(other.check(&url("http://h/a.html")).is_err());
    }

    #[test]
    fn paths_match_encoded_and_with_their_query() {
        let txt = "User-agent: *\nDisallow: /*?sort=\nDisallow: /caf%C3%A9/\nDisallow: /a%2Fb\nDisallow: /end$\n";
        let rules = Rules::parse("imgcrawl", txt.as_bytes(), "h");
        let allowed = |u: &str| rules.check(&url(u)).is_ok();
        assert!(!allowed("http://h/list?sort=new"));
        assert!(allowed("http://h/list?page=2"));
        assert!(
            !allowed("http://h/café/1.jpg"),
            "a raw path is encoded as the rule is"
        );
        assert!(!allowed("http://h/caf%C3%A9/1.jpg"));
        assert!(allowed("http://h/cafe/1.jpg"));
        assert!(!allowed("http://h/a%2Fb"));
        assert!(allowed("http://h/a/b"), "an encoded slash is not a slash");
        assert!(!allowed("http://h/end"));
        assert!(allowed("http://h/end/more"));
        assert!(allowed("http://h/robots.txt"));
    }

    #[test]
    fn failures_map_as_the_standard_says() {
        let f = |kind| Failure::new(kind, "");
        assert!(matches!(
            Rules::after_failure(&f(FailureKind::Status(404))),
            Rules::AllowAll
        ));
        assert!(matches!(
            Rules::after_failure(&f(FailureKind::Status(403))),
            Rules::AllowAll
        ));
        for (kind, recorded) in [
            (FailureKind::Status(503), FailureKind::RobotsUnavailable),
            (FailureKind::Status(429), FailureKind::RobotsUnavailable),
            (FailureKind::Timeout, FailureKind::Timeout),
            (FailureKind::Connect, FailureKind::Connect),
        ] {
            let rules = Rules::after_failure(&f(kind));
            let url = Url::parse("http://h/x").unwrap();
            assert_eq!(rules.check(&url).unwrap_err().kind, recorded);
        }
    }

    #[test]
    fn robots_url_keeps_scheme_host_and_port() {
        assert_eq!(
            robots_url(&url("https://u:p@h.example:8443/a/b?x=1#f")).as_str(),
            "https://h.example:8443/robots.txt"
        );
    }
}
