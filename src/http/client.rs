//! The HTTP client of a thread: awc with the crawl's trusted roots, ALPN and proxy, shared by the
//! workers of that thread (one connection pool, so an HTTP/2 host gets one connection whose streams
//! they all use), and the wait that lets a burst of requests to a new https host share its first
//! connection.

use std::cell::RefCell;
use std::collections::HashMap;
use std::rc::Rc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use awc::http::header;
use url::Url;

use super::proxy;
use crate::settings::HttpSettings;

/// An HTTP client: awc's, with its connection pool, and which hosts it has connections to. Clones
/// share both, so the workers of one thread share connections (and an HTTP/2 connection's
/// streams). Not `Send`: build one per thread, with [`client`].
#[derive(Clone)]
pub struct Client {
    pub(super) awc: awc::Client,
    /// https hosts (`host:port`) whose first connection is being opened or is open.
    opened: Rc<RefCell<HashMap<String, Opening>>>,
}

/// The first connection to an https host, being opened or open.
#[derive(Clone)]
enum Opening {
    /// Being opened: others wait for it, so that over HTTP/2 they share it.
    Pending(Rc<tokio::sync::Notify>),
    /// Open: requests go ahead (the pool has the connection, or knows it is HTTP/1.1).
    Open,
}

/// Builds the HTTP client for one thread: TLS with the crawl's trusted roots and ALPN (HTTP/2 when
/// the server offers it), through the configured proxy for the hosts it is for, with the private
/// address guard's resolver when it is on.
pub fn client(http: &HttpSettings) -> Client {
    // The same client either way; only the connector's type differs.
    macro_rules! finish {
        ($connector:expr) => {
            awc::Client::builder()
                .connector($connector)
                .timeout(http.head_timeout)
                .disable_redirects()
                .add_default_header((header::USER_AGENT, http.user_agent.as_str()))
                .finish()
        };
    }
    // The TLS configuration last: awc rebuilds its own on some other calls (max_http_version).
    let connector = awc::Connector::new()
        .timeout(http.connect_timeout)
        .limit(0)
        .rustls_0_23(http.tls.clone());
    let resolver = if http.block_private {
        // Names are resolved by a resolver that keeps only public addresses.
        actix_tls::connect::Resolver::custom(crate::netguard::PublicOnly)
    } else {
        actix_tls::connect::Resolver::default()
    };
    let direct = actix_tls::connect::Connector::new(resolver).service();
    let awc = if http.proxy.is_direct() {
        finish!(connector.connector(direct))
    } else {
        finish!(connector.connector(proxy::Dial {
            routes: Rc::new(http.proxy.clone()),
            direct,
        }))
    };
    Client {
        awc,
        opened: Rc::default(),
    }
}

impl Client {
    /// Waits, for an https host this client has no connection to yet, until the first request
    /// to it has its answer's head: a burst of requests to a new host then shares its one
    /// HTTP/2 connection instead of opening one each. The returned guard, when this request is
    /// the first, marks the host open (or, on failure, lets the next request try) when dropped.
    pub(super) async fn first_connection(&self, url: &Url, wait: Duration) -> Option<OpenGuard> {
        if url.scheme() != "https" {
            return None;
        }
        let key = format!("{}:{}", url.host_str()?, url.port_or_known_default()?);
        loop {
            let state = self.opened.borrow().get(&key).cloned();
            match state {
                Some(Opening::Open) => return None,
                Some(Opening::Pending(notify)) => {
                    // Created before awaiting: a wake-up sent in between is not missed.
                    let woken = notify.notified();
                    if tokio::time::timeout(wait, woken).await.is_err() {
                        return None;
                    }
                }
                None => {
                    let notify = Rc::new(tokio::sync::Notify::new());
                    self.opened
                        .borrow_mut()
                        .insert(key.clone(), Opening::Pending(notify.clone()));
                    return Some(OpenGuard {
                        opened: self.opened.clone(),
                        key,
                        notify,
                        ok: false,
                    });
                }
            }
        }
    }
}

thread_local! {
    /// The clients of [`SharedClient`]s on this thread, by their id.
    static SHARED: RefCell<HashMap<u64, Client>> = RefCell::new(HashMap::new());
}

/// A handle (`Send`, cloned by reference) to one [`Client`] per thread, shared by the workers of
/// that thread: one connection pool, so an HTTP/2 host gets one connection whose streams they all
/// use. A thread's client goes with the thread, or when the last handle is dropped on it.
#[derive(Debug, Clone, Default)]
pub struct SharedClient {
    id: Arc<ClientId>,
}

/// The id of a [`SharedClient`]'s clients.
#[derive(Debug)]
struct ClientId(u64);

impl Default for ClientId {
    fn default() -> Self {
        static NEXT: AtomicU64 = AtomicU64::new(0);
        ClientId(NEXT.fetch_add(1, Ordering::Relaxed))
    }
}

impl Drop for ClientId {
    fn drop(&mut self) {
        let _ = SHARED.try_with(|m| m.borrow_mut().remove(&self.0));
    }
}

impl SharedClient {
    /// This thread's client, built with `http` the first time.
    pub fn get(&self, http: &HttpSettings) -> Client {
        SHARED.with(|m| {
            m.borrow_mut()
                .entry(self.id.0)
                .or_insert_with(|| client(http))
                .clone()
        })
    }
}

/// Held by the first request to an https host; see [`Client::first_connection`].
pub(super) struct OpenGuard {
    opened: Rc<RefCell<HashMap<String, Opening>>>,
    key: String,
    notify: Rc<tokio::sync::Notify>,
    /// The answer's head came: the host is open.
    pub(super) ok: bool,
}

impl Drop for OpenGuard {
    fn drop(&mut self) {
        let mut opened = self.opened.borrow_mut();
        if self.ok {
            opened.insert(std::mem::take(&mut self.key), Opening::Open);
        } else {
            opened.remove(&self.key);
        }
        self.notify.notify_waiters();
    }
}
