//! ImageSaver: downloads one image at a time, checks it while it streams (byte limit, real image
//! type from the first bytes, length against Content-Length, the format's own end mark), hashes it,
//! and hands the bytes to the DiskWriter, which names and stores it. A pool of them runs on the
//! Supervisor's thread; their number is how many images download at once.
//!
//! Takes: [`SaveImage`] (answers `Result<ImageDone, Failure>`), [`Crash`]. Sends [`AppendTemp`],
//! [`WriteImage`] and [`DiscardTemp`] to the DiskWriter, awaiting each, so a slow disk slows the
//! downloads instead of filling memory. In a shared crawl, first sends [`ClaimBytes`] to the
//! Supervisor: bytes another process already stores are not stored again. Holds a [`DeathGuard`]
//! like the PageFetcher.

use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use actix::prelude::*;
use bytes::Bytes;
use sha2::{Digest, Sha256};
use url::Url;

use super::disk_writer::{AppendTemp, DiscardTemp, DiskWriter, LoadSaved, WriteImage};
use super::supervisor::{BodyDone, ClaimBytes};
use super::{Crash, DeathGuard, Retire};
use crate::cluster::BytesClaim;
use crate::error::{Failure, FailureKind};
use crate::http;
use crate::job::{ImageJob, Validators};
use crate::output::ImageName;
use crate::records::ManifestRow;
use crate::settings::Settings;
use crate::sniff::{self, ImageType, SNIFF_LEN, TAIL_LEN};
use crate::state::SavedImage;
use crate::urls;

/// Download and store one image; `tmp` names its temporary file.
#[derive(Debug, Message)]
#[rtype(result = "Result<ImageDone, Failure>")]
pub struct SaveImage {
    /// The image.
    pub job: ImageJob,
    /// Temporary file id, unique within the crawl.
    pub tmp: u64,
    /// Fired once the body is in, before it is checked and stored.
    pub body_done: BodyDone,
}

/// What downloading an image gave.
#[derive(Debug, Clone)]
pub enum ImageDone {
    /// Stored (or recognised as a copy of bytes already stored).
    Saved {
        /// Its manifest row (boxed: it is most of the message's size).
        row: Box<ManifestRow>,
        /// The complete temporary file to move to `row.path` once the state is committed.
        temp: Option<std::path::PathBuf>,
        /// The response's `ETag` and `Last-Modified`.
        validators: Validators,
    },
    /// A saved image asked for again (`--revalidate-images`) is as it was: a 304 (`validators`
    /// `None`), or the same bytes with these validators.
    Unchanged {
        /// The validators the bytes came with, when they came.
        validators: Option<Validators>,
    },
    /// The URL redirects to this one; the Supervisor decides whether to follow.
    Redirected(Url),
    /// Not kept because of this `[filter]` key; abandoned as soon as that was known.
    Skipped(&'static str),
}

/// Bytes kept in memory before a download is spilled to its temporary file.
const SPILL_BYTES: usize = 1 << 20;
/// Bytes of the start of a body kept to read the image's dimensions.
const HEAD_BYTES: usize = 64 * 1024;

/// An image-downloading actor; see the module documentation.
pub struct ImageSaver {
    /// What a download uses (cloned into each one).
    io: Io,
    /// Reports this actor's death to the Supervisor when dropped.
    _guard: DeathGuard,
}

/// What a download uses.
#[derive(Clone)]
struct Io {
    /// This saver's HTTP client, built on its arbiter thread.
    client: http::Client,
    /// The crawl's configuration.
    settings: Arc<Settings>,
    /// Where verified bytes go.
    writer: Addr<DiskWriter>,
    /// In a shared crawl: who to ask before storing bytes.
    claims: Option<Recipient<ClaimBytes>>,
}

impl ImageSaver {
    /// A saver for `settings` downloading with `client` (the one its thread's savers share); call
    /// on the arbiter thread it will run on. In a shared crawl, `claims` is asked before any bytes
    /// are stored.
    pub fn new(
        settings: Arc<Settings>,
        client: http::Client,
        writer: Addr<DiskWriter>,
        claims: Option<Recipient<ClaimBytes>>,
        guard: DeathGuard,
    ) -> Self {
        ImageSaver {
            io: Io {
                client,
                settings,
                writer,
                claims,
            },
            _guard: guard,
        }
    }
}

impl Actor for ImageSaver {
    type Context = Context<Self>;
}

/// What is known about a body while it streams. The chunks are kept as awc hands them over and
/// go to the DiskWriter as they are: an image's bytes are not copied in this process (the
/// profile showed those copies, and the reallocations of a growing buffer, at about a tenth of
/// the crawler's own instructions).
#[derive(Default)]
struct Body {
    /// Chunks not yet handed to the DiskWriter, in order.
    pending: Vec<Bytes>,
    /// Their total length.
    pending_len: usize,
    /// A contiguous copy of the first bytes, made only when they are needed and span chunks, or
    /// before the chunks holding them are spilled.
    head_copy: Vec<u8>,
    /// The last bytes handed over, for the end-mark check.
    spilled_tail: Vec<u8>,
    /// Bytes received.
    total: u64,
    /// Whether part of it is already in the temporary file.
    spilled: bool,
    /// Running SHA-256.
    hasher: Sha256,
}

impl Body {
    /// Takes a received chunk.
    fn push(&mut self, chunk: Bytes) {
        self.total += chunk.len() as u64;
        self.hasher.update(&chunk);
        self.pending_len += chunk.len();
        self.pending.push(chunk);
    }

    /// The first `n` bytes received (fewer if fewer came), contiguous. Borrowed from the first
    /// chunk when it holds them; otherwise copied, once (never more than [`HEAD_BYTES`]).
    fn head(&mut self, n: usize) -> &[u8] {
        let n = n
            .min(HEAD_BYTES)
            .min(usize::try_from(self.total).unwrap_or(usize::MAX));
        if !self.spilled && self.head_copy.len() < n {
            if self.pending.first().is_some_and(|c| c.len() >= n) {
                return &self.pending[0][..n];
            }
            self.fill_head();
        }
        &self.head_copy[..n.min(self.head_copy.len())]
    }

    /// Extends `head_copy`, a prefix of the pending bytes until the first spill, to the first
    /// [`HEAD_BYTES`] of them (or all of them).
    fn fill_head(&mut self) {
        let mut skip = self.head_copy.len();
        for c in &self.pending {
            if self.head_copy.len() >= HEAD_BYTES {
                break;
            }
            if skip >= c.len() {
                skip -= c.len();
                continue;
            }
            let take = (HEAD_BYTES - self.head_copy.len()).min(c.len() - skip);
            self.head_copy.extend_from_slice(&c[skip..skip + take]);
            skip = 0;
        }
    }

    /// Width and height, from as few of the first bytes as hold them: the first chunk alone
    /// when it does, else up to [`HEAD_BYTES`].
    fn dimensions(&mut self) -> Option<(u32, u32)> {
        if !self.spilled {
            if let Some(found) = self.pending.first().and_then(|c| sniff::dimensions(c)) {
                return Some(found);
            }
        }
        sniff::dimensions(self.head(HEAD_BYTES))
    }

    /// The last [`TAIL_LEN`] bytes received, copying only those.
    fn tail(&self) -> Vec<u8> {
        let mut t = Vec::with_capacity(TAIL_LEN);
        let mut want = TAIL_LEN;
        let mut parts = Vec::new();
        for c in self.pending.iter().rev() {
            if want == 0 {
                break;
            }
            let take = want.min(c.len());
            parts.push(&c[c.len() - take..]);
            want -= take;
        }
        let from_spilled = want.min(self.spilled_tail.len());
        t.extend_from_slice(&self.spilled_tail[self.spilled_tail.len() - from_spilled..]);
        for p in parts.iter().rev() {
            t.extend_from_slice(p);
        }
        t
    }

    /// Hands the pending chunks over for the temporary file, keeping what the checks at the end
    /// still need (the first and the last bytes).
    fn take_for_spill(&mut self) -> Vec<Bytes> {
        if !self.spilled {
            self.fill_head();
        }
        self.spilled_tail = self.tail();
        self.spilled = true;
        self.pending_len = 0;
        std::mem::take(&mut self.pending)
    }
}

fn lost_writer(e: MailboxError) -> Failure {
    Failure::new(FailureKind::Disk, format!("disk writer unavailable: {e}"))
}

/// Longest pause between two asks while another process is storing the same bytes.
const CLAIM_POLL: Duration = Duration::from_millis(100);

/// In a shared crawl, where another process already stores the bytes with `sha256` (its consumer
/// name and path), or `None` when this process is to store them. While another process is
/// storing them, waits for it to finish (or for its claim to run out, if it died). When Redis
/// cannot be asked, this process stores them: at worst a second copy, never a lost image.
async fn stored_elsewhere(
    claims: &Recipient<ClaimBytes>,
    sha256: &str,
) -> Option<(String, PathBuf)> {
    loop {
        let asked = claims
            .send(ClaimBytes {
                sha256: sha256.to_string(),
            })
            .await;
        match asked {
            Ok(Ok(BytesClaim::Mine)) => return None,
            Ok(Ok(BytesClaim::Stored { by, path })) => return Some((by, path)),
            Ok(Ok(BytesClaim::Wait(d))) => actix_rt::time::sleep(d.min(CLAIM_POLL)).await,
            Ok(Err(e)) => {
                log::debug!(
                    "cannot ask the shared crawl about bytes {sha256}: {e}; storing them here"
                );
                return None;
            }
            Err(_) => return None,
        }
    }
}

async fn download(
    io: Io,
    job: ImageJob,
    tmp: u64,
    body: &mut Body,
    done: &mut BodyDone,
) -> Result<ImageDone, Failure> {
    let Io {
        client,
        settings,
        writer,
        claims,
    } = io;
    let limit = settings.http.max_image_bytes;
    let filter = &settings.filter;
    // A saved image asked for again: with the validators its bytes came with.
    let before = match job.revalidate {
        true => writer
            .send(LoadSaved(job.url.clone()))
            .await
            .map_err(lost_writer)??,
        false => None,
    };
    let validators = before.as_ref().map(|b| &b.validators);
    let answer = http::get_if_changed(
        &client,
        &job.url,
        &settings.http,
        Some(&job.page),
        validators,
    );
    let mut fetched = match answer.await? {
        http::Answer::Redirect(to) => return Ok(ImageDone::Redirected(to)),
        http::Answer::NotModified if validators.is_some_and(|v| !v.is_empty()) => {
            return Ok(ImageDone::Unchanged { validators: None })
        }
        // Only a conditional request is answered so; this one is not.
        http::Answer::NotModified => {
            return Err(Failure::new(FailureKind::Status(304), "Not Modified"))
        }
        http::Answer::Body(fetched) => fetched,
    };
    let validators = fetched.validators();
    fetched.check_announced(limit)?;
    if let Some(skip) = fetched
        .announced_body()
        .and_then(|n| filter.wrong_size(n, true))
    {
        return Ok(ImageDone::Skipped(skip));
    }
    let mut kind = None;
    // Whether the dimensions still have to be read (and checked) from the first bytes.
    let mut measure = filter.min_width > 0 || filter.min_height > 0;
    while let Some(chunk) = fetched.next_chunk(limit).await? {
        body.push(chunk);
        if kind.is_none() && body.total >= SNIFF_LEN as u64 {
            // Decide early: an HTML error page is abandoned after its first bytes.
            kind = Some(sniff::sniff(body.head(SNIFF_LEN)).ok_or_else(not_image)?);
        }
        if let Some(skip) = filter.wrong_size(body.total, false) {
            return Ok(ImageDone::Skipped(skip));
        }
        if measure && kind.is_some() {
            // A too-small image is abandoned here, without the rest of its bytes.
            if let Some((w, h)) = body.dimensions() {
                measure = false;
                if let Some(skip) = filter.too_small(w, h) {
                    return Ok(ImageDone::Skipped(skip));
                }
            }
        }
        if body.pending_len >= SPILL_BYTES {
            let data = body.take_for_spill();
            writer
                .send(AppendTemp { tmp, data })
                .await
                .map_err(lost_writer)??;
        }
    }
    done.fire();
    let kind = match kind {
        Some(k) => k,
        None => sniff::sniff(body.head(SNIFF_LEN)).ok_or_else(not_image)?,
    };
    let (tail, total) = (body.tail(), body.total);
    if !sniff::looks_complete(kind, body.head(SNIFF_LEN), &tail, total) {
        return Err(Failure::new(
            FailureKind::Truncated,
            format!("{} data ends early", kind.extension()),
        ));
    }
    if let Some(skip) = filter.wrong_size(body.total, true) {
        return Ok(ImageDone::Skipped(skip));
    }
    let stored = Stored {
        kind,
        validators,
        before,
    };
    store(&job, stored, body, tmp, &writer, claims.as_ref()).await
}

/// What is known of a verified download besides its bytes.
struct Stored {
    /// Its real type.
    kind: ImageType,
    /// The response's validators.
    validators: Validators,
    /// What was saved of it before, when an update asks for a saved image again.
    before: Option<SavedImage>,
}

/// Stores a whole, verified download (its bytes in `body`, the first of them perhaps already in
/// the temporary file `tmp`): recorded as where another process holds the same bytes, or written
/// by the DiskWriter (which names it, or finds it a copy of a saved file). New bytes of a saved
/// image replace the old ones; the same bytes again leave it as it was.
async fn store(
    job: &ImageJob,
    stored: Stored,
    body: &mut Body,
    tmp: u64,
    writer: &Addr<DiskWriter>,
    claims: Option<&Recipient<ClaimBytes>>,
) -> Result<ImageDone, Failure> {
    let Stored {
        kind,
        validators,
        before,
    } = stored;
    let total = body.total;
    let sha256 = format!("{:x}", std::mem::take(&mut body.hasher).finalize());
    if before.as_ref().is_some_and(|b| b.row.sha256 == sha256) {
        return Ok(ImageDone::Unchanged {
            validators: Some(validators),
        });
    }
    // Records and names follow the URL as the page gave it, wherever redirects led.
    let found = job.redirected_from.first().unwrap_or(&job.url);
    let stem = urls::file_stem(found).unwrap_or_else(|| "image".to_string());
    let name = job.name.clone().unwrap_or_else(|| stem.clone());
    let (width, height) = body.dimensions().unzip();
    let row =
        |path: PathBuf, duplicate_of: Option<PathBuf>, duplicate_on: Option<String>| ManifestRow {
            url: found.to_string(),
            page: job.page.to_string(),
            name: name.clone(),
            duplicate_of,
            duplicate_on,
            path,
            bytes: total,
            sha256: sha256.clone(),
            content_type: kind.mime().to_string(),
            width,
            height,
            first_seen: None,
            last_seen: None,
            gone_since: None,
            previous: None,
            changed: None,
        };
    if let Some(claims) = claims {
        if let Some((by, path)) = stored_elsewhere(claims, &sha256).await {
            // Another process holds these bytes: record where, store nothing.
            return Ok(ImageDone::Saved {
                temp: None,
                row: Box::new(row(path.clone(), Some(path), Some(by))),
                validators,
            });
        }
    }
    let request = WriteImage {
        tmp,
        data: std::mem::take(&mut body.pending),
        sha256: sha256.clone(),
        name: ImageName {
            host: found.host_str().unwrap_or("unknown-host").to_string(),
            page_host: job.page.host_str().unwrap_or("unknown-host").to_string(),
            name: name.clone(),
            stem,
            dir: urls::dir_path(found),
            ext: kind.extension(),
        },
        replaces: before.map(|b| Box::new(b.row)),
    };
    let first_seen = request.replaces.as_ref().and_then(|r| r.first_seen.clone());
    let stored = writer.send(request).await.map_err(lost_writer)??;
    let duplicate_of = stored.duplicate.then(|| stored.path.clone());
    let mut row = row(stored.path, duplicate_of, None);
    row.previous = stored.previous;
    row.first_seen = first_seen;
    Ok(ImageDone::Saved {
        temp: stored.temp,
        row: Box::new(row),
        validators,
    })
}

fn not_image() -> Failure {
    Failure::new(
        FailureKind::NotImage,
        "the bytes are not a known image format",
    )
}

impl Handler<SaveImage> for ImageSaver {
    type Result = ResponseActFuture<Self, Result<ImageDone, Failure>>;

    fn handle(&mut self, m: SaveImage, _: &mut Context<Self>) -> Self::Result {
        let io = self.io.clone();
        Box::pin(
            async move {
                let (mut body, mut done) = (Body::default(), m.body_done);
                let writer = io.writer.clone();
                let result = download(io, m.job, m.tmp, &mut body, &mut done).await;
                // Bytes spilled to the temporary file stay only for an image stored here.
                let stored = matches!(&result, Ok(ImageDone::Saved { temp: Some(_), .. }));
                if body.spilled && !stored {
                    writer.do_send(DiscardTemp { tmp: m.tmp });
                }
                result
            }
            .into_actor(self),
        )
    }
}

impl Handler<Retire> for ImageSaver {
    type Result = ();

    fn handle(&mut self, _: Retire, ctx: &mut Context<Self>) {
        ctx.stop();
    }
}

impl Handler<Crash> for ImageSaver {
    type Result = ();

    fn handle(&mut self, _: Crash, _: &mut Context<Self>) {
        panic!("ImageSaver crashed on request (fault injection)");
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A JPEG-shaped body whose size header (SOF0) sits after `pad` bytes of an APP1 segment.
    fn jpeg_with_late_header(pad: u16, width: u16, height: u16) -> Vec<u8> {
        let mut b = vec![0xFF, 0xD8, 0xFF, 0xE1];
        b.extend_from_slice(&(pad + 2).to_be_bytes());
        b.extend(std::iter::repeat_n(0x20, usize::from(pad)));
        b.extend_from_slice(&[0xFF, 0xC0, 0x00, 0x11, 0x08]);
        b.extend_from_slice(&height.to_be_bytes());
        b.extend_from_slice(&width.to_be_bytes());
        b.extend_from_slice(&[3, 1, 0x22, 0, 2, 0x11, 1, 3, 0x11, 1]);
        b.extend_from_slice(&[0xFF, 0xD9]);
        b
    }

    /// Feeds `bytes` to a Body in chunks of `size`, spilling like the download loop does (at
    /// `spill_at` pending bytes); answers the body and everything spilled, in order.
    fn feed(bytes: &[u8], size: usize, spill_at: usize) -> (Body, Vec<u8>) {
        let mut body = Body::default();
        let mut spilled = Vec::new();
        for c in bytes.chunks(size) {
            body.push(Bytes::copy_from_slice(c));
            if body.pending_len >= spill_at {
                for part in body.take_for_spill() {
                    spilled.extend_from_slice(&part);
                }
            }
        }
        (body, spilled)
    }

    #[test]
    fn a_body_in_chunks_gives_the_same_head_tail_size_and_bytes_as_one_buffer() {
        let png = crate::sample_site::png(7, 700, 600); // about 1.2 MiB
        let jpeg = jpeg_with_late_header(40_000, 321, 123);
        for (bytes, dims) in [(&png, (700, 600)), (&jpeg, (321, 123))] {
            for size in [7, 1000, 16 * 1024, 100_000, bytes.len()] {
                for spill_at in [SPILL_BYTES, 50_000, usize::MAX] {
                    let (mut body, mut all) = feed(bytes, size, spill_at);
                    let what = format!(
                        "{} bytes in chunks of {size}, spilling at {spill_at}",
                        bytes.len()
                    );
                    assert_eq!(body.total, bytes.len() as u64, "{what}");
                    assert_eq!(body.head(SNIFF_LEN), &bytes[..SNIFF_LEN], "{what}");
                    assert_eq!(body.tail(), &bytes[bytes.len() - TAIL_LEN..], "{what}");
                    assert_eq!(body.dimensions(), Some(dims), "{what}");
                    let kind = sniff::sniff(body.head(SNIFF_LEN)).unwrap();
                    let (tail, total) = (body.tail(), body.total);
                    assert!(sniff::looks_complete(
                        kind,
                        body.head(SNIFF_LEN),
                        &tail,
                        total
                    ));
                    for part in std::mem::take(&mut body.pending) {
                        all.extend_from_slice(&part);
                    }
                    assert!(all == *bytes, "{what}: the bytes handed over differ");
                    let digest = format!("{:x}", std::mem::take(&mut body.hasher).finalize());
                    assert_eq!(digest, format!("{:x}", Sha256::digest(bytes)), "{what}");
                }
            }
        }
    }

    #[test]
    fn the_first_bytes_are_borrowed_from_the_first_chunk_when_it_holds_them() {
        let png = crate::sample_site::png(3, 40, 40);
        let (mut body, _) = feed(&png, png.len(), usize::MAX);
        assert_eq!(body.dimensions(), Some((40, 40)));
        assert_eq!(body.head(SNIFF_LEN), &png[..SNIFF_LEN]);
        assert!(body.head_copy.is_empty(), "a one-chunk body was copied");
        // Spread over chunks, the head is copied once, and only as far as HEAD_BYTES.
        let big = crate::sample_site::png(3, 300, 300);
        let (mut body, _) = feed(&big, 10, usize::MAX);
        assert_eq!(body.head(HEAD_BYTES), &big[..HEAD_BYTES]);
        assert_eq!(body.head_copy.len(), HEAD_BYTES);
    }
}
