//! imgcrawl's integration tests: one binary, every test against real HTTP servers on 127.0.0.1
//! started by the test itself, each in a fresh temporary output directory.

mod binary;
mod check;
mod config;
mod crawl;
mod distributed;
mod embed;
mod examples;
mod failures;
mod filters;
mod hostile;
mod metrics;
mod outdir;
mod polite;
mod resume;
mod support;
mod traps;
