//! Validation: [`RawSettings`] to [`Settings`], once, each error naming its key.

use std::collections::BTreeSet;
use std::fmt;
use std::num::NonZeroUsize;
use std::time::Duration;

use regex::Regex;
use scraper::Selector;
use url::Url;

use super::*;
use crate::paths::FilenameTemplate;
use crate::urls;

/// A validation failure before its origin is known: the key and the message.
pub(super) type KeyError = (&'static str, String);

pub(super) fn bad(key: &'static str, message: impl fmt::Display) -> KeyError {
    (key, message.to_string())
}

/// A positive, finite number of seconds (fractions allowed, so tests can use short times).
pub(super) fn seconds(key: &'static str, secs: f64) -> Result<Duration, KeyError> {
    if !(secs.is_finite() && secs > 0.0 && secs <= 1e9) {
        return Err(bad(
            key,
            format!("must be a number of seconds above 0, not {secs}"),
        ));
    }
    Ok(Duration::from_secs_f64(secs))
}

fn non_zero(key: &'static str, n: usize) -> Result<NonZeroUsize, KeyError> {
    NonZeroUsize::new(n).ok_or_else(|| bad(key, "must be at least 1"))
}

impl RawSettings {
    /// Validates into [`Settings`]; errors name the key, with the origin reported as the default
    /// layer. [`ConfigSources::load`] replaces it with the layer that really set the key.
    pub fn validate(&self) -> Result<Settings, SettingsError> {
        self.validate_keys()
            .map_err(|(key, message)| SettingsError {
                key: key.to_string(),
                origin: Origin::Default,
                message,
            })
    }

    pub(super) fn validate_keys(&self) -> Result<Settings, KeyError> {
        self.validate_with_env(&std::env::vars().collect())
    }

    /// Validates, reading proxy variables (`HTTPS_PROXY`, ...) from `env`.
    pub(super) fn validate_with_env(
        &self,
        env: &std::collections::HashMap<String, String>,
    ) -> Result<Settings, KeyError> {
        let mut start_urls = Vec::new();
        for s in &self.start_urls {
            start_urls.push(parse_start_url("start_urls", s)?);
        }
        start_urls.extend(self.template_pages()?);
        if start_urls.is_empty() {
            return Err(bad(
                "start_urls",
                "no start URL: give one on the command line, in `start_urls`, or with `page_template` and `pages`",
            ));
        }
        let mut seen = BTreeSet::new();
        start_urls.retain(|u| seen.insert(u.as_str().to_string()));
        let threads = match self.threads {
            0 => std::thread::available_parallelism().map_or(1, NonZeroUsize::get),
            n => n,
        };
        let workers = Workers {
            fetchers: non_zero("fetchers", self.fetchers)?,
            savers: non_zero("savers", self.savers)?,
            writers: non_zero("writers", self.writers)?,
            threads: non_zero("threads", threads)?,
            frontier_in_memory: non_zero("frontier_in_memory", self.frontier_in_memory)?,
        };
        if self.out_dir.as_os_str().is_empty() {
            return Err(bad("out_dir", "must not be empty"));
        }
        let mut http = self.http.validate()?;
        http.proxy = crate::http::ProxyRoutes::resolve(&self.http.proxy, &self.http.no_proxy, env)
            .map_err(|(name, why)| {
                if name == "http.proxy" {
                    bad("http.proxy", why)
                } else {
                    bad(
                        "http.proxy",
                        format!("from environment variable {name}: {why}"),
                    )
                }
            })?;
        http.block_private = match self.http.block_private_addresses.trim() {
            "auto" => start_urls.iter().all(crate::netguard::looks_public),
            "on" | "true" => true,
            "off" | "false" => false,
            other => {
                return Err(bad(
                    "http.block_private_addresses",
                    format!("`{other}` is not one of \"auto\", \"on\", \"off\""),
                ))
            }
        };
        let distributed = self.distributed.validate()?;
        if self.revalidate_images && distributed.is_some() {
            return Err(bad(
                "revalidate_images",
                "saved images cannot be asked for again in a shared crawl \
                 (distributed.redis_url): each process's files are its own; run --update \
                 without --revalidate-images",
            ));
        }
        if self.revalidate_images && !self.update {
            return Err(bad(
                "revalidate_images",
                "saved images are asked for again only in an update run: add --update \
                 (key update)",
            ));
        }
        Ok(Settings {
            scope: self.scope.validate(&start_urls)?,
            start_urls,
            out_dir: self.out_dir.clone(),
            workers,
            extract: self.extract.compile()?,
            http,
            filename: FilenameTemplate::parse(&self.output.filename)
                .map_err(|e| bad("output.filename", e))?,
            filter: self.filter.validate()?,
            distributed,
            update: self.update,
            revalidate_images: self.revalidate_images,
            metrics: match self.metrics.trim() {
                "" => None,
                a => Some(a.parse().map_err(|_| {
                    bad(
                        "metrics",
                        format!("`{a}` is not an IP address and port, e.g. 127.0.0.1:9898"),
                    )
                })?),
            },
        })
    }

    fn template_pages(&self) -> Result<Vec<Url>, KeyError> {
        let (template, range) = match (&self.page_template, &self.pages) {
            (None, None) => return Ok(Vec::new()),
            (Some(t), Some(r)) => (t, r),
            (Some(_), None) => {
                return Err(bad("pages", "`page_template` is set but `pages` is not"))
            }
            (None, Some(_)) => {
                return Err(bad(
                    "page_template",
                    "`pages` is set but `page_template` is not",
                ))
            }
        };
        if !template.contains("{page}") {
            return Err(bad(
                "page_template",
                "must contain the placeholder `{page}`",
            ));
        }
        let [first, last] = range[..] else {
            return Err(bad("pages", "must be two numbers: [first, last]"));
        };
        if first > last {
            return Err(bad(
                "pages",
                format!("first page {first} is after last page {last}"),
            ));
        }
        (first..=last)
            .map(|n| parse_start_url("page_template", &template.replace("{page}", &n.to_string())))
            .collect()
    }
}

fn parse_start_url(key: &'static str, s: &str) -> Result<Url, KeyError> {
    let url = Url::parse(s).map_err(|e| bad(key, format!("`{s}` is not a URL: {e}")))?;
    if !matches!(url.scheme(), "http" | "https") || url.host_str().is_none() {
        return Err(bad(key, format!("`{s}` is not an http or https URL")));
    }
    Ok(urls::normalize(url))
}

impl RawScope {
    fn validate(&self, start_urls: &[Url]) -> Result<Scope, KeyError> {
        let mut allowed_hosts = BTreeSet::new();
        for h in &self.allowed_hosts {
            // `host` or `host:port`, parsed as the authority of a URL (IPv6 in brackets).
            let parsed = Url::parse(&format!("http://{}/", h.trim()))
                .ok()
                .filter(|u| u.username().is_empty() && u.path() == "/" && u.query().is_none())
                .and_then(|u| Some((u.host_str()?.to_string(), u.port())))
                .ok_or_else(|| {
                    bad(
                        "scope.allowed_hosts",
                        format!("`{h}` is not a host name or host:port"),
                    )
                })?;
            allowed_hosts.insert(match parsed {
                (host, Some(port)) => format!("{host}:{port}"),
                // The URL parser drops :80; a port written out is kept.
                (host, None) if h.trim().ends_with(":80") => format!("{host}:80"),
                (host, None) => host,
            });
        }
        if allowed_hosts.is_empty() {
            for u in start_urls {
                let Some(host) = u.host_str() else { continue };
                match u.port() {
                    Some(port) => {
                        allowed_hosts.insert(format!("{host}:{port}"));
                    }
                    None => {
                        allowed_hosts.insert(format!("{host}:80"));
                        allowed_hosts.insert(format!("{host}:443"));
                    }
                }
            }
        }
        Ok(Scope {
            allowed_hosts,
            max_depth: self.max_depth,
            max_pages: self.max_pages,
            include: compile_regexes("scope.include", &self.include)?,
            exclude: compile_regexes("scope.exclude", &self.exclude)?,
            max_url_length: match self.max_url_length {
                n if n < 16 => return Err(bad("scope.max_url_length", "must be at least 16")),
                n => n,
            },
            strip_query: self
                .strip_query
                .iter()
                .map(|p| p.trim().to_ascii_lowercase())
                .filter(|p| !p.is_empty())
                .collect(),
            trap_pages: self.trap_pages,
            sitemaps: self.sitemaps,
        })
    }
}

impl RawFilter {
    fn validate(&self) -> Result<Filter, KeyError> {
        let max_bytes = (self.max_bytes > 0).then_some(self.max_bytes);
        if max_bytes.is_some_and(|max| max < self.min_bytes) {
            return Err(bad(
                "filter.max_bytes",
                format!(
                    "{} is below filter.min_bytes ({}): no image could be kept",
                    self.max_bytes, self.min_bytes
                ),
            ));
        }
        Ok(Filter {
            min_width: self.min_width,
            min_height: self.min_height,
            min_bytes: self.min_bytes,
            max_bytes,
            exclude: compile_regexes("filter.exclude", &self.exclude)?,
        })
    }
}

fn compile_regexes(key: &'static str, patterns: &[String]) -> Result<Vec<Regex>, KeyError> {
    patterns
        .iter()
        .map(|p| Regex::new(p).map_err(|e| bad(key, format!("`{p}` is not a valid regex: {e}"))))
        .collect()
}

fn selector(key: &'static str, s: &str) -> Result<Selector, KeyError> {
    Selector::parse(s).map_err(|e| bad(key, format!("`{s}` is not a valid CSS selector: {e}")))
}

impl RawExtract {
    pub(super) fn compile(&self) -> Result<ExtractRules, KeyError> {
        let mut images = Vec::new();
        for rule in &self.images {
            if rule.attrs.is_empty() {
                return Err(bad(
                    "extract.images",
                    format!("rule `{}` lists no attrs", rule.selector),
                ));
            }
            images.push(ImageRule {
                selector: selector("extract.images", &rule.selector)?,
                attrs: rule.attrs.clone(),
            });
        }
        Ok(ExtractRules {
            images,
            follow: selector("extract.follow", &self.follow)?,
            item: selector("extract.item", &self.item)?,
            name: selector("extract.name", &self.name)?,
            max_images_per_page: match self.max_images_per_page {
                0 => return Err(bad("extract.max_images_per_page", "must be at least 1")),
                n => n,
            },
            max_links_per_page: match self.max_links_per_page {
                0 => return Err(bad("extract.max_links_per_page", "must be at least 1")),
                n => n,
            },
            parse_timeout: seconds("extract.parse_timeout_secs", self.parse_timeout_secs)?,
        })
    }
}

impl RawHttp {
    fn validate(&self) -> Result<HttpSettings, KeyError> {
        let user_agent = self
            .user_agent
            .replace("{version}", env!("CARGO_PKG_VERSION"));
        if user_agent.trim().is_empty() || user_agent.chars().any(char::is_control) {
            return Err(bad("http.user_agent", "must be non-empty printable text"));
        }
        let timeout = seconds("http.timeout_secs", self.timeout_secs)?;
        let connect_timeout = seconds("http.connect_timeout_secs", self.connect_timeout_secs)?;
        let head_timeout = seconds("http.head_timeout_secs", self.head_timeout_secs)?;
        let max_wait = seconds("http.max_wait_secs", self.max_wait_secs)?;
        if self.max_page_bytes == 0 {
            return Err(bad("http.max_page_bytes", "must be at least 1"));
        }
        if self.max_image_bytes == 0 {
            return Err(bad("http.max_image_bytes", "must be at least 1"));
        }
        Ok(HttpSettings {
            user_agent,
            timeout,
            connect_timeout,
            head_timeout: head_timeout.min(timeout),
            retries: self.retries,
            retry_backoff: Duration::from_millis(self.retry_backoff_ms),
            max_wait,
            max_redirects: self.max_redirects,
            max_page_bytes: self.max_page_bytes,
            max_image_bytes: self.max_image_bytes,
            per_host_concurrency: non_zero("http.per_host_concurrency", self.per_host_concurrency)?,
            delay: Duration::from_millis(self.delay_ms),
            obey_robots: self.obey_robots,
            // Decided with the start URLs, in `validate_keys`.
            block_private: false,
            headers: self.headers()?,
            referer: crate::http::Referer::parse(&self.referer)
                .map_err(|e| bad("http.referer", e))?,
            cookies: match self.cookies_file.trim() {
                "" => crate::http::Jar::new(),
                path => crate::http::Jar::from_file(std::path::Path::new(path))
                    .map_err(|e| bad("http.cookies_file", e))?,
            },
            // Decided with the environment, in `validate_keys`.
            proxy: crate::http::ProxyRoutes::default(),
            tls: crate::http::tls_config(match self.ca_file.trim() {
                "" => None,
                path => Some(std::path::Path::new(path)),
            })
            .map_err(|e| bad("http.ca_file", e))?,
        })
    }

    /// `[http.headers]` and the per-host tables, validated.
    fn headers(&self) -> Result<crate::http::Headers, KeyError> {
        let hosts = self
            .host
            .iter()
            .map(|(h, t)| (h.clone(), t.headers.clone()))
            .collect();
        crate::http::Headers::new(&self.headers, &hosts).map_err(|(key, why)| {
            let table = if key.starts_with("http.headers") {
                "http.headers"
            } else {
                "http.host"
            };
            bad(table, format!("{key}: {why}"))
        })
    }
}
