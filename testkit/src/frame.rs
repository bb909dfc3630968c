//! Is a rendered frame really a picture? Decoded, of the size asked for, and not blank.

use std::collections::BTreeSet;
use std::path::Path;

use anyhow::{Context, Result, bail, ensure};

/// Fewest distinct colours a rendered test frame has: the test scenes' shaded objects give
/// hundreds; a blank frame (one colour, whatever its alpha) has one.
pub const MIN_COLOURS: usize = 16;

/// A decoded 8-bit frame: width, height, and RGB of every pixel (alpha dropped, grey expanded).
pub struct Frame {
    pub width: u32,
    pub height: u32,
    pub rgb: Vec<[u8; 3]>,
}

impl Frame {
    /// Distinct RGB values: alpha is not counted, so an opaque black RGBA frame has one.
    pub fn distinct_colours(&self) -> usize {
        self.rgb.iter().collect::<BTreeSet<_>>().len()
    }

    /// Mean of each channel, 0-255.
    pub fn mean(&self) -> (f64, f64, f64) {
        let n = self.rgb.len().max(1) as f64;
        let sum = |c: usize| self.rgb.iter().map(|p| f64::from(p[c])).sum::<f64>() / n;
        (sum(0), sum(1), sum(2))
    }
}

/// Decode a PNG into 8-bit RGB (palettes, grey and 16-bit expanded or reduced).
pub fn decode_png(path: &Path) -> Result<Frame> {
    let file = std::fs::File::open(path).with_context(|| format!("open {}", path.display()))?;
    let mut decoder = png::Decoder::new(std::io::BufReader::new(file));
    decoder.set_transformations(png::Transformations::normalize_to_color8());
    let mut reader = decoder
        .read_info()
        .with_context(|| format!("decode {}", path.display()))?;
    let mut buf = vec![0; reader.output_buffer_size()];
    let info = reader
        .next_frame(&mut buf)
        .with_context(|| format!("decode {}", path.display()))?;
    let channels = match info.color_type {
        png::ColorType::Grayscale => 1,
        png::ColorType::GrayscaleAlpha => 2,
        png::ColorType::Rgb => 3,
        png::ColorType::Rgba => 4,
        png::ColorType::Indexed => bail!("{}: palette not expanded", path.display()),
    };
    let rgb = buf[..info.buffer_size()]
        .chunks_exact(channels)
        .map(|p| {
            if channels < 3 {
                [p[0]; 3]
            } else {
                [p[0], p[1], p[2]]
            }
        })
        .collect();
    Ok(Frame {
        width: info.width,
        height: info.height,
        rgb,
    })
}

/// Decode the PNG at `path`, check it is `width`x`height` and not blank (at least
/// [`MIN_COLOURS`] distinct RGB values); returns how many colours it has.
pub fn check_png(path: &Path, width: u32, height: u32) -> Result<usize> {
    let frame = decode_png(path)?;
    ensure!(
        (frame.width, frame.height) == (width, height),
        "{}: {}x{}, want {width}x{height}",
        path.display(),
        frame.width,
        frame.height
    );
    let colours = frame.distinct_colours();
    ensure!(
        colours >= MIN_COLOURS,
        "{} is blank: {colours} distinct colours",
        path.display()
    );
    Ok(colours)
}

#[cfg(test)]
mod tests {
    use super::*;

    const W: u32 = 64;
    const H: u32 = 36;

    fn write(
        dir: &Path,
        name: &str,
        colour: png::ColorType,
        pixel: &dyn Fn(u32, u32) -> Vec<u8>,
    ) -> Result<std::path::PathBuf> {
        let path = dir.join(name);
        let file = std::fs::File::create(&path)?;
        let mut enc = png::Encoder::new(std::io::BufWriter::new(file), W, H);
        enc.set_color(colour);
        enc.set_depth(png::BitDepth::Eight);
        let data: Vec<u8> = (0..H)
            .flat_map(|y| (0..W).flat_map(move |x| pixel(x, y)))
            .collect();
        enc.write_header()?.write_image_data(&data)?;
        Ok(path)
    }

    /// One colour fails whatever its alpha; two flat halves fail; a shaded frame passes; a
    /// frame of another size fails naming both sizes.
    #[test]
    fn blank_frames_fail_the_check() -> Result<()> {
        let dir = std::env::temp_dir().join(format!("testkit-frame-{}", std::process::id()));
        std::fs::create_dir_all(&dir)?;
        let black = write(&dir, "black-rgba.png", png::ColorType::Rgba, &|_, _| {
            vec![0, 0, 0, 255]
        })?;
        let clear = write(&dir, "clear-rgba.png", png::ColorType::Rgba, &|x, _| {
            vec![0, 0, 0, (x * 4) as u8]
        })?;
        let grey = write(&dir, "grey.png", png::ColorType::Grayscale, &|_, _| {
            vec![128]
        })?;
        let two = write(&dir, "two.png", png::ColorType::Rgb, &|x, _| {
            if x < W / 2 {
                vec![0, 0, 0]
            } else {
                vec![255, 255, 255]
            }
        })?;
        let shaded = write(&dir, "shaded.png", png::ColorType::Rgba, &|x, y| {
            vec![(x * 255 / W) as u8, (y * 255 / H) as u8, 64, 255]
        })?;
        for blank in [&black, &clear, &grey, &two] {
            let err = check_png(blank, W, H).expect_err("a blank frame passed");
            assert!(err.to_string().contains("is blank"), "{err}");
        }
        assert!(check_png(&shaded, W, H)? >= MIN_COLOURS);
        let err = check_png(&shaded, W * 2, H).expect_err("a frame of the wrong size passed");
        assert!(
            err.to_string()
                .contains(&format!("{W}x{H}, want {}x{H}", W * 2)),
            "{err}"
        );
        std::fs::remove_dir_all(&dir)?;
        Ok(())
    }
}
