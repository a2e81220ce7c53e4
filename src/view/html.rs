//! The gallery's pages as HTML: plain server-rendered markup, every view a URL of its own, links
//! and forms only (no script is needed to use any of it). Every text from the crawl is escaped,
//! and a crawled URL becomes a link only when it is http or https.

use std::fmt::Write as _;

use super::catalog::{page_of, Catalog, Entry, Filter};
use crate::records::ManifestRow;

/// Images on one page of the grid.
pub const PER_PAGE: usize = 60;

/// Escapes text for HTML content and attribute values.
pub fn esc(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for c in s.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&#39;"),
            c => out.push(c),
        }
    }
    out
}

/// A link to a crawled URL (opening elsewhere, no referrer), or the URL as text when it is not
/// http(s).
pub fn outside(url: &str) -> String {
    if url.starts_with("http://") || url.starts_with("https://") {
        format!(
            "<a href=\"{0}\" rel=\"noreferrer noopener\">{0}</a>",
            esc(url)
        )
    } else {
        esc(url)
    }
}

/// A whole page: `title`, the navigation (with `here` marked) and `body`.
pub fn page(title: &str, here: &str, body: &str) -> String {
    let mut nav = String::new();
    for (href, name) in [
        ("/", "Gallery"),
        ("/duplicates", "Duplicates"),
        ("/errors", "Failures"),
        ("/skipped", "Skipped"),
        ("/hosts", "Hosts"),
    ] {
        let current = if name == here {
            " aria-current=\"page\""
        } else {
            ""
        };
        let _ = write!(nav, "<a href=\"{href}\"{current}>{name}</a>");
    }
    format!(
        "<!doctype html><html lang=\"en\"><head><meta charset=\"utf-8\">\
         <meta name=\"viewport\" content=\"width=device-width, initial-scale=1\">\
         <title>{} · imgcrawl</title><link rel=\"stylesheet\" href=\"/static/app.css\"></head>\
         <body><header><strong>imgcrawl</strong><nav>{nav}</nav></header><main>{body}</main></body></html>",
        esc(title)
    )
}

/// A thumbnail linking to the image's page.
fn tile(e: &Entry) -> String {
    let r = &e.row;
    let (w, h) = fit(r.width, r.height);
    format!(
        "<figure class=\"tile\"><a href=\"/image/{id}\"><img src=\"/thumb/{id}\" loading=\"lazy\" \
         alt=\"{name}\" width=\"{w}\" height=\"{h}\"></a><figcaption>{name}{new}</figcaption></figure>",
        id = e.id,
        name = esc(&r.name),
        new = if e.new { " <em>new</em>" } else { "" },
    )
}

/// The size a thumbnail is shown at, from the image's own (a square when unknown).
fn fit(width: Option<u32>, height: Option<u32>) -> (u32, u32) {
    let box_px = super::files::THUMB_PX;
    match (width, height) {
        (Some(w), Some(h)) if w > 0 && h > 0 => {
            let scale = f64::from(box_px) / f64::from(w.max(h));
            let s = scale.min(1.0);
            (
                ((f64::from(w) * s).round() as u32).max(1),
                ((f64::from(h) * s).round() as u32).max(1),
            )
        }
        _ => (box_px, box_px),
    }
}

/// The grid: the search form, the count, one page of thumbnails and the links to the others.
pub fn gallery(catalog: &Catalog, filter: &Filter) -> String {
    let picked: Vec<&Entry> = catalog.select(filter).collect();
    let (p, pages, range) = page_of(filter.p, picked.len(), PER_PAGE);
    let mut body = form(catalog, filter);
    let _ = write!(
        body,
        "<p class=\"count\">{} of {} images{}</p><div class=\"grid\">",
        picked.len(),
        catalog.entries.len(),
        if pages > 1 {
            format!(", page {p} of {pages}")
        } else {
            String::new()
        }
    );
    for e in &picked[range] {
        body.push_str(&tile(e));
    }
    body.push_str("</div>");
    body.push_str(&pager(|n| format!("/{}", filter.query(n)), p, pages));
    page("Gallery", "Gallery", &body)
}

/// The search and filter form (GET, so that every result has its own URL).
fn form(catalog: &Catalog, f: &Filter) -> String {
    let mut hosts = String::from("<option value=\"\">any host</option>");
    for host in catalog.hosts().keys() {
        let selected = if *host == f.host { " selected" } else { "" };
        let _ = write!(
            hosts,
            "<option value=\"{0}\"{selected}>{0}</option>",
            esc(host)
        );
    }
    let num = |v: u64| {
        if v == 0 {
            String::new()
        } else {
            v.to_string()
        }
    };
    format!(
        "<form class=\"filters\" method=\"get\" action=\"/\">\
         <input type=\"search\" name=\"q\" value=\"{q}\" placeholder=\"name, URL or path\">\
         <select name=\"host\">{hosts}</select>\
         <input name=\"page\" value=\"{page}\" placeholder=\"found on page...\">\
         <label>min width <input type=\"number\" min=\"0\" name=\"min_width\" value=\"{mw}\"></label>\
         <label>min height <input type=\"number\" min=\"0\" name=\"min_height\" value=\"{mh}\"></label>\
         <label>KB from <input type=\"number\" min=\"0\" name=\"min_kb\" value=\"{minkb}\"></label>\
         <label>to <input type=\"number\" min=\"0\" name=\"max_kb\" value=\"{maxkb}\"></label>\
         <label><input type=\"checkbox\" name=\"new\" value=\"true\"{new}> new in the last update</label>\
         <button>Show</button> <a href=\"/\">clear</a></form>",
        q = esc(&f.q),
        page = esc(&f.page),
        mw = num(u64::from(f.min_width)),
        mh = num(u64::from(f.min_height)),
        minkb = num(f.min_kb),
        maxkb = num(f.max_kb),
        new = if f.new { " checked" } else { "" },
    )
}

/// Links to the other pages of a result.
/// `href` gives the (unescaped) address of page `n`.
fn pager(href: impl Fn(usize) -> String, p: usize, pages: usize) -> String {
    if pages <= 1 {
        return String::new();
    }
    let mut out = String::from("<nav class=\"pager\">");
    let link = |n: usize, text: &str| format!("<a href=\"{}\">{text}</a>", esc(&href(n)));
    if p > 1 {
        out.push_str(&link(p - 1, "&larr; previous"));
    }
    let mut shown = vec![1, pages];
    shown.extend(p.saturating_sub(2).max(1)..=(p + 2).min(pages));
    shown.sort_unstable();
    shown.dedup();
    let mut last = 0;
    for n in shown {
        if n > last + 1 {
            out.push_str("<span>&hellip;</span>");
        }
        if n == p {
            let _ = write!(out, "<strong>{n}</strong>");
        } else {
            out.push_str(&link(n, &n.to_string()));
        }
        last = n;
    }
    if p < pages {
        out.push_str(&link(p + 1, "next &rarr;"));
    }
    out.push_str("</nav>");
    out
}

/// One image: the original (scaled by the browser), what is known of it, its duplicates.
pub fn image(catalog: &Catalog, e: &Entry) -> String {
    let r = &e.row;
    let mut body = format!(
        "<h1>{}</h1><p><a href=\"/file/{id}\"><img class=\"full\" src=\"/file/{id}\" alt=\"{name}\"></a></p>",
        esc(&r.name),
        id = e.id,
        name = esc(&r.name)
    );
    body.push_str("<table class=\"facts\">");
    for (k, v) in facts(r) {
        let _ = write!(body, "<tr><th>{k}</th><td>{v}</td></tr>");
    }
    body.push_str("</table>");
    let same: Vec<&Entry> = catalog
        .entries
        .iter()
        .filter(|o| o.id != e.id && o.file() == e.file())
        .collect();
    if !same.is_empty() {
        body.push_str("<h2>The same bytes, from other URLs</h2><ul>");
        for o in same {
            let _ = write!(
                body,
                "<li><a href=\"/image/{}\">{}</a> on {}</li>",
                o.id,
                esc(&o.row.url),
                outside(&o.row.page)
            );
        }
        body.push_str("</ul>");
    }
    page(&r.name, "", &body)
}

/// The rows of an image's table.
fn facts(r: &ManifestRow) -> Vec<(&'static str, String)> {
    let mut v = vec![
        ("URL", outside(&r.url)),
        ("found on", outside(&r.page)),
        ("file", esc(&r.path.to_string_lossy())),
        ("bytes", r.bytes.to_string()),
        ("type", esc(&r.content_type)),
        ("sha256", esc(&r.sha256)),
    ];
    if let (Some(w), Some(h)) = (r.width, r.height) {
        v.push(("size", format!("{w} &times; {h}")));
    }
    let dates = [
        (
            "duplicate of",
            r.duplicate_of
                .as_ref()
                .map(|p| p.to_string_lossy().into_owned()),
        ),
        ("first seen", r.first_seen.clone()),
        ("last seen", r.last_seen.clone()),
        ("gone since", r.gone_since.clone()),
        ("changed", r.changed.clone()),
        (
            "earlier bytes in",
            r.previous
                .as_ref()
                .map(|p| p.to_string_lossy().into_owned()),
        ),
    ];
    for (k, val) in dates {
        if let Some(val) = val {
            v.push((k, esc(&val)));
        }
    }
    v
}

/// The groups of URLs that brought the same bytes, one page of them.
pub fn duplicates(catalog: &Catalog, p: usize) -> String {
    let groups = catalog.duplicates();
    let (p, pages, range) = page_of(p, groups.len(), 20);
    let mut body = format!(
        "<h1>Duplicates</h1><p class=\"count\">{} files reached from more than one URL</p>",
        groups.len()
    );
    for (file, entries) in &groups[range] {
        let first = entries[0];
        let _ = write!(
            body,
            "<section class=\"group\"><a href=\"/image/{id}\"><img src=\"/thumb/{id}\" loading=\"lazy\" alt=\"\"></a>\
             <div><h2>{file} <small>{n} URLs</small></h2><ul>",
            id = first.id,
            file = esc(&file.to_string_lossy()),
            n = entries.len()
        );
        for e in entries {
            let _ = write!(
                body,
                "<li><a href=\"/image/{}\">{}</a> on {}</li>",
                e.id,
                esc(&e.row.url),
                outside(&e.row.page)
            );
        }
        body.push_str("</ul></div></section>");
    }
    body.push_str(&pager(|n| format!("/duplicates?p={n}"), p, pages));
    page("Duplicates", "Duplicates", &body)
}

/// Rows of a failure or skip list, grouped by their reason.
pub struct Listed<'a> {
    /// The reason (error kind, or why it was left out).
    pub reason: &'a str,
    /// The URL.
    pub url: &'a str,
    /// Page or image.
    pub kind: &'a str,
    /// More about it.
    pub detail: &'a str,
    /// The page it was found on.
    pub page: Option<&'a str>,
}

/// A list of failed or skipped URLs, grouped by reason, with counts and the pages they were
/// found on; `kind` ("page", "image" or empty) narrows it.
pub fn listed(title: &str, here: &str, rows: &[Listed<'_>], kind: &str) -> String {
    let rows: Vec<&Listed<'_>> = rows
        .iter()
        .filter(|r| kind.is_empty() || r.kind == kind)
        .collect();
    let mut by_reason: std::collections::BTreeMap<&str, Vec<&Listed<'_>>> = Default::default();
    for r in &rows {
        by_reason.entry(r.reason).or_default().push(r);
    }
    let base = if here == "Failures" {
        "/errors"
    } else {
        "/skipped"
    };
    let mut body = format!(
        "<h1>{}</h1><p class=\"count\">{} URLs &middot; <a href=\"{base}\">all</a> \
         <a href=\"{base}?kind=page\">pages</a> <a href=\"{base}?kind=image\">images</a></p>",
        esc(title),
        rows.len()
    );
    for (reason, list) in &by_reason {
        let _ = write!(
            body,
            "<section><h2>{} <small>{}</small></h2><table><tr><th>URL</th><th>kind</th>\
             <th>detail</th><th>found on</th></tr>",
            esc(reason),
            list.len()
        );
        for r in list {
            let _ = write!(
                body,
                "<tr><td>{}</td><td>{}</td><td>{}</td><td>{}</td></tr>",
                outside(r.url),
                esc(r.kind),
                esc(r.detail),
                r.page.map(outside).unwrap_or_default()
            );
        }
        body.push_str("</table></section>");
    }
    page(title, here, &body)
}

/// The per-host counters.
pub fn hosts(catalog: &Catalog) -> String {
    let mut body = String::from(
        "<h1>Hosts</h1><table><tr><th>host</th><th>images</th><th>duplicates</th>\
         <th>MB</th><th>failed</th><th>skipped</th></tr>",
    );
    for (host, c) in catalog.hosts() {
        let _ = write!(
            body,
            "<tr><td><a href=\"/?host={q}\">{h}</a></td><td>{}</td><td>{}</td><td>{:.1}</td>\
             <td>{}</td><td>{}</td></tr>",
            c.images,
            c.duplicates,
            c.bytes as f64 / 1e6,
            c.failed,
            c.skipped,
            q = esc(&percent_encoding::utf8_percent_encode(
                &host,
                percent_encoding::NON_ALPHANUMERIC
            )
            .to_string()),
            h = esc(&host),
        );
    }
    body.push_str("</table>");
    page("Hosts", "Hosts", &body)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn crawled_text_is_escaped_and_only_web_urls_become_links() {
        assert_eq!(
            esc("<img src=x onerror='a'>&\""),
            "&lt;img src=x onerror=&#39;a&#39;&gt;&amp;&quot;"
        );
        assert!(outside("javascript:alert(1)").starts_with("javascript"));
        assert!(!outside("javascript:alert(1)").contains("href"));
        assert!(outside("https://a.example/?q=\"x\"")
            .contains("href=\"https://a.example/?q=&quot;x&quot;\""));
    }

    #[test]
    fn thumbnails_keep_the_aspect_within_the_box() {
        assert_eq!(fit(Some(600), Some(300)), (240, 120));
        assert_eq!(fit(Some(100), Some(50)), (100, 50));
        assert_eq!(fit(None, Some(50)), (240, 240));
    }
}
