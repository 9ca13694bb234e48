//! The test crate: one binary (linking the S3 SDK once), a module per feature. The harness is
//! `common`: a project in a temp folder, the real `b2m` binary, a real S3 server.

#[macro_use]
mod common;

mod bad_input;
mod changesets;
mod check;
mod cli;
mod compat;
mod coordination;
mod crash;
mod disk_full;
mod edges;
mod face;
mod hardening;
mod hardening2;
mod history;
mod hook_managers;
mod hooks;
mod import;
mod init_demo;
mod live_server;
mod merge;
mod neighbours;
mod notify;
mod pages;
mod preflight;
mod proxy_selftest;
mod replay;
mod s3_store;
mod screen;
mod sync;
mod unmanaged;
