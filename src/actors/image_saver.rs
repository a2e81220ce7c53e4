//! ImageSaver: downloads one image at a time, checks it while it streams (byte limit, real image
//! type from the first bytes, length against Content-Length, the format's own end mark), hashes it,
//! and hands the bytes to the DiskWriter, which names and stores it. A pool of them runs spread over
//! the arbiter threads; their number is how many images download at once.
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
use bytes::BytesMut;
use sha2::{Digest, Sha256};
use url::Url;

use super::disk_writer::{AppendTemp, DiscardTemp, DiskWriter, ImageName, WriteImage};
use super::{Crash, DeathGuard};
use crate::cluster::BytesClaim;
use crate::error::{Failure, FailureKind};
use crate::frontier::ImageJob;
use crate::http::{self, BodyDone};
use crate::records::ManifestRow;
use crate::settings::Settings;
use crate::sniff::{self, SNIFF_LEN, TAIL_LEN};
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

/// Asks the shared crawl whether another process stores these bytes already, or claims them for
/// this one (answers an error text when Redis cannot be asked).
#[derive(Debug, Message)]
#[rtype(result = "Result<BytesClaim, String>")]
pub struct ClaimBytes {
    /// Hex SHA-256 of the bytes.
    pub sha256: String,
}

/// What downloading an image gave.
#[derive(Debug, Clone)]
pub enum ImageDone {
    /// Stored (or recognised as a copy of bytes already stored).
    Saved {
        /// Its manifest row.
        row: ManifestRow,
        /// The complete temporary file to move to `row.path` once the state is committed.
        temp: Option<std::path::PathBuf>,
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
    client: awc::Client,
    /// The crawl's configuration.
    settings: Arc<Settings>,
    /// Where verified bytes go.
    writer: Addr<DiskWriter>,
    /// In a shared crawl: who to ask before storing bytes.
    claims: Option<Recipient<ClaimBytes>>,
}

impl ImageSaver {
    /// A saver for `settings`; call on the arbiter thread it will run on. In a shared crawl,
    /// `claims` is asked before any bytes are stored.
    pub fn new(
        settings: Arc<Settings>,
        writer: Addr<DiskWriter>,
        claims: Option<Recipient<ClaimBytes>>,
        guard: DeathGuard,
    ) -> Self {
        ImageSaver {
            io: Io {
                client: http::client(&settings.http),
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

/// What is known about a body while it streams.
#[derive(Default)]
struct Body {
    /// Bytes not yet handed to the DiskWriter.
    pending: BytesMut,
    /// The first bytes, for the type and dimensions.
    head: Vec<u8>,
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
    /// The last [`TAIL_LEN`] bytes received, copying only those.
    fn tail(&self) -> Vec<u8> {
        let from_pending = self.pending.len().min(TAIL_LEN);
        let from_spilled = (TAIL_LEN - from_pending).min(self.spilled_tail.len());
        let mut t = Vec::with_capacity(from_spilled + from_pending);
        t.extend_from_slice(&self.spilled_tail[self.spilled_tail.len() - from_spilled..]);
        t.extend_from_slice(&self.pending[self.pending.len() - from_pending..]);
        t
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
    let mut fetched = match http::get(&client, &job.url, &settings.http).await? {
        http::Answer::Redirect(to) => return Ok(ImageDone::Redirected(to)),
        http::Answer::Body(fetched) => fetched,
    };
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
        body.total += chunk.len() as u64;
        body.hasher.update(&chunk);
        if body.head.len() < HEAD_BYTES {
            let take = (HEAD_BYTES - body.head.len()).min(chunk.len());
            body.head.extend_from_slice(&chunk[..take]);
        }
        if kind.is_none() && body.head.len() >= SNIFF_LEN {
            // Decide early: an HTML error page is abandoned after its first bytes.
            kind = Some(sniff::sniff(&body.head).ok_or_else(not_image)?);
        }
        if let Some(skip) = filter.wrong_size(body.total, false) {
            return Ok(ImageDone::Skipped(skip));
        }
        if measure && kind.is_some() {
            // A too-small image is abandoned here, without the rest of its bytes.
            if let Some((w, h)) = sniff::dimensions(&body.head) {
                measure = false;
                if let Some(skip) = filter.too_small(w, h) {
                    return Ok(ImageDone::Skipped(skip));
                }
            }
        }
        body.pending.extend_from_slice(&chunk);
        if body.pending.len() >= SPILL_BYTES {
            body.spilled_tail = body.tail();
            let data = body.pending.split().freeze();
            writer
                .send(AppendTemp { tmp, data })
                .await
                .map_err(lost_writer)??;
            body.spilled = true;
        }
    }
    done.fire();
    let kind = match kind {
        Some(k) => k,
        None => sniff::sniff(&body.head).ok_or_else(not_image)?,
    };
    if !sniff::looks_complete(kind, &body.head, &body.tail(), body.total) {
        return Err(Failure::new(
            FailureKind::Truncated,
            format!("{} data ends early", kind.extension()),
        ));
    }
    if let Some(skip) = filter.wrong_size(body.total, true) {
        return Ok(ImageDone::Skipped(skip));
    }
    let sha256 = format!("{:x}", std::mem::take(&mut body.hasher).finalize());
    // Records and names follow the URL as the page gave it, wherever redirects led.
    let found = job.redirected_from.first().unwrap_or(&job.url);
    let stem = urls::file_stem(found).unwrap_or_else(|| "image".to_string());
    let name = job.name.clone().unwrap_or_else(|| stem.clone());
    let (width, height) = sniff::dimensions(&body.head).unzip();
    let total = body.total;
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
        };
    if let Some(claims) = &claims {
        if let Some((by, path)) = stored_elsewhere(claims, &sha256).await {
            // Another process holds these bytes: record where, store nothing.
            return Ok(ImageDone::Saved {
                temp: None,
                row: row(path.clone(), Some(path), Some(by)),
            });
        }
    }
    let request = WriteImage {
        tmp,
        data: body.pending.split().freeze(),
        sha256: sha256.clone(),
        name: ImageName {
            host: found.host_str().unwrap_or("unknown-host").to_string(),
            page_host: job.page.host_str().unwrap_or("unknown-host").to_string(),
            name: name.clone(),
            stem,
            dir: urls::dir_path(found),
            ext: kind.extension(),
        },
    };
    let stored = writer.send(request).await.map_err(lost_writer)??;
    let duplicate_of = stored.duplicate.then(|| stored.path.clone());
    Ok(ImageDone::Saved {
        temp: stored.temp,
        row: row(stored.path, duplicate_of, None),
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

impl Handler<Crash> for ImageSaver {
    type Result = ();

    fn handle(&mut self, _: Crash, _: &mut Context<Self>) {
        panic!("ImageSaver crashed on request (fault injection)");
    }
}
