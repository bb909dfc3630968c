//! The thumbnail of a PNG frame, made in this process instead of by ffmpeg: for the small
//! frames of a quick scene, starting ffmpeg cost more CPU than the frame's own checks, once per
//! frame (see `bench/results/`). Other formats (EXR needs a tone map) still go to ffmpeg.

use std::fs::File;
use std::io::{BufReader, BufWriter};
use std::path::Path;

use crate::media::{MediaError, io_error, temp_beside};

/// JPEG quality of a thumbnail (ffmpeg's `-q:v 4` is about the same).
const QUALITY: u8 = 85;

/// Write a `width`-pixel-wide JPEG of the PNG `frame` to `thumb`, through a temporary file
/// beside it: a reader sees the old thumbnail or the new one. Alpha is dropped, as ffmpeg does.
pub fn write(frame: &Path, width: u32, thumb: &Path) -> Result<(), MediaError> {
    let (w, h, channels, pixels) = decode(frame)?;
    let (tw, th) = size(w, h, width);
    let rgb = shrink(&pixels, (w, h), channels, (tw, th));
    let temp = temp_beside(thumb);
    let result = encode(&rgb, tw, th, &temp)
        .and_then(|()| std::fs::rename(&temp, thumb).map_err(io_error(thumb)));
    if result.is_err() {
        let _ = std::fs::remove_file(&temp);
    }
    result
}

/// (width, height, samples per pixel, 8-bit samples): palette, low and 16-bit depths are
/// brought to 8 bits a sample.
fn decode(frame: &Path) -> Result<(u32, u32, usize, Vec<u8>), MediaError> {
    let bad = |e: png::DecodingError| MediaError::Decode {
        path: frame.display().to_string(),
        detail: e.to_string(),
    };
    let file = File::open(frame).map_err(io_error(frame))?;
    let mut decoder = png::Decoder::new(BufReader::new(file));
    decoder.set_transformations(png::Transformations::normalize_to_color8());
    let mut reader = decoder.read_info().map_err(bad)?;
    let mut buf = vec![0; reader.output_buffer_size()];
    let info = reader.next_frame(&mut buf).map_err(bad)?;
    buf.truncate(info.buffer_size());
    Ok((info.width, info.height, info.color_type.samples(), buf))
}

/// The thumbnail's size: `width` wide, the height keeping the frame's aspect (rounded, ≥ 1),
/// as ffmpeg's `scale=WIDTH:-1`.
fn size(w: u32, h: u32, width: u32) -> (u32, u32) {
    let th = (u64::from(width) * u64::from(h) + u64::from(w) / 2) / u64::from(w.max(1));
    (width, u32::try_from(th.max(1)).unwrap_or(u32::MAX))
}

/// RGB of `to` pixels, each the mean of the box of `from` pixels it covers (a box of one pixel
/// or more, so enlarging repeats pixels). Gray samples stand for all three colours.
fn shrink(src: &[u8], from: (u32, u32), channels: usize, to: (u32, u32)) -> Vec<u8> {
    let span = |i: u32, n: u32, m: u32| {
        let (i, n, m) = (u64::from(i), u64::from(n), u64::from(m));
        let start = i * n / m;
        let end = ((i + 1) * n).div_ceil(m).max(start + 1);
        (start as usize, end as usize)
    };
    let stride = from.0 as usize * channels;
    let mut out = Vec::with_capacity(to.0 as usize * to.1 as usize * 3);
    for ty in 0..to.1 {
        let (y0, y1) = span(ty, from.1, to.1);
        for tx in 0..to.0 {
            let (x0, x1) = span(tx, from.0, to.0);
            let mut sum = [0u64; 3];
            for row in src[y0 * stride..y1 * stride].chunks_exact(stride) {
                for px in row[x0 * channels..x1 * channels].chunks_exact(channels) {
                    let rgb = if channels < 3 {
                        [px[0]; 3]
                    } else {
                        [px[0], px[1], px[2]]
                    };
                    for (s, v) in sum.iter_mut().zip(rgb) {
                        *s += u64::from(v);
                    }
                }
            }
            let n = ((y1 - y0) * (x1 - x0)) as u64;
            out.extend(sum.map(|s| ((s + n / 2) / n) as u8));
        }
    }
    out
}

fn encode(rgb: &[u8], w: u32, h: u32, temp: &Path) -> Result<(), MediaError> {
    let bad = |e: jpeg_encoder::EncodingError| MediaError::Encode {
        path: temp.display().to_string(),
        detail: e.to_string(),
    };
    let (w, h) = match (u16::try_from(w), u16::try_from(h)) {
        (Ok(w), Ok(h)) => (w, h),
        _ => {
            return Err(MediaError::Encode {
                path: temp.display().to_string(),
                detail: format!("{w}x{h} is larger than a JPEG can be"),
            });
        }
    };
    let file = File::create(temp).map_err(io_error(temp))?;
    let encoder = jpeg_encoder::Encoder::new(BufWriter::new(file), QUALITY);
    encoder
        .encode(rgb, w, h, jpeg_encoder::ColorType::Rgb)
        .map_err(bad)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_height_keeps_the_aspect_rounded() {
        assert_eq!(size(400, 225, 320), (320, 180));
        assert_eq!(size(1920, 1080, 320), (320, 180));
        assert_eq!(size(1000, 333, 320), (320, 107));
        assert_eq!(size(100, 1, 320), (320, 3));
        assert_eq!(size(10_000, 1, 320), (320, 1));
    }

    #[test]
    fn each_thumbnail_pixel_is_the_mean_of_its_box() {
        // 4x2 RGB: left half red, right half alternating black and white columns.
        let px = |c: [u8; 3]| c.to_vec();
        let row: Vec<u8> = [[255, 0, 0], [255, 0, 0], [0, 0, 0], [255, 255, 255]]
            .into_iter()
            .flat_map(px)
            .collect();
        let src = [row.clone(), row].concat();
        assert_eq!(shrink(&src, (4, 2), 3, (2, 1)), [255, 0, 0, 128, 128, 128]);
    }

    #[test]
    fn gray_and_alpha_pixels_become_rgb_and_alpha_is_dropped() {
        // 2x1 gray+alpha: (10, 0) and (30, 255).
        assert_eq!(shrink(&[10, 0, 30, 255], (2, 1), 2, (1, 1)), [20, 20, 20]);
        // 1x1 RGBA enlarged to 2x2 repeats the pixel.
        assert_eq!(
            shrink(&[1, 2, 3, 0], (1, 1), 4, (2, 2)),
            [1, 2, 3, 1, 2, 3, 1, 2, 3, 1, 2, 3]
        );
    }
}
