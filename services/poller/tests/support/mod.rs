//! Test support shared by the poller's integration tests and its `poll_cost` benchmark: a
//! fake qBittorrent on a real socket and the torrents it serves.
#![allow(dead_code)]

pub mod fake_qbit;
pub mod swarm;
