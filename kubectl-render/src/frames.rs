//! `--frames`: `START-END[:STEP]` (or `START..END[:STEP]`, or one frame `N`), or a list of
//! frames and ranges `1-10,15,20-30` (the RenderJob's `frames.list`).

use renderfarm_api::crd::{FrameRange, MAX_FRAME};
use renderfarm_api::frames::{self as listed, FrameItem};

use crate::error::{Error, Result};

pub fn parse(input: &str) -> Result<FrameRange> {
    let bad = |reason: &str| Error::Frames {
        input: input.to_string(),
        reason: reason.to_string(),
    };
    let s = input.trim();
    if s.contains(',') {
        return parse_list(input);
    }
    let (range, step) = match s.split_once(':') {
        Some((r, st)) => (r, Some(st)),
        None => (s, None),
    };
    let number = |t: &str, what: &str| -> Result<i32> {
        t.trim()
            .parse::<i32>()
            .map_err(|_| bad(&format!("{what} '{}' is not a whole number", t.trim())))
    };
    let (start, end) = match range.split_once("..").or_else(|| range.split_once('-')) {
        Some((a, b)) => (number(a, "start")?, number(b, "end")?),
        None => {
            let n = number(range, "frame")?;
            (n, n)
        }
    };
    let step = match step {
        Some(t) => number(t, "step")?,
        None => 1,
    };
    if start < 0 || end > MAX_FRAME {
        return Err(bad(&format!("frames must be between 0 and {MAX_FRAME}")));
    }
    if end < start {
        return Err(bad("the end is before the start"));
    }
    if step < 1 {
        return Err(bad("the step must be at least 1"));
    }
    Ok(FrameRange {
        start,
        end,
        step,
        list: vec![],
    })
}

/// `1-10,15,20-30`: a list, between its first and last frame.
fn parse_list(input: &str) -> Result<FrameRange> {
    let frames = listed::parse(input).map_err(|e| Error::Frames {
        input: input.to_string(),
        reason: e.to_string(),
    })?;
    Ok(FrameRange {
        start: frames[0],
        end: frames[frames.len() - 1],
        step: 1,
        list: vec![FrameItem::Ranges(listed::encode(&frames))],
    })
}

/// `1-250`, `1-250:2` when there is a step, or the list `1-10,15,20-30`.
pub fn display(r: &FrameRange) -> String {
    if !r.list.is_empty() {
        return listed::list(&r.list)
            .map(|f| listed::encode(&f))
            .unwrap_or_else(|e| e.to_string());
    }
    if r.step == 1 {
        format!("{}-{}", r.start, r.end)
    } else {
        format!("{}-{}:{}", r.start, r.end, r.step)
    }
}

/// The frames of a range or list, in order.
pub fn frames(r: &FrameRange) -> impl Iterator<Item = i32> {
    let all: Vec<i32> = if r.list.is_empty() {
        (r.start..=r.end).step_by(r.step.max(1) as usize).collect()
    } else {
        listed::list(&r.list).unwrap_or_default()
    };
    all.into_iter()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn range(start: i32, end: i32, step: i32) -> FrameRange {
        FrameRange {
            start,
            end,
            step,
            list: vec![],
        }
    }

    #[test]
    fn lists_of_frames_and_ranges() {
        let r = parse("20-22, 1-3,15,2").expect("a list");
        assert_eq!((r.start, r.end), (1, 22));
        assert_eq!(display(&r), "1-3,15,20-22");
        assert_eq!(frames(&r).collect::<Vec<_>>(), [1, 2, 3, 15, 20, 21, 22]);
        assert!(matches!(parse("1-3,x"), Err(Error::Frames { .. })));
        // As the RenderJob holds it.
        assert_eq!(
            serde_json::to_value(&r).expect("json")["list"],
            serde_json::json!(["1-3,15,20-22"])
        );
    }

    #[test]
    fn ranges_steps_and_single_frames() {
        assert_eq!(parse("1-250").ok(), Some(range(1, 250, 1)));
        assert_eq!(parse("1-250:2").ok(), Some(range(1, 250, 2)));
        assert_eq!(parse("1..12").ok(), Some(range(1, 12, 1)));
        assert_eq!(parse(" 10..20:5 ").ok(), Some(range(10, 20, 5)));
        assert_eq!(parse("7").ok(), Some(range(7, 7, 1)));
        assert_eq!(parse("0-0").ok(), Some(range(0, 0, 1)));
        assert_eq!(
            parse("0-1048574").ok(),
            Some(range(0, MAX_FRAME, 1)),
            "Blender's whole range"
        );
    }

    #[test]
    fn bad_ranges_say_why() {
        let reason = |s: &str| match parse(s) {
            Err(Error::Frames { reason, .. }) => reason,
            other => panic!("{s}: {other:?}"),
        };
        assert!(reason("250-1").contains("before the start"));
        assert!(reason("1-10:0").contains("at least 1"));
        assert!(reason("a-10").contains("'a'"));
        assert!(reason("1-").contains("end ''"));
        assert!(reason("1-2000000").contains("between 0 and"));
        assert!(reason("").contains("not a whole number"));
        // A negative start reads as a dash: refused rather than guessed.
        assert!(parse("-5-10").is_err());
    }

    #[test]
    fn display_and_frames_round_trip() {
        for s in ["1-250", "1-250:2", "3-3"] {
            let r = parse(s).expect("parses");
            assert_eq!(display(&r), s);
        }
        assert_eq!(
            frames(&range(1, 10, 3)).collect::<Vec<_>>(),
            vec![1, 4, 7, 10]
        );
        assert_eq!(frames(&range(5, 5, 1)).collect::<Vec<_>>(), vec![5]);
    }
}
