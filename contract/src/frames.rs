//! Frame sets as `render-node` takes them on its command line.
//!
//! Syntax: `START..END` (inclusive), `START..END:STEP`, or a comma-separated list `1,3,7`.
//! A single frame is `7`.

use std::fmt;
use std::str::FromStr;

/// A set of frames, in render order.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum FrameSet {
    /// `start..=end`, every `step`-th frame from `start`.
    Range { start: i32, end: i32, step: u32 },
    /// Explicit frames, in the given order.
    List(Vec<i32>),
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum FrameSetError {
    #[error("empty frame set")]
    Empty,
    #[error("'{0}' is not a frame number")]
    NotANumber(String),
    #[error("frame range end {end} is before its start {start}")]
    Reversed { start: i32, end: i32 },
    #[error("frame step must be at least 1")]
    ZeroStep,
    #[error("frame {0} is listed twice")]
    Duplicate(i32),
}

impl FrameSet {
    /// The frames, in order.
    pub fn frames(&self) -> Vec<i32> {
        match self {
            FrameSet::Range { start, end, step } => {
                let step = (*step).max(1) as usize;
                (*start..=*end).step_by(step).collect()
            }
            FrameSet::List(v) => v.clone(),
        }
    }

    /// Number of frames without materialising them.
    pub fn len(&self) -> usize {
        match self {
            FrameSet::Range { start, end, step } => {
                if end < start {
                    0
                } else {
                    ((i64::from(*end) - i64::from(*start)) / i64::from((*step).max(1)) + 1) as usize
                }
            }
            FrameSet::List(v) => v.len(),
        }
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// The smallest set describing `frames`: a range when they are evenly spaced, else a list.
    pub fn from_frames(frames: &[i32]) -> Result<FrameSet, FrameSetError> {
        match frames {
            [] => Err(FrameSetError::Empty),
            [one] => Ok(FrameSet::Range {
                start: *one,
                end: *one,
                step: 1,
            }),
            [first, second, ..] => {
                let step = i64::from(*second) - i64::from(*first);
                let even = step >= 1
                    && frames
                        .windows(2)
                        .all(|w| i64::from(w[1]) - i64::from(w[0]) == step);
                if even {
                    Ok(FrameSet::Range {
                        start: *first,
                        end: frames[frames.len() - 1],
                        step: step as u32,
                    })
                } else {
                    let mut seen = std::collections::BTreeSet::new();
                    for f in frames {
                        if !seen.insert(*f) {
                            return Err(FrameSetError::Duplicate(*f));
                        }
                    }
                    Ok(FrameSet::List(frames.to_vec()))
                }
            }
        }
    }
}

impl fmt::Display for FrameSet {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            FrameSet::Range { start, end, step } if start == end => write!(f, "{start}"),
            FrameSet::Range {
                start,
                end,
                step: 1,
            } => write!(f, "{start}..{end}"),
            FrameSet::Range { start, end, step } => write!(f, "{start}..{end}:{step}"),
            FrameSet::List(v) => {
                let parts: Vec<String> = v.iter().map(i32::to_string).collect();
                f.write_str(&parts.join(","))
            }
        }
    }
}

fn number(s: &str) -> Result<i32, FrameSetError> {
    s.trim()
        .parse()
        .map_err(|_| FrameSetError::NotANumber(s.trim().to_string()))
}

impl FromStr for FrameSet {
    type Err = FrameSetError;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let s = s.trim();
        if s.is_empty() {
            return Err(FrameSetError::Empty);
        }
        if let Some((start, rest)) = s.split_once("..") {
            let (end, step) = match rest.split_once(':') {
                Some((end, step)) => {
                    let step: u32 = step
                        .trim()
                        .parse()
                        .map_err(|_| FrameSetError::NotANumber(step.trim().to_string()))?;
                    (end, step)
                }
                None => (rest, 1),
            };
            let (start, end) = (number(start)?, number(end)?);
            if step == 0 {
                return Err(FrameSetError::ZeroStep);
            }
            if end < start {
                return Err(FrameSetError::Reversed { start, end });
            }
            return Ok(FrameSet::Range { start, end, step });
        }
        let frames = s.split(',').map(number).collect::<Result<Vec<_>, _>>()?;
        FrameSet::from_frames(&frames)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn parses_ranges_steps_and_lists() {
        assert_eq!(
            "1..5".parse(),
            Ok(FrameSet::Range {
                start: 1,
                end: 5,
                step: 1
            })
        );
        assert_eq!(
            "1..9:2".parse::<FrameSet>().map(|f| f.frames()),
            Ok(vec![1, 3, 5, 7, 9])
        );
        assert_eq!("7".parse::<FrameSet>().map(|f| f.frames()), Ok(vec![7]));
        assert_eq!("1,3,4".parse(), Ok(FrameSet::List(vec![1, 3, 4])));
        // Evenly spaced lists collapse to a range.
        assert_eq!(
            "2,4,6".parse(),
            Ok(FrameSet::Range {
                start: 2,
                end: 6,
                step: 2
            })
        );
    }

    #[test]
    fn refuses_nonsense() {
        assert_eq!("".parse::<FrameSet>(), Err(FrameSetError::Empty));
        assert_eq!(
            "5..1".parse::<FrameSet>(),
            Err(FrameSetError::Reversed { start: 5, end: 1 })
        );
        assert_eq!("1..5:0".parse::<FrameSet>(), Err(FrameSetError::ZeroStep));
        assert_eq!(
            "1-5".parse::<FrameSet>(),
            Err(FrameSetError::NotANumber("1-5".into()))
        );
        assert_eq!(
            "1,2,1".parse::<FrameSet>(),
            Err(FrameSetError::Duplicate(1))
        );
    }

    #[test]
    fn len_matches_frames_for_negative_and_stepped_ranges() {
        let r = FrameSet::Range {
            start: -10,
            end: 10,
            step: 3,
        };
        assert_eq!(r.len(), r.frames().len());
        assert_eq!(r.frames(), vec![-10, -7, -4, -1, 2, 5, 8]);
    }

    proptest! {
        #[test]
        fn display_round_trips(start in -1000i32..1000, len in 0i32..200, step in 1u32..7) {
            let set = FrameSet::Range { start, end: start + len, step };
            let parsed: FrameSet = set.to_string().parse().map_err(|e| TestCaseError::fail(format!("{e}")))?;
            prop_assert_eq!(parsed.frames(), set.frames());
            prop_assert_eq!(set.len(), set.frames().len());
        }

        #[test]
        fn lists_round_trip(mut frames in proptest::collection::btree_set(-500i32..500, 1..40)
            .prop_map(|s| s.into_iter().collect::<Vec<_>>())) {
            frames.sort_unstable();
            let set = FrameSet::from_frames(&frames).map_err(|e| TestCaseError::fail(format!("{e}")))?;
            prop_assert_eq!(set.frames(), frames.clone());
            let parsed: FrameSet = set.to_string().parse().map_err(|e| TestCaseError::fail(format!("{e}")))?;
            prop_assert_eq!(parsed.frames(), frames);
        }
    }
}
