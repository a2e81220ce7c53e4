//! Captions: the human name of each image found on a page, from the configured item and name
//! selectors, else the nearest element that holds the image alone with a short text, else `alt`.
//! Bounded like the rest of extraction: a few ancestors per image, each item's text read once.

use std::collections::HashMap;

use ego_tree::NodeId;
use scraper::{ElementRef, Html};

use super::{Clock, ImageCandidate, TooComplex};
use crate::settings::ExtractRules;

/// Longest name kept from a caption, in characters; longer ones are cut (paths cut further).
const MAX_NAME_CHARS: usize = 200;
/// Ancestors of an image looked at for its item (`extract.item`): a caption is near its image.
const MAX_ITEM_LEVELS: usize = 32;
/// Pages with at most this many image elements read the items around their images directly
/// ([`item_captions_near`]); more take one pass over the caption elements ([`item_captions`]).
pub(super) const FEW_IMAGES: usize = 16;
/// Ancestors of an image looked at for an automatic caption.
const MAX_AUTO_LEVELS: usize = 4;
/// Nodes read for one piece of text, however much is below: a caption is short.
const MAX_TEXT_NODES: usize = 4096;
/// Elements that may hold an automatic caption (the nearest that holds the image alone).
const AUTO_ITEMS: &[&str] = &[
    "li", "div", "td", "th", "dd", "dt", "figure", "a", "span", "p", "label", "section", "article",
];

/// Gives each image its name: the caption of the item (`extract.item` and `extract.name`) of the
/// first of its elements that has one; else, for each of its elements in turn until one gives a
/// name, an automatic caption (the nearest element around it that holds this image alone and has
/// a short text), else its `alt`.
pub(super) fn name_images(
    doc: &Html,
    images: &mut [ImageCandidate],
    found: &[(ElementRef<'_>, usize)],
    rules: &ExtractRules,
    clock: &mut Clock,
) -> Result<(), TooComplex> {
    if found.is_empty() {
        return Ok(());
    }
    let items = if found.len() <= FEW_IMAGES {
        item_captions_near(found, rules, clock)?
    } else {
        item_captions(doc, rules, clock)?
    };
    let mut unnamed = false;
    for &(el, i) in found {
        clock.tick("reading captions")?;
        if images[i].name.is_none() {
            images[i].name = configured_caption(el, rules, &items);
            unnamed |= images[i].name.is_none();
        }
    }
    if !unnamed {
        return Ok(());
    }
    // How many image elements each nearby ancestor holds (a <source> of a <picture> is the same
    // image as its <img>, so it does not count).
    let mut held: HashMap<NodeId, u32> = HashMap::new();
    for (el, _) in found {
        clock.tick("reading captions")?;
        if el.value().name() == "source" {
            continue;
        }
        for a in el.ancestors().take(MAX_AUTO_LEVELS) {
            *held.entry(a.id()).or_default() += 1;
        }
    }
    let mut auto: HashMap<NodeId, Option<String>> = HashMap::new();
    for &(el, i) in found {
        clock.tick("reading captions")?;
        if images[i].name.is_some() {
            continue;
        }
        images[i].name = auto_caption(el, &held, &mut auto).or_else(|| alt_text(el));
    }
    Ok(())
}

/// The same as [`item_captions`] for a page with few images (a detail page): only the items around
/// them are read, each once, which costs less than a pass over the whole document. Bounded too:
/// each of at most [`FEW_IMAGES`] images reads at most [`MAX_ITEM_LEVELS`] items once.
fn item_captions_near(
    found: &[(ElementRef<'_>, usize)],
    rules: &ExtractRules,
    clock: &mut Clock,
) -> Result<HashMap<NodeId, String>, TooComplex> {
    let mut items: HashMap<NodeId, String> = HashMap::new();
    let mut read: std::collections::HashSet<NodeId> = std::collections::HashSet::new();
    for (el, _) in found {
        for a in std::iter::once(*el)
            .chain(el.ancestors().filter_map(ElementRef::wrap))
            .take(MAX_ITEM_LEVELS + 1)
        {
            if !rules.item.matches(&a) || !read.insert(a.id()) {
                continue;
            }
            // In document order: the item itself first, then what is inside it.
            let mut caption = None;
            if rules.name.matches(&a) {
                caption = Some(text_of(a)).filter(|t| !t.is_empty());
            }
            if caption.is_none() {
                for m in a.select(&rules.name) {
                    clock.tick("reading captions")?;
                    let t = text_of(m);
                    if !t.is_empty() {
                        caption = Some(t);
                        break;
                    }
                }
            }
            if let Some(t) = caption {
                items.insert(a.id(), t);
            }
        }
    }
    Ok(items)
}

/// For each item (`extract.item`) that has one, its caption: the text of the first element
/// matching `extract.name` inside it (within [`MAX_ITEM_LEVELS`] levels). One pass over the
/// caption elements, each walking up a bounded number of ancestors.
fn item_captions(
    doc: &Html,
    rules: &ExtractRules,
    clock: &mut Clock,
) -> Result<HashMap<NodeId, String>, TooComplex> {
    let mut items: HashMap<NodeId, String> = HashMap::new();
    for m in doc.select(&rules.name) {
        clock.tick("reading captions")?;
        let mut text = None;
        for a in std::iter::once(m)
            .chain(m.ancestors().filter_map(ElementRef::wrap))
            .take(MAX_ITEM_LEVELS + 1)
        {
            if items.contains_key(&a.id()) || !rules.item.matches(&a) {
                continue;
            }
            let t = text.get_or_insert_with(|| text_of(m));
            if t.is_empty() {
                break;
            }
            items.insert(a.id(), t.clone());
        }
    }
    Ok(items)
}

/// The caption of the nearest item around `el` (the element itself, or an ancestor) that has one:
/// `<figure><a><img></a><figcaption>` names the image by the figure's caption even though the link
/// is an item too.
fn configured_caption(
    el: ElementRef<'_>,
    rules: &ExtractRules,
    items: &HashMap<NodeId, String>,
) -> Option<String> {
    if items.is_empty() {
        return None;
    }
    std::iter::once(el)
        .chain(el.ancestors().filter_map(ElementRef::wrap))
        .take(MAX_ITEM_LEVELS + 1)
        .filter(|a| rules.item.matches(a))
        .find_map(|a| items.get(&a.id()).cloned())
}

/// The text of the nearest element around `el` (within [`MAX_AUTO_LEVELS`]) that holds this image
/// alone and has text: the seed-style `<li><img ...><p style="display:none">caption</p></li>`.
/// Text longer than a caption (an article around a lone picture) is not one.
fn auto_caption(
    el: ElementRef<'_>,
    held: &HashMap<NodeId, u32>,
    cache: &mut HashMap<NodeId, Option<String>>,
) -> Option<String> {
    for a in el.ancestors().take(MAX_AUTO_LEVELS) {
        if held.get(&a.id()).copied().unwrap_or(0) != 1 {
            return None;
        }
        let a = ElementRef::wrap(a)?;
        if !AUTO_ITEMS.contains(&a.value().name()) {
            return None;
        }
        let text = cache
            .entry(a.id())
            .or_insert_with(|| {
                let t = bounded_text(a, MAX_NAME_CHARS + 1);
                (!t.is_empty()).then_some(t)
            })
            .clone();
        match text {
            Some(t) if t.chars().count() > MAX_NAME_CHARS => return None,
            Some(t) => return Some(t),
            None => {}
        }
    }
    None
}

/// The `alt` of the image: of the element itself, of the thumbnail inside a link to a full-size
/// image, or of the `<img>` beside a `<picture><source>`.
fn alt_text(el: ElementRef<'_>) -> Option<String> {
    let is_img = |e: &ElementRef<'_>| e.value().name() == "img";
    let img = if is_img(&el) {
        Some(el)
    } else {
        el.descendants()
            .take(MAX_TEXT_NODES)
            .filter_map(ElementRef::wrap)
            .find(is_img)
            .or_else(|| {
                el.parent()
                    .and_then(ElementRef::wrap)
                    .and_then(|p| p.children().filter_map(ElementRef::wrap).find(is_img))
            })
    };
    img.and_then(|i| i.value().attr("alt"))
        .map(collapse)
        .filter(|t| !t.is_empty())
}

/// The whitespace-collapsed text inside `el`, read from at most [`MAX_TEXT_NODES`] nodes.
fn text_of(el: ElementRef<'_>) -> String {
    bounded_text(el, MAX_NAME_CHARS)
}

/// The whitespace-collapsed text inside `el`, at most `max_chars` characters, read from at most
/// [`MAX_TEXT_NODES`] nodes.
fn bounded_text(el: ElementRef<'_>, max_chars: usize) -> String {
    let mut raw = String::new();
    for node in el.descendants().take(MAX_TEXT_NODES) {
        if let Some(t) = node.value().as_text() {
            raw.push_str(t);
            // Enough to fill a name even if most of it is white space.
            if raw.len() > max_chars * 8 {
                break;
            }
        }
    }
    collapse_to(&raw, max_chars)
}

/// Collapses runs of white space into one space, trims, and cuts to [`MAX_NAME_CHARS`].
fn collapse(s: &str) -> String {
    collapse_to(s, MAX_NAME_CHARS)
}

/// Collapses runs of white space into one space, trims, and cuts to `max` characters.
fn collapse_to(s: &str, max: usize) -> String {
    let mut out = String::new();
    let mut n = 0;
    for word in s.split_whitespace() {
        if n > 0 {
            out.push(' ');
            n += 1;
        }
        for c in word.chars() {
            if n >= max {
                return out.trim_end().to_string();
            }
            out.push(c);
            n += 1;
        }
        if n >= max {
            break;
        }
    }
    out.trim_end().to_string()
}
