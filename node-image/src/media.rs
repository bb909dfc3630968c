//! ffmpeg, for what people look at: a frame's thumbnail, and the filters the preview video and
//! the contact sheet share. EXR frames hold scene-linear light, often above 1.0; they are tone
//! mapped (Reinhard, then the sRGB curve) so that a bright scene is not blown out. bookworm's
//! ffmpeg 5.1 clips float pixels to 1.0 in swscale, so every step between the EXR decoder and
//! the tone map is zscale (zimg), which keeps them.

use std::io;
use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::time::Duration;

use render_contract::OutputFormat;
use tokio::io::AsyncReadExt;
use tokio::process::Command;

/// The ffmpeg executable: `RENDER_NODE_FFMPEG`, else `ffmpeg` on `PATH`.
pub fn ffmpeg() -> PathBuf {
    std::env::var_os("RENDER_NODE_FFMPEG")
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from("ffmpeg"))
}

/// How long one thumbnail may take (a 320 px JPEG of one frame: well under a second).
pub const THUMB_TIMEOUT: Duration = Duration::from_secs(60);

/// The brightest scene-linear value the tone map keeps apart from white (16× diffuse white).
const PEAK: u32 = 16;

#[derive(Debug, thiserror::Error)]
pub enum MediaError {
    #[error("cannot run {program}: {source}")]
    Spawn { program: String, source: io::Error },
    #[error("ffmpeg failed ({status}): {detail}")]
    Failed { status: String, detail: String },
    #[error("ffmpeg did not finish within {0:?}")]
    Timeout(Duration),
    #[error("{path}: {source}")]
    Io { path: String, source: io::Error },
    #[error("cannot read {path}: {detail}")]
    Decode { path: String, detail: String },
    #[error("cannot write {path}: {detail}")]
    Encode { path: String, detail: String },
    #[error("the thumbnail of {path} stopped: {detail}")]
    Task { path: String, detail: String },
}

pub(crate) fn io_error(path: &Path) -> impl FnOnce(io::Error) -> MediaError + '_ {
    move |source| MediaError::Io {
        path: path.display().to_string(),
        source,
    }
}

/// Frames that hold scene-linear light and need a tone map.
pub fn is_hdr(format: OutputFormat) -> bool {
    matches!(
        format,
        OutputFormat::OpenExr | OutputFormat::OpenExrMultilayer
    )
}

/// ffmpeg's options for reading frames like `first` (before its `-i`): a multilayer EXR names
/// the layer with the picture (ffmpeg reads only plain `R`, `G`, `B` channels otherwise).
pub fn input_options(first: &Path, format: OutputFormat) -> Vec<String> {
    if !is_hdr(format) {
        return vec![];
    }
    // The header comes first; 64 KiB holds any Blender writes.
    let mut head = Vec::new();
    let read = std::fs::File::open(first)
        .and_then(|f| std::io::Read::read_to_end(&mut std::io::Read::take(f, 1 << 16), &mut head));
    match read.ok().and_then(|_| exr_layer(&head)) {
        Some(layer) => vec!["-layer".into(), layer],
        None => vec![],
    }
}

/// The channel names of an EXR file's header.
fn exr_channels(bytes: &[u8]) -> Option<Vec<String>> {
    if bytes.get(..4)? != [0x76, 0x2f, 0x31, 0x01] {
        return None;
    }
    let cstr = |at: usize| -> Option<(String, usize)> {
        let len = bytes.get(at..)?.iter().position(|b| *b == 0)?;
        Some((
            String::from_utf8_lossy(&bytes[at..at + len]).into_owned(),
            at + len + 1,
        ))
    };
    let mut at = 8;
    loop {
        let (name, next) = cstr(at)?;
        if name.is_empty() {
            return None;
        }
        let (kind, next) = cstr(next)?;
        let size = u32::from_le_bytes(bytes.get(next..next + 4)?.try_into().ok()?) as usize;
        let value = next + 4;
        if name == "channels" && kind == "chlist" {
            let end = value + size;
            let mut names = Vec::new();
            let mut c = value;
            while c < end {
                let (channel, after) = cstr(c)?;
                if channel.is_empty() {
                    break;
                }
                names.push(channel);
                // pixel type, pLinear and reserved, x and y sampling: 16 bytes.
                c = after + 16;
            }
            return Some(names);
        }
        at = value + size;
    }
}

/// The layer of a multilayer EXR whose `R`, `G`, `B` channels are the picture (Blender's
/// `ViewLayer.Combined`); none for a plain RGB EXR.
fn exr_layer(bytes: &[u8]) -> Option<String> {
    let channels = exr_channels(bytes)?;
    if channels.iter().any(|c| c == "R") {
        return None;
    }
    let layers: Vec<&str> = channels
        .iter()
        .filter_map(|c| c.strip_suffix(".R"))
        .collect();
    layers
        .iter()
        .find(|l| l.ends_with("Combined"))
        .or(layers.first())
        .map(|l| l.to_string())
}

/// What a frame becomes: a JPEG (full-range BT.601, as JPEG has it) or a video frame
/// (limited-range BT.709, what browsers assume).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Target {
    Jpeg,
    Video,
}

/// The filters that scale a frame to `width` pixels (the height keeps the aspect, rounded to
/// even when `even`) and convert it for `target`, tone mapped when the frames are HDR.
pub fn scale_filter(format: OutputFormat, width: u32, even: bool, target: Target) -> String {
    let h = if even { -2 } else { -1 };
    let convert = match target {
        Target::Jpeg => "scale=out_range=full,format=yuvj420p",
        Target::Video => "scale=out_color_matrix=bt709:out_range=tv,format=yuv420p",
    };
    if is_hdr(format) {
        format!(
            "zscale=w={width}:h={h}:f=lanczos,format=gbrpf32le,\
             tonemap=reinhard:peak={PEAK}:desat=0,\
             zscale=tin=linear:pin=bt709:min=gbr:rin=full:t=iec61966-2-1:p=bt709:m=gbr:r=full,\
             format=gbrp,{convert}"
        )
    } else {
        format!("scale={width}:{h}:flags=lanczos,{convert}")
    }
}

/// ffmpeg's arguments for the thumbnail of `frame`, written to `out` as a JPEG.
pub fn thumbnail_args(frame: &Path, format: OutputFormat, out: &Path) -> Vec<String> {
    let mut args: Vec<String> = ["-nostdin", "-hide_banner", "-loglevel", "error", "-y"]
        .map(String::from)
        .to_vec();
    args.extend(input_options(frame, format));
    args.extend([
        "-i".into(),
        frame.display().to_string(),
        "-frames:v".into(),
        "1".into(),
        "-vf".into(),
        scale_filter(
            format,
            render_contract::preview::THUMB_WIDTH,
            false,
            Target::Jpeg,
        ),
        "-q:v".into(),
        "4".into(),
        "-f".into(),
        "mjpeg".into(),
        out.display().to_string(),
    ]);
    args
}

/// Run ffmpeg with `args`; its error output becomes the error's detail (the last lines).
pub async fn run(args: &[String], timeout: Duration) -> Result<(), MediaError> {
    let program = ffmpeg();
    let mut child = Command::new(&program)
        .args(args)
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .kill_on_drop(true)
        .spawn()
        .map_err(|source| MediaError::Spawn {
            program: program.display().to_string(),
            source,
        })?;
    let mut stderr = child.stderr.take();
    let work = async {
        let mut text = String::new();
        if let Some(s) = stderr.as_mut() {
            let _ = s.read_to_string(&mut text).await;
        }
        (child.wait().await, text)
    };
    let (status, text) = tokio::time::timeout(timeout, work)
        .await
        .map_err(|_| MediaError::Timeout(timeout))?;
    let status = status.map_err(|source| MediaError::Spawn {
        program: program.display().to_string(),
        source,
    })?;
    if status.success() {
        return Ok(());
    }
    let lines: Vec<&str> = text.lines().filter(|l| !l.trim().is_empty()).collect();
    let detail = lines[lines.len().saturating_sub(3)..].join(" / ");
    Err(MediaError::Failed {
        status: status.to_string(),
        detail: if detail.is_empty() {
            "no error output".into()
        } else {
            detail
        },
    })
}

/// A temporary name beside `path`, hidden, that ffmpeg writes before the rename.
pub fn temp_beside(path: &Path) -> PathBuf {
    let name = path
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default();
    path.with_file_name(format!(".{name}.tmp-{}", std::process::id()))
}

/// Write `out` with ffmpeg (`args` built for `temp`, [`temp_beside`] `out`), then rename it into
/// place: a reader sees the old file or the new one, never half of one.
pub async fn write_atomically(
    args: &[String],
    temp: &Path,
    out: &Path,
    timeout: Duration,
) -> Result<(), MediaError> {
    let result = run(args, timeout).await.and_then(|()| {
        let written = std::fs::metadata(temp).map(|m| m.len()).unwrap_or(0);
        if written == 0 {
            return Err(MediaError::Failed {
                status: "exit status: 0".into(),
                detail: format!("{} is empty", temp.display()),
            });
        }
        std::fs::rename(temp, out).map_err(io_error(out))
    });
    if result.is_err() {
        let _ = std::fs::remove_file(temp);
    }
    result
}

/// Write the thumbnail of `frame` to `thumb` (its directory is created).
pub async fn thumbnail(frame: &Path, format: OutputFormat, thumb: &Path) -> Result<(), MediaError> {
    if let Some(dir) = thumb.parent() {
        std::fs::create_dir_all(dir).map_err(io_error(dir))?;
    }
    if format == OutputFormat::Png {
        let (frame, thumb) = (frame.to_path_buf(), thumb.to_path_buf());
        let shown = frame.display().to_string();
        let width = render_contract::preview::THUMB_WIDTH;
        return tokio::task::spawn_blocking(move || crate::png_thumb::write(&frame, width, &thumb))
            .await
            .unwrap_or_else(|e| {
                Err(MediaError::Task {
                    path: shown,
                    detail: e.to_string(),
                })
            });
    }
    let temp = temp_beside(thumb);
    let args = thumbnail_args(frame, format, &temp);
    write_atomically(&args, &temp, thumb, THUMB_TIMEOUT).await
}

/// Whether `thumb` is missing or older than `frame` (the frame was rendered again).
pub fn thumbnail_stale(frame: &Path, thumb: &Path) -> bool {
    let modified = |p: &Path| std::fs::metadata(p).and_then(|m| m.modified()).ok();
    match (modified(frame), modified(thumb)) {
        (Some(f), Some(t)) => t < f,
        _ => true,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// An EXR header with `channels` (the rest of the file is not read).
    fn exr(channels: &[&str]) -> Vec<u8> {
        let mut b = vec![0x76, 0x2f, 0x31, 0x01, 2, 0, 0, 0];
        let mut attr = |name: &str, kind: &str, value: &[u8]| {
            b.extend(name.as_bytes());
            b.push(0);
            b.extend(kind.as_bytes());
            b.push(0);
            b.extend((value.len() as u32).to_le_bytes());
            b.extend(value);
        };
        attr("compression", "compression", &[3]);
        let mut list = Vec::new();
        for c in channels {
            list.extend(c.as_bytes());
            list.push(0);
            list.extend([1u8; 16]);
        }
        list.push(0);
        attr("channels", "chlist", &list);
        b.push(0);
        b
    }

    #[test]
    fn multilayer_exr_names_its_combined_layer() {
        let ml = exr(&[
            "ViewLayer.Combined.A",
            "ViewLayer.Combined.B",
            "ViewLayer.Combined.G",
            "ViewLayer.Combined.R",
            "ViewLayer.Depth.Z",
        ]);
        assert_eq!(exr_layer(&ml).as_deref(), Some("ViewLayer.Combined"));
        assert_eq!(exr_layer(&exr(&["A", "B", "G", "R"])), None);
        let other = exr(&["Shot.Diffuse.R", "Shot.Diffuse.G", "Shot.Diffuse.B"]);
        assert_eq!(exr_layer(&other).as_deref(), Some("Shot.Diffuse"));
        assert_eq!(exr_layer(b"\x89PNG\r\n\x1a\n"), None);
        assert_eq!(exr_layer(&exr(&["A", "B", "G", "R"])[..20]), None);
    }

    #[test]
    fn hdr_frames_are_tone_mapped_without_swscale_before_it() {
        let f = scale_filter(OutputFormat::OpenExr, 320, false, Target::Jpeg);
        let tone = f.find("tonemap").expect("tone mapped");
        assert!(f.starts_with("zscale=w=320:h=-1") && !f[..tone].contains("scale=320"));
        assert!(f.ends_with("format=yuvj420p"), "{f}");
        let png = scale_filter(OutputFormat::Png, 640, true, Target::Video);
        assert!(png.starts_with("scale=640:-2:flags=lanczos,") && png.ends_with("yuv420p"));
    }

    #[test]
    fn thumbnails_are_one_jpeg_frame_to_the_temporary_name() {
        let args = thumbnail_args(
            Path::new("/d/f_0001.png"),
            OutputFormat::Png,
            Path::new("/d/.thumbs/.f_0001.jpg.tmp-1"),
        );
        let at = |a: &str| args.iter().position(|x| x == a).expect(a);
        assert_eq!(args[at("-i") + 1], "/d/f_0001.png");
        assert_eq!(args[at("-f") + 1], "mjpeg");
        assert_eq!(
            args.last().map(String::as_str),
            Some("/d/.thumbs/.f_0001.jpg.tmp-1")
        );
        assert_eq!(
            temp_beside(Path::new("/d/.thumbs/f_0001.jpg")),
            PathBuf::from(format!("/d/.thumbs/.f_0001.jpg.tmp-{}", std::process::id()))
        );
    }
}
