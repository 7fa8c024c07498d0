//! Integration tests over real HTTP. Run once on SQLite (default) and once with `TEST_DATABASE=postgres`.

mod helpers;

mod account_sessions;
mod accounts;
mod activity;
mod admin;
mod cli;
mod consents;
mod csrf;
mod database;
mod deletion;
mod docs;
mod edge;
mod export;
mod health;
mod households;
mod jobs;
mod logging;
mod malformed;
mod metrics;
mod mfa;
mod operations;
mod outage;
mod pages;
mod proxy;
mod scale_out;
mod security_headers;
mod sessions;
mod smtp_sink;
mod tcp_proxy;
