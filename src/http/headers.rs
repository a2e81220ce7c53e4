//! What a request carries besides its URL: the headers of `[http.headers]` and of the host's own
//! `[http.host."NAME".headers]` (which win over the general ones of the same name), and the
//! `Referer` an image request sends (`http.referer`), so that sites behind an API key or with
//! hotlink protection answer.

use std::collections::BTreeMap;

use awc::http::header::{HeaderName, HeaderValue};
use url::Url;

/// Header names a configuration may not set: the client owns them (framing, the connection, the
/// encodings it can decode), or another key sets them.
const OWNED: &[(&str, &str)] = &[
    ("host", "it is the URL's host"),
    ("content-length", "the client frames requests itself"),
    ("transfer-encoding", "the client frames requests itself"),
    ("connection", "the client manages its connections"),
    (
        "accept-encoding",
        "imgcrawl decodes only the encodings it asks for",
    ),
    ("user-agent", "set http.user_agent instead"),
    ("referer", "set http.referer instead"),
];

/// Words that make a header's value a secret, shown as `***` by `imgcrawl config`.
const SECRET_WORDS: &[&str] = &[
    "auth",
    "cookie",
    "token",
    "key",
    "secret",
    "session",
    "password",
    "signature",
];

/// Whether the value of the header `name` is a secret (credentials, cookies, keys, tokens).
pub fn is_secret(name: &str) -> bool {
    let name = name.to_ascii_lowercase();
    SECRET_WORDS.iter().any(|w| name.contains(w))
}

/// A list of validated headers.
pub type HeaderList = Vec<(HeaderName, HeaderValue)>;

/// The configured request headers: general ones and per host.
#[derive(Debug, Clone, Default)]
pub struct Headers {
    general: HeaderList,
    /// Host patterns (`img.example.com`, or `*.example.com` for its subdomains) and their headers.
    hosts: Vec<(String, HeaderList)>,
}

impl Headers {
    /// Validates `[http.headers]` and the per-host tables; the error is the dotted key at fault
    /// and what is wrong.
    pub fn new(
        general: &BTreeMap<String, String>,
        hosts: &BTreeMap<String, BTreeMap<String, String>>,
    ) -> Result<Headers, (String, String)> {
        let general = list(general, "http.headers")?;
        let mut by_host = Vec::new();
        for (pattern, headers) in hosts {
            let key = format!("http.host.\"{pattern}\".headers");
            let p = pattern.trim().to_ascii_lowercase();
            let bare = p.strip_prefix("*.").unwrap_or(&p);
            if bare.is_empty() || bare.contains(['/', ':', '*', ' ']) {
                return Err((
                    format!("http.host.\"{pattern}\""),
                    "expected a host name such as img.example.com, or *.example.com for its \
                     subdomains"
                        .into(),
                ));
            }
            by_host.push((p, list(headers, &key)?));
        }
        Ok(Headers {
            general,
            hosts: by_host,
        })
    }

    /// Whether no header is configured.
    pub fn is_empty(&self) -> bool {
        self.general.is_empty() && self.hosts.is_empty()
    }

    /// The headers for a request to `host`: the host's own, then the general ones it does not
    /// override.
    pub fn for_host(&self, host: &str) -> Vec<&(HeaderName, HeaderValue)> {
        let mut out: Vec<&(HeaderName, HeaderValue)> = Vec::new();
        for (pattern, list) in &self.hosts {
            if host_matches(pattern, host) {
                out.extend(list.iter());
            }
        }
        let own = out.len();
        for h in &self.general {
            if !out[..own].iter().any(|(n, _)| n == h.0) {
                out.push(h);
            }
        }
        out
    }
}

/// Whether `host` is the one `pattern` names (`*.example.com`: any subdomain of example.com).
fn host_matches(pattern: &str, host: &str) -> bool {
    let host = host.to_ascii_lowercase();
    match pattern.strip_prefix("*.") {
        Some(domain) => host
            .strip_suffix(domain)
            .is_some_and(|rest| rest.ends_with('.')),
        None => host == pattern,
    }
}

fn list(map: &BTreeMap<String, String>, table: &str) -> Result<HeaderList, (String, String)> {
    map.iter()
        .map(|(name, value)| {
            let key = format!("{table}.{name}");
            if let Some((_, why)) = OWNED.iter().find(|(n, _)| name.eq_ignore_ascii_case(n)) {
                return Err((key, format!("this header cannot be set here: {why}")));
            }
            let n = HeaderName::from_bytes(name.as_bytes())
                .map_err(|_| (key.clone(), format!("`{name}` is not a valid header name")))?;
            let v = HeaderValue::from_str(value).map_err(|_| {
                (
                    key.clone(),
                    "the value holds characters a header cannot carry (line breaks, control \
                     characters)"
                        .to_string(),
                )
            })?;
            Ok((n, v))
        })
        .collect()
}

/// What an image request sends as `Referer` (`http.referer`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Referer {
    /// The page the image was found on (what a browser sends).
    Page,
    /// Only the origin of that page (`https://site.example/`).
    Origin,
    /// No `Referer`.
    None,
}

impl Referer {
    /// Reads `"page"`, `"origin"` or `"none"`.
    pub fn parse(value: &str) -> Result<Referer, String> {
        match value.trim().to_ascii_lowercase().as_str() {
            "page" => Ok(Referer::Page),
            "origin" => Ok(Referer::Origin),
            "none" => Ok(Referer::None),
            other => Err(format!(
                "expected \"page\", \"origin\" or \"none\", not \"{other}\""
            )),
        }
    }

    /// The `Referer` for a request to `target` made for `page`. Like a browser: never its
    /// fragment or credentials, and nothing from an https page to an http URL.
    pub fn value(self, page: &Url, target: &Url) -> Option<String> {
        if page.scheme() == "https" && target.scheme() == "http" {
            return None;
        }
        match self {
            Referer::None => None,
            Referer::Origin => Some(format!("{}/", page.origin().ascii_serialization())),
            Referer::Page => {
                let mut r = page.clone();
                r.set_fragment(None);
                let _ = r.set_username("");
                let _ = r.set_password(None);
                Some(r.into())
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn map(pairs: &[(&str, &str)]) -> BTreeMap<String, String> {
        pairs
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect()
    }

    #[test]
    fn host_headers_win_over_general_ones() {
        let mut hosts = BTreeMap::new();
        hosts.insert("img.example.com".to_string(), map(&[("X-Api-Key", "img")]));
        hosts.insert("*.cdn.example".to_string(), map(&[("X-Cdn", "1")]));
        let h = Headers::new(
            &map(&[("X-Api-Key", "all"), ("Accept-Language", "de")]),
            &hosts,
        )
        .unwrap();
        let shown = |host: &str| {
            h.for_host(host)
                .iter()
                .map(|(n, v)| format!("{n}={}", v.to_str().unwrap()))
                .collect::<Vec<_>>()
        };
        assert_eq!(
            shown("img.example.com"),
            ["x-api-key=img", "accept-language=de"]
        );
        assert_eq!(
            shown("example.com"),
            ["accept-language=de", "x-api-key=all"]
        );
        assert_eq!(shown("a.cdn.example")[0], "x-cdn=1");
        assert!(!shown("cdn.example").contains(&"x-cdn=1".to_string()));
    }

    #[test]
    fn bad_headers_are_named_by_key() {
        let none: BTreeMap<String, BTreeMap<String, String>> = BTreeMap::new();
        let (key, why) = Headers::new(&map(&[("Host", "x")]), &none).unwrap_err();
        assert_eq!(key, "http.headers.Host");
        assert!(why.contains("URL's host"), "{why}");
        let (key, _) = Headers::new(&map(&[("Bad Name", "x")]), &none).unwrap_err();
        assert_eq!(key, "http.headers.Bad Name");
        let (_, why) = Headers::new(&map(&[("X-A", "a\nb")]), &none).unwrap_err();
        assert!(why.contains("line breaks"), "{why}");
        let mut hosts = BTreeMap::new();
        hosts.insert("http://x/".to_string(), map(&[]));
        assert!(Headers::new(&BTreeMap::new(), &hosts).is_err());
    }

    #[test]
    fn secrets_are_recognised_by_name() {
        for name in [
            "Authorization",
            "Cookie",
            "X-Api-Key",
            "X-Auth-Token",
            "Proxy-Authorization",
        ] {
            assert!(is_secret(name), "{name}");
        }
        assert!(!is_secret("Accept-Language"));
    }

    #[test]
    fn the_referer_is_the_page_its_origin_or_nothing() {
        let page = Url::parse("https://u:p@site.example:8443/gallery/1?p=2#top").unwrap();
        let img = Url::parse("https://cdn.example/a.jpg").unwrap();
        assert_eq!(
            Referer::Page.value(&page, &img).as_deref(),
            Some("https://site.example:8443/gallery/1?p=2")
        );
        assert_eq!(
            Referer::Origin.value(&page, &img).as_deref(),
            Some("https://site.example:8443/")
        );
        assert_eq!(Referer::None.value(&page, &img), None);
        let plain = Url::parse("http://cdn.example/a.jpg").unwrap();
        assert_eq!(Referer::Page.value(&page, &plain), None, "no downgrade");
        assert!(Referer::parse("sometimes").is_err());
    }
}
