//! Tessera's integration tests: real Redis processes, real HTTP, nodes on port 0.

mod config;
mod faults;
mod helpers;
mod hostile;
mod keys;
mod sessions;
mod store;
mod tokens;
mod wycheproof;
