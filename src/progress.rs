//! The live display on a terminal: one indicatif bar, fed by the crawl's events, showing pages done
//! and waiting, images saved, duplicate, skipped and failed, megabytes, current rates and an
//! estimate of the time left (extrapolated from the pages done while pages still wait). Log lines go above it through
//! indicatif-log-bridge (set up by the binary), so they never tear it. Off a terminal the Logger's
//! plain status lines are used instead.

use std::collections::VecDeque;
use std::time::{Duration, Instant};

use actix::prelude::*;
use indicatif::{ProgressBar, ProgressStyle};

use crate::actors::logger::{CrawlEvent, Tally};

/// How often the bar is redrawn.
const REDRAW_EVERY: Duration = Duration::from_millis(200);
/// The window the current rates are measured over.
const RATE_WINDOW: Duration = Duration::from_secs(5);

/// The actor that owns the bar; subscribe it to a crawl (see [`crate::CrawlBuilder::subscribe`]).
pub struct ProgressView {
    bar: ProgressBar,
    /// The counters, kept the way the Logger keeps its own.
    tally: Tally,
    /// Recent samples for the rates: when, pages done, images done.
    samples: VecDeque<(Instant, u64, u64)>,
}

impl ProgressView {
    /// A view drawing on `bar` (add it to the `MultiProgress` the log bridge uses first).
    pub fn new(bar: ProgressBar) -> ProgressView {
        bar.set_style(
            ProgressStyle::with_template(
                "{spinner:.green} [{elapsed_precise}] {wide_bar:.cyan/blue} {percent:>3}% ≈{eta} left\n  {msg}",
            )
            .expect("the progress template is valid")
            .progress_chars("=> "),
        );
        // Nothing is known yet: 0 of 1 rather than a full bar.
        bar.set_length(1);
        bar.enable_steady_tick(Duration::from_millis(250));
        ProgressView {
            bar,
            tally: Tally::default(),
            samples: VecDeque::new(),
        }
    }

    /// Pages and images per second over the last few seconds.
    fn rates(&mut self) -> (f64, f64) {
        let now = Instant::now();
        let s = &self.tally.stats;
        let (pages, images) = (s.pages_fetched, s.images_saved + s.duplicates);
        self.samples.push_back((now, pages, images));
        while self
            .samples
            .front()
            .is_some_and(|(t, ..)| now.duration_since(*t) > RATE_WINDOW)
        {
            self.samples.pop_front();
        }
        match self.samples.front() {
            Some(&(t, p, i)) if now > t => {
                let secs = now.duration_since(t).as_secs_f64();
                ((pages - p) as f64 / secs, (images - i) as f64 / secs)
            }
            _ => (0.0, 0.0),
        }
    }

    fn redraw(&mut self) {
        let (page_rate, image_rate) = self.rates();
        let t = &self.tally;
        // The total, and so the time left, is extrapolated while pages wait (see
        // Tally::estimated_total), and exact once none does.
        self.bar.set_length(t.estimated_total().max(t.jobs_done()));
        self.bar.set_position(t.jobs_done());
        // Two short lines rather than one that wraps on a narrow terminal.
        let (counts, rest) = t.status_parts();
        self.bar.set_message(format!(
            "{counts}\n  {rest} | {page_rate:.0} pages/s, {image_rate:.0} images/s"
        ));
    }
}

impl Actor for ProgressView {
    type Context = Context<Self>;

    fn started(&mut self, ctx: &mut Context<Self>) {
        ctx.run_interval(REDRAW_EVERY, |act, _| act.redraw());
    }

    fn stopped(&mut self, _: &mut Context<Self>) {
        self.bar.finish_and_clear();
    }
}

/// Ends the display: the bar is cleared from the terminal.
#[derive(Debug, Message)]
#[rtype(result = "()")]
pub struct Clear;

impl Handler<Clear> for ProgressView {
    type Result = ();

    fn handle(&mut self, _: Clear, ctx: &mut Context<Self>) {
        self.bar.finish_and_clear();
        ctx.stop();
    }
}

impl Handler<CrawlEvent> for ProgressView {
    type Result = ();

    fn handle(&mut self, event: CrawlEvent, _: &mut Context<Self>) {
        self.tally.count(&event);
    }
}
