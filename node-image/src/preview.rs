//! `render-preview`: a finished render's preview video and contact sheet, made by ffmpeg from
//! the frames on disk. The frames are linked under consecutive numbers in a scratch directory,
//! so ffmpeg reads any frame set (steps, lists, gaps) as one image sequence.

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use render_contract::args::output_file;
use render_contract::preview::{
    CONTACT_SHEET_MAX_TILES, CONTACT_SHEET_TILE_WIDTH, contact_sheet_file, contact_sheet_grid,
    video_file,
};
use render_contract::{OutputFormat, PreviewArgs, PreviewCodec, PreviewReport, exit};

use crate::media::{self, Target};

/// Longest message kept in the report (the kubelet keeps 4096 bytes of it).
const MAX_MESSAGE: usize = 1024;

/// How the preview step ended: the exit code and the report.
#[derive(Debug, Clone, PartialEq)]
pub struct Ended {
    pub code: i32,
    pub report: PreviewReport,
}

fn bad_input(text: String) -> Ended {
    Ended {
        code: exit::BAD_INPUT,
        report: PreviewReport {
            ok: false,
            frames: 0,
            columns: 0,
            rows: 0,
            message: Some(text),
        },
    }
}

/// Up to `max` items of `items`, evenly spread, the first and the last always in.
pub fn sample<T: Clone>(items: &[T], max: usize) -> Vec<T> {
    if items.len() <= max || max < 2 {
        return items.iter().take(max.max(1)).cloned().collect();
    }
    let last = items.len() - 1;
    (0..max)
        .map(|k| items[(k * last + (max - 1) / 2) / (max - 1)].clone())
        .collect()
}

/// Frames as a short list (`1,2,5,… (40 frames)`).
fn frame_list(frames: &[i32]) -> String {
    let shown: Vec<String> = frames.iter().take(10).map(i32::to_string).collect();
    if frames.len() > 10 {
        format!("{},… ({} frames)", shown.join(","), frames.len())
    } else {
        shown.join(",")
    }
}

/// ffmpeg's arguments for the video of the frames linked as `seq/%06d<ext>`.
pub fn video_args(args: &PreviewArgs, input: &[String], pattern: &str, out: &Path) -> Vec<String> {
    let width = (args.width.max(2)) & !1;
    let mut a: Vec<String> = ["-nostdin", "-hide_banner", "-loglevel", "error", "-y"]
        .map(String::from)
        .to_vec();
    a.extend(input.iter().cloned());
    a.extend([
        "-framerate".into(),
        args.fps.to_string(),
        "-start_number".into(),
        "0".into(),
        "-i".into(),
        pattern.into(),
        "-vf".into(),
        media::scale_filter(args.format, width, true, Target::Video),
        "-r".into(),
        args.fps.to_string(),
    ]);
    match args.codec {
        PreviewCodec::H264 => a.extend(
            [
                "-c:v",
                "libx264",
                "-preset",
                "veryfast",
                "-crf",
                "20",
                "-movflags",
                "+faststart",
            ]
            .map(String::from),
        ),
        PreviewCodec::Vp9 => a.extend(
            [
                "-c:v",
                "libvpx-vp9",
                "-crf",
                "32",
                "-b:v",
                "0",
                "-deadline",
                "realtime",
                "-cpu-used",
                "8",
                "-row-mt",
                "1",
                "-movflags",
                "+faststart",
            ]
            .map(String::from),
        ),
    }
    a.extend(
        [
            "-pix_fmt",
            "yuv420p",
            "-colorspace",
            "bt709",
            "-color_primaries",
            "bt709",
            "-color_trc",
            "bt709",
            "-an",
            "-f",
            "mp4",
        ]
        .map(String::from),
    );
    a.push(out.display().to_string());
    a
}

/// The colour of a contact sheet's cells that hold no frame: the UI's page background.
pub const SHEET_EMPTY_CELL: &str = "0xF6F7F9";

/// ffmpeg's arguments for the contact sheet of the frames linked as `sheet/%06d<ext>`.
pub fn sheet_args(
    format: OutputFormat,
    input: &[String],
    pattern: &str,
    grid: (u32, u32),
    out: &Path,
) -> Vec<String> {
    let mut a: Vec<String> = ["-nostdin", "-hide_banner", "-loglevel", "error", "-y"]
        .map(String::from)
        .to_vec();
    a.extend(input.iter().cloned());
    a.extend([
        "-framerate".into(),
        "1".into(),
        "-start_number".into(),
        "0".into(),
        "-i".into(),
        pattern.into(),
        "-vf".into(),
        // Cells without a frame in the page's grey, not black: black reads as a frame
        // rendered black.
        format!(
            "{},tile={}x{}:color={SHEET_EMPTY_CELL}",
            media::scale_filter(format, CONTACT_SHEET_TILE_WIDTH, true, Target::Jpeg),
            grid.0,
            grid.1
        ),
        "-frames:v".into(),
        "1".into(),
        "-q:v".into(),
        "3".into(),
        "-f".into(),
        "mjpeg".into(),
        out.display().to_string(),
    ]);
    a
}

/// Link `frames` as `dir/000000<ext>`, `dir/000001<ext>`, ...; returns ffmpeg's pattern.
fn link_sequence(dir: &Path, frames: &[PathBuf], ext: &str) -> std::io::Result<String> {
    std::fs::create_dir_all(dir)?;
    for (i, f) in frames.iter().enumerate() {
        std::os::unix::fs::symlink(f, dir.join(format!("{i:06}{ext}")))?;
    }
    Ok(format!("{}/%06d{ext}", dir.display()))
}

/// A scratch directory, removed when dropped.
struct Scratch(PathBuf);

impl Drop for Scratch {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

fn shorten(mut s: String) -> String {
    if s.len() > MAX_MESSAGE {
        let mut cut = MAX_MESSAGE;
        while !s.is_char_boundary(cut) {
            cut -= 1;
        }
        s.truncate(cut);
        s.push('…');
    }
    s
}

/// Make the preview; the exit code is 0 (both files written), 64 (bad input: no frame on
/// disk, a zero fps or width) or 75 (ffmpeg failed: worth a retry).
pub async fn run(args: &PreviewArgs) -> Ended {
    if args.fps == 0 || args.width < 2 {
        return bad_input(format!(
            "--fps must be at least 1 and --width at least 2 (got {} and {})",
            args.fps, args.width
        ));
    }
    let output = match absolute(&args.output) {
        Ok(output) => output,
        Err(e) => return bad_input(format!("cannot read the working directory: {e}")),
    };
    if let Some(prefix) = &args.markers {
        remove_markers(&output, prefix);
    }
    let frames = args.frames.frames();
    let (present, missing) = on_disk(&output, &frames, args.format);
    if present.is_empty() {
        return bad_input(format!(
            "none of the {} frames is on disk (the first would be {})",
            frames.len(),
            output_file(&output, frames.first().copied().unwrap_or(0), args.format)
        ));
    }
    let tiles = sample(&present, CONTACT_SHEET_MAX_TILES as usize);
    let grid = contact_sheet_grid(tiles.len() as u32);
    let mut report = PreviewReport {
        ok: false,
        frames: present.len() as u32,
        columns: grid.0,
        rows: grid.1,
        message: None,
    };
    let notes = (!missing.is_empty()).then(|| {
        format!(
            "not on disk: frames {}; the preview shows {} of {} frames",
            frame_list(&missing),
            present.len(),
            frames.len()
        )
    });

    let scratch =
        Scratch(std::env::temp_dir().join(format!("render-preview-{}", std::process::id())));
    let _ = std::fs::remove_dir_all(&scratch.0);
    let (seq, sheet) = match link_frames(&scratch, &present, &tiles, args.format.extension()) {
        Ok(p) => p,
        Err(why) => {
            report.message = Some(why);
            return Ended {
                code: exit::RENDER_FAILED,
                report,
            };
        }
    };
    let input = media::input_options(&present[0], args.format);
    let mut failures = Vec::new();
    failures.extend(
        write_video(args, &output, &input, &seq, present.len())
            .await
            .err(),
    );
    let sheet = Sheet {
        pattern: &sheet,
        grid,
        tiles: tiles.len(),
    };
    failures.extend(write_sheet(args, &output, &input, &sheet).await.err());
    report.ok = failures.is_empty();
    failures.extend(notes);
    report.message = (!failures.is_empty()).then(|| shorten(failures.join("; ")));
    Ended {
        code: if !report.ok {
            exit::RENDER_FAILED
        } else {
            exit::SUCCESS
        },
        report,
    }
}

/// The video's frames and the contact sheet's tiles linked in `scratch`: ffmpeg's patterns.
fn link_frames(
    scratch: &Scratch,
    present: &[PathBuf],
    tiles: &[PathBuf],
    ext: &str,
) -> Result<(String, String), String> {
    link_sequence(&scratch.0.join("seq"), present, ext)
        .and_then(|seq| Ok((seq, link_sequence(&scratch.0.join("sheet"), tiles, ext)?)))
        .map_err(|e| format!("cannot link the frames under {}: {e}", scratch.0.display()))
}

/// `output` made absolute against the working directory.
fn absolute(output: &str) -> std::io::Result<String> {
    if Path::new(output).is_relative() {
        let cwd = std::env::current_dir()?;
        return Ok(cwd.join(output).display().to_string());
    }
    Ok(output.to_string())
}

/// The start-ahead markers left beside the frames. Leftovers only: a failure here is said,
/// and the preview goes on.
fn remove_markers(output: &str, prefix: &str) {
    match crate::handoff::remove_markers(output, prefix) {
        Ok(n) if n > 0 => eprintln!("render-preview: removed {n} start-ahead markers"),
        Ok(_) => {}
        Err(e) => eprintln!("render-preview: cannot remove the start-ahead markers: {e}"),
    }
}

/// The files of `frames` on disk (not empty), and the frames that are not.
fn on_disk(output: &str, frames: &[i32], format: OutputFormat) -> (Vec<PathBuf>, Vec<i32>) {
    let (mut present, mut missing) = (Vec::new(), Vec::new());
    for f in frames {
        let path = output_file(output, *f, format);
        let on_disk = std::fs::metadata(&path)
            .map(|m| m.is_file() && m.len() > 0)
            .unwrap_or(false);
        if on_disk {
            present.push(PathBuf::from(path));
        } else {
            missing.push(*f);
        }
    }
    (present, missing)
}

/// The preview video of the frames linked as `seq`; the failure as the report says it.
async fn write_video(
    args: &PreviewArgs,
    output: &str,
    input: &[String],
    seq: &str,
    frames: usize,
) -> Result<(), String> {
    let video = PathBuf::from(video_file(output));
    let temp = media::temp_beside(&video);
    let started = Instant::now();
    // A slow machine encodes a few frames a second at 640 px; this is far beyond that.
    let timeout = Duration::from_secs(300 + 2 * frames as u64);
    match media::write_atomically(&video_args(args, input, seq, &temp), &temp, &video, timeout)
        .await
    {
        Ok(()) => {
            eprintln!(
                "render-preview: {} ({} frames, {} fps, {}) in {:.2}s",
                video.display(),
                frames,
                args.fps,
                args.codec.as_str(),
                started.elapsed().as_secs_f64()
            );
            Ok(())
        }
        Err(e) => Err(format!("preview video: {e}")),
    }
}

/// The contact sheet's frames as linked, and its grid.
struct Sheet<'a> {
    pattern: &'a str,
    grid: (u32, u32),
    tiles: usize,
}

/// The contact sheet; the failure as the report says it.
async fn write_sheet(
    args: &PreviewArgs,
    output: &str,
    input: &[String],
    sheet: &Sheet<'_>,
) -> Result<(), String> {
    let contact = PathBuf::from(contact_sheet_file(output));
    let temp = media::temp_beside(&contact);
    let started = Instant::now();
    match media::write_atomically(
        &sheet_args(args.format, input, sheet.pattern, sheet.grid, &temp),
        &temp,
        &contact,
        Duration::from_secs(300),
    )
    .await
    {
        Ok(()) => {
            eprintln!(
                "render-preview: {} ({}x{} of {} frames) in {:.2}s",
                contact.display(),
                sheet.grid.0,
                sheet.grid.1,
                sheet.tiles,
                started.elapsed().as_secs_f64()
            );
            Ok(())
        }
        Err(e) => Err(format!("contact sheet: {e}")),
    }
}

/// Write the report to `log` (a warning when it cannot be), and print it.
pub fn finish(log: &Path, ended: &Ended) -> i32 {
    let json = serde_json::to_string(&ended.report).unwrap_or_default();
    if let Some(m) = &ended.report.message {
        eprintln!("render-preview: {m}");
    }
    println!("{json}");
    if let Err(e) = std::fs::write(log, &json) {
        eprintln!(
            "render-preview: warning: cannot write the termination message to {}: {e}",
            log.display()
        );
    }
    ended.code
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn samples_are_even_and_keep_both_ends() {
        let all: Vec<i32> = (1..=100).collect();
        let s = sample(&all, 36);
        assert_eq!(s.len(), 36);
        assert_eq!((s[0], s[35]), (1, 100));
        assert!(s.windows(2).all(|w| w[1] > w[0]), "{s:?}");
        let gaps: Vec<i32> = s.windows(2).map(|w| w[1] - w[0]).collect();
        assert!(gaps.iter().all(|g| (2..=3).contains(g)), "{gaps:?}");
        assert_eq!(sample(&all[..5], 36), all[..5]);
        assert_eq!(sample(&all[..37], 36).len(), 36);
    }

    #[test]
    fn video_is_what_browsers_play() {
        let mut a = PreviewArgs::new("/d/f_####", OutputFormat::Png, "1..3".parse().unwrap());
        a.width = 641;
        a.fps = 12;
        let v = video_args(&a, &[], "/t/seq/%06d.png", Path::new("/d/.preview.mp4.tmp"));
        let at = |x: &str| v.iter().position(|y| y == x).expect(x);
        assert_eq!(v[at("-framerate") + 1], "12");
        assert_eq!(v[at("-c:v") + 1], "libx264");
        assert_eq!(v[at("-pix_fmt") + 1], "yuv420p");
        assert_eq!(v[at("-movflags") + 1], "+faststart");
        assert!(v[at("-vf") + 1].starts_with("scale=640:-2"), "{v:?}");
        a.codec = PreviewCodec::Vp9;
        let v = video_args(&a, &[], "/t/seq/%06d.png", Path::new("/d/x"));
        assert!(v.iter().any(|x| x == "libvpx-vp9"));
    }

    #[test]
    fn sheet_tiles_the_grid() {
        let s = sheet_args(
            OutputFormat::OpenExr,
            &["-layer".into(), "ViewLayer.Combined".into()],
            "/t/sheet/%06d.exr",
            (4, 3),
            Path::new("/d/.contact.jpg.tmp"),
        );
        let vf = &s[s.iter().position(|x| x == "-vf").unwrap() + 1];
        assert!(
            vf.contains("tonemap") && vf.ends_with(",tile=4x3:color=0xF6F7F9"),
            "{vf}"
        );
        assert_eq!(&s[5..7], ["-layer", "ViewLayer.Combined"]);
    }
}
