//! Integration tests against a real Redis (one per test, see pantheon-test-support).
#![allow(clippy::unwrap_used, clippy::type_complexity)]

mod bursts;
mod cli;
mod client;
mod clock;
mod cluster;
mod confirmed_deaths;
mod consumers;
mod deployments;
mod diagnoses;
mod empty_redis;
mod fleet;
mod migrations;
mod nodes;
mod observability;
mod placement_vectors;
mod prober;
mod projector;
mod resilience;
mod revoked_user;
mod roles;
mod service_config;
mod test_redis;
mod trust;
mod wire_roundtrip;
mod workload;
