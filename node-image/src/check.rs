//! Before Blender starts: is the input usable, and which frames are still missing? After it
//! ends: which frames are on disk?

use std::fs;
use std::path::{Path, PathBuf};
use std::time::SystemTime;

use render_contract::RenderArgs;

use crate::blend::{self, HeaderError, Version};
use crate::verify;

/// Relative paths made absolute (against the working directory), so that Blender, which
/// resolves some paths against the .blend file's folder, and render-node agree on every file.
/// A `//` output pattern (Blender's "next to the .blend file") is refused: render-node could
/// not verify the frames it names.
pub fn absolute(mut args: RenderArgs) -> Result<RenderArgs, String> {
    if args.output.starts_with("//") {
        return Err(format!(
            "output pattern {} is relative to the .blend file; give an absolute path (or one relative to the working directory)",
            args.output
        ));
    }
    if args.output.trim().is_empty() {
        return Err("the output pattern is empty".to_string());
    }
    let cwd =
        || std::env::current_dir().map_err(|e| format!("cannot read the working directory: {e}"));
    if args.blend_file.is_relative() {
        args.blend_file = cwd()?.join(&args.blend_file);
    }
    if Path::new(&args.output).is_relative() {
        args.output = cwd()?.join(&args.output).display().to_string();
    }
    Ok(args)
}

/// Checks a retry cannot fix; the error is one line for the user. Returns the version of the
/// Blender that saved the file.
pub fn input(args: &RenderArgs) -> Result<Version, String> {
    let blend = &args.blend_file;
    let version = blend::file_version(blend).map_err(|e| match e {
        HeaderError::Io(e) => format!("cannot read blend file {}: {e}", blend.display()),
        HeaderError::NotBlend => format!(
            "{} is not a .blend file (corrupt, truncated or another format)",
            blend.display()
        ),
    })?;
    let mut dirs: Vec<PathBuf> = args
        .frames
        .frames()
        .iter()
        .map(|f| {
            Path::new(&args.output_file(*f))
                .parent()
                .unwrap_or(Path::new("/"))
                .to_path_buf()
        })
        .collect();
    dirs.dedup();
    for dir in dirs {
        fs::create_dir_all(&dir)
            .map_err(|e| format!("cannot create output directory {}: {e}", dir.display()))?;
        let probe = dir.join(format!(".render-node-write-test-{}", std::process::id()));
        fs::write(&probe, b"")
            .map_err(|e| format!("output directory {} is not writable: {e}", dir.display()))?;
        let _ = fs::remove_file(probe);
    }
    Ok(version)
}

/// A frame counts as rendered when its file exists and is not empty.
pub fn rendered(path: &str) -> bool {
    fs::metadata(path)
        .map(|m| m.is_file() && m.len() > 0)
        .unwrap_or(false)
}

/// (frames to render with their files, frames already on disk), in order. A frame on disk
/// counts only if it decodes (a file cut short by a lost node is rendered again); its size
/// is checked once Blender says what it should be, after rendering.
pub fn missing(args: &RenderArgs) -> (Vec<(i32, String)>, Vec<i32>) {
    let mut todo = Vec::new();
    let mut skipped = Vec::new();
    for f in args.frames.frames() {
        let path = args.output_file(f);
        let decodes = || {
            std::panic::catch_unwind(|| verify::frame(Path::new(&path), args.format, None))
                .is_ok_and(|r| r.is_ok())
        };
        if args.overwrite || !rendered(&path) || !decodes() {
            todo.push((f, path));
        } else {
            skipped.push(f);
        }
    }
    (todo, skipped)
}

/// After an interrupted or failed run: files of `todo` that Blender wrote (modified since
/// `since`) but never reported saved may be cut short; they are removed so that a retry renders
/// them again instead of skipping them. Returns the frames removed.
pub fn remove_partial(todo: &[(i32, String)], saved: &[i32], since: SystemTime) -> Vec<i32> {
    let mut removed = Vec::new();
    for (frame, path) in todo {
        if saved.contains(frame) {
            continue;
        }
        let touched = fs::metadata(path)
            .and_then(|m| m.modified())
            .map(|t| t >= since)
            .unwrap_or(false);
        if touched && fs::remove_file(path).is_ok() {
            removed.push(*frame);
        }
    }
    removed
}

/// Blender's `-f` syntax for a list of frames: runs of consecutive frames as `a..b`
/// (`-f 1,3..4,7`; Blender 3.4 does not take `1-5`).
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
    use render_contract::FrameSet;

    fn scratch(name: &str) -> PathBuf {
        let dir =
            std::env::temp_dir().join(format!("render-node-check-{name}-{}", std::process::id()));
        let _ = fs::remove_dir_all(&dir);
        fs::create_dir_all(&dir).unwrap();
        dir
    }

    fn batch(dir: &Path, frames: &str) -> RenderArgs {
        RenderArgs::new(
            dir.join("scene.blend"),
            frames.parse().unwrap(),
            format!("{}/out/f_####", dir.display()),
        )
    }

    #[test]
    fn frame_lists_compact_to_ranges() {
        assert_eq!(blender_frames(&[1, 2, 3, 5, 7, 8]), "1..3,5,7..8");
        assert_eq!(blender_frames(&[4]), "4");
        assert_eq!(blender_frames(&[1, 3, 5]), "1,3,5");
        assert_eq!(blender_frames(&[-2, -1, 0]), "-2..0");
    }

    #[test]
    fn bad_input_is_one_line() {
        let dir = scratch("input");
        let args = batch(&dir, "1..3");
        let e = input(&args).unwrap_err();
        assert!(
            e.starts_with("cannot read blend file") && !e.contains('\n'),
            "{e}"
        );
        fs::write(dir.join("scene.blend"), b"PK\x03\x04 a zip file").unwrap();
        assert!(input(&args).unwrap_err().contains("is not a .blend file"));
        fs::write(dir.join("scene.blend"), b"BLENDER-v304").unwrap();
        assert_eq!(input(&args).unwrap().to_string(), "3.4");
        assert!(dir.join("out").is_dir());
        // A folder under a regular file cannot be created, not even by root.
        fs::write(dir.join("file"), b"x").unwrap();
        let mut under_file = args.clone();
        under_file.output = format!("{}/file/out/f_####", dir.display());
        assert!(
            input(&under_file)
                .unwrap_err()
                .starts_with("cannot create output directory")
        );
    }

    #[test]
    fn skips_frames_on_disk_unless_overwriting() {
        let dir = scratch("missing");
        let mut args = batch(&dir, "1..3");
        fs::create_dir_all(dir.join("out")).unwrap();
        let png = verify::tests::png_bytes(4, 2, |x, _| [x as u8 * 60, 0, 0]);
        fs::write(dir.join("out/f_0002.png"), &png).unwrap();
        fs::write(dir.join("out/f_0003.png"), b"").unwrap(); // empty: not rendered
        fs::write(dir.join("out/f_0004.png"), &png[..png.len() - 20]).unwrap(); // cut short
        args.frames = "1..4".parse().unwrap();
        let (todo, skipped) = missing(&args);
        assert_eq!(todo.iter().map(|(f, _)| *f).collect::<Vec<_>>(), [1, 3, 4]);
        assert_eq!(todo[0].1, format!("{}/out/f_0001.png", dir.display()));
        assert_eq!(skipped, [2]);
        args.overwrite = true;
        assert_eq!(missing(&args).0.len(), 4);
    }

    #[test]
    fn partial_files_of_an_interrupted_run_are_removed() {
        let dir = scratch("partial");
        let before = SystemTime::now() - std::time::Duration::from_secs(5);
        let todo: Vec<(i32, String)> = (1..=3)
            .map(|f| (f, format!("{}/f_{f}.png", dir.display())))
            .collect();
        for (_, p) in &todo[..2] {
            fs::write(p, b"x").unwrap();
        }
        assert_eq!(remove_partial(&todo, &[1], before), [2]);
        assert!(rendered(&todo[0].1) && !Path::new(&todo[1].1).exists());
        // Files older than the run were not written by it.
        fs::write(&todo[1].1, b"x").unwrap();
        assert!(
            remove_partial(
                &todo,
                &[],
                SystemTime::now() + std::time::Duration::from_secs(5)
            )
            .is_empty()
        );
    }

    #[test]
    fn paths_are_made_absolute_and_blend_relative_output_refused() {
        let cwd = std::env::current_dir().unwrap();
        let a = absolute(RenderArgs::new(
            "s.blend",
            FrameSet::List(vec![1]),
            "out/f_##",
        ))
        .unwrap();
        assert_eq!(a.blend_file, cwd.join("s.blend"));
        assert_eq!(a.output, cwd.join("out/f_##").display().to_string());
        assert!(
            absolute(RenderArgs::new(
                "/s.blend",
                FrameSet::List(vec![1]),
                "//render/f_##"
            ))
            .is_err()
        );
        assert!(absolute(RenderArgs::new("/s.blend", FrameSet::List(vec![1]), " ")).is_err());
    }
}
