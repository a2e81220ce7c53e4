//! `http.block_private_addresses`: keeps a crawl of public sites from being pointed (by a link, a
//! redirect or a DNS answer) at loopback, private, link-local or other non-public addresses, the
//! classic server-side request forgery. IP literals are checked before a request; host names
//! through the HTTP client's resolver, after DNS, so a public name resolving to 10.0.0.5 is
//! refused too.

use std::error::Error as StdError;
use std::net::{IpAddr, SocketAddr};

use actix_tls::connect::Resolve;
use futures_util::future::LocalBoxFuture;
use url::{Host, Url};

/// The words every refusal carries, so that the failure is classified as `blocked address`.
pub const BLOCKED: &str = "blocked non-public address";

/// Whether `ip` is an address a crawl of public sites must not reach: loopback, private,
/// link-local, unspecified, shared (CGNAT), documentation, broadcast or multicast, unique local
/// IPv6, and IPv4 addresses mapped into IPv6 that are any of these.
pub fn is_non_public(ip: IpAddr) -> bool {
    match ip {
        IpAddr::V4(v4) => {
            let o = v4.octets();
            v4.is_loopback()
                || v4.is_private()
                || v4.is_link_local()
                || v4.is_unspecified()
                || v4.is_broadcast()
                || v4.is_multicast()
                || v4.is_documentation()
                || o[0] == 0
                || (o[0] == 100 && (64..128).contains(&o[1]))
                || (o[0] == 192 && o[1] == 0 && o[2] == 0)
                || o[0] >= 240
        }
        IpAddr::V6(v6) => {
            if let Some(v4) = v6.to_ipv4_mapped() {
                return is_non_public(IpAddr::V4(v4));
            }
            let seg = v6.segments();
            v6.is_loopback()
                || v6.is_unspecified()
                || v6.is_multicast()
                || (seg[0] & 0xfe00) == 0xfc00
                || (seg[0] & 0xffc0) == 0xfe80
                || (seg[0] == 0x2001 && seg[1] == 0x0db8)
        }
    }
}

/// Whether `url`'s host is public as far as can be told without DNS: an IP literal that is not
/// [`is_non_public`], or a name other than `localhost` and names under `.localhost`, `.local`,
/// `.internal` and `.home.arpa`.
pub fn looks_public(url: &Url) -> bool {
    match url.host() {
        Some(Host::Domain(d)) => {
            let d = d.trim_end_matches('.').to_ascii_lowercase();
            !(d == "localhost"
                || [".localhost", ".local", ".internal", ".home.arpa"]
                    .iter()
                    .any(|s| d.ends_with(s)))
        }
        Some(_) => literal_ip(url).is_some_and(|ip| !is_non_public(ip)),
        None => false,
    }
}

/// The address of a URL whose host is an IP literal.
fn literal_ip(url: &Url) -> Option<IpAddr> {
    match url.host()? {
        Host::Ipv4(ip) => Some(IpAddr::V4(ip)),
        Host::Ipv6(ip) => Some(IpAddr::V6(ip)),
        Host::Domain(_) => None,
    }
}

/// The refusal for an IP literal `url` that is not public, if it is one.
pub fn check_literal(url: &Url) -> Result<(), String> {
    match literal_ip(url) {
        Some(ip) if is_non_public(ip) => {
            Err(format!("{BLOCKED} {ip} (http.block_private_addresses)"))
        }
        _ => Ok(()),
    }
}

/// A resolver for the HTTP client that resolves names as usual and keeps only public addresses;
/// a name with none left is refused.
#[derive(Debug, Clone, Copy, Default)]
pub struct PublicOnly;

impl Resolve for PublicOnly {
    fn lookup<'a>(
        &'a self,
        host: &'a str,
        port: u16,
    ) -> LocalBoxFuture<'a, Result<Vec<SocketAddr>, Box<dyn StdError>>> {
        Box::pin(async move {
            let all: Vec<SocketAddr> = tokio::net::lookup_host((host, port)).await?.collect();
            let public: Vec<SocketAddr> = all
                .iter()
                .copied()
                .filter(|a| !is_non_public(a.ip()))
                .collect();
            if public.is_empty() && !all.is_empty() {
                let ips: Vec<String> = all.iter().map(|a| a.ip().to_string()).collect();
                return Err(format!(
                    "{BLOCKED}: {host} resolves to {} (http.block_private_addresses)",
                    ips.join(", ")
                )
                .into());
            }
            Ok(public)
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn private_and_special_addresses_are_not_public() {
        for ip in [
            "127.0.0.1",
            "10.1.2.3",
            "172.16.0.1",
            "192.168.1.1",
            "169.254.169.254",
            "0.0.0.0",
            "100.64.0.1",
            "::1",
            "fe80::1",
            "fd00::1",
            "::ffff:10.0.0.1",
        ] {
            assert!(is_non_public(ip.parse().unwrap()), "{ip}");
        }
        for ip in ["93.184.216.34", "8.8.8.8", "2606:4700::1111"] {
            assert!(!is_non_public(ip.parse().unwrap()), "{ip}");
        }
        let u = |s: &str| Url::parse(s).unwrap();
        assert!(looks_public(&u("https://gallery.example/")));
        assert!(!looks_public(&u("http://localhost:8080/")));
        assert!(!looks_public(&u("http://nas.local/")));
        assert!(!looks_public(&u("http://[::1]/")));
        assert!(check_literal(&u("http://169.254.169.254/latest/")).is_err());
        assert!(check_literal(&u("http://gallery.example/")).is_ok());
    }
}
