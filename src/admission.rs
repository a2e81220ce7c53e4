//! Admission rules shared by the crawl and `imgcrawl check`, so that a dry run can never disagree
//! with a crawl about the same URL. Pure: no I/O, no actor.

use url::Url;

use crate::error::{Failure, FailureKind};
use crate::settings::Settings;

/// Checks one redirect hop from the chain `from` (the URLs followed so far, ending with the one
/// that redirected) to `to`: the target in canonical form, or the failure that ends the chain (a
/// URL over `scope.max_url_length`, a loop, more than `http.max_redirects` hops, a target off the
/// allowed sites). The target is not held to `scope.include`/`scope.exclude`, which are about
/// which links to follow, not where a followed URL may lead.
pub fn redirect_target(settings: &Settings, from: &[Url], to: Url) -> Result<Url, Failure> {
    let to = settings.scope.canonical(to).ok_or_else(|| {
        Failure::new(
            FailureKind::BadUrl,
            "redirect to a URL over scope.max_url_length",
        )
    })?;
    if from.contains(&to) {
        return Err(Failure::new(
            FailureKind::RedirectLoop,
            format!("back to {to}"),
        ));
    }
    if from.len() > settings.http.max_redirects as usize {
        return Err(Failure::new(
            FailureKind::TooManyRedirects,
            format!("more than {} redirects", settings.http.max_redirects),
        ));
    }
    if !settings.scope.host_allowed(&to) {
        return Err(Failure::new(
            FailureKind::OutOfScope,
            format!("redirect to {to}"),
        ));
    }
    Ok(to)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn url(s: &str) -> Url {
        Url::parse(s).unwrap()
    }

    #[test]
    fn redirect_hops_are_judged_by_scope_loops_and_length_not_by_link_filters() {
        let mut raw = crate::settings::RawSettings {
            start_urls: vec!["http://site.example/".into()],
            ..Default::default()
        };
        raw.scope.exclude = vec!["/old/".into()];
        raw.http.max_redirects = 2;
        let s = raw.validate().unwrap();
        let start = url("http://site.example/a");
        let from = std::slice::from_ref(&start);
        // Excluded as a link, followed as a redirect target (session ids stripped on the way).
        assert_eq!(
            redirect_target(&s, from, url("http://site.example/old/b?sid=1")),
            Ok(url("http://site.example/old/b"))
        );
        let kind = |r: Result<Url, Failure>| r.unwrap_err().kind;
        assert_eq!(
            kind(redirect_target(&s, from, start.clone())),
            FailureKind::RedirectLoop
        );
        assert_eq!(
            kind(redirect_target(&s, from, url("http://other.example/"))),
            FailureKind::OutOfScope
        );
        let chain = [
            url("http://site.example/1"),
            url("http://site.example/2"),
            start,
        ];
        assert_eq!(
            kind(redirect_target(&s, &chain, url("http://site.example/3"))),
            FailureKind::TooManyRedirects
        );
    }
}
