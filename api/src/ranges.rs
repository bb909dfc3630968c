//! Sets of batch indexes as compact ranges (`0-4,7,9-10`): how status records succeeded batches
//! and how Events name them.

use std::collections::BTreeSet;

/// `0-4,7,9-10`: compact, since batches finish roughly in order.
pub fn encode_ranges(set: &BTreeSet<u32>) -> String {
    encode_sorted(set.iter().copied())
}

/// [`encode_ranges`] of numbers given in increasing order.
pub fn encode_sorted(numbers: impl Iterator<Item = u32>) -> String {
    let mut out: Vec<String> = Vec::new();
    let mut iter = numbers.peekable();
    while let Some(first) = iter.next() {
        let mut last = first;
        while iter.peek() == Some(&(last + 1)) {
            last += 1;
            iter.next();
        }
        out.push(if first == last {
            first.to_string()
        } else {
            format!("{first}-{last}")
        });
    }
    out.join(",")
}

/// Inverse of [`encode_ranges`]; unreadable parts are ignored (the Jobs are the truth then).
pub fn decode_ranges(s: &str) -> BTreeSet<u32> {
    let mut all: Vec<u32> = ranges(s).flat_map(|(a, b)| a..=b).collect();
    // Sorted input builds the set in one pass.
    all.sort_unstable();
    all.into_iter().collect()
}

/// The readable `(first, last)` ranges of an [`encode_ranges`] string.
pub fn ranges(s: &str) -> impl Iterator<Item = (u32, u32)> + '_ {
    s.split(',')
        .map(str::trim)
        .filter(|p| !p.is_empty())
        .filter_map(|part| {
            let (a, b) = part.split_once('-').unwrap_or((part, part));
            let (a, b) = (a.parse::<u32>().ok()?, b.parse::<u32>().ok()?);
            (a <= b && b - a < 1_000_000).then_some((a, b))
        })
}
