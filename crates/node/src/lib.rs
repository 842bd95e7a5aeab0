//! calico-node: the per-host agent's startup, health/metrics and main loop.
//!
//! ```text
//!  env ─▶ config::NodeConfig ─▶ startup::run (autodetect ─▶ Node ─▶ default pools ─▶ tunnel
//!         addresses ─▶ MTU + nodename files) ─▶ agent::Agent (syncer ─▶ SyncConsumer seam,
//!         pool changes ─▶ tunnel addresses / MTU) ◀─▶ health (:9099) + metrics (:9091)
//!                                     └─▶ felix::FelixConsumer ─▶ dataplane thread (calc graph
//!                                         ─▶ routes, vxlan.calico, neighbours/FDB, nft NAT)
//! ```
//!
//! Kernel access goes through `calico_dataplane` (netlink); the datastore through
//! `calico_datastore`; tunnel addresses through `calico_ipam`.

pub mod agent;
pub mod autodetect;
pub mod config;
pub mod felix;
pub mod health;
pub mod pools;
pub mod startup;
pub mod tunnels;
