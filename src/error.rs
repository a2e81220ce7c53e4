//! Error types: fatal start-up and runtime errors (which end the program), and the per-URL failure
//! kinds that are recorded in `errors.jsonl`, counted, and never stop a crawl.

use std::fmt;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use crate::settings::SettingsError;

/// An error that ends a crawl or prevents it from starting. Per-URL problems are [`Failure`]s
/// instead. Each keeps the error it came from as its [`source`](std::error::Error::source).
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// The configuration is wrong; the message names the key and where its value came from.
    #[error(transparent)]
    Settings(#[from] SettingsError),
    /// A file or directory of the output could not be created, read or written.
    #[error("{action} {}: {source}", path.display())]
    Io {
        /// What was being done, e.g. "cannot create output directory".
        action: &'static str,
        /// The path involved.
        path: PathBuf,
        /// The operating system's error.
        #[source]
        source: std::io::Error,
    },
    /// The state database could not be read or written.
    #[error("{action} {}: {source}", path.display())]
    State {
        /// What was being done, e.g. "cannot commit the crawl state in".
        action: &'static str,
        /// The database file.
        path: PathBuf,
        /// SQLite's error.
        #[source]
        source: rusqlite::Error,
    },
    /// The state database was used before the output was opened (a bug in the caller).
    #[error("the state database is not open")]
    NotOpen,
    /// The output directory holds a crawl this one cannot carry on from.
    #[error("{} cannot be resumed: {source}. Run with --fresh to start over there, or choose another output directory", dir.display())]
    Resume {
        /// The output directory.
        dir: PathBuf,
        /// What is wrong with its state.
        #[source]
        source: StateError,
    },
    /// Another crawl is working in the output directory.
    #[error("{} is in use by {holder}; wait for it to end, or choose another output directory", dir.display())]
    Busy {
        /// The output directory.
        dir: PathBuf,
        /// Who holds it, e.g. "another imgcrawl crawl (PID 4242)".
        holder: String,
    },
    /// A symbolic link stands where imgcrawl writes its own files.
    #[error("{} is a symbolic link; imgcrawl never writes through one inside its output directory. Remove it, or choose another output directory", path.display())]
    Symlink {
        /// The link.
        path: PathBuf,
    },
    /// An image could not be written because of the disk (full, read-only, failing).
    #[error("{url}: {source}")]
    ImageWrite {
        /// The image's URL.
        url: String,
        /// What the writer said.
        #[source]
        source: Failure,
    },
    /// Writing to the output directory failed during the crawl (for example the disk is full).
    #[error("cannot write to the output directory: {0}; the state and the files saved so far are intact, run the same command again once this is fixed")]
    Disk(#[source] Arc<Error>),
    /// The shared crawl's Redis could not be used (not reachable, not a Redis).
    #[error("cannot use Redis at {url} ({what}): {source}")]
    Cluster {
        /// The Redis URL, without its password.
        url: String,
        /// What was being done.
        what: &'static str,
        /// Redis's error.
        #[source]
        source: redis::RedisError,
    },
    /// The shared crawl's Redis refused the credentials of `distributed.redis_url`.
    #[error("Redis at {url} refused the credentials (the user and password of --redis or distributed.redis_url): {source}")]
    ClusterAuth {
        /// The Redis URL, without its password.
        url: String,
        /// Redis's error.
        #[source]
        source: redis::RedisError,
    },
    /// `imgcrawl check` could not fetch or read the page `url`.
    #[error("cannot fetch and read {url}: {source}")]
    Check {
        /// The page's URL (or the redirect hop's that failed).
        url: String,
        /// Why.
        #[source]
        source: Failure,
    },
    /// The metrics server (`metrics`) could not listen on its address.
    #[error("cannot serve metrics on {addr} (key metrics): {source}")]
    Metrics {
        /// The address.
        addr: String,
        /// The operating system's error.
        #[source]
        source: std::io::Error,
    },
    /// The gallery (`imgcrawl view`) could not listen on its address.
    #[error("cannot serve the gallery on {addr} (--addr): {source}")]
    View {
        /// The address.
        addr: String,
        /// The operating system's error.
        #[source]
        source: std::io::Error,
    },
    /// The crawl's actors stopped answering (for example the System was shut down under it).
    #[error("crawl aborted: {what} stopped: {source}")]
    Aborted {
        /// Which actor, e.g. "the disk writer".
        what: &'static str,
        /// actix's error, or the dropped channel's.
        #[source]
        source: Box<dyn std::error::Error + Send + Sync>,
    },
    /// The error that ended a crawl, told again to each caller that asks for its report.
    #[error(transparent)]
    Ended(Arc<Error>),
    /// A command-line value that cannot be read; the message names the flag.
    #[error("{0}")]
    Usage(String),
}

/// Why a state database cannot be carried on from.
#[derive(Debug, thiserror::Error)]
pub enum StateError {
    /// SQLite could not open or read it (a corrupt file, say).
    #[error(transparent)]
    Sqlite(#[from] rusqlite::Error),
    /// Another version of imgcrawl wrote it.
    #[error("it was written by another version of imgcrawl (state schema {0})")]
    OtherVersion(String),
    /// It holds a crawl of other start URLs.
    #[error("it holds a crawl of other start URLs: {0}")]
    OtherCrawl(String),
}

impl Error {
    /// Builds an [`Error::Io`] for `path`.
    pub fn io(action: &'static str, path: impl Into<PathBuf>, source: std::io::Error) -> Self {
        Error::Io {
            action,
            path: path.into(),
            source,
        }
    }

    /// Builds an [`Error::State`] for the database at `path`.
    pub fn state(action: &'static str, path: impl Into<PathBuf>, source: rusqlite::Error) -> Self {
        Error::State {
            action,
            path: path.into(),
            source,
        }
    }

    /// Builds an [`Error::Aborted`]: the actor `what` stopped answering.
    pub fn aborted(
        what: &'static str,
        source: impl std::error::Error + Send + Sync + 'static,
    ) -> Self {
        Error::Aborted {
            what,
            source: Box::new(source),
        }
    }

    /// The error itself, looking through [`Error::Ended`].
    fn root(&self) -> &Error {
        match self {
            Error::Ended(e) => e.root(),
            e => e,
        }
    }

    /// Whether the command could not start as asked (the configuration, an output directory held
    /// by another crawl or by another crawl's state, a planted link, Redis credentials), rather
    /// than failing while it ran.
    pub fn is_usage(&self) -> bool {
        matches!(
            self.root(),
            Error::Settings(_)
                | Error::Resume { .. }
                | Error::Busy { .. }
                | Error::Symlink { .. }
                | Error::ClusterAuth { .. }
                | Error::Usage(_)
        )
    }
}

/// Why one page or image could not be fetched or saved. Serialised into `errors.jsonl` as `error`.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum FailureKind {
    /// No response head, or the body did not finish, within the configured time.
    Timeout,
    /// The connection could not be made or broke (refused, reset, DNS).
    Connect,
    /// The server answered with a status that is not success.
    Status(u16),
    /// The body ended before `Content-Length` bytes arrived.
    Truncated,
    /// The body was larger than the configured limit.
    TooLarge,
    /// The bytes are not a known image format (for example an HTML error page).
    NotImage,
    /// A redirect pointed back to a URL already visited in the same chain.
    RedirectLoop,
    /// More redirects than `http.max_redirects`.
    TooManyRedirects,
    /// A redirect led outside `scope.allowed_hosts`.
    OutOfScope,
    /// The response could not be read or decoded.
    Body,
    /// The URL cannot be requested (unsupported scheme, malformed).
    BadUrl,
    /// The address is not public and `http.block_private_addresses` is on (not retried).
    Blocked,
    /// The server's TLS certificate is not trusted (unknown authority, expired, another name);
    /// not retried.
    Tls,
    /// Writing to disk failed.
    Disk,
    /// No file name could be made for the image in the output directory (every candidate was in
    /// the way of another file or directory, a symbolic link, too long, or not writable); that
    /// image alone fails.
    Name,
    /// The worker handling the job died too many times while holding it.
    WorkerLost,
    /// robots.txt kept failing (5xx, 429, ...): the host is treated as disallowed, as RFC 9309
    /// says, and its URLs fail (unlike URLs robots.txt disallows, which are skipped).
    RobotsUnavailable,
    /// The page took longer than `extract.parse_timeout_secs` to parse and read (not retried).
    TooComplex,
    /// robots.txt does not allow the URL for our user agent (or could not be fetched: the host is
    /// then treated as disallowed, as RFC 9309 says).
    Robots,
}

impl FailureKind {
    /// Whether trying again later may succeed (timeouts, connection trouble, cut-off bodies, 5xx,
    /// 408 and 429). Other failures are final, including a job that kept losing its worker.
    pub fn is_retryable(&self) -> bool {
        match self {
            FailureKind::Timeout
            | FailureKind::Connect
            | FailureKind::Truncated
            | FailureKind::Body => true,
            FailureKind::Status(code) => *code >= 500 || *code == 408 || *code == 429,
            _ => false,
        }
    }
}

impl fmt::Display for FailureKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            FailureKind::Timeout => f.write_str("timeout"),
            FailureKind::Connect => f.write_str("connection failed"),
            FailureKind::Status(code) => write!(f, "status {code}"),
            FailureKind::Truncated => f.write_str("truncated body"),
            FailureKind::TooLarge => f.write_str("too large"),
            FailureKind::NotImage => f.write_str("not an image"),
            FailureKind::RedirectLoop => f.write_str("redirect loop"),
            FailureKind::TooManyRedirects => f.write_str("too many redirects"),
            FailureKind::OutOfScope => f.write_str("redirect out of scope"),
            FailureKind::Body => f.write_str("body error"),
            FailureKind::BadUrl => f.write_str("bad url"),
            FailureKind::Disk => f.write_str("disk error"),
            FailureKind::Blocked => f.write_str("blocked address"),
            FailureKind::Tls => f.write_str("tls"),
            FailureKind::Name => f.write_str("cannot name"),
            FailureKind::WorkerLost => f.write_str("worker lost"),
            FailureKind::Robots => f.write_str("robots"),
            FailureKind::TooComplex => f.write_str("too complex"),
            FailureKind::RobotsUnavailable => f.write_str("robots.txt unavailable"),
        }
    }
}

/// One failed attempt: its kind, a human detail (the underlying error text) and, when the server
/// said so, how long to wait before asking again.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Failure {
    /// The classified reason.
    pub kind: FailureKind,
    /// The underlying error message, for people.
    pub detail: String,
    /// The server's `Retry-After`, converted to a wait from when the answer arrived.
    pub retry_after: Option<Duration>,
}

impl Failure {
    /// Builds a failure of `kind` with a detail message.
    pub fn new(kind: FailureKind, detail: impl Into<String>) -> Self {
        Failure {
            kind,
            detail: detail.into(),
            retry_after: None,
        }
    }
}

impl std::error::Error for Failure {}

impl fmt::Display for Failure {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.detail.is_empty() {
            write!(f, "{}", self.kind)
        } else {
            write!(f, "{}: {}", self.kind, self.detail)
        }
    }
}
