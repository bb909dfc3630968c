//! A frame counts once it decodes. A file that exists and is not empty may still be cut short
//! (a full disk, a node lost mid-write), have another size than the scene renders (a
//! resolution changed under a running render), or hold NaN or infinite values (a shader or a
//! GPU gone wrong), which a compositor spreads over every pixel they touch. PNG and EXR
//! frames are decoded whole; other formats are only required to be non-empty.

use std::fs::File;
use std::io::BufReader;
use std::path::Path;

use exr::prelude::{FlatSamples, ReadChannels, ReadLayers, f16};
use render_contract::OutputFormat;

/// What the check found in a frame that passed it.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Checked {
    /// Every pixel has the same colour (in EXR: every Combined pixel).
    pub flat: bool,
    /// A multilayer EXR's passes, `ViewLayer.Pass`, in the file's order.
    pub passes: Vec<String>,
}

/// Why a frame does not count.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum BadFrame {
    #[error("cannot read frame {path}: {why}")]
    Unreadable { path: String, why: String },
    #[error("frame {path} does not decode as {format} (truncated or corrupt): {why}")]
    Corrupt {
        path: String,
        format: &'static str,
        why: String,
    },
    #[error("frame {path} is {got_w}x{got_h}, the scene renders {want_w}x{want_h}")]
    Size {
        path: String,
        got_w: usize,
        got_h: usize,
        want_w: usize,
        want_h: usize,
    },
    #[error("frame {path} holds {count} NaN or infinite values in {channel}")]
    NonFinite {
        path: String,
        channel: String,
        count: usize,
    },
    #[error("frame {path} is one flat colour (spec.verify.blankFrames is Fail)")]
    Blank { path: String },
}

/// Decode the frame at `path` and check it; `size` is the scene's resolution when known.
pub fn frame(
    path: &Path,
    format: OutputFormat,
    size: Option<(usize, usize)>,
) -> Result<Checked, BadFrame> {
    let shown = path.display().to_string();
    let unreadable = |e: std::io::Error| BadFrame::Unreadable {
        path: shown.clone(),
        why: e.to_string(),
    };
    match format {
        OutputFormat::Png => png_frame(path, &shown, size),
        OutputFormat::OpenExr | OutputFormat::OpenExrMultilayer => exr_frame(path, &shown, size),
        _ => {
            let len = std::fs::metadata(path).map_err(unreadable)?.len();
            if len == 0 {
                return Err(BadFrame::Corrupt {
                    path: shown,
                    format: format.as_str(),
                    why: "the file is empty".into(),
                });
            }
            Ok(Checked::default())
        }
    }
}

fn check_size(
    path: &str,
    got: (usize, usize),
    want: Option<(usize, usize)>,
) -> Result<(), BadFrame> {
    match want {
        Some(want) if want != got => Err(BadFrame::Size {
            path: path.to_string(),
            got_w: got.0,
            got_h: got.1,
            want_w: want.0,
            want_h: want.1,
        }),
        _ => Ok(()),
    }
}

fn png_frame(path: &Path, shown: &str, size: Option<(usize, usize)>) -> Result<Checked, BadFrame> {
    let corrupt = |why: String| BadFrame::Corrupt {
        path: shown.to_string(),
        format: "PNG",
        why,
    };
    let file = File::open(path).map_err(|e| BadFrame::Unreadable {
        path: shown.to_string(),
        why: e.to_string(),
    })?;
    let mut reader = png::Decoder::new(BufReader::new(file))
        .read_info()
        .map_err(|e| corrupt(e.to_string()))?;
    let mut buf = vec![0; reader.output_buffer_size()];
    let info = reader
        .next_frame(&mut buf)
        .map_err(|e| corrupt(e.to_string()))?;
    // The end of the file too: a frame cut after its pixels lost its end chunk.
    reader.finish().map_err(|e| corrupt(e.to_string()))?;
    check_size(shown, (info.width as usize, info.height as usize), size)?;
    let pixels = (info.width as usize) * (info.height as usize);
    let bytes = &buf[..info.buffer_size()];
    let flat = if info.bit_depth == png::BitDepth::Sixteen {
        let samples: Vec<u16> = bytes
            .chunks_exact(2)
            .map(|b| u16::from_be_bytes([b[0], b[1]]))
            .collect();
        flat_samples(&samples, pixels, FLAT_LEVELS * 257)
    } else {
        flat_samples(bytes, pixels, FLAT_LEVELS)
    };
    Ok(Checked {
        flat,
        passes: Vec::new(),
    })
}

/// How far (in 8-bit levels) a frame's samples may spread and it still be one flat colour:
/// Blender dithers what it saves in 8 or 16 bits, so a black frame holds levels 0 and 1.
const FLAT_LEVELS: u16 = 2;
/// The same for an EXR's float samples (not dithered).
const FLAT_FLOAT: f32 = 2.0 / 255.0;

/// Whether each channel of `samples` (interleaved, `pixels` of them) spreads at most `tol`.
fn flat_samples<T: Copy + Ord + Into<u32>>(samples: &[T], pixels: usize, tol: u16) -> bool {
    let channels = samples.len().checked_div(pixels).unwrap_or(0).max(1);
    (0..channels).all(|c| {
        let mut it = samples.iter().skip(c).step_by(channels).copied();
        let Some(first) = it.next() else { return true };
        let (lo, hi) = it.fold((first, first), |(lo, hi), x| (lo.min(x), hi.max(x)));
        hi.into() - lo.into() <= u32::from(tol)
    })
}

/// Whether an EXR channel is part of the Combined pass: `R`, `G`, `B`, `A` in a single-layer
/// file, `Layer.Combined.R` in a multilayer one.
fn combined(channel: &str) -> bool {
    matches!(channel, "R" | "G" | "B" | "A")
        || channel
            .rsplit_once('.')
            .is_some_and(|(pass, c)| pass.ends_with("Combined") && c.len() == 1)
}

/// How many samples are NaN or infinite, and whether all are equal.
fn scan(samples: &FlatSamples) -> (usize, bool) {
    fn of<T: Copy>(v: &[T], value: impl Fn(T) -> f64) -> (usize, bool) {
        let mut bad = 0;
        let (mut lo, mut hi) = (f64::INFINITY, f64::NEG_INFINITY);
        for x in v.iter().map(|x| value(*x)) {
            if x.is_finite() {
                (lo, hi) = (lo.min(x), hi.max(x));
            } else {
                bad += 1;
            }
        }
        (bad, v.is_empty() || hi - lo <= f64::from(FLAT_FLOAT))
    }
    match samples {
        FlatSamples::F16(v) => of(v, |x: f16| f64::from(x.to_f32())),
        FlatSamples::F32(v) => of(v, f64::from),
        FlatSamples::U32(v) => of(v, |x| f64::from(x) / f64::from(u32::MAX)),
    }
}

fn exr_frame(path: &Path, shown: &str, size: Option<(usize, usize)>) -> Result<Checked, BadFrame> {
    let image = exr::prelude::read()
        .no_deep_data()
        .largest_resolution_level()
        .all_channels()
        .all_layers()
        .all_attributes()
        // Missing or damaged pixel blocks are an error, not zeros.
        .pedantic()
        .non_parallel()
        .from_file(path)
        .map_err(|e| BadFrame::Corrupt {
            path: shown.to_string(),
            format: "OpenEXR",
            why: e.to_string(),
        })?;
    let mut checked = Checked {
        flat: true,
        passes: Vec::new(),
    };
    let mut any_combined = false;
    for layer in &image.layer_data {
        check_size(shown, (layer.size.0, layer.size.1), size)?;
        for channel in &layer.channel_data.list {
            let name = channel.name.to_string();
            if let Some((pass, _)) = name.rsplit_once('.')
                && !checked.passes.iter().any(|p| p == pass)
            {
                checked.passes.push(pass.to_string());
            }
            if !combined(&name) {
                continue;
            }
            any_combined = true;
            let (bad, flat) = scan(&channel.sample_data);
            if bad > 0 {
                return Err(BadFrame::NonFinite {
                    path: shown.to_string(),
                    channel: name,
                    count: bad,
                });
            }
            checked.flat &= flat;
        }
    }
    checked.flat &= any_combined;
    Ok(checked)
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;
    use exr::prelude::{AnyChannel, AnyChannels, Image, SmallVec, WritableImage};

    /// An RGB PNG of `w`×`h` whose pixel (x, y) is `rgb(x, y)`.
    pub(crate) fn png_bytes(w: u32, h: u32, rgb: impl Fn(u32, u32) -> [u8; 3]) -> Vec<u8> {
        let mut out = Vec::new();
        let mut enc = png::Encoder::new(&mut out, w, h);
        enc.set_color(png::ColorType::Rgb);
        let mut writer = enc.write_header().expect("png header");
        let data: Vec<u8> = (0..h)
            .flat_map(|y| (0..w).map(move |x| (x, y)))
            .flat_map(|(x, y)| rgb(x, y))
            .collect();
        writer.write_image_data(&data).expect("png data");
        drop(writer);
        out
    }

    /// An EXR of `w`×`h` holding `channels` (name, one value per pixel).
    pub(crate) fn exr_bytes(w: usize, h: usize, channels: &[(&str, Vec<f32>)]) -> Vec<u8> {
        let list: SmallVec<[AnyChannel<FlatSamples>; 4]> = channels
            .iter()
            .map(|(name, v)| AnyChannel::new(*name, FlatSamples::F32(v.clone())))
            .collect();
        let image = Image::from_channels((w, h), AnyChannels::sort(list));
        let mut out = std::io::Cursor::new(Vec::new());
        image.write().to_buffered(&mut out).expect("exr");
        out.into_inner()
    }

    fn scratch(name: &str, bytes: &[u8]) -> std::path::PathBuf {
        let dir = std::env::temp_dir().join(format!("render-node-verify-{}", std::process::id()));
        std::fs::create_dir_all(&dir).expect("dir");
        let path = dir.join(name);
        std::fs::write(&path, bytes).expect("write");
        path
    }

    #[test]
    fn a_png_is_decoded_whole_and_its_size_checked() {
        let png = png_bytes(16, 9, |x, y| [x as u8 * 10, y as u8 * 20, 7]);
        let good = scratch("good.png", &png);
        let ok = frame(&good, OutputFormat::Png, Some((16, 9)));
        assert_eq!(ok, Ok(Checked::default()));
        let cut = scratch("cut.png", &png[..png.len() / 2]);
        let e = frame(&cut, OutputFormat::Png, None).unwrap_err();
        assert!(matches!(e, BadFrame::Corrupt { .. }), "{e}");
        // Cut after the pixels: the end chunk is missing.
        let no_end = scratch("noend.png", &png[..png.len() - 12]);
        assert!(frame(&no_end, OutputFormat::Png, None).is_err());
        let e = frame(&good, OutputFormat::Png, Some((32, 18))).unwrap_err();
        assert!(
            e.to_string().ends_with("is 16x9, the scene renders 32x18"),
            "{e}"
        );
        // Black as Blender saves it: dithered to levels 0 and 1.
        let flat = scratch(
            "flat.png",
            &png_bytes(8, 8, |x, y| [((x + y) % 2) as u8; 3]),
        );
        assert!(frame(&flat, OutputFormat::Png, None).is_ok_and(|c| c.flat));
        let dark = scratch(
            "dark.png",
            &png_bytes(8, 8, |x, _| [0, 0, (x == 3) as u8 * 3]),
        );
        assert!(frame(&dark, OutputFormat::Png, None).is_ok_and(|c| !c.flat));
    }

    #[test]
    fn an_exr_with_nan_in_combined_fails_and_other_passes_may_hold_it() {
        let px = |v: f32| vec![v; 6];
        let mut r = px(0.5);
        r[3] = f32::NAN;
        let nan = exr_bytes(
            3,
            2,
            &[("R", r), ("G", px(0.5)), ("B", px(0.5)), ("A", px(1.0))],
        );
        let e = frame(
            &scratch("nan.exr", &nan),
            OutputFormat::OpenExr,
            Some((3, 2)),
        )
        .unwrap_err();
        assert_eq!(
            e,
            BadFrame::NonFinite {
                path: scratch("nan.exr", &nan).display().to_string(),
                channel: "R".into(),
                count: 1
            }
        );
        let mut depth = px(1.0);
        depth[0] = f32::INFINITY;
        let layered = exr_bytes(
            3,
            2,
            &[
                ("ViewLayer.Combined.R", px(0.2)),
                ("ViewLayer.Combined.A", px(1.0)),
                ("ViewLayer.Depth.Z", depth),
            ],
        );
        let path = scratch("layered.exr", &layered);
        let ok = frame(&path, OutputFormat::OpenExrMultilayer, Some((3, 2))).expect("passes");
        assert_eq!(ok.passes, ["ViewLayer.Combined", "ViewLayer.Depth"]);
        assert!(ok.flat);
        let cut = scratch("cut.exr", &layered[..layered.len() - 8]);
        let e = frame(&cut, OutputFormat::OpenExrMultilayer, None).unwrap_err();
        assert!(matches!(e, BadFrame::Corrupt { .. }), "{e}");
    }

    #[test]
    fn combined_channels_are_found_in_both_layouts() {
        for yes in ["R", "A", "ViewLayer.Combined.R", "Shadow layer.Combined.A"] {
            assert!(combined(yes), "{yes}");
        }
        for no in ["ViewLayer.Depth.Z", "ViewLayer.Normal.X", "Z", "Combined"] {
            assert!(!combined(no), "{no}");
        }
    }

    #[test]
    fn scans_count_non_finite_values() {
        let v = FlatSamples::F32(vec![1.0, f32::NAN, f32::INFINITY, 1.0]);
        assert_eq!(scan(&v), (2, true));
        assert_eq!(scan(&FlatSamples::F32(vec![0.5, 0.3])), (0, false));
        assert_eq!(scan(&FlatSamples::F32(vec![0.5; 4])), (0, true));
        let h = FlatSamples::F16(vec![f16::from_f32(0.0), f16::NAN]);
        assert_eq!(scan(&h).0, 1);
    }
}
