//! Everything that runs only on the server. Compiled with the `ssr` feature, never into the WASM.
#![deny(clippy::unwrap_used, clippy::expect_used)]

pub mod api_support;
pub mod backup;
pub mod cli;
pub mod client_ip;
pub mod clock;
pub mod config;
pub mod db;
pub mod entities;
pub mod health;
pub mod jobs;
pub mod lockouts;
pub mod mail;
pub mod memory;
pub mod metrics;
pub mod middleware;
pub mod rate_limit;
pub mod redis;
pub mod serve;
pub mod services;
pub mod session_store;
pub mod site;
pub mod startup;
pub mod state;
pub mod telemetry;
