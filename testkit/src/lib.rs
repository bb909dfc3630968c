//! What renderfarm's test crates share, so that every test checks a frame, waits and talks to
//! a cluster the same way.

pub mod frame;
pub mod wait;

use std::sync::atomic::{AtomicU32, Ordering};

/// A name no other test of this run has: `PREFIX-NNNNN-K`, where NNNNN comes from the clock
/// (apart across test processes) and K counts the calls in this process. Tests of one binary
/// run at the same moment on several threads: the clock alone gave two of them one namespace.
pub fn unique_name(prefix: &str) -> String {
    static CALLS: AtomicU32 = AtomicU32::new(0);
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.subsec_nanos());
    let k = CALLS.fetch_add(1, Ordering::Relaxed);
    format!(
        "{prefix}-{:05}-{k}",
        (nanos / 10 + std::process::id()) % 100_000
    )
}

#[cfg(test)]
mod tests {
    /// Names asked for at the same moment on many threads all differ.
    #[test]
    fn unique_names_differ_across_threads() {
        let names: Vec<String> = std::thread::scope(|s| {
            let handles: Vec<_> = (0..16)
                .map(|_| s.spawn(|| super::unique_name("rf-x")))
                .collect();
            handles.into_iter().filter_map(|h| h.join().ok()).collect()
        });
        let set: std::collections::BTreeSet<_> = names.iter().collect();
        assert_eq!(set.len(), 16, "{names:?}");
        assert!(
            names
                .iter()
                .all(|n| n.starts_with("rf-x-") && n.len() <= 63)
        );
    }
}
