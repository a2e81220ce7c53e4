//! Pure checks on downloaded bytes: what image format they really are (by magic bytes, never by the
//! server's Content-Type or the URL), whether the file is complete (format trailers), and its pixel
//! size. An HTML error page served as `image/jpeg` is not an image here.

/// The image formats imgcrawl accepts, identified by their magic bytes.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum ImageType {
    /// JPEG (`FF D8 FF`).
    Jpeg,
    /// PNG (`89 50 4E 47 0D 0A 1A 0A`).
    Png,
    /// GIF87a / GIF89a.
    Gif,
    /// WebP (RIFF container with `WEBP`).
    Webp,
    /// Windows bitmap (`BM`).
    Bmp,
    /// AVIF (ISO-BMFF `ftyp` with an avif brand).
    Avif,
    /// Windows icon.
    Ico,
    /// TIFF, either byte order.
    Tiff,
}

impl ImageType {
    /// The file extension used when saving.
    pub fn extension(self) -> &'static str {
        match self {
            ImageType::Jpeg => "jpg",
            ImageType::Png => "png",
            ImageType::Gif => "gif",
            ImageType::Webp => "webp",
            ImageType::Bmp => "bmp",
            ImageType::Avif => "avif",
            ImageType::Ico => "ico",
            ImageType::Tiff => "tiff",
        }
    }

    /// The MIME type recorded in the manifest.
    pub fn mime(self) -> &'static str {
        match self {
            ImageType::Jpeg => "image/jpeg",
            ImageType::Png => "image/png",
            ImageType::Gif => "image/gif",
            ImageType::Webp => "image/webp",
            ImageType::Bmp => "image/bmp",
            ImageType::Avif => "image/avif",
            ImageType::Ico => "image/x-icon",
            ImageType::Tiff => "image/tiff",
        }
    }
}

/// Bytes needed at the start of a body to recognise every supported format.
pub const SNIFF_LEN: usize = 32;

/// Identifies the image format from the first bytes of a body, or `None` if it is not an image.
pub fn sniff(head: &[u8]) -> Option<ImageType> {
    let starts = |magic: &[u8]| head.starts_with(magic);
    if starts(&[0xFF, 0xD8, 0xFF]) {
        Some(ImageType::Jpeg)
    } else if starts(b"\x89PNG\r\n\x1a\n") {
        Some(ImageType::Png)
    } else if starts(b"GIF87a") || starts(b"GIF89a") {
        Some(ImageType::Gif)
    } else if head.len() >= 12 && starts(b"RIFF") && &head[8..12] == b"WEBP" {
        Some(ImageType::Webp)
    } else if head.len() >= 14 && starts(b"BM") && head[6..10] == [0, 0, 0, 0] {
        Some(ImageType::Bmp)
    } else if head.len() >= 12
        && &head[4..8] == b"ftyp"
        && matches!(&head[8..12], b"avif" | b"avis")
    {
        Some(ImageType::Avif)
    } else if head.len() >= 6 && starts(&[0, 0, 1, 0]) && head[4..6] != [0, 0] {
        Some(ImageType::Ico)
    } else if starts(b"II*\0") || starts(b"MM\0*") {
        Some(ImageType::Tiff)
    } else {
        None
    }
}

/// Bytes of the end of a body kept for [`looks_complete`].
pub const TAIL_LEN: usize = 1024;

/// Whether the whole file is present, judged by what the format records about its own end: PNG
/// ends with an `IEND` chunk, GIF with `;`, JPEG with an EOI marker (trailing padding tolerated),
/// WebP and BMP state their total length. `head` is the start of the body, `tail` its last (up to
/// [`TAIL_LEN`]) bytes and `total` its length. Formats without such a mark are taken as complete.
pub fn looks_complete(kind: ImageType, head: &[u8], tail: &[u8], total: u64) -> bool {
    let le32 = |b: &[u8], at: usize| {
        b.get(at..at + 4)
            .map(|s| u64::from(u32::from_le_bytes([s[0], s[1], s[2], s[3]])))
    };
    match kind {
        ImageType::Png => tail.len() >= 12 && &tail[tail.len() - 8..tail.len() - 4] == b"IEND",
        ImageType::Gif => tail.last() == Some(&0x3B),
        ImageType::Jpeg => tail.windows(2).any(|w| w == [0xFF, 0xD9]),
        ImageType::Webp => le32(head, 4).is_some_and(|n| n + 8 <= total),
        ImageType::Bmp => le32(head, 2).is_some_and(|n| n <= total),
        ImageType::Avif | ImageType::Ico | ImageType::Tiff => true,
    }
}

/// [`looks_complete`] for a body held whole in memory.
pub fn looks_complete_bytes(kind: ImageType, bytes: &[u8]) -> bool {
    let tail = &bytes[bytes.len().saturating_sub(TAIL_LEN)..];
    looks_complete(kind, bytes, tail, bytes.len() as u64)
}

/// Width and height in pixels, read from the header, when the format allows.
pub fn dimensions(bytes: &[u8]) -> Option<(u32, u32)> {
    let size = imagesize::blob_size(bytes).ok()?;
    Some((
        u32::try_from(size.width).ok()?,
        u32::try_from(size.height).ok()?,
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn html_and_text_are_not_images() {
        assert_eq!(
            sniff(b"<!DOCTYPE html><html><body>404 Not Found</body></html>"),
            None
        );
        assert_eq!(sniff(b""), None);
        assert_eq!(sniff(b"\xFF\xD8"), None);
        assert_eq!(sniff(b"BMP is great"), None);
    }

    #[test]
    fn magic_bytes_identify_formats() {
        assert_eq!(sniff(b"\xFF\xD8\xFF\xE0\0\x10JFIF"), Some(ImageType::Jpeg));
        assert_eq!(
            sniff(b"\x89PNG\r\n\x1a\n\0\0\0\rIHDR"),
            Some(ImageType::Png)
        );
        assert_eq!(sniff(b"GIF89a\x01\0\x01\0"), Some(ImageType::Gif));
        assert_eq!(sniff(b"RIFF\x24\0\0\0WEBPVP8 "), Some(ImageType::Webp));
        assert_eq!(sniff(b"\0\0\0\x1cftypavif\0\0\0\0"), Some(ImageType::Avif));
    }

    #[test]
    fn trailers_reveal_cut_off_files() {
        let png = crate::sample_site::png(7, 8, 8);
        assert!(looks_complete_bytes(ImageType::Png, &png));
        assert!(!looks_complete_bytes(ImageType::Png, &png[..png.len() - 5]));
        assert_eq!(dimensions(&png), Some((8, 8)));
        assert!(looks_complete_bytes(
            ImageType::Jpeg,
            b"\xFF\xD8\xFF\xE0....\xFF\xD9"
        ));
        assert!(!looks_complete_bytes(
            ImageType::Jpeg,
            b"\xFF\xD8\xFF\xE0...."
        ));
        assert!(looks_complete_bytes(ImageType::Gif, b"GIF89a....;"));
        assert!(!looks_complete_bytes(ImageType::Gif, b"GIF89a...."));
        let webp = b"RIFF\x0c\0\0\0WEBPVP8 \0\0\0\0";
        assert!(looks_complete_bytes(ImageType::Webp, webp));
        assert!(!looks_complete_bytes(ImageType::Webp, &webp[..19]));
    }
}
