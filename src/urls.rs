//! Pure URL helpers: normalization (so that one resource has one spelling and is requested once) and
//! resolving attribute values found in pages against their base URL.

use url::Url;

/// Normalizes a URL for deduplication and requesting: drops the fragment, and (beyond what `url`
/// already does: lower-case host, default port removed, dot segments resolved, empty path as `/`)
/// decodes percent-escapes of unreserved characters, upper-cases the remaining escapes, and drops an
/// empty query (`/a?` is `/a`).
pub fn normalize(mut url: Url) -> Url {
    url.set_fragment(None);
    if url.cannot_be_a_base() {
        return url;
    }
    let path = normalize_escapes(url.path());
    if path != url.path() {
        url.set_path(&path);
    }
    match url.query().map(normalize_escapes) {
        Some(q) if q.is_empty() => url.set_query(None),
        Some(q) if Some(q.as_str()) != url.query() => url.set_query(Some(&q)),
        _ => {}
    }
    url
}

fn is_unreserved(b: u8) -> bool {
    b.is_ascii_alphanumeric() || matches!(b, b'-' | b'.' | b'_' | b'~')
}

fn hex_val(b: u8) -> Option<u8> {
    (b as char).to_digit(16).map(|d| d as u8)
}

/// Rewrites `%xx` escapes: unreserved characters are decoded, others get upper-case hex digits.
fn normalize_escapes(s: &str) -> String {
    let bytes = s.as_bytes();
    let mut out = String::with_capacity(s.len());
    let mut i = 0;
    while i < bytes.len() {
        if bytes[i] == b'%' && i + 2 < bytes.len() {
            if let (Some(h), Some(l)) = (hex_val(bytes[i + 1]), hex_val(bytes[i + 2])) {
                let v = h * 16 + l;
                if is_unreserved(v) {
                    out.push(v as char);
                } else {
                    out.push('%');
                    out.push(bytes[i + 1].to_ascii_uppercase() as char);
                    out.push(bytes[i + 2].to_ascii_uppercase() as char);
                }
                i += 3;
                continue;
            }
        }
        // The input is a valid URL component, hence ASCII; push bytes as chars.
        out.push(bytes[i] as char);
        i += 1;
    }
    out
}

/// Resolves an attribute value found in a page against the page's base URL. Returns `None` for
/// values that are not fetchable web URLs: empty, `data:`, `javascript:`, `mailto:`, fragments only,
/// unparsable, or another scheme than http and https.
pub fn resolve(base: &Url, value: &str) -> Option<Url> {
    let value = value.trim_matches(|c: char| c.is_ascii_whitespace());
    if value.is_empty() || value.starts_with('#') {
        return None;
    }
    let url = base.join(value).ok()?;
    if !matches!(url.scheme(), "http" | "https") || url.host_str().is_none() {
        return None;
    }
    Some(normalize(url))
}

/// The file stem of a URL's last path segment, percent-decoded (`/a/%E5%9B%BE.jpg` gives `图`).
pub fn file_stem(url: &Url) -> Option<String> {
    let last = url.path_segments()?.rev().find(|s| !s.is_empty())?;
    let decoded = percent_encoding::percent_decode_str(last).decode_utf8_lossy();
    let stem = match decoded.rfind('.') {
        Some(0) | None => decoded.as_ref(),
        Some(i) => &decoded[..i],
    };
    (!stem.is_empty()).then(|| stem.to_string())
}

/// The directory of a URL's path, without the file name and percent-decoded: `/photos/2024/a.jpg`
/// gives `photos/2024`, `/a.jpg` gives an empty string.
pub fn dir_path(url: &Url) -> String {
    let path = percent_encoding::percent_decode_str(url.path()).decode_utf8_lossy();
    match path.rfind('/') {
        Some(end) => path[..end].trim_start_matches('/').to_string(),
        None => String::new(),
    }
}

/// Removes path parameters (`;name=value` in a path segment, such as `;jsessionid=...`) whose
/// name `strip` accepts, keeping the others.
pub fn strip_path_params(mut url: Url, strip: impl Fn(&str) -> bool) -> Url {
    if !url.path().contains(';') {
        return url;
    }
    let path: Vec<String> = url
        .path()
        .split('/')
        .map(|segment| {
            let mut parts = segment.split(';');
            let mut kept = parts.next().unwrap_or("").to_string();
            for p in parts {
                let name = p.split('=').next().unwrap_or("");
                let name = percent_encoding::percent_decode_str(name).decode_utf8_lossy();
                if !strip(&name) {
                    kept.push(';');
                    kept.push_str(p);
                }
            }
            kept
        })
        .collect();
    let path = path.join("/");
    if path != url.path() {
        url.set_path(&path);
    }
    url
}

/// Removes the query parameters whose (percent-decoded) name `strip` accepts, keeping the others
/// in their order and spelling; an emptied query is dropped. Used against session ids and tracking
/// parameters, which would otherwise make one page look like endless different ones.
pub fn strip_query(mut url: Url, strip: impl Fn(&str) -> bool) -> Url {
    let Some(query) = url.query() else {
        return url;
    };
    let kept: Vec<&str> = query
        .split('&')
        .filter(|pair| {
            let name = pair.split('=').next().unwrap_or("");
            let name = percent_encoding::percent_decode_str(name).decode_utf8_lossy();
            !pair.is_empty() && !strip(&name)
        })
        .collect();
    let kept = kept.join("&");
    if kept.len() != query.len() {
        url.set_query((!kept.is_empty()).then_some(kept.as_str()));
    }
    url
}

#[cfg(test)]
mod tests {
    use super::*;

    fn n(s: &str) -> String {
        normalize(Url::parse(s).unwrap()).to_string()
    }

    #[test]
    fn fragment_port_case_and_escapes_normalize_to_one_spelling() {
        assert_eq!(
            n("HTTP://Example.COM:80/a/../b/%7euser/%e4%b8%ad?x=%41#frag"),
            "http://example.com/b/~user/%E4%B8%AD?x=A"
        );
        assert_eq!(n("https://example.com:443"), "https://example.com/");
        assert_eq!(n("http://example.com/a?"), "http://example.com/a");
        assert_eq!(n("http://example.com:8080/a"), "http://example.com:8080/a");
        assert_eq!(n("http://example.com/a%2Fb"), "http://example.com/a%2Fb");
        assert_eq!(n("http://example.com/%"), "http://example.com/%");
        assert_eq!(n("http://example.com/%4"), "http://example.com/%4");
    }

    #[test]
    fn resolving_handles_relative_protocol_relative_and_rejects_non_web() {
        let base = Url::parse("https://site.example/gallery/list/2.html").unwrap();
        assert_eq!(
            resolve(&base, "img/a.jpg").unwrap().as_str(),
            "https://site.example/gallery/list/img/a.jpg"
        );
        assert_eq!(
            resolve(&base, "/img/a.jpg").unwrap().as_str(),
            "https://site.example/img/a.jpg"
        );
        assert_eq!(
            resolve(&base, "//cdn.example/a.jpg").unwrap().as_str(),
            "https://cdn.example/a.jpg"
        );
        assert_eq!(
            resolve(&base, "  ../x.png#top \n").unwrap().as_str(),
            "https://site.example/gallery/x.png"
        );
        for v in [
            "",
            "   ",
            "#top",
            "data:image/png;base64,AAAA",
            "javascript:void(0)",
            "mailto:a@b.c",
            "ftp://x/y",
        ] {
            assert_eq!(resolve(&base, v), None, "{v:?}");
        }
    }

    #[test]
    fn stripping_query_parameters_keeps_the_others_in_order() {
        let strip = |s: &str| {
            let url = strip_query(Url::parse(s).unwrap(), |n| {
                n.eq_ignore_ascii_case("sid") || n == "utm_source"
            });
            url.to_string()
        };
        assert_eq!(
            strip("http://h/a?page=2&SID=abc&x=1&utm_source=feed"),
            "http://h/a?page=2&x=1"
        );
        assert_eq!(strip("http://h/a?sid=1&sid=2"), "http://h/a");
        assert_eq!(strip("http://h/a?s%69d=1&b"), "http://h/a?b");
        assert_eq!(strip("http://h/a?page=2"), "http://h/a?page=2");
    }

    #[test]
    fn file_stems_are_decoded() {
        let stem = |s: &str| file_stem(&Url::parse(s).unwrap());
        assert_eq!(stem("http://h/a/%E5%9B%BE.jpg").as_deref(), Some("图"));
        assert_eq!(stem("http://h/a/b.tar.gz").as_deref(), Some("b.tar"));
        assert_eq!(stem("http://h/a/").as_deref(), Some("a"));
        assert_eq!(stem("http://h/").as_deref(), None);
        assert_eq!(stem("http://h/.hidden").as_deref(), Some(".hidden"));
    }

    #[test]
    fn directories_are_decoded_without_the_file_name() {
        let dir = |s: &str| dir_path(&Url::parse(s).unwrap());
        assert_eq!(dir("http://h/photos/2024/a.jpg"), "photos/2024");
        assert_eq!(dir("http://h/a.jpg"), "");
        assert_eq!(dir("http://h/%E5%9B%BE/a.jpg?x=1"), "图");
        // Encoded dots are dot segments, resolved by the URL parser; encoded slashes are decoded
        // here, and the file name template keeps the result inside out_dir.
        assert_eq!(dir("http://h/a/%2E%2E/%2E%2E/b.jpg"), "");
        assert_eq!(dir("http://h/a%2F..%2F..%2Fetc/b.jpg"), "a/../../etc");
    }

    #[test]
    fn session_ids_in_path_parameters_are_removed() {
        let strip = |n: &str| n.eq_ignore_ascii_case("jsessionid") || n.eq_ignore_ascii_case("sid");
        let u = |s: &str| strip_path_params(Url::parse(s).unwrap(), strip).to_string();
        assert_eq!(
            u("http://h/a;jsessionid=ABC123/b.html;sid=9?x=1"),
            "http://h/a/b.html?x=1"
        );
        assert_eq!(
            u("http://h/list;JSESSIONID=x;lang=en"),
            "http://h/list;lang=en"
        );
        assert_eq!(u("http://h/plain/path"), "http://h/plain/path");
    }
}
