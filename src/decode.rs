//! Pure: turns the bytes of a page into text, in the encoding the page declares (a byte-order mark,
//! then the `charset` of the Content-Type header, then a `<meta>` in the first 1024 bytes, else
//! UTF-8), decoded with `encoding_rs` so that GBK, GB2312, Big5, Shift_JIS and the rest give the
//! right captions. Bytes invalid in that encoding become U+FFFD; decoding never fails.

use encoding_rs::{Encoding, UTF_16BE, UTF_16LE, UTF_8, X_USER_DEFINED};

/// How far into a page a `<meta>` charset declaration is looked for (as browsers do).
const PRESCAN_BYTES: usize = 1024;

/// Decodes a page body; `content_type` is the response's Content-Type header, if any.
pub fn decode_html(body: &[u8], content_type: Option<&str>) -> (String, &'static Encoding) {
    let encoding = Encoding::for_bom(body)
        .map(|(e, _)| e)
        .or_else(|| content_type.and_then(charset_param))
        .or_else(|| meta_charset(&body[..body.len().min(PRESCAN_BYTES)]))
        .unwrap_or(UTF_8);
    let (text, used, _had_errors) = encoding.decode(body);
    (text.into_owned(), used)
}

/// The encoding named by a `charset=` parameter of a Content-Type value.
fn charset_param(content_type: &str) -> Option<&'static Encoding> {
    content_type.split(';').skip(1).find_map(|param| {
        let (name, value) = param.split_once('=')?;
        name.trim()
            .eq_ignore_ascii_case("charset")
            .then(|| Encoding::for_label(value.trim().trim_matches(['"', '\'']).as_bytes()))?
    })
}

/// The encoding declared by a `<meta charset>` or `<meta http-equiv content="...; charset=...">`
/// in `head`. As in the HTML standard, a declared UTF-16 means UTF-8 (the bytes were ASCII-readable
/// to get this far) and x-user-defined means windows-1252.
fn meta_charset(head: &[u8]) -> Option<&'static Encoding> {
    let lower = head.to_ascii_lowercase();
    let mut from = 0;
    while let Some(at) = find(&lower[from..], b"<meta") {
        let start = from + at + 5;
        let end = lower[start..]
            .iter()
            .position(|&b| b == b'>')
            .map_or(lower.len(), |p| start + p);
        if let Some(enc) = charset_in_tag(&lower[start..end]) {
            return Some(match enc {
                e if e == UTF_16LE || e == UTF_16BE => UTF_8,
                e if e == X_USER_DEFINED => encoding_rs::WINDOWS_1252,
                e => e,
            });
        }
        from = end;
    }
    None
}

/// The value after `charset` (and `=`) inside the attributes of one tag.
fn charset_in_tag(tag: &[u8]) -> Option<&'static Encoding> {
    let mut from = 0;
    while let Some(at) = find(&tag[from..], b"charset") {
        let mut i = from + at + 7;
        from = i;
        while tag.get(i).is_some_and(u8::is_ascii_whitespace) {
            i += 1;
        }
        if tag.get(i) != Some(&b'=') {
            continue;
        }
        i += 1;
        while tag
            .get(i)
            .is_some_and(|b| b.is_ascii_whitespace() || *b == b'"' || *b == b'\'')
        {
            i += 1;
        }
        let len = tag[i..]
            .iter()
            .position(|b| b.is_ascii_whitespace() || b"\"';/>".contains(b))
            .unwrap_or(tag.len() - i);
        if let Some(enc) = Encoding::for_label(&tag[i..i + len]) {
            return Some(enc);
        }
    }
    None
}

fn find(haystack: &[u8], needle: &[u8]) -> Option<usize> {
    haystack.windows(needle.len()).position(|w| w == needle)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn header_charset_decodes_gbk() {
        let (bytes, _, _) = encoding_rs::GBK.encode("<p>风景 照片</p>");
        let (text, enc) = decode_html(&bytes, Some("text/html; charset=GB2312"));
        assert_eq!(text, "<p>风景 照片</p>");
        assert_eq!(enc, encoding_rs::GBK);
    }

    #[test]
    fn meta_charset_decodes_big5_in_both_spellings() {
        let caption = "<p>山水畫</p>";
        let (body, _, _) = encoding_rs::BIG5.encode(caption);
        for meta in [
            "<META Charset='big5'>",
            "<meta http-equiv=\"Content-Type\" content=\"text/html; charset=Big5\">",
        ] {
            let page = [meta.as_bytes(), &body].concat();
            let (text, enc) = decode_html(&page, Some("text/html"));
            assert_eq!(enc, encoding_rs::BIG5, "{meta}");
            assert!(text.ends_with(caption), "{text}");
        }
    }

    #[test]
    fn header_wins_over_meta_and_bom_wins_over_both() {
        let page = "<meta charset=big5>é".as_bytes();
        assert_eq!(decode_html(page, Some("text/html;charset=utf-8")).1, UTF_8);
        let bom = [&[0xEF, 0xBB, 0xBF][..], b"<meta charset=gbk>"].concat();
        assert_eq!(decode_html(&bom, Some("text/html; charset=big5")).1, UTF_8);
    }

    #[test]
    fn invalid_or_unknown_falls_back_to_lossy_utf8() {
        let (text, enc) = decode_html(b"<p>a\xff\xfeb</p>", Some("text/html; charset=bogus"));
        assert_eq!(enc, UTF_8);
        assert_eq!(text, "<p>a\u{FFFD}\u{FFFD}b</p>");
        assert_eq!(decode_html(b"<meta charset=utf-16>", None).1, UTF_8);
    }
}
