//! Pure file naming: the `output.filename` template, and sanitizing of every name that comes from
//! the network (captions, alt texts, host names, URL stems) so that no saved path can leave `out_dir`
//! or be unusable on common file systems.

use std::fmt;
use std::path::{Path, PathBuf};

use unicode_normalization::UnicodeNormalization;

/// Longest file-name component written, in bytes (most file systems allow 255).
pub const MAX_COMPONENT_BYTES: usize = 200;
/// Most directories `{dir}` adds (deeper URL paths keep their first ones).
const MAX_DIR_SEGMENTS: usize = 16;
/// Longest value a placeholder contributes, in bytes, leaving room for the extension and suffixes.
const MAX_PLACEHOLDER_BYTES: usize = 150;

/// One piece of a parsed filename template.
#[derive(Debug, Clone, PartialEq, Eq)]
enum Piece {
    Literal(String),
    Host,
    PageHost,
    Name,
    Stem,
    Dir,
    Hash,
    Ext,
}

/// A parsed `output.filename` template such as `{host}/{name}.{ext}`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FilenameTemplate {
    pieces: Vec<Piece>,
}

/// The values placeholders are filled with for one image.
#[derive(Debug, Clone)]
pub struct NameFields<'a> {
    /// The image's host.
    pub host: &'a str,
    /// The host of the page where the image was found.
    pub page_host: &'a str,
    /// The caption, alt text or stem chosen as the human name.
    pub name: &'a str,
    /// The URL's file stem.
    pub stem: &'a str,
    /// The URL's directory: its path without the file name, percent-decoded (`photos/2024`).
    pub dir: &'a str,
    /// The hex SHA-256 of the bytes.
    pub sha256: &'a str,
    /// The extension of the real type.
    pub ext: &'a str,
}

impl FilenameTemplate {
    /// Parses a template; unknown placeholders, unbalanced braces and absolute paths are errors.
    pub fn parse(template: &str) -> Result<Self, String> {
        if template.starts_with('/') || template.starts_with('\\') {
            return Err("must be a relative path".into());
        }
        let mut pieces = Vec::new();
        let mut rest = template;
        while !rest.is_empty() {
            if let Some(after) = rest.strip_prefix('{') {
                let end = after.find('}').ok_or("has a `{` without a closing `}`")?;
                pieces.push(match &after[..end] {
                    "host" => Piece::Host,
                    "page_host" => Piece::PageHost,
                    "name" => Piece::Name,
                    "stem" => Piece::Stem,
                    "dir" => Piece::Dir,
                    "hash" => Piece::Hash,
                    "ext" => Piece::Ext,
                    other => {
                        return Err(format!(
                            "unknown placeholder `{{{other}}}` (known: {{host}} {{page_host}} {{dir}} {{name}} {{stem}} {{hash}} {{ext}})"
                        ))
                    }
                });
                rest = &after[end + 1..];
            } else {
                let end = rest.find('{').unwrap_or(rest.len());
                if rest[..end].contains('}') {
                    return Err("has a `}` without an opening `{`".into());
                }
                pieces.push(Piece::Literal(rest[..end].to_string()));
                rest = &rest[end..];
            }
        }
        if !pieces
            .iter()
            .any(|p| matches!(p, Piece::Name | Piece::Stem | Piece::Hash))
        {
            return Err(
                "must contain {name}, {stem} or {hash}, or every image would get the same name"
                    .into(),
            );
        }
        Ok(FilenameTemplate { pieces })
    }

    /// Renders the template into a safe relative path: placeholder values cannot add directories
    /// (but `{dir}`, whose segments each become one), and every component is sanitized (see
    /// [`sanitize_component`]).
    pub fn render(&self, f: &NameFields<'_>) -> PathBuf {
        let mut s = String::new();
        for piece in &self.pieces {
            let value = match piece {
                Piece::Literal(l) => {
                    s.push_str(l);
                    continue;
                }
                Piece::Dir => {
                    let segments: Vec<String> = f
                        .dir
                        .split('/')
                        .filter(|seg| !seg.trim().is_empty())
                        .take(MAX_DIR_SEGMENTS)
                        .map(|seg| {
                            truncate_bytes(&sanitize_component(seg), MAX_PLACEHOLDER_BYTES)
                                .to_string()
                        })
                        .collect();
                    s.push_str(&segments.join("/"));
                    continue;
                }
                Piece::Host => f.host,
                Piece::PageHost => f.page_host,
                Piece::Name => f.name,
                Piece::Stem => f.stem,
                Piece::Hash => &f.sha256[..f.sha256.len().min(16)],
                Piece::Ext => f.ext,
            };
            // A value never adds directories, and is sanitized on its own so that a value that
            // vanishes (such as "..") leaves a visible "_" rather than an empty name.
            let value = sanitize_component(&value.replace(['/', '\\'], "_"));
            s.push_str(truncate_bytes(&value, MAX_PLACEHOLDER_BYTES));
        }
        let mut path = PathBuf::new();
        for component in s.split(['/', '\\']) {
            if component.trim().is_empty() {
                continue;
            }
            path.push(sanitize_component(component));
        }
        if path.as_os_str().is_empty() {
            path.push("_");
        }
        path
    }
}

impl fmt::Display for FilenameTemplate {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for p in &self.pieces {
            match p {
                Piece::Literal(l) => f.write_str(l)?,
                Piece::Host => f.write_str("{host}")?,
                Piece::PageHost => f.write_str("{page_host}")?,
                Piece::Name => f.write_str("{name}")?,
                Piece::Stem => f.write_str("{stem}")?,
                Piece::Dir => f.write_str("{dir}")?,
                Piece::Hash => f.write_str("{hash}")?,
                Piece::Ext => f.write_str("{ext}")?,
            }
        }
        Ok(())
    }
}

/// The longest prefix of `s` of at most `max` bytes that ends on a character boundary.
fn truncate_bytes(s: &str, max: usize) -> &str {
    if s.len() <= max {
        return s;
    }
    let mut end = max;
    while !s.is_char_boundary(end) {
        end -= 1;
    }
    &s[..end]
}

/// Names Windows reserves for devices, whatever the extension (the digits 0 to 9 and the
/// superscripts ¹ ² ³ all count for COM and LPT).
const RESERVED: &[&str] = &["CON", "PRN", "AUX", "NUL", "CONIN$", "CONOUT$"];

/// Whether `stem` (the part before the first dot, trailing spaces removed) is a Windows device name.
fn is_reserved(stem: &str) -> bool {
    if RESERVED.iter().any(|r| r.eq_ignore_ascii_case(stem)) {
        return true;
    }
    let mut chars = stem.chars();
    let prefix: String = chars.by_ref().take(3).collect();
    let rest: Vec<char> = chars.collect();
    (prefix.eq_ignore_ascii_case("COM") || prefix.eq_ignore_ascii_case("LPT"))
        && rest.len() == 1
        && (rest[0].is_ascii_digit() || matches!(rest[0], '¹' | '²' | '³'))
}

/// Invisible format characters that would make two names look alike or reverse how a name reads
/// (U+202E), removed from names: zero-width spaces and joiners, bidirectional controls, the soft
/// hyphen, word joiners, the byte order mark.
fn is_invisible(c: char) -> bool {
    matches!(c,
        '\u{00AD}' | '\u{061C}' | '\u{180E}' | '\u{200B}'..='\u{200F}' | '\u{202A}'..='\u{202E}'
        | '\u{2060}'..='\u{2064}' | '\u{2066}'..='\u{206F}' | '\u{FEFF}' | '\u{FFF9}'..='\u{FFFB}')
}

/// The key two names share when a case-insensitive or normalizing file system (macOS, Windows,
/// exFAT) would take them for one: NFC, then lower case. `Cat.jpg` and `cat.jpg`, or `é` written
/// as one character or as `e` and an accent, have one key.
pub fn fold_key(path: &Path) -> String {
    let s = path.to_string_lossy();
    if s.is_ascii() {
        s.to_ascii_lowercase()
    } else if is_nfc(&s) {
        s.chars().flat_map(char::to_lowercase).collect()
    } else {
        s.nfc().flat_map(char::to_lowercase).collect()
    }
}

/// Whether `s` is known to be in NFC already (the quick check; most text is).
fn is_nfc(s: &str) -> bool {
    unicode_normalization::is_nfc_quick(s.chars()) == unicode_normalization::IsNormalized::Yes
}

/// Feeds the UTF-8 bytes of [`fold_key`]`(path)` to `h` in one write (short ASCII paths, the usual
/// case, are folded on the stack).
pub fn hash_folded(path: &Path, h: &mut impl std::hash::Hasher) {
    let s = path.to_string_lossy();
    let mut buf = [0u8; 256];
    if s.is_ascii() && s.len() <= buf.len() {
        let folded = &mut buf[..s.len()];
        folded.copy_from_slice(s.as_bytes());
        folded.make_ascii_lowercase();
        h.write(folded);
    } else {
        h.write(fold_key(path).as_bytes());
    }
}

/// Makes one path component safe: control characters (NUL included) and `/ \ : * ? " < > |` become
/// `_`, runs of white space become one space, leading and trailing dots and spaces go (so `..` and
/// hidden files cannot appear), Windows device names get a `_` prefix, and the result is at most
/// [`MAX_COMPONENT_BYTES`] long, keeping the extension. Never returns an empty string.
pub fn sanitize_component(raw: &str) -> String {
    let mut s = String::with_capacity(raw.len());
    let mut last_space = false;
    let mut push = |c: char| {
        let c = if c.is_control()
            || matches!(c, '/' | '\\' | ':' | '*' | '?' | '"' | '<' | '>' | '|')
        {
            '_'
        } else {
            c
        };
        if c.is_whitespace() {
            if !last_space {
                s.push(' ');
            }
            last_space = true;
        } else {
            s.push(c);
            last_space = false;
        }
    };
    // ASCII needs no normalization and holds no invisible characters.
    if raw.is_ascii() {
        raw.chars().for_each(&mut push);
    } else if is_nfc(raw) {
        raw.chars()
            .filter(|c| !is_invisible(*c))
            .for_each(&mut push);
    } else {
        raw.nfc().filter(|c| !is_invisible(*c)).for_each(&mut push);
    }
    let mut s = s.trim_matches(|c: char| c == '.' || c == ' ').to_string();
    if s.is_empty() {
        s.push('_');
    }
    let stem = s.split('.').next().unwrap_or("").trim_end();
    if is_reserved(stem) {
        s.insert(0, '_');
    }
    shorten_component(&s, MAX_COMPONENT_BYTES)
}

/// `component` cut to at most `max` bytes, keeping an extension of up to 16 bytes.
pub fn shorten_component(component: &str, max: usize) -> String {
    if component.len() <= max {
        return component.to_string();
    }
    match component.rfind('.') {
        Some(dot) if dot > 0 && component.len() - dot <= 16 && max > 16 => {
            let ext = &component[dot..];
            format!(
                "{}{ext}",
                truncate_bytes(component, max - ext.len()).trim_end()
            )
        }
        _ => truncate_bytes(component, max).to_string(),
    }
}

/// The `n`-th alternative of a path taken by another image: `a/b.jpg` becomes `a/b-2.jpg` for n = 2.
pub fn with_suffix(path: &Path, n: u32) -> PathBuf {
    let file = path
        .file_name()
        .map(|f| f.to_string_lossy().into_owned())
        .unwrap_or_default();
    let renamed = match file.rfind('.') {
        Some(dot) if dot > 0 => format!("{}-{n}{}", &file[..dot], &file[dot..]),
        _ => format!("{file}-{n}"),
    };
    path.with_file_name(renamed)
}

/// The name the file at `path` moves to when new bytes take its place: `NAME.prev.EXT` beside it
/// (`NAME.prev` when it has no extension).
pub fn prev_name(path: &Path) -> PathBuf {
    let file = path
        .file_name()
        .map(|f| f.to_string_lossy().into_owned())
        .unwrap_or_default();
    let renamed = match file.rfind('.') {
        Some(dot) if dot > 0 => format!("{}.prev{}", &file[..dot], &file[dot..]),
        _ => format!("{file}.prev"),
    };
    path.with_file_name(renamed)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::path::Component;

    #[test]
    fn the_previous_bytes_of_a_file_go_beside_it_before_the_extension() {
        let p = |s: &str| prev_name(Path::new(s));
        assert_eq!(p("site/cat.png"), Path::new("site/cat.prev.png"));
        assert_eq!(p("site/a.b.jpg"), Path::new("site/a.b.prev.jpg"));
        assert_eq!(p("site/README"), Path::new("site/README.prev"));
        assert_eq!(p(".hidden"), Path::new(".hidden.prev"));
        // Taken, the name gets the usual suffix after the `.prev`.
        assert_eq!(
            with_suffix(&p("site/cat.png"), 2),
            Path::new("site/cat.prev-2.png")
        );
    }

    fn fields<'a>(name: &'a str) -> NameFields<'a> {
        NameFields {
            host: "img.example",
            page_host: "www.example",
            name,
            stem: "stem",
            dir: "photos/2024",
            sha256: "0123456789abcdef0123",
            ext: "jpg",
        }
    }

    fn render(template: &str, name: &str) -> PathBuf {
        FilenameTemplate::parse(template)
            .unwrap()
            .render(&fields(name))
    }

    fn assert_safe(p: &Path) {
        assert!(p.is_relative(), "{p:?}");
        for c in p.components() {
            let Component::Normal(s) = c else {
                panic!("unsafe component {c:?} in {p:?}")
            };
            let s = s.to_str().unwrap();
            assert!(!s.is_empty() && s.len() <= MAX_COMPONENT_BYTES, "{p:?}");
            assert!(
                !s.starts_with('.') && !s.chars().any(|c| c.is_control() || c == '\\'),
                "{p:?}"
            );
        }
    }

    #[test]
    fn hostile_names_stay_inside_out_dir() {
        let long = "x".repeat(5000);
        let hostile = [
            "../../etc/passwd",
            "..",
            ".",
            "/abs/path",
            "a\\..\\..\\b",
            "nul\0byte",
            "line\nbreak\ttab",
            "CON",
            "lpt1",
            "con.txt",
            " . . ",
            "",
            "???",
            "\u{202e}gpj.exe",
            &long,
            "日本語の画像 / 第1話",
        ];
        for name in hostile {
            let p = render("{host}/{name}.{ext}", name);
            assert_safe(&p);
            assert!(p.starts_with("img.example"), "{p:?}");
            assert!(
                p.extension().is_some_and(|e| e == "jpg"),
                "{name:?} -> {p:?}"
            );
        }
        assert_eq!(
            render("{host}/{name}.{ext}", "../../etc/passwd"),
            PathBuf::from("img.example/_.._etc_passwd.jpg")
        );
        assert_eq!(render("{name}.{ext}", "CON"), PathBuf::from("_CON.jpg"));
        assert_eq!(
            render("{name}.{ext}", "美女 图片  01"),
            PathBuf::from("美女 图片 01.jpg")
        );
    }

    #[test]
    fn dir_keeps_the_url_directories_and_stays_inside() {
        let t = FilenameTemplate::parse("{host}/{dir}/{stem}.{ext}").unwrap();
        let with_dir = |dir: &str| t.render(&NameFields { dir, ..fields("n") });
        assert_eq!(
            with_dir("photos/2024"),
            Path::new("img.example/photos/2024/stem.jpg")
        );
        assert_eq!(with_dir(""), Path::new("img.example/stem.jpg"));
        // Decoded `..` and separators cannot climb out.
        let hostile = with_dir("a/../../..\\x/CON");
        assert!(
            hostile
                .components()
                .all(|c| matches!(c, Component::Normal(_))),
            "{hostile:?}"
        );
        assert_eq!(hostile, Path::new("img.example/a/_/_/_x/_CON/stem.jpg"));
        assert_eq!(
            with_dir(&"d/".repeat(100)).components().count(),
            MAX_DIR_SEGMENTS + 2
        );
        assert_eq!(t.to_string(), "{host}/{dir}/{stem}.{ext}");
    }

    #[test]
    fn template_errors_are_explained() {
        assert!(FilenameTemplate::parse("{host}/{nam}.{ext}")
            .unwrap_err()
            .contains("unknown placeholder `{nam}`"));
        assert!(FilenameTemplate::parse("{host}/{name.{ext}").is_err());
        assert!(FilenameTemplate::parse("/abs/{name}").is_err());
        assert!(FilenameTemplate::parse("{host}/fixed.{ext}").is_err());
        let t = FilenameTemplate::parse("{page_host}/{hash}-{stem}.{ext}").unwrap();
        assert_eq!(t.to_string(), "{page_host}/{hash}-{stem}.{ext}");
        assert_eq!(
            t.render(&fields("n")),
            PathBuf::from("www.example/0123456789abcdef-stem.jpg")
        );
    }

    #[test]
    fn long_names_keep_their_extension_and_char_boundaries() {
        let s = sanitize_component(&format!("{}.jpeg", "图".repeat(300)));
        assert!(
            s.len() <= MAX_COMPONENT_BYTES && s.ends_with(".jpeg"),
            "{s}"
        );
    }

    #[test]
    fn suffixes_go_before_the_extension() {
        assert_eq!(
            with_suffix(Path::new("h/cat.jpg"), 2),
            PathBuf::from("h/cat-2.jpg")
        );
        assert_eq!(with_suffix(Path::new("h/cat"), 3), PathBuf::from("h/cat-3"));
    }

    #[test]
    fn device_names_invisible_characters_and_folded_keys() {
        for name in [
            "CONIN$",
            "conout$.txt",
            "COM0",
            "lpt0.jpg",
            "COM¹",
            "LPT³.png",
            "Nul .x",
        ] {
            assert!(sanitize_component(name).starts_with('_'), "{name}");
        }
        for name in ["COM10", "COMA", "console", "LPT"] {
            assert!(!sanitize_component(name).starts_with('_'), "{name}");
        }
        assert_eq!(sanitize_component("evil\u{202E}gnp.exe"), "evilgnp.exe");
        assert_eq!(sanitize_component("a\u{200B}b\u{FEFF}"), "ab");
        // NFD input becomes NFC, and names that one file system would take for one share a key.
        assert_eq!(sanitize_component("cafe\u{301}"), "caf\u{e9}");
        assert_eq!(
            fold_key(Path::new("Cat/Caf\u{e9}.JPG")),
            fold_key(Path::new("cat/cafe\u{301}.jpg"))
        );
        assert_ne!(fold_key(Path::new("a.jpg")), fold_key(Path::new("b.jpg")));
    }

    #[test]
    fn components_are_shortened_to_the_file_systems_limit_keeping_the_extension() {
        let long = format!("{}.jpeg", "é".repeat(100));
        let short = shorten_component(&long, 143);
        assert!(short.len() <= 143, "{}", short.len());
        assert!(short.ends_with(".jpeg") && short.starts_with('é'));
        assert_eq!(shorten_component("a.png", 143), "a.png");
        let no_ext = "x".repeat(300);
        assert_eq!(shorten_component(&no_ext, 30).len(), 30);
    }
}
