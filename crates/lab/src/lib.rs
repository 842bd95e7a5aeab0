//! calico-lab: a Calico cluster in network namespaces on one host, described by a topology
//! file (see `topology` for the schema and `examples/` for the seed labs).
//!
//! - `topology`: YAML schema and validation (errors name the field).
//! - `names`: every namespace and link name, all carrying the lab (tag for 15-byte links).
//! - `plan`: topology → ordered steps (pure, unit-tested).
//! - `state`: the per-lab state directory and crash-safe state file.
//! - `sys`: `ip`, sysctls inside namespaces, signals (the only place with side effects).
//! - `agents`: per-node agents (calico-node) started in node namespaces, pids recorded.
//! - `check`: the all-pairs reachability matrix (probe injected).
//! - `datastore`: embedded file or etcd in the lab; resources applied; node variables.
//! - `lab`: `up` and `down`.
//! - `nodes`: `node del` (pods, agent, IPAM, Node resource, namespace).
//! - `pods`: pods through the real CNI plugins (`pod add`/`pod del`, `up`'s declared pods).
//! - `report`: affinities, block routes (expected seed shapes and programmed), matrices.
//! - `inspect`: `status`, `exec`, `check`, `report`.

pub mod agents;
pub mod check;
pub mod datastore;
pub mod inspect;
pub mod lab;
pub mod names;
pub mod nodes;
pub mod plan;
pub mod pods;
pub mod report;
pub mod state;
pub mod sys;
pub mod topology;
