//! `[distributed]`: the optional shared crawl on Redis (which server, which crawl, which role), and
//! the checks that keep a password-less Redis off the network.

use std::fmt;
use std::time::Duration;

use serde::{Deserialize, Serialize};
use url::Url;

use super::{bad, seconds, KeyError};

/// `[distributed]` as written.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawDistributed {
    /// `redis://[user:password@]host[:port][/db]` or `rediss://...`; empty for a local crawl.
    pub redis_url: String,
    /// Names the shared crawl; every process of one crawl uses the same id.
    pub crawl_id: String,
    /// `pages`, `images` or `all`.
    pub role: String,
    /// How long a job held by a silent process stays leased to it.
    pub lease_secs: f64,
    /// Accept a Redis on a non-loopback address without a password.
    pub allow_no_password: bool,
}

/// What one process of a shared crawl does.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Role {
    /// Fetches and parses pages; images found go to the shared queue.
    Pages,
    /// Downloads and stores images.
    Images,
    /// Both.
    All,
}

impl Role {
    /// Whether this role fetches pages.
    pub fn pages(self) -> bool {
        matches!(self, Role::Pages | Role::All)
    }

    /// Whether this role downloads images.
    pub fn images(self) -> bool {
        matches!(self, Role::Images | Role::All)
    }
}

impl fmt::Display for Role {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Role::Pages => "pages",
            Role::Images => "images",
            Role::All => "all",
        })
    }
}

/// A validated shared-crawl configuration.
#[derive(Clone, PartialEq)]
pub struct Distributed {
    /// The Redis URL as given (it may hold a password: never log it, use [`Distributed::redacted_url`]).
    pub redis_url: String,
    /// The crawl id: letters, digits, `.`, `_` and `-`.
    pub crawl_id: String,
    /// What this process does.
    pub role: Role,
    /// How long a job held by a silent process stays leased to it.
    pub lease: Duration,
}

impl Distributed {
    /// A shared crawl to read rather than join (`imgcrawl manifest --redis`): `url` and `id` get
    /// the checks the configuration gets, and errors name `flag`.
    pub fn to_read(url: &str, id: &str, flag: &str) -> Result<Distributed, super::SettingsError> {
        let raw = RawDistributed {
            redis_url: url.to_string(),
            crawl_id: id.to_string(),
            role: "all".into(),
            lease_secs: 60.0,
            allow_no_password: false,
        };
        match raw.validate() {
            Ok(Some(d)) => Ok(d),
            Ok(None) => Err(("distributed.redis_url", "is empty".to_string())),
            Err(e) => Err(e),
        }
        .map_err(|(key, message)| super::SettingsError {
            key: key.to_string(),
            origin: super::Origin::Flag(flag.to_string()),
            message,
        })
    }

    /// The Redis URL with its password replaced by `***`.
    pub fn redacted_url(&self) -> String {
        redact(&self.redis_url)
    }
}

impl fmt::Debug for Distributed {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Distributed")
            .field("redis_url", &self.redacted_url())
            .field("crawl_id", &self.crawl_id)
            .field("role", &self.role)
            .field("lease", &self.lease)
            .finish()
    }
}

/// `url` with any password replaced by `***` (unchanged when it does not parse).
pub fn redact(url: &str) -> String {
    match Url::parse(url) {
        Ok(mut u) if u.password().is_some() => {
            let _ = u.set_password(Some("***"));
            u.to_string()
        }
        _ => url.to_string(),
    }
}

impl RawDistributed {
    /// `None` for a local crawl.
    pub(super) fn validate(&self) -> Result<Option<Distributed>, KeyError> {
        let role = match self.role.as_str() {
            "pages" => Role::Pages,
            "images" => Role::Images,
            "all" => Role::All,
            other => {
                return Err(bad(
                    "distributed.role",
                    format!("must be \"pages\", \"images\" or \"all\", not \"{other}\""),
                ))
            }
        };
        let lease = seconds("distributed.lease_secs", self.lease_secs)?;
        if self.redis_url.is_empty() {
            if !self.crawl_id.is_empty() {
                return Err(bad(
                    "distributed.crawl_id",
                    "is set but distributed.redis_url (--redis) is not",
                ));
            }
            return Ok(None);
        }
        self.check_url()?;
        let id = &self.crawl_id;
        if id.is_empty() {
            return Err(bad(
                "distributed.crawl_id",
                "must be set (--crawl-id) when distributed.redis_url is: every process of one crawl uses the same id",
            ));
        }
        if id.len() > 64
            || !id
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || matches!(c, '.' | '_' | '-'))
        {
            return Err(bad(
                "distributed.crawl_id",
                format!("`{id}` must be 1 to 64 letters, digits, '.', '_' or '-'"),
            ));
        }
        Ok(Some(Distributed {
            redis_url: self.redis_url.clone(),
            crawl_id: id.clone(),
            role,
            lease,
        }))
    }

    fn check_url(&self) -> Result<(), KeyError> {
        const KEY: &str = "distributed.redis_url";
        let shown = redact(&self.redis_url);
        let url = Url::parse(&self.redis_url)
            .map_err(|e| bad(KEY, format!("`{shown}` is not a URL: {e}")))?;
        match url.scheme() {
            "redis" | "rediss" => {}
            "unix" | "redis+unix" => return Ok(()), // a local socket
            s => {
                return Err(bad(
                    KEY,
                    format!("`{shown}`: the scheme must be redis:// or rediss://, not {s}://"),
                ))
            }
        }
        let loopback = match url.host() {
            // redis:// is not a scheme the URL standard knows, so its host stays text.
            Some(url::Host::Domain(d)) => {
                d.eq_ignore_ascii_case("localhost")
                    || d.trim_start_matches('[')
                        .trim_end_matches(']')
                        .parse::<std::net::IpAddr>()
                        .is_ok_and(|ip| ip.is_loopback())
            }
            Some(url::Host::Ipv4(ip)) => ip.is_loopback(),
            Some(url::Host::Ipv6(ip)) => ip.is_loopback(),
            None => return Err(bad(KEY, format!("`{shown}` has no host"))),
        };
        if !loopback && url.password().is_none() && !self.allow_no_password {
            return Err(bad(
                KEY,
                format!(
                    "`{shown}` is not on this machine and has no password: anyone who can reach it could read and change the crawl. Use redis://:PASSWORD@host/ (or rediss:// for TLS), or set distributed.allow_no_password = true"
                ),
            ));
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn raw(url: &str, id: &str) -> RawDistributed {
        RawDistributed {
            redis_url: url.into(),
            crawl_id: id.into(),
            role: "all".into(),
            lease_secs: 60.0,
            allow_no_password: false,
        }
    }

    #[test]
    fn a_remote_redis_needs_a_password_unless_allowed() {
        assert!(raw("", "").validate().unwrap().is_none());
        assert!(raw("redis://127.0.0.1:6379/0", "c1").validate().is_ok());
        assert!(raw("redis://localhost", "c1").validate().is_ok());
        assert!(raw("redis://[::1]:6379", "c1").validate().is_ok());
        assert!(raw("redis://127.0.0.2", "c1").validate().is_ok());
        assert!(raw("redis://127.example", "c1").validate().is_err());
        let (key, msg) = raw("redis://10.0.0.5:6379", "c1").validate().unwrap_err();
        assert_eq!(key, "distributed.redis_url");
        assert!(msg.contains("no password"), "{msg}");
        assert!(raw("rediss://:pw@10.0.0.5/", "c1").validate().is_ok());
        let mut allowed = raw("redis://10.0.0.5", "c1");
        allowed.allow_no_password = true;
        assert!(allowed.validate().is_ok());
        assert!(raw("http://127.0.0.1", "c1").validate().is_err());
    }

    #[test]
    fn the_crawl_id_is_required_and_plain() {
        assert_eq!(
            raw("redis://127.0.0.1", "").validate().unwrap_err().0,
            "distributed.crawl_id"
        );
        assert!(raw("redis://127.0.0.1", "a{b}").validate().is_err());
        assert!(raw("", "c1").validate().is_err(), "an id without a Redis");
        let mut r = raw("redis://127.0.0.1", "c1");
        r.role = "both".into();
        assert_eq!(r.validate().unwrap_err().0, "distributed.role");
    }

    #[test]
    fn passwords_are_never_shown() {
        let d = raw("redis://user:s3cret@10.0.0.5:6380/2", "c1")
            .validate()
            .unwrap()
            .unwrap();
        assert!(!format!("{d:?}").contains("s3cret"));
        assert_eq!(d.redacted_url(), "redis://user:***@10.0.0.5:6380/2");
        assert!(!format!("{:?}", raw("redis://x:s3cret@[::1]/", "").validate()).contains("s3cret"));
    }
}
