//! The group commit: state changes are sent to the DiskWriter in batches, one at a time so that
//! they land in order, with the spilled jobs the frontier wants read back. Once a batch is durable
//! the events that waited for it (saved images) are told, and the frontier publishes what waited.

use actix::prelude::*;

use super::{Supervisor, COMMIT_BATCH};
use crate::actors::disk_writer::CommitState;
use crate::error::Error;

impl Supervisor {
    /// Whether a commit should go now rather than at the next tick: a full batch, or spilled jobs
    /// to read back.
    pub(super) fn commit_due(&self) -> bool {
        self.pending.len() >= COMMIT_BATCH || (!self.stopping && self.frontier.refill_due())
    }

    /// Sends the pending state changes as one group commit, unless one is in flight, and reads
    /// back spilled jobs when the frontier has room. Once the changes are durable, the events that
    /// waited for them (saved images) are told, and the crawl may end.
    pub(super) fn commit(&mut self, ctx: &mut Context<Self>) {
        if self.commit_in_flight
            || self.fatal.is_some()
            || (self.pending.is_empty() && (self.stopping || !self.frontier.refill_due()))
        {
            return;
        }
        self.commit_in_flight = true;
        let jar = &self.settings.http.cookies;
        if jar.changes() != self.cookies_saved {
            // In the same transaction as the pages whose answers set them.
            self.cookies_saved = jar.changes();
            self.pending
                .push(crate::state::StateOp::Cookies(jar.to_json()));
        }
        let ops = std::mem::take(&mut self.pending);
        let events = std::mem::take(&mut self.after_commit);
        self.committing = events.len();
        let ticket = self.frontier.commit_begins(&ops, self.stopping);
        let request = self.writer.send(CommitState {
            ops,
            load_pages: ticket.load_pages,
            load_images: ticket.load_images,
        });
        ctx.spawn(request.into_actor(self).map(move |res, act, ctx| {
            act.commit_in_flight = false;
            act.committing = 0;
            match res {
                Ok(Ok(loaded)) => {
                    for event in events {
                        act.logger.do_send(event);
                    }
                    for job in act.frontier.commit_done(ticket, loaded) {
                        act.queue_known(job);
                    }
                }
                Ok(Err(e)) => act.fail(e, ctx),
                Err(e) => act.fail(Error::aborted("the disk writer", e), ctx),
            }
            if act.commit_due() || act.ending_soon() {
                act.commit(ctx);
            }
            act.pump(ctx);
        }));
    }

    /// Whether the crawl is about to end (so the last changes should be committed now).
    fn ending_soon(&self) -> bool {
        let q = self.queues();
        self.stopping
            || (q.pages_waiting + q.images_waiting + q.pages_in_flight + q.images_in_flight) == 0
    }
}
