//! Frames → batches: a pure function of the (immutable) frame range and batch size.

use render_contract::FrameSet;

use crate::crd::FrameRange;

/// One batch: a slice of the frame range, rendered by one Job with one Blender start.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Batch {
    /// 0-based position in the plan; part of the Job name.
    pub index: u32,
    pub first: i32,
    pub last: i32,
    pub step: u32,
}

impl Batch {
    pub fn frames(&self) -> FrameSet {
        FrameSet::Range {
            start: self.first,
            end: self.last,
            step: self.step,
        }
    }

    pub fn frame_count(&self) -> i64 {
        (i64::from(self.last) - i64::from(self.first)) / i64::from(self.step) + 1
    }

    /// `11..15` (`1..9:2` with a step), as render-node takes it.
    pub fn frames_label(&self) -> String {
        self.frames().to_string()
    }
}

/// The batches of a render, computed on demand so a huge plan costs nothing until it is used.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Plan {
    start: i32,
    step: u32,
    frames: i64,
    batch_size: i64,
}

impl Plan {
    /// `None` when the range or the batch size makes no sense (the CRD's rules refuse those,
    /// so this only guards against objects written around the schema).
    pub fn new(range: &FrameRange, batch_size: i32) -> Option<Plan> {
        if range.end < range.start || range.step < 1 || batch_size < 1 {
            return None;
        }
        let step = range.step as u32;
        let frames = (i64::from(range.end) - i64::from(range.start)) / i64::from(step) + 1;
        Some(Plan {
            start: range.start,
            step,
            frames,
            batch_size: i64::from(batch_size),
        })
    }

    pub fn total_frames(&self) -> i64 {
        self.frames
    }

    pub fn len(&self) -> u32 {
        ((self.frames + self.batch_size - 1) / self.batch_size) as u32
    }

    pub fn is_empty(&self) -> bool {
        self.frames == 0
    }

    pub fn batch(&self, index: u32) -> Option<Batch> {
        let first_pos = i64::from(index) * self.batch_size;
        if first_pos >= self.frames {
            return None;
        }
        let last_pos = (first_pos + self.batch_size).min(self.frames) - 1;
        let at = |pos: i64| (i64::from(self.start) + pos * i64::from(self.step)) as i32;
        Some(Batch {
            index,
            first: at(first_pos),
            last: at(last_pos),
            step: self.step,
        })
    }

    pub fn batches(&self) -> impl Iterator<Item = Batch> + '_ {
        (0..self.len()).filter_map(|i| self.batch(i))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn plan(start: i32, end: i32, step: i32, size: i32) -> Plan {
        Plan::new(&FrameRange { start, end, step }, size).expect("valid plan")
    }

    #[test]
    fn frames_1_to_22_in_fives() {
        let got: Vec<(i32, i32)> = plan(1, 22, 1, 5)
            .batches()
            .map(|b| (b.first, b.last))
            .collect();
        assert_eq!(got, [(1, 5), (6, 10), (11, 15), (16, 20), (21, 22)]);
        assert_eq!(
            plan(1, 22, 1, 5).batch(4).map(|b| b.frames_label()),
            Some("21..22".into())
        );
    }

    #[test]
    fn steps_keep_every_nth_frame() {
        let p = plan(1, 20, 3, 3);
        let got: Vec<Vec<i32>> = p.batches().map(|b| b.frames().frames()).collect();
        assert_eq!(got, [vec![1, 4, 7], vec![10, 13, 16], vec![19]]);
        assert_eq!(p.batch(0).map(|b| b.frames_label()), Some("1..7:3".into()));
        assert_eq!(p.total_frames(), 7);
    }

    #[test]
    fn single_frame_and_nonsense() {
        assert_eq!(plan(7, 7, 1, 5).len(), 1);
        assert_eq!(
            Plan::new(
                &FrameRange {
                    start: 5,
                    end: 1,
                    step: 1
                },
                5
            ),
            None
        );
        assert_eq!(
            Plan::new(
                &FrameRange {
                    start: 1,
                    end: 5,
                    step: 0
                },
                5
            ),
            None
        );
        assert_eq!(
            Plan::new(
                &FrameRange {
                    start: 1,
                    end: 5,
                    step: 1
                },
                0
            ),
            None
        );
    }

    #[test]
    fn the_largest_range_plans_without_materialising() {
        let p = plan(0, crate::crd::MAX_FRAME, 1, 1000);
        assert_eq!(p.len(), 1049);
        assert_eq!(
            p.batch(1048).map(|b| (b.first, b.last)),
            Some((1_048_000, 1_048_574))
        );
    }

    proptest! {
        #[test]
        fn batches_partition_the_frames(start in 0i32..5000, len in 0i32..3000, step in 1i32..10, size in 1i32..60) {
            let range = FrameRange { start, end: start + len, step };
            let p = Plan::new(&range, size).ok_or_else(|| TestCaseError::fail("no plan"))?;
            let expected: Vec<i32> = (start..=start + len).step_by(step as usize).collect();
            let mut seen = Vec::new();
            for (i, b) in p.batches().enumerate() {
                prop_assert_eq!(b.index as usize, i);
                let frames = b.frames().frames();
                prop_assert!(!frames.is_empty());
                prop_assert!(frames.len() <= size as usize);
                prop_assert_eq!(frames.len() as i64, b.frame_count());
                seen.extend(frames);
            }
            // In order, no overlap, nothing missing.
            prop_assert_eq!(seen, expected);
            prop_assert_eq!(p.batches().count(), p.len() as usize);
        }
    }
}
