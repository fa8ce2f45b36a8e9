//! Deterministic simulations of circles of care in virtual time.
//!
//! A scenario runs many replicas of a circle's liaison notebook over a simulated network
//! (loss, churn, partitions) from a seed, and reports convergence time, messages and bytes.
//! The same seed always gives the same report. Every received change passes the same
//! validator as on a real node, so a rejected legitimate change would show in the report.
//!
//! # Layout
//!
//! - [`gossip`]: anti-entropy by per-device version vectors between random pairs.
//! - [`network`]: whole node cores (`cercle_node::node::cluster`) between 50 nodes in 5
//!   circles: the code the daemon runs, over a simulated network.
//! - [`territory`]: the named scenarios `rural-week`, `msp-lan` and `region`: node cores
//!   and relays, churn, outages, and each note followed until every member holds it.
//! - [`plot`]: their plots (SVG).
#![forbid(unsafe_code)]

pub mod gossip;
pub mod network;
pub mod plot;
pub mod territory;
