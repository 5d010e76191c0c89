//! Tessera's integration tests: real Redis processes, real HTTP, nodes on port 0.

mod account;
mod anomaly;
mod attack;
mod cluster;
mod config;
mod contract;
mod faults;
mod first_run;
mod helpers;
mod hostile;
mod keys;
mod lifecycle;
mod login;
mod nginx;
mod oauth;
mod openapi;
mod refresh;
mod regions;
mod revocation;
mod rotation;
mod sessions;
mod store;
mod tokens;
mod users;
mod verifier;
mod wycheproof;
