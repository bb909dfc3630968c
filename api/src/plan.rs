//! Frames → batches: a pure function of the (immutable) frame range or list and batch size.

use std::sync::Arc;

use render_contract::FrameSet;

use crate::crd::{FrameRange, MAX_BATCHES};

/// One batch: a slice of the frame range, rendered by one Job with one Blender start.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Batch {
    /// 0-based position in the plan; part of the Job name.
    pub index: u32,
    /// Its first and last frame.
    pub first: i32,
    pub last: i32,
    pub step: u32,
    /// The batch's frames when the render's frames are a list (`frames.list`).
    pub listed: Option<Arc<[i32]>>,
}

impl Batch {
    pub fn frames(&self) -> FrameSet {
        match &self.listed {
            Some(frames) => FrameSet::List(frames.to_vec()),
            None => FrameSet::Range {
                start: self.first,
                end: self.last,
                step: self.step,
            },
        }
    }

    pub fn frame_count(&self) -> i64 {
        match &self.listed {
            Some(frames) => frames.len() as i64,
            None => (i64::from(self.last) - i64::from(self.first)) / i64::from(self.step) + 1,
        }
    }

    /// `11..15` (`1..9:2` with a step), as render-node takes it.
    pub fn frames_label(&self) -> String {
        self.frames().to_string()
    }
}

/// The batches of a render, computed on demand so a huge plan costs nothing until it is used.
/// A frame list is held once (shared by its clones).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Plan {
    start: i32,
    step: u32,
    frames: i64,
    batch_size: i64,
    listed: Option<Arc<[i32]>>,
}

impl Plan {
    /// `None` when the range or the batch size makes no sense (the CRD's rules refuse those,
    /// so this only guards against objects written around the schema), or when a frame list
    /// does not parse, strays outside `start..end` or makes more than [`MAX_BATCHES`] batches
    /// ([`Plan::why_not`] says which).
    pub fn new(range: &FrameRange, batch_size: i32) -> Option<Plan> {
        Plan::planned(range, batch_size).ok()
    }

    /// Why [`Plan::new`] makes no plan of a frame list, in a line for the status.
    pub fn why_not(range: &FrameRange, batch_size: i32) -> Option<String> {
        Plan::planned(range, batch_size).err()
    }

    fn planned(range: &FrameRange, batch_size: i32) -> Result<Plan, String> {
        if range.end < range.start || range.step < 1 || batch_size < 1 {
            return Err("the frame range or batch size makes no sense".into());
        }
        if !range.list.is_empty() {
            return Plan::of_list(range, batch_size);
        }
        let step = range.step as u32;
        let frames = (i64::from(range.end) - i64::from(range.start)) / i64::from(step) + 1;
        Ok(Plan {
            start: range.start,
            step,
            frames,
            batch_size: i64::from(batch_size),
            listed: None,
        })
    }

    fn of_list(range: &FrameRange, batch_size: i32) -> Result<Plan, String> {
        let frames = crate::frames::list(&range.list).map_err(|e| format!("frames.list: {e}"))?;
        let (lo, hi) = (frames[0], frames[frames.len() - 1]);
        if lo < range.start || hi > range.end {
            return Err(format!(
                "frames.list names frames {lo} to {hi}, outside frames.start..end ({}..{})",
                range.start, range.end
            ));
        }
        let size = i64::from(batch_size);
        let batches = (frames.len() as i64 + size - 1) / size;
        if batches > MAX_BATCHES {
            return Err(format!(
                "frames.list makes {batches} batches of {batch_size}, more than {MAX_BATCHES}; raise batchSize"
            ));
        }
        Ok(Plan {
            start: lo,
            step: 1,
            frames: frames.len() as i64,
            batch_size: size,
            listed: Some(frames.into()),
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
        if let Some(all) = &self.listed {
            let frames = &all[first_pos as usize..=last_pos as usize];
            return Some(Batch {
                index,
                first: frames[0],
                last: frames[frames.len() - 1],
                step: 1,
                listed: Some(frames.into()),
            });
        }
        let at = |pos: i64| (i64::from(self.start) + pos * i64::from(self.step)) as i32;
        Some(Batch {
            index,
            first: at(first_pos),
            last: at(last_pos),
            step: self.step,
            listed: None,
        })
    }

    /// The batches holding any of `frames` (for rendering them again), in order.
    pub fn batches_of(&self, frames: &[i32]) -> Vec<u32> {
        let mut out: Vec<u32> = frames
            .iter()
            .filter_map(|f| self.position(*f))
            .map(|pos| (pos / self.batch_size) as u32)
            .collect();
        out.sort_unstable();
        out.dedup();
        out
    }

    /// Whether `frame` is one of the render's frames.
    pub fn contains(&self, frame: i32) -> bool {
        self.position(frame).is_some()
    }

    /// Where `frame` sits among the render's frames, if it is one of them.
    fn position(&self, frame: i32) -> Option<i64> {
        match &self.listed {
            Some(all) => all.binary_search(&frame).ok().map(|p| p as i64),
            None => {
                let off = i64::from(frame) - i64::from(self.start);
                let step = i64::from(self.step);
                (off >= 0 && off % step == 0 && off / step < self.frames).then_some(off / step)
            }
        }
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
        Plan::new(
            &FrameRange {
                start,
                end,
                step,
                list: vec![],
            },
            size,
        )
        .expect("valid plan")
    }

    fn listed(list: serde_json::Value, size: i32) -> Result<Plan, String> {
        let range: FrameRange =
            serde_json::from_value(serde_json::json!({"start": 0, "end": 1000, "list": list}))
                .map_err(|e| e.to_string())?;
        Plan::planned(&range, size)
    }

    #[test]
    fn lists_are_planned_in_order_in_batches() {
        let p = listed(serde_json::json!(["20-22,1-3", 15, 2]), 3).expect("plan");
        let got: Vec<Vec<i32>> = p.batches().map(|b| b.frames().frames()).collect();
        assert_eq!(got, [vec![1, 2, 3], vec![15, 20, 21], vec![22]]);
        assert_eq!(
            p.batch(1).map(|b| b.frames_label()),
            Some("15,20,21".into())
        );
        assert_eq!(
            p.batch(1).map(|b| (b.first, b.last, b.frame_count())),
            Some((15, 21, 3))
        );
        assert_eq!(p.total_frames(), 7);
        // The same list written another way is the same plan.
        assert_eq!(
            listed(serde_json::json!([1, 2, 3, 15, "20-22"]), 3),
            Ok(p.clone())
        );
        assert_eq!(p.batches_of(&[21, 2, 99, 22]), [0, 1, 2]);
    }

    #[test]
    fn bad_lists_make_no_plan_and_say_why() {
        let outside = listed(serde_json::json!(["990-1010"]), 5).unwrap_err();
        assert_eq!(
            outside,
            "frames.list names frames 990 to 1010, outside frames.start..end (0..1000)"
        );
        assert!(
            listed(serde_json::json!(["x"]), 5)
                .unwrap_err()
                .starts_with("frames.list: frame list part")
        );
        assert!(listed(serde_json::json!(["0-1000"]), 1).is_ok());
        let range: FrameRange = serde_json::from_value(
            serde_json::json!({"start": 0, "end": 1048574, "list": ["0-1048574"]}),
        )
        .expect("range");
        assert!(Plan::why_not(&range, 10).is_some_and(|w| w.contains("more than 10000")));
    }

    #[test]
    fn batches_of_ranges_find_their_frames() {
        let p = plan(1, 20, 3, 3);
        assert_eq!(p.batches_of(&[4, 5, 19, 22]), [0, 2]);
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
                    step: 1,
                    list: vec![]
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
                    step: 0,
                    list: vec![]
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
                    step: 1,
                    list: vec![]
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
            let range = FrameRange { start, end: start + len, step, list: vec![] };
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
