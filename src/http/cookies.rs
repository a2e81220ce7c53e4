//! The crawl's cookie jar, kept like a browser session: cookies from `http.cookies_file` (the
//! Netscape `cookies.txt` format that browser export add-ons, wget, curl, gallery-dl and yt-dlp
//! write) and every `Set-Cookie` a site sends are held by domain, path and expiry (the
//! `cookie_store` crate decides which go with each request) and sent back in a `Cookie` header.
//! The jar is shared by every worker of a crawl and saved in the state database, so a resumed
//! crawl keeps its session.

use std::path::Path;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use cookie_store::CookieStore;
use url::Url;

/// A cookie jar shared by the clones of it (every worker of one crawl).
#[derive(Clone, Default)]
pub struct Jar {
    inner: Arc<Inner>,
}

#[derive(Default)]
struct Inner {
    store: Mutex<CookieStore>,
    /// Bumped on every change, so that savers know when there is something new to save.
    changes: AtomicU64,
    /// Whether any cookie was ever held (a crawl without cookies skips the lock).
    used: std::sync::atomic::AtomicBool,
    /// The cookies of the file, as `Set-Cookie` strings and the URL they apply to, laid again
    /// over a restored session: the file is the user's latest word (a fresh login).
    seed: Vec<(String, Url)>,
}

impl std::fmt::Debug for Jar {
    /// Counts only: cookie values are secrets.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "Jar({} cookies)", self.lock().iter_any().count())
    }
}

impl Jar {
    /// An empty jar.
    pub fn new() -> Jar {
        Jar::default()
    }

    /// A jar holding the cookies of a Netscape `cookies.txt`. The error names the file and line.
    pub fn from_file(path: &Path) -> Result<Jar, String> {
        let text =
            std::fs::read(path).map_err(|e| format!("cannot read {}: {e}", path.display()))?;
        let text = String::from_utf8_lossy(&text);
        let seed = parse_netscape(&text, SystemTime::now())
            .map_err(|e| format!("{}: {e}", path.display()))?;
        let jar = Jar {
            inner: Arc::new(Inner {
                seed,
                ..Inner::default()
            }),
        };
        jar.plant_seed(&mut jar.lock());
        Ok(jar)
    }

    fn lock(&self) -> MutexGuard<'_, CookieStore> {
        // A panic while holding the lock cannot leave the store half-changed in a way that
        // matters more than losing the session.
        self.inner.store.lock().unwrap_or_else(|e| e.into_inner())
    }

    fn plant_seed(&self, store: &mut CookieStore) {
        for (cookie, url) in &self.inner.seed {
            if store.parse(cookie, url).is_ok() {
                self.inner.used.store(true, Ordering::Relaxed);
            }
        }
        self.inner.changes.fetch_add(1, Ordering::Relaxed);
    }

    /// The `Cookie` header value for a request to `url`, if any cookie goes with it.
    pub fn header_for(&self, url: &Url) -> Option<String> {
        if !self.inner.used.load(Ordering::Relaxed) {
            return None;
        }
        let store = self.lock();
        let mut header = String::new();
        for (name, value) in store.get_request_values(url) {
            if !header.is_empty() {
                header.push_str("; ");
            }
            header.push_str(name);
            header.push('=');
            header.push_str(value);
        }
        (!header.is_empty()).then_some(header)
    }

    /// Keeps the cookies of the `Set-Cookie` values of a response to `url` (those the rules
    /// refuse, such as a cookie for another domain, are dropped).
    pub fn keep<'a>(&self, url: &Url, set_cookies: impl Iterator<Item = &'a str>) {
        let mut store = None;
        for value in set_cookies {
            let store = store.get_or_insert_with(|| self.lock());
            match store.parse(value, url) {
                Ok(_) => {
                    self.inner.used.store(true, Ordering::Relaxed);
                    self.inner.changes.fetch_add(1, Ordering::Relaxed);
                }
                Err(e) => log::debug!("{url}: Set-Cookie refused: {e}"),
            }
        }
    }

    /// How many times the jar changed: compare with an earlier value to know whether to save.
    pub fn changes(&self) -> u64 {
        self.inner.changes.load(Ordering::Relaxed)
    }

    /// The whole jar (session cookies included) as JSON, for the state database.
    pub fn to_json(&self) -> String {
        let mut out = Vec::new();
        cookie_store::serde::json::save_incl_expired_and_nonpersistent(&self.lock(), &mut out)
            .expect("writing JSON into memory does not fail");
        String::from_utf8(out).expect("JSON is UTF-8")
    }

    /// Restores a jar saved with [`to_json`](Self::to_json), then lays the cookies file's over it.
    pub fn restore(&self, json: &str) -> Result<(), String> {
        let saved = cookie_store::serde::json::load_all(json.as_bytes())
            .map_err(|e| format!("saved cookies unreadable: {e}"))?;
        let mut store = self.lock();
        *store = saved;
        if store.iter_any().next().is_some() {
            self.inner.used.store(true, Ordering::Relaxed);
        }
        self.plant_seed(&mut store);
        Ok(())
    }

    /// Unexpired cookies held.
    pub fn len(&self) -> usize {
        self.lock().iter_unexpired().count()
    }

    /// Whether no unexpired cookie is held.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

/// Reads a Netscape `cookies.txt` into `Set-Cookie` strings and the URL each is set from. Lines:
/// `domain`, include-subdomains `TRUE`/`FALSE`, `path`, https-only `TRUE`/`FALSE`, expiry (Unix
/// seconds, 0 for a session cookie), `name`, `value`, separated by tabs. `#` lines are comments,
/// except curl's `#HttpOnly_` prefix on the domain. Expired cookies are left out.
pub fn parse_netscape(text: &str, now: SystemTime) -> Result<Vec<(String, Url)>, String> {
    let mut out = Vec::new();
    for (i, raw) in text.lines().enumerate() {
        let line = raw.trim_end_matches('\r');
        let (line, http_only) = match line.strip_prefix("#HttpOnly_") {
            Some(rest) => (rest, true),
            None => (line, false),
        };
        if line.trim().is_empty() || line.starts_with('#') {
            continue;
        }
        let fields: Vec<&str> = line.split('\t').collect();
        let bad = |why: &str| format!("line {}: {why}", i + 1);
        if fields.len() < 6 || fields.len() > 7 {
            return Err(bad(&format!(
                "expected 7 tab-separated fields (domain, subdomains, path, secure, expiry, \
                 name, value), found {}",
                fields.len()
            )));
        }
        let flag = |s: &str, what: &str| match s.to_ascii_uppercase().as_str() {
            "TRUE" => Ok(true),
            "FALSE" => Ok(false),
            _ => Err(bad(&format!("{what} must be TRUE or FALSE, not `{s}`"))),
        };
        let domain = fields[0].trim();
        let subdomains = flag(fields[1], "the subdomains field")?;
        let path = if fields[2].is_empty() { "/" } else { fields[2] };
        let secure = flag(fields[3], "the secure field")?;
        let expires: i64 = fields[4]
            .trim()
            .parse()
            .map_err(|_| bad(&format!("expiry `{}` is not a number", fields[4])))?;
        let (name, value) = (fields[5], fields.get(6).copied().unwrap_or(""));
        let host = domain.trim_start_matches('.');
        if host.is_empty() || name.is_empty() {
            return Err(bad("empty domain or name"));
        }
        let mut cookie = format!("{name}={value}; Path={path}");
        if subdomains {
            cookie.push_str(&format!("; Domain={host}"));
        }
        if secure {
            cookie.push_str("; Secure");
        }
        if http_only {
            cookie.push_str("; HttpOnly");
        }
        if expires > 0 {
            let at = UNIX_EPOCH + Duration::from_secs(expires as u64);
            if at <= now {
                continue;
            }
            cookie.push_str(&format!("; Expires={}", httpdate::fmt_http_date(at)));
        }
        let scheme = if secure { "https" } else { "http" };
        let url = Url::parse(&format!("{scheme}://{host}{path}")).map_err(|e| {
            bad(&format!(
                "`{host}{path}` is not a usable domain and path: {e}"
            ))
        })?;
        out.push((cookie, url));
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    const FILE: &str = "# Netscape HTTP Cookie File\n\
        .example.org\tTRUE\t/\tFALSE\t0\tsession\tabc\n\
        #HttpOnly_www.example.org\tFALSE\t/gallery\tFALSE\t4102444800\tlogin\tyes\n\
        secure.example.org\tFALSE\t/\tTRUE\t0\ttoken\tt1\n\
        old.example.org\tFALSE\t/\tFALSE\t1000\tgone\tx\n";

    fn url(s: &str) -> Url {
        Url::parse(s).unwrap()
    }

    #[test]
    fn a_cookies_file_goes_by_domain_path_secure_and_expiry() {
        let seed = parse_netscape(FILE, SystemTime::now()).unwrap();
        assert_eq!(seed.len(), 3, "the expired cookie is left out");
        let jar = Jar::new();
        let mut store = jar.lock();
        for (c, u) in &seed {
            store.parse(c, u).unwrap();
        }
        drop(store);
        jar.inner.used.store(true, Ordering::Relaxed);
        assert_eq!(
            jar.header_for(&url("http://cdn.example.org/a.jpg"))
                .as_deref(),
            Some("session=abc")
        );
        let h = jar
            .header_for(&url("http://www.example.org/gallery/1"))
            .unwrap();
        assert!(h.contains("login=yes") && h.contains("session=abc"), "{h}");
        assert!(!jar
            .header_for(&url("http://www.example.org/other"))
            .unwrap()
            .contains("login"));
        assert_eq!(
            jar.header_for(&url("http://secure.example.org/"))
                .as_deref(),
            Some("session=abc"),
            "a https-only cookie is not sent over http"
        );
        let h = jar.header_for(&url("https://secure.example.org/")).unwrap();
        assert!(h.contains("token=t1") && h.contains("session=abc"), "{h}");
    }

    #[test]
    fn bad_lines_are_named() {
        let err = parse_netscape("a.org\tTRUE\t/\n", SystemTime::now()).unwrap_err();
        assert!(err.starts_with("line 1: expected 7"), "{err}");
        let err =
            parse_netscape("\n\na.org\tMAYBE\t/\tFALSE\t0\tn\tv\n", SystemTime::now()).unwrap_err();
        assert!(
            err.starts_with("line 3:") && err.contains("TRUE or FALSE"),
            "{err}"
        );
    }

    #[test]
    fn set_cookie_is_kept_and_the_session_survives_json() {
        let jar = Jar::new();
        let page = url("http://site.example/login");
        assert_eq!(jar.header_for(&page), None);
        let before = jar.changes();
        jar.keep(
            &page,
            [
                "sid=42; Path=/",
                "bad=1; Domain=other.example",
                "pref=dark; Max-Age=3600",
            ]
            .into_iter(),
        );
        assert!(jar.changes() > before);
        let h = jar.header_for(&url("http://site.example/gallery")).unwrap();
        assert!(h.contains("sid=42") && !h.contains("bad=1"), "{h}");
        jar.keep(&page, ["sid=; Max-Age=0; Path=/"].into_iter());
        assert!(!jar
            .header_for(&url("http://site.example/x"))
            .unwrap_or_default()
            .contains("sid"));

        jar.keep(&page, ["sid=43; Path=/"].into_iter());
        let saved = jar.to_json();
        let resumed = Jar::new();
        resumed.restore(&saved).unwrap();
        let h = resumed.header_for(&url("http://site.example/x")).unwrap();
        assert!(
            h.contains("sid=43"),
            "session cookies survive a resume: {h}"
        );
        assert!(resumed.restore("not json").is_err());
    }
}
