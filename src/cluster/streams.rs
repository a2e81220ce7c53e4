//! The shared crawl's job streams: publishing changes (new jobs, acknowledgements, jobs given
//! back) in one atomic script, leasing jobs to this process, and renewing the leases it holds.

use std::collections::HashMap;

use redis::streams::{StreamAutoClaimReply, StreamId, StreamReadReply};
use redis::RedisError;

use super::wire::{decode_image, decode_page, encode_image, encode_page, url_hash};
use super::{code, sha_key, Cluster, Leased, Op, Outcome, Taken, GROUP};
use crate::Kind;

impl Cluster {
    /// Applies `ops` in order, atomically; returns the number of jobs still open.
    pub async fn publish(&self, ops: &[Op]) -> Result<i64, RedisError> {
        let mut inv = self.publish.prepare_invoke();
        for k in self.keys.script_keys() {
            inv.key(k);
        }
        inv.arg(GROUP).arg(self.max_pages).arg(&self.consumer);
        for op in ops {
            match op {
                Op::Page(job) => {
                    inv.arg("P")
                        .arg(&url_hash(&job.url)[..])
                        .arg(encode_page(job));
                }
                Op::Image(job) => {
                    inv.arg("I")
                        .arg(&url_hash(&job.url)[..])
                        .arg(encode_image(job));
                }
                Op::Ack(kind, id, outcome) => {
                    inv.arg("A")
                        .arg(code(*kind))
                        .arg(id)
                        .arg(outcome.count.unwrap_or(""))
                        .arg(outcome.row.as_deref().unwrap_or(""))
                        .arg(outcome.bytes);
                    match &outcome.stored {
                        Some((sha256, path)) => inv
                            .arg(&sha_key(sha256)[..])
                            .arg(format!("{}\n{path}", self.consumer)),
                        None => inv.arg("").arg(""),
                    };
                }
                Op::GiveBack(kind, id, json) => {
                    inv.arg("R").arg(code(*kind)).arg(id).arg(json);
                }
                Op::Keep(url, text) => {
                    inv.arg("K").arg(&url_hash(url)[..]).arg(text);
                }
            }
        }
        let mut con = self.con.clone();
        inv.invoke_async(&mut con).await
    }

    /// Leases up to `pages` pages and `images` images to this process: first jobs whose lease
    /// ran out (their process went silent), then new ones. When nothing was found, also tells
    /// whether the crawl is complete.
    pub async fn take(
        &self,
        pages: usize,
        images: usize,
        claim_from: &mut HashMap<Kind, String>,
    ) -> Result<Taken, RedisError> {
        let mut taken = Taken::default();
        for (kind, want) in [(Kind::Page, pages), (Kind::Image, images)] {
            if want == 0 {
                continue;
            }
            let mut entries = self.take_over(kind, want, claim_from).await?;
            let more = want.saturating_sub(entries.len());
            if more > 0 {
                entries.extend(self.take_new(kind, more).await?);
            }
            for e in entries {
                if !self.keep(kind, &e, &mut taken) {
                    taken.malformed += 1;
                    self.publish(&[Op::Ack(kind, e.id, Outcome::default())])
                        .await?;
                }
            }
        }
        if self.update && !taken.pages.is_empty() {
            let urls: Vec<&url::Url> = taken.pages.iter().map(|l| &l.job.url).collect();
            let kept = self.kept(&urls).await?;
            for (leased, text) in taken.pages.iter_mut().zip(kept) {
                leased.job.before = text.as_deref().and_then(super::read_kept).map(Box::new);
            }
        }
        if taken.pages.is_empty() && taken.images.is_empty() {
            taken.complete = self.is_complete().await?;
        }
        Ok(taken)
    }

    /// Up to `want` jobs of `kind` whose lease ran out, from where the last scan stopped.
    async fn take_over(
        &self,
        kind: Kind,
        want: usize,
        claim_from: &mut HashMap<Kind, String>,
    ) -> Result<Vec<StreamId>, RedisError> {
        let mut con = self.con.clone();
        let start = claim_from
            .get(&kind)
            .cloned()
            .unwrap_or_else(|| "0-0".into());
        let claimed: StreamAutoClaimReply = redis::cmd("XAUTOCLAIM")
            .arg(self.keys.stream(kind))
            .arg(GROUP)
            .arg(&self.consumer)
            .arg(self.lease.as_millis() as u64)
            .arg(start)
            .arg("COUNT")
            .arg(want)
            .query_async(&mut con)
            .await?;
        claim_from.insert(kind, claimed.next_stream_id);
        if !claimed.claimed.is_empty() {
            let n = claimed.claimed.len();
            log::info!("took over {n} {kind}s whose lease ran out");
        }
        Ok(claimed.claimed)
    }

    /// Up to `want` jobs of `kind` never handed out.
    async fn take_new(&self, kind: Kind, want: usize) -> Result<Vec<StreamId>, RedisError> {
        let mut con = self.con.clone();
        let read: Option<StreamReadReply> = redis::cmd("XREADGROUP")
            .arg("GROUP")
            .arg(GROUP)
            .arg(&self.consumer)
            .arg("COUNT")
            .arg(want)
            .arg("STREAMS")
            .arg(self.keys.stream(kind))
            .arg(">")
            .query_async(&mut con)
            .await?;
        Ok(read
            .map(|r| r.keys.into_iter().flat_map(|k| k.ids).collect())
            .unwrap_or_default())
    }

    /// Adds a stream entry's job to `taken`; false when it holds no job (dropped, logged).
    fn keep(&self, kind: Kind, e: &StreamId, taken: &mut Taken) -> bool {
        let json: Option<String> = e.get("j");
        let id = e.id.clone();
        let kept = match (kind, json.as_deref()) {
            (Kind::Page, Some(j)) => decode_page(j).map(|job| taken.pages.push(Leased { id, job })),
            (Kind::Image, Some(j)) => {
                decode_image(j).map(|job| taken.images.push(Leased { id, job }))
            }
            _ => None,
        };
        if kept.is_none() {
            log::warn!("dropping a shared job that is not a job: {json:?}");
        }
        kept.is_some()
    }

    /// Renews the leases on these entries (they are held, waiting or in progress, here).
    pub async fn renew(&self, kind: Kind, ids: &[String]) -> Result<(), RedisError> {
        if ids.is_empty() {
            return Ok(());
        }
        let mut con = self.con.clone();
        for chunk in ids.chunks(500) {
            let _: redis::Value = redis::cmd("XCLAIM")
                .arg(self.keys.stream(kind))
                .arg(GROUP)
                .arg(&self.consumer)
                .arg(0)
                .arg(chunk)
                .arg("JUSTID")
                .query_async(&mut con)
                .await?;
        }
        Ok(())
    }
}
