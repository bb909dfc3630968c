//! What renderfarm's test crates share, so that every test checks a frame, waits and talks to
//! a cluster the same way.

pub mod frame;
pub mod wait;
