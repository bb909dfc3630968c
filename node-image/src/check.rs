//! Before Blender starts: is the input usable, and which frames are still missing?

use std::fs;
use std::io::Read;
use std::path::Path;

use render_contract::RenderArgs;

/// A .blend file starts with `BLENDER`; Blender also saves gzip- and zstd-compressed files.
fn looks_like_blend(head: &[u8]) -> bool {
    head.starts_with(b"BLENDER")
        || head.starts_with(&[0x1f, 0x8b])
        || head.starts_with(&[0x28, 0xb5, 0x2f, 0xfd])
}

/// Checks a retry cannot fix; the error is one line for the user.
pub fn input(args: &RenderArgs) -> Result<(), String> {
    let blend = &args.blend_file;
    let mut file = fs::File::open(blend)
        .map_err(|e| format!("cannot read blend file {}: {e}", blend.display()))?;
    let mut head = [0u8; 7];
    let n = file
        .read(&mut head)
        .map_err(|e| format!("cannot read blend file {}: {e}", blend.display()))?;
    if !looks_like_blend(&head[..n]) {
        return Err(format!(
            "{} is not a .blend file (corrupt or wrong file)",
            blend.display()
        ));
    }
    let first = args.output_file(args.frames.frames().first().copied().unwrap_or(0));
    let dir = Path::new(&first).parent().unwrap_or(Path::new("."));
    fs::create_dir_all(dir)
        .map_err(|e| format!("cannot create output directory {}: {e}", dir.display()))?;
    let probe = dir.join(format!(".render-node-write-test-{}", std::process::id()));
    fs::write(&probe, b"")
        .map_err(|e| format!("output directory {} is not writable: {e}", dir.display()))?;
    let _ = fs::remove_file(probe);
    Ok(())
}

/// A frame counts as rendered when its file exists and is not empty.
pub fn rendered(path: &str) -> bool {
    fs::metadata(path)
        .map(|m| m.is_file() && m.len() > 0)
        .unwrap_or(false)
}

/// (frames to render, frames already on disk), in order.
pub fn missing(args: &RenderArgs) -> (Vec<i32>, Vec<i32>) {
    args.frames
        .frames()
        .into_iter()
        .partition(|f| args.overwrite || !rendered(&args.output_file(*f)))
}

/// Blender's `-f` syntax for a list of frames: runs of consecutive frames as `a..b`.
pub fn blender_frames(frames: &[i32]) -> String {
    let mut parts = Vec::new();
    let mut i = 0;
    while i < frames.len() {
        let mut j = i;
        while j + 1 < frames.len() && frames[j + 1] == frames[j] + 1 {
            j += 1;
        }
        parts.push(if j > i {
            format!("{}..{}", frames[i], frames[j])
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

    #[test]
    fn frame_lists_compact_to_ranges() {
        assert_eq!(blender_frames(&[1, 2, 3, 5, 7, 8]), "1..3,5,7..8");
        assert_eq!(blender_frames(&[4]), "4");
        assert_eq!(blender_frames(&[1, 3, 5]), "1,3,5");
    }

    #[test]
    fn blend_magic() {
        assert!(looks_like_blend(b"BLENDER-v304"));
        assert!(looks_like_blend(&[0x28, 0xb5, 0x2f, 0xfd, 0, 0, 0]));
        assert!(!looks_like_blend(b"\x00garbage"));
    }
}
