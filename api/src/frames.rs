//! Explicit frame lists: `spec.frames.list` holds frame numbers and strings of frames and
//! ranges (`1-10,15,20-30`), in any order and overlapping; the render's frames are their union,
//! in increasing order. `kubectl render submit --frames` and `rerender --frames` take the same
//! strings.

use std::borrow::Cow;

use schemars::{JsonSchema, Schema, SchemaGenerator, json_schema};
use serde::{Deserialize, Serialize};

use crate::crd::MAX_FRAME;

/// Most frames one list may name (each one is planned).
pub const MAX_LISTED_FRAMES: usize = 1_048_575;

/// One entry of a frame list: a frame, or a string of frames and ranges.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, Eq)]
#[serde(untagged)]
pub enum FrameItem {
    Frame(i32),
    Ranges(String),
}

impl JsonSchema for FrameItem {
    fn schema_name() -> Cow<'static, str> {
        "FrameItem".into()
    }

    // As Kubernetes' IntOrString: a structural schema has one type per field, and this
    // extension lets a list item be a number or a string.
    fn json_schema(_: &mut SchemaGenerator) -> Schema {
        json_schema!({
            "x-kubernetes-int-or-string": true,
            "description": "A frame number, or frames and ranges such as \"1-10,15,20-30\"."
        })
    }
}

/// A frame list that does not parse, naming the part and why.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("frame list part {part:?}: {why}")]
pub struct FrameListError {
    pub part: String,
    pub why: String,
}

fn error(part: &str, why: impl Into<String>) -> FrameListError {
    FrameListError {
        part: part.to_string(),
        why: why.into(),
    }
}

fn frame(part: &str, text: &str) -> Result<i32, FrameListError> {
    let n: i32 = text
        .trim()
        .parse()
        .map_err(|_| error(part, format!("{:?} is not a whole number", text.trim())))?;
    if !(0..=MAX_FRAME).contains(&n) {
        return Err(error(part, format!("frames are 0 to {MAX_FRAME}")));
    }
    Ok(n)
}

/// Push the frames of `1-10`, `20..30` or `15` onto `out`.
fn push_part(part: &str, out: &mut Vec<i32>) -> Result<(), FrameListError> {
    let (a, b) = match part.split_once("..").or_else(|| part.split_once('-')) {
        Some((a, b)) => (frame(part, a)?, frame(part, b)?),
        None => {
            let n = frame(part, part)?;
            (n, n)
        }
    };
    if b < a {
        return Err(error(part, "the end is before the start"));
    }
    if out.len() + (b - a) as usize >= MAX_LISTED_FRAMES {
        return Err(error(
            part,
            format!("more than {MAX_LISTED_FRAMES} frames in all"),
        ));
    }
    out.extend(a..=b);
    Ok(())
}

/// The frames of a string such as `1-10,15,20-30`, sorted, each once.
pub fn parse(s: &str) -> Result<Vec<i32>, FrameListError> {
    list(&[FrameItem::Ranges(s.to_string())])
}

/// The frames of a list's entries, sorted, each once. An empty list is an error.
pub fn list(items: &[FrameItem]) -> Result<Vec<i32>, FrameListError> {
    let mut out = Vec::new();
    for item in items {
        match item {
            FrameItem::Frame(n) => out.push(frame(&n.to_string(), &n.to_string())?),
            FrameItem::Ranges(s) => {
                for part in s.split(',').map(str::trim).filter(|p| !p.is_empty()) {
                    push_part(part, &mut out)?;
                }
            }
        }
    }
    out.sort_unstable();
    out.dedup();
    if out.is_empty() {
        return Err(error("", "the list names no frame"));
    }
    Ok(out)
}

/// `1-10,15,20-30`: sorted frames as runs, what [`parse`] reads back.
pub fn encode(frames: &[i32]) -> String {
    let mut parts = Vec::new();
    let mut i = 0;
    while i < frames.len() {
        let mut j = i;
        while j + 1 < frames.len() && frames[j + 1] == frames[j] + 1 {
            j += 1;
        }
        parts.push(if j > i {
            format!("{}-{}", frames[i], frames[j])
        } else {
            frames[i].to_string()
        });
        i = j + 1;
    }
    parts.join(",")
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn strings_and_numbers_make_one_sorted_set() {
        assert_eq!(parse("1-3,15,20..22").unwrap(), [1, 2, 3, 15, 20, 21, 22]);
        let items: Vec<FrameItem> =
            serde_json::from_value(serde_json::json!([40, "12", "1-2,2-3", 40])).unwrap();
        assert_eq!(list(&items).unwrap(), [1, 2, 3, 12, 40]);
        assert_eq!(parse(" 7 , ").unwrap(), [7]);
    }

    #[test]
    fn bad_parts_are_named() {
        assert_eq!(
            parse("1-3,x").unwrap_err().to_string(),
            "frame list part \"x\": \"x\" is not a whole number"
        );
        assert_eq!(parse("9-2").unwrap_err().why, "the end is before the start");
        assert!(parse("1-2000000").is_err());
        assert!(parse("").is_err());
        assert!(list(&[FrameItem::Frame(-1)]).is_err());
    }

    proptest! {
        #[test]
        fn encode_parses_back(mut frames in prop::collection::vec(0i32..5000, 1..200)) {
            frames.sort_unstable();
            frames.dedup();
            prop_assert_eq!(parse(&encode(&frames)).map_err(|e| TestCaseError::fail(e.to_string()))?, frames);
        }
    }
}
