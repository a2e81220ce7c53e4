//! Reading a response body: decoding its Content-Encoding ourselves with a bounded output, under a
//! byte limit counted after decompression and the request's deadline, and checking that it arrived
//! whole (awc returns a body cut short as a success).

use awc::error::PayloadError;
use awc::http::header;
use awc::ClientResponse;
use bytes::{Bytes, BytesMut};
use futures_util::{Stream, StreamExt};
use tokio::time::Instant;

use crate::error::{Failure, FailureKind};

/// A response whose head arrived with a success status; its body is still to be read, chunk by
/// chunk, with [`Fetched::next_chunk`].
pub struct Fetched<S> {
    /// The response.
    pub response: ClientResponse<S>,
    /// When the whole request (head and body) must be done.
    pub deadline: Instant,
    /// Undoes the Content-Encoding as the body streams.
    decoder: Decoder,
    /// Bytes received as sent (before decoding), to compare with Content-Length.
    raw_bytes: u64,
    /// Bytes after decoding, the ones the limits apply to.
    body_bytes: u64,
    /// The body has ended (and was checked).
    done: bool,
}

/// The encodings we ask for. We decode them ourselves, with a bounded output, because a decoder
/// that inflates a whole chunk at once lets a tiny compressed body fill memory.
pub(super) const ACCEPT_ENCODING: &str = "gzip, deflate";

/// A streaming Content-Encoding decoder whose output is taken after each chunk.
enum Decoder {
    Identity,
    Gzip(Box<flate2::write::MultiGzDecoder<Sink>>),
    Deflate(Box<flate2::write::ZlibDecoder<Sink>>),
}

/// Where a decoder writes: the bytes of the current chunk, refusing to grow past the limit.
struct Sink {
    out: Vec<u8>,
    room: u64,
}

impl std::io::Write for Sink {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        if buf.len() as u64 > self.room {
            return Err(std::io::Error::other(SINK_FULL));
        }
        self.room -= buf.len() as u64;
        self.out.extend_from_slice(buf);
        Ok(buf.len())
    }

    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

/// The error text by which a full [`Sink`] is told apart from corrupt data.
const SINK_FULL: &str = "decoded body over the limit";

impl Decoder {
    /// The decoder for a Content-Encoding header value, or a failure for one we did not ask for.
    fn for_encoding(value: Option<&str>) -> Result<Decoder, Failure> {
        let sink = || Sink {
            out: Vec::new(),
            room: 0,
        };
        match value.map(|v| v.trim().to_ascii_lowercase()).as_deref() {
            None | Some("") | Some("identity") => Ok(Decoder::Identity),
            Some("gzip") | Some("x-gzip") => Ok(Decoder::Gzip(Box::new(
                flate2::write::MultiGzDecoder::new(sink()),
            ))),
            Some("deflate") => Ok(Decoder::Deflate(Box::new(flate2::write::ZlibDecoder::new(
                sink(),
            )))),
            Some(other) => Err(Failure::new(
                FailureKind::Body,
                format!("unsupported Content-Encoding `{other}` (we asked for {ACCEPT_ENCODING})"),
            )),
        }
    }

    /// Decodes `input` (or, when `None`, finishes the stream) allowing `room` more output bytes.
    fn feed(&mut self, input: Option<&[u8]>, room: u64) -> Result<Vec<u8>, Failure> {
        fn run<W: std::io::Write>(
            w: &mut W,
            sink: impl Fn(&mut W) -> &mut Sink,
            input: Option<&[u8]>,
            finish: impl FnOnce(&mut W) -> std::io::Result<()>,
            room: u64,
        ) -> Result<Vec<u8>, Failure> {
            sink(w).room = room;
            let result = match input {
                Some(bytes) => w.write_all(bytes),
                None => finish(w),
            };
            let out = std::mem::take(&mut sink(w).out);
            result.map_err(|e| {
                if e.to_string() == SINK_FULL {
                    Failure::new(FailureKind::TooLarge, "decompressed body over the limit")
                } else if input.is_none() {
                    Failure::new(
                        FailureKind::Truncated,
                        format!("compressed body ends early: {e}"),
                    )
                } else {
                    Failure::new(FailureKind::Body, format!("corrupt compressed body: {e}"))
                }
            })?;
            Ok(out)
        }
        match self {
            Decoder::Identity => Ok(input.map(<[u8]>::to_vec).unwrap_or_default()),
            Decoder::Gzip(d) => run(d.as_mut(), |d| d.get_mut(), input, |d| d.try_finish(), room),
            Decoder::Deflate(d) => {
                run(d.as_mut(), |d| d.get_mut(), input, |d| d.try_finish(), room)
            }
        }
    }
}

impl<S> Fetched<S>
where
    S: Stream<Item = Result<Bytes, PayloadError>> + Unpin,
{
    /// Starts reading the body of `response`, which must be whole by `deadline`; fails for a
    /// Content-Encoding we did not ask for.
    pub(super) fn new(response: ClientResponse<S>, deadline: Instant) -> Result<Self, Failure> {
        let decoder = Decoder::for_encoding(
            response
                .headers()
                .get(header::CONTENT_ENCODING)
                .and_then(|v| v.to_str().ok()),
        )?;
        Ok(Fetched {
            response,
            deadline,
            decoder,
            raw_bytes: 0,
            body_bytes: 0,
            done: false,
        })
    }

    /// The response's `ETag` and `Last-Modified`, to send back in a conditional request later.
    pub fn validators(&self) -> crate::job::Validators {
        let get = |name| {
            self.response
                .headers()
                .get(name)
                .and_then(|v| v.to_str().ok())
                .map(|v| v.trim().to_string())
                .filter(|v| !v.is_empty() && v.len() <= 256)
        };
        crate::job::Validators {
            etag: get(header::ETAG),
            modified: get(header::LAST_MODIFIED),
        }
    }

    /// The Content-Length the server announced (of the body as sent, before decoding).
    pub fn announced_length(&self) -> Option<u64> {
        self.response
            .headers()
            .get(header::CONTENT_LENGTH)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.trim().parse().ok())
    }

    /// The length of the body after decoding, when the server announced it (an unencoded body
    /// with a Content-Length).
    pub fn announced_body(&self) -> Option<u64> {
        match self.decoder {
            Decoder::Identity => self.announced_length(),
            _ => None,
        }
    }

    /// Fails at once when the announced length of an unencoded body is over `limit`.
    pub fn check_announced(&self, limit: u64) -> Result<(), Failure> {
        match (&self.decoder, self.announced_length()) {
            (Decoder::Identity, Some(n)) if n > limit => Err(too_large(limit)),
            _ => Ok(()),
        }
    }

    /// The next decoded chunk of the body; `None` at its end, which is only reached after checking
    /// that the body arrived whole (Content-Length, and the compressed stream's own end). Fails with
    /// [`FailureKind::TooLarge`] as soon as more than `limit` decoded bytes came, and with
    /// [`FailureKind::Timeout`] once the request's deadline has passed.
    pub async fn next_chunk(&mut self, limit: u64) -> Result<Option<Bytes>, Failure> {
        while !self.done {
            let room = limit.saturating_sub(self.body_bytes);
            let next = match tokio::time::timeout_at(self.deadline, self.response.next()).await {
                Err(_) => {
                    return Err(Failure::new(
                        FailureKind::Timeout,
                        "body not complete within the request timeout",
                    ))
                }
                Ok(next) => next.transpose().map_err(classify_payload)?,
            };
            let announced = self.announced_length();
            let out = match (next, &mut self.decoder) {
                (Some(raw), Decoder::Identity) => {
                    self.raw_bytes += raw.len() as u64;
                    if raw.len() as u64 > room {
                        return Err(too_large(limit));
                    }
                    raw
                }
                (Some(raw), decoder) => {
                    self.raw_bytes += raw.len() as u64;
                    Bytes::from(decoder.feed(Some(&raw), room)?)
                }
                (None, decoder) => {
                    self.done = true;
                    check_length(announced, self.raw_bytes)?;
                    Bytes::from(decoder.feed(None, room)?)
                }
            };
            self.body_bytes += out.len() as u64;
            if !out.is_empty() {
                return Ok(Some(out));
            }
        }
        Ok(None)
    }

    /// Decoded bytes received so far.
    pub fn body_bytes(&self) -> u64 {
        self.body_bytes
    }
}

/// Checks the received byte count against the promised length.
fn check_length(expected: Option<u64>, received: u64) -> Result<(), Failure> {
    match expected {
        Some(n) if n != received => Err(Failure::new(
            FailureKind::Truncated,
            format!("received {received} of {n} bytes"),
        )),
        _ => Ok(()),
    }
}

/// Reads a whole body of at most `limit` decoded bytes, checking it arrived complete.
pub async fn read_body<S>(fetched: &mut Fetched<S>, limit: u64) -> Result<Bytes, Failure>
where
    S: Stream<Item = Result<Bytes, PayloadError>> + Unpin,
{
    fetched.check_announced(limit)?;
    let mut body = BytesMut::new();
    while let Some(chunk) = fetched.next_chunk(limit).await? {
        body.extend_from_slice(&chunk);
    }
    Ok(body.freeze())
}

/// Reads at most the first `limit` decoded bytes of a body and drops the rest (for robots.txt, of
/// which the standard asks that at least 500 KiB be parsed). Decoding stops with
/// [`FailureKind::TooLarge`] past four times `limit`, so a compressed bomb stays harmless.
pub async fn read_prefix<S>(fetched: &mut Fetched<S>, limit: usize) -> Result<Bytes, Failure>
where
    S: Stream<Item = Result<Bytes, PayloadError>> + Unpin,
{
    let mut body = BytesMut::new();
    loop {
        match fetched.next_chunk(4 * limit as u64).await? {
            None => break,
            Some(chunk) => {
                let take = (limit - body.len()).min(chunk.len());
                body.extend_from_slice(&chunk[..take]);
                if body.len() == limit {
                    break;
                }
            }
        }
    }
    Ok(body.freeze())
}

/// The failure for a body over `limit` bytes.
pub fn too_large(limit: u64) -> Failure {
    Failure::new(FailureKind::TooLarge, format!("larger than {limit} bytes"))
}

/// Classifies an error while reading a body.
pub fn classify_payload(e: PayloadError) -> Failure {
    let kind = match &e {
        PayloadError::Overflow => FailureKind::TooLarge,
        PayloadError::Incomplete(_) => FailureKind::Truncated,
        PayloadError::Io(io) if io.kind() == std::io::ErrorKind::TimedOut => FailureKind::Timeout,
        PayloadError::Io(_) => FailureKind::Truncated,
        _ => FailureKind::Body,
    };
    Failure::new(kind, e.to_string())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn gzip(data: &[u8]) -> Vec<u8> {
        use std::io::Write;
        let mut e = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::best());
        e.write_all(data).unwrap();
        e.finish().unwrap()
    }

    #[test]
    fn decoding_is_bounded_and_notices_a_cut_stream() {
        // 64 MiB of zeros compress to about 64 KiB: a bomb against a 1 MiB limit.
        let bomb = gzip(&vec![0u8; 64 << 20]);
        assert!(bomb.len() < 100_000, "{}", bomb.len());
        let mut d = Decoder::for_encoding(Some("gzip")).unwrap();
        let mut total = 0u64;
        let mut failure = None;
        for chunk in bomb.chunks(16 * 1024) {
            match d.feed(Some(chunk), (1 << 20) - total) {
                Ok(out) => total += out.len() as u64,
                Err(f) => {
                    failure = Some(f);
                    break;
                }
            }
        }
        assert_eq!(failure.map(|f| f.kind), Some(FailureKind::TooLarge));
        assert!(total <= 1 << 20);

        let page = gzip("<p>完整</p>".repeat(100).as_bytes());
        let mut d = Decoder::for_encoding(Some("GZIP")).unwrap();
        let mut out = d.feed(Some(&page), 1 << 20).unwrap();
        out.extend(d.feed(None, 1 << 20).unwrap());
        assert_eq!(out, "<p>完整</p>".repeat(100).as_bytes());

        let mut d = Decoder::for_encoding(Some("gzip")).unwrap();
        d.feed(Some(&page[..page.len() / 2]), 1 << 20).unwrap();
        assert_eq!(
            d.feed(None, 1 << 20).unwrap_err().kind,
            FailureKind::Truncated
        );

        assert_eq!(
            Decoder::for_encoding(Some("br")).err().map(|f| f.kind),
            Some(FailureKind::Body)
        );
    }
}
