//! Reads a .blend's own render settings (frame range, fps, resolution, engine, output format)
//! from its blocks, the way Blender does: the file's DNA (`DNA1`) describes every struct's
//! layout, so the fields are found by name, whatever version wrote the file. Compressed files
//! (zstd, which Blender 5.0 writes by default and 3.0 on when asked; gzip before 3.0) are
//! decompressed first.

use std::collections::HashMap;
use std::io::Read as _;
use std::path::Path;

use render_contract::{Engine, OutputFormat};

pub mod names;

/// What the scene says about its render.
#[derive(Debug, Clone, PartialEq)]
pub struct SceneInfo {
    /// Blender version that saved the file (`3.4`).
    pub version: String,
    /// How the file was compressed (`zstd`, `gzip`), if it was.
    pub compression: Option<&'static str>,
    pub frame_start: i32,
    pub frame_end: i32,
    pub frame_step: i32,
    pub fps: Option<f32>,
    pub resolution: Option<(i32, i32, i32)>,
    /// The engine as Blender names it (`CYCLES`, `BLENDER_EEVEE_NEXT`, ...).
    pub engine: Option<String>,
    /// Blender's image type code (`R_IMF_IMTYPE_*`).
    pub image_type: Option<u8>,
}

impl SceneInfo {
    /// The engine, when it is one render-node runs.
    pub fn render_engine(&self) -> Option<Engine> {
        match self.engine.as_deref()? {
            "CYCLES" => Some(Engine::Cycles),
            "BLENDER_EEVEE" | "BLENDER_EEVEE_NEXT" => Some(Engine::BlenderEevee),
            "BLENDER_WORKBENCH" => Some(Engine::BlenderWorkbench),
            _ => None,
        }
    }

    /// The output format, when it is a still-image format render-node writes (movies: none).
    pub fn output_format(&self) -> Option<OutputFormat> {
        // R_IMF_IMTYPE_* in Blender's DNA_scene_types.h.
        match self.image_type? {
            0 | 14 => Some(OutputFormat::Targa),
            4 => Some(OutputFormat::Jpeg),
            17 => Some(OutputFormat::Png),
            20 => Some(OutputFormat::Bmp),
            22 => Some(OutputFormat::Tiff),
            23 => Some(OutputFormat::OpenExr),
            28 => Some(OutputFormat::OpenExrMultilayer),
            _ => None,
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum BlendError {
    #[error("not a .blend file")]
    NotBlend,
    #[error("decompressing the .blend ({format}): {reason}")]
    Decompress {
        format: &'static str,
        reason: String,
    },
    #[error("truncated or damaged .blend ({0})")]
    Damaged(&'static str),
    #[error("no scene in the file")]
    NoScene,
}

/// True when the bytes start like a .blend (plain or compressed), checked before an upload.
pub fn looks_like_blend(head: &[u8]) -> bool {
    head.starts_with(b"BLENDER") || head.starts_with(&GZIP_MAGIC) || head.starts_with(&ZSTD_MAGIC)
}

pub fn read(path: &Path) -> std::io::Result<Result<SceneInfo, BlendError>> {
    Ok(parse(&std::fs::read(path)?))
}

#[derive(Clone, Copy)]
struct Layout {
    ptr: usize,
    little: bool,
    /// Blender 5's header: 64-bit block lengths.
    large: bool,
}

struct Block<'a> {
    code: [u8; 4],
    old: u64,
    sdna: usize,
    data: &'a [u8],
}

const GZIP_MAGIC: [u8; 2] = [0x1f, 0x8b];
const ZSTD_MAGIC: [u8; 4] = [0x28, 0xb5, 0x2f, 0xfd];

/// The scene settings of a .blend, plain or compressed.
pub fn parse(bytes: &[u8]) -> Result<SceneInfo, BlendError> {
    if bytes.starts_with(&GZIP_MAGIC) {
        let mut info = parse_plain(&gunzip(bytes)?)?;
        info.compression = Some("gzip");
        Ok(info)
    } else if bytes.starts_with(&ZSTD_MAGIC) {
        let mut info = parse_plain(&unzstd(bytes)?)?;
        info.compression = Some("zstd");
        Ok(info)
    } else {
        parse_plain(bytes)
    }
}

fn gunzip(bytes: &[u8]) -> Result<Vec<u8>, BlendError> {
    let mut out = Vec::new();
    // MultiGzDecoder: a gzip file may hold several members, read one after another.
    flate2::read::MultiGzDecoder::new(bytes)
        .read_to_end(&mut out)
        .map_err(|e| BlendError::Decompress {
            format: "gzip",
            reason: e.to_string(),
        })?;
    Ok(out)
}

/// Every zstd frame in turn. Blender writes its file as a series of frames, then a seek table
/// in a skippable frame, so a single-frame decoder would stop at the first.
fn unzstd(mut input: &[u8]) -> Result<Vec<u8>, BlendError> {
    use ruzstd::decoding::errors::{FrameDecoderError, ReadFrameHeaderError};
    use ruzstd::decoding::{BlockDecodingStrategy, FrameDecoder};
    let bad = |reason: String| BlendError::Decompress {
        format: "zstd",
        reason,
    };
    let mut out = Vec::new();
    let mut decoder = FrameDecoder::new();
    while !input.is_empty() {
        match decoder.reset(&mut input) {
            Ok(()) => {}
            Err(FrameDecoderError::ReadFrameHeaderError(ReadFrameHeaderError::SkipFrame {
                length,
                ..
            })) => {
                input = input
                    .get(length as usize..)
                    .ok_or_else(|| bad("a skippable frame runs past the end".into()))?;
                continue;
            }
            Err(e) => return Err(bad(e.to_string())),
        }
        while !decoder.is_finished() {
            decoder
                .decode_blocks(&mut input, BlockDecodingStrategy::UptoBytes(1 << 20))
                .map_err(|e| bad(e.to_string()))?;
            decoder
                .collect_to_writer(&mut out)
                .map_err(|e| bad(e.to_string()))?;
        }
        decoder
            .collect_to_writer(&mut out)
            .map_err(|e| bad(e.to_string()))?;
    }
    Ok(out)
}

fn parse_plain(bytes: &[u8]) -> Result<SceneInfo, BlendError> {
    let (layout, version, mut pos) = header(bytes)?;
    let mut blocks = Vec::new();
    let mut dna = None;
    while pos < bytes.len() {
        let (block, next) = block(bytes, pos, layout)?;
        pos = next;
        match &block.code {
            b"ENDB" => break,
            b"DNA1" => dna = Some(Dna::parse(block.data, layout)?),
            _ => blocks.push(block),
        }
    }
    let dna = dna.ok_or(BlendError::Damaged("no DNA1 block"))?;
    // The active scene: FileGlobal.curscene, else the first scene.
    let current = blocks
        .iter()
        .find(|b| &b.code == b"GLOB")
        .and_then(|g| dna.read_ptr(g, &["curscene"], layout));
    let scene = blocks
        .iter()
        .filter(|b| &b.code == b"SC\0\0")
        .find(|b| Some(b.old) == current)
        .or_else(|| blocks.iter().find(|b| &b.code == b"SC\0\0"))
        .ok_or(BlendError::NoScene)?;
    let int = |path: &[&str]| dna.read_int(scene, path, layout);
    let frame_start = int(&["r", "sfra"]).ok_or(BlendError::Damaged("no frame range"))?;
    let frame_end = int(&["r", "efra"]).ok_or(BlendError::Damaged("no frame range"))?;
    let frame_step = int(&["r", "frame_step"]).unwrap_or(1).max(1);
    let fps = match (
        int(&["r", "frs_sec"]),
        dna.read_float(scene, &["r", "frs_sec_base"], layout),
    ) {
        (Some(f), Some(base)) if base > 0.0 => Some(f as f32 / base),
        (Some(f), _) => Some(f as f32),
        _ => None,
    };
    let resolution = match (
        int(&["r", "xsch"]),
        int(&["r", "ysch"]),
        int(&["r", "size"]),
    ) {
        (Some(x), Some(y), Some(p)) => Some((x, y, p)),
        _ => None,
    };
    let engine = dna.read_str(scene, &["r", "engine"]);
    let image_type = int(&["r", "im_format", "imtype"]).map(|t| t as u8);
    Ok(SceneInfo {
        version,
        compression: None,
        frame_start,
        frame_end,
        frame_step,
        fps,
        resolution,
        engine,
        image_type,
    })
}

/// The file header: `BLENDER-v304` (12 bytes) or Blender 5's `BLENDER17-01v0500` (17 bytes).
fn header(b: &[u8]) -> Result<(Layout, String, usize), BlendError> {
    if !b.starts_with(b"BLENDER") || b.len() < 12 {
        return Err(BlendError::NotBlend);
    }
    let version = |digits: &[u8]| -> Result<String, BlendError> {
        let s = std::str::from_utf8(digits).map_err(|_| BlendError::NotBlend)?;
        let n: u32 = s.parse().map_err(|_| BlendError::NotBlend)?;
        Ok(format!("{}.{}", n / 100, n % 100))
    };
    match b[7] {
        b'-' | b'_' => {
            let little = match b[8] {
                b'v' => true,
                b'V' => false,
                _ => return Err(BlendError::NotBlend),
            };
            let ptr = if b[7] == b'-' { 8 } else { 4 };
            let layout = Layout {
                ptr,
                little,
                large: false,
            };
            Ok((layout, version(&b[9..12])?, 12))
        }
        b'1' if b.len() >= 17 && &b[7..9] == b"17" && b[9] == b'-' => {
            if &b[10..12] != b"01" {
                return Err(BlendError::Damaged("unknown file format version"));
            }
            let little = match b[12] {
                b'v' => true,
                b'V' => false,
                _ => return Err(BlendError::NotBlend),
            };
            let layout = Layout {
                ptr: 8,
                little,
                large: true,
            };
            Ok((layout, version(&b[13..17])?, 17))
        }
        _ => Err(BlendError::NotBlend),
    }
}

fn block(b: &[u8], pos: usize, l: Layout) -> Result<(Block<'_>, usize), BlendError> {
    let short = BlendError::Damaged("block header");
    let head = if l.large { 32 } else { 16 + l.ptr };
    let h = b.get(pos..pos + head).ok_or(short.clone())?;
    let mut code = [0u8; 4];
    code.copy_from_slice(&h[..4]);
    let (len, old, sdna) = if l.large {
        // code, SDNAnr, old, len, nr
        (
            uint(&h[16..24], l.little),
            uint(&h[8..16], l.little),
            uint(&h[4..8], l.little),
        )
    } else {
        // code, len, old, SDNAnr, nr
        (
            uint(&h[4..8], l.little),
            uint(&h[8..8 + l.ptr], l.little),
            uint(&h[8 + l.ptr..12 + l.ptr], l.little),
        )
    };
    let start = pos + head;
    let end = start.checked_add(len as usize).ok_or(short.clone())?;
    let data = b.get(start..end).ok_or(BlendError::Damaged("block data"))?;
    let block = Block {
        code,
        old,
        sdna: sdna as usize,
        data,
    };
    Ok((block, end))
}

fn uint(b: &[u8], little: bool) -> u64 {
    let mut v = 0u64;
    if little {
        for &x in b.iter().rev() {
            v = (v << 8) | u64::from(x);
        }
    } else {
        for &x in b {
            v = (v << 8) | u64::from(x);
        }
    }
    v
}

/// One struct member: its type, its name (`*next`, `engine[32]`), and where it sits.
struct Member {
    type_: usize,
    name: String,
    offset: usize,
}

struct Dna {
    types: Vec<String>,
    sizes: Vec<usize>,
    /// Struct index → members; type index → struct index.
    structs: Vec<(usize, Vec<Member>)>,
    struct_of_type: HashMap<usize, usize>,
}

impl Dna {
    fn parse(d: &[u8], l: Layout) -> Result<Dna, BlendError> {
        let bad = || BlendError::Damaged("DNA1");
        let mut p = 0usize;
        let tag = |p: &mut usize, t: &[u8; 4]| -> Result<(), BlendError> {
            *p = (*p + 3) & !3;
            if d.get(*p..*p + 4) != Some(t.as_slice()) {
                return Err(bad());
            }
            *p += 4;
            Ok(())
        };
        let u32_at = |p: &mut usize| -> Result<usize, BlendError> {
            let v = d.get(*p..*p + 4).ok_or(bad())?;
            *p += 4;
            Ok(uint(v, l.little) as usize)
        };
        let u16_at = |p: &mut usize| -> Result<usize, BlendError> {
            let v = d.get(*p..*p + 2).ok_or(bad())?;
            *p += 2;
            Ok(uint(v, l.little) as usize)
        };
        let strings = |p: &mut usize, n: usize| -> Result<Vec<String>, BlendError> {
            let mut out = Vec::with_capacity(n);
            for _ in 0..n {
                let rest = d.get(*p..).ok_or(bad())?;
                let end = rest.iter().position(|&c| c == 0).ok_or(bad())?;
                out.push(String::from_utf8_lossy(&rest[..end]).into_owned());
                *p += end + 1;
            }
            Ok(out)
        };
        tag(&mut p, b"SDNA")?;
        tag(&mut p, b"NAME")?;
        let n = u32_at(&mut p)?;
        let names = strings(&mut p, n)?;
        tag(&mut p, b"TYPE")?;
        let n = u32_at(&mut p)?;
        let types = strings(&mut p, n)?;
        tag(&mut p, b"TLEN")?;
        let sizes = (0..types.len())
            .map(|_| u16_at(&mut p))
            .collect::<Result<Vec<_>, _>>()?;
        tag(&mut p, b"STRC")?;
        let n = u32_at(&mut p)?;
        let mut structs = Vec::with_capacity(n);
        let mut struct_of_type = HashMap::new();
        for i in 0..n {
            let type_ = u16_at(&mut p)?;
            let count = u16_at(&mut p)?;
            let mut offset = 0;
            let mut members = Vec::with_capacity(count);
            for _ in 0..count {
                let t = u16_at(&mut p)?;
                let name = names.get(u16_at(&mut p)?).ok_or(bad())?.clone();
                let size = member_size(&name, *sizes.get(t).ok_or(bad())?, l.ptr);
                members.push(Member {
                    type_: t,
                    name,
                    offset,
                });
                offset += size;
            }
            struct_of_type.insert(type_, i);
            structs.push((type_, members));
        }
        Ok(Dna {
            types,
            sizes,
            structs,
            struct_of_type,
        })
    }

    /// Offset, type and name of a member reached through nested structs (`r` then `sfra`).
    fn find(&self, struct_index: usize, path: &[&str]) -> Option<(usize, &str, &str)> {
        let (_, members) = self.structs.get(struct_index)?;
        let (first, rest) = path.split_first()?;
        let m = members.iter().find(|m| base_name(&m.name) == *first)?;
        if rest.is_empty() {
            return Some((m.offset, self.types.get(m.type_)?.as_str(), m.name.as_str()));
        }
        let inner = *self.struct_of_type.get(&m.type_)?;
        let (off, t, n) = self.find(inner, rest)?;
        Some((m.offset + off, t, n))
    }

    fn field<'a>(&self, b: &'a Block, path: &[&str]) -> Option<(&'a [u8], &str, &str)> {
        let (off, t, name) = self.find(b.sdna, path)?;
        let size = member_size(name, *self.sizes.get(self.type_index(t)?)?, 8);
        Some((b.data.get(off..off + size.max(1))?, t, name))
    }

    fn type_index(&self, t: &str) -> Option<usize> {
        self.types.iter().position(|x| x == t)
    }

    fn read_int(&self, b: &Block, path: &[&str], l: Layout) -> Option<i32> {
        let (bytes, t, name) = self.field(b, path)?;
        if name.starts_with('*') || name.contains('[') {
            return None;
        }
        let v = match t {
            "int" => uint(bytes.get(..4)?, l.little) as u32 as i32,
            "short" => i32::from(uint(bytes.get(..2)?, l.little) as u16 as i16),
            "char" | "uchar" | "int8_t" | "uint8_t" => i32::from(*bytes.first()?),
            _ => return None,
        };
        Some(v)
    }

    fn read_float(&self, b: &Block, path: &[&str], l: Layout) -> Option<f32> {
        let (bytes, t, _) = self.field(b, path)?;
        if t != "float" {
            return None;
        }
        Some(f32::from_bits(uint(bytes.get(..4)?, l.little) as u32))
    }

    fn read_str(&self, b: &Block, path: &[&str]) -> Option<String> {
        let (off, t, name) = self.find(b.sdna, path)?;
        if t != "char" {
            return None;
        }
        let len = member_size(name, 1, 8);
        let bytes = b.data.get(off..off + len)?;
        let end = bytes.iter().position(|&c| c == 0).unwrap_or(bytes.len());
        let s = String::from_utf8_lossy(&bytes[..end]).into_owned();
        (!s.is_empty()).then_some(s)
    }

    fn read_ptr(&self, b: &Block, path: &[&str], l: Layout) -> Option<u64> {
        let (off, _, name) = self.find(b.sdna, path)?;
        if !name.starts_with('*') {
            return None;
        }
        Some(uint(b.data.get(off..off + l.ptr)?, l.little))
    }
}

/// `engine[32]` → `engine`, `*curscene` → `curscene`, `(*func)()` → `func`.
fn base_name(name: &str) -> &str {
    let s = name.trim_start_matches(['*', '(']);
    let end = s.find(['[', ')']).unwrap_or(s.len());
    &s[..end]
}

/// Bytes a member takes: pointers are pointer-sized, arrays multiply.
fn member_size(name: &str, type_size: usize, ptr: usize) -> usize {
    let elem = if name.starts_with('*') || name.starts_with("(*") {
        ptr
    } else {
        type_size
    };
    let mut count = 1usize;
    let mut rest = name;
    while let Some(open) = rest.find('[') {
        let close = rest[open..].find(']').map(|c| open + c);
        let Some(close) = close else { break };
        count = count.saturating_mul(rest[open + 1..close].parse::<usize>().unwrap_or(1));
        rest = &rest[close + 1..];
    }
    elem.saturating_mul(count)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_and_sizes_of_members() {
        assert_eq!(base_name("engine[32]"), "engine");
        assert_eq!(base_name("*curscene"), "curscene");
        assert_eq!(base_name("(*func)()"), "func");
        assert_eq!(base_name("**mat"), "mat");
        assert_eq!(member_size("engine[32]", 1, 8), 32);
        assert_eq!(member_size("mat[4][4]", 4, 8), 64);
        assert_eq!(member_size("*next", 16, 8), 8);
        assert_eq!(member_size("*ptrs[3]", 16, 4), 12);
        assert_eq!(member_size("(*func)()", 0, 8), 8);
        assert_eq!(member_size("sfra", 4, 8), 4);
    }

    #[test]
    fn headers_old_and_new() {
        let (l, v, pos) = header(b"BLENDER-v304REND").expect("3.4 header");
        assert_eq!(
            (l.ptr, l.little, l.large, v.as_str(), pos),
            (8, true, false, "3.4", 12)
        );
        let (l, v, pos) = header(b"BLENDER_V279....").expect("32-bit big-endian header");
        assert_eq!(
            (l.ptr, l.little, l.large, v.as_str(), pos),
            (4, false, false, "2.79", 12)
        );
        let (l, v, pos) = header(b"BLENDER17-01v0500....").expect("5.0 header");
        assert_eq!(
            (l.ptr, l.little, l.large, v.as_str(), pos),
            (8, true, true, "5.0", 17)
        );
        assert_eq!(
            header(b"PK\x03\x04zipfile!!").err(),
            Some(BlendError::NotBlend)
        );
        assert!(looks_like_blend(b"BLENDER-v304"));
        assert!(!looks_like_blend(b"\x89PNG"));
    }

    #[test]
    fn a_truncated_file_is_damaged_not_a_panic() {
        let mut f = b"BLENDER-v304".to_vec();
        f.extend_from_slice(b"SC\0\0");
        f.extend_from_slice(&1000u32.to_le_bytes());
        f.extend_from_slice(&[0; 16]);
        assert!(matches!(parse(&f), Err(BlendError::Damaged(_))));
        assert!(matches!(
            parse(b"BLENDER-v304"),
            Err(BlendError::Damaged(_))
        ));
    }

    /// A plain .blend as small as the reader accepts: a DNA with `Scene { RenderData r }` and
    /// `RenderData { int sfra, efra, frame_step }`, one scene, ENDB.
    fn tiny_blend(start: i32, end: i32, step: i32) -> Vec<u8> {
        let block = |out: &mut Vec<u8>, code: &[u8; 4], sdna: u32, data: &[u8]| {
            out.extend_from_slice(code);
            out.extend_from_slice(&(data.len() as u32).to_le_bytes());
            out.extend_from_slice(&0x1000u64.to_le_bytes());
            out.extend_from_slice(&sdna.to_le_bytes());
            out.extend_from_slice(&1u32.to_le_bytes());
            out.extend_from_slice(data);
        };
        let mut dna = b"SDNANAME".to_vec();
        let strings = |dna: &mut Vec<u8>, list: &[&str]| {
            dna.extend_from_slice(&(list.len() as u32).to_le_bytes());
            for s in list {
                dna.extend_from_slice(s.as_bytes());
                dna.push(0);
            }
            dna.resize(dna.len().next_multiple_of(4), 0);
        };
        strings(&mut dna, &["sfra", "efra", "frame_step", "r"]);
        dna.extend_from_slice(b"TYPE");
        strings(&mut dna, &["int", "RenderData", "Scene"]);
        dna.extend_from_slice(b"TLEN");
        // Type sizes, then the structs as (type, member count, then (type, name) pairs).
        let u16s = |dna: &mut Vec<u8>, v: &[u16]| {
            v.iter()
                .for_each(|x| dna.extend_from_slice(&x.to_le_bytes()))
        };
        u16s(&mut dna, &[4, 12, 12, 0]);
        dna.extend_from_slice(b"STRC");
        dna.extend_from_slice(&2u32.to_le_bytes());
        u16s(&mut dna, &[1, 3, 0, 0, 0, 1, 0, 2]);
        u16s(&mut dna, &[2, 1, 1, 3]);
        let mut out = b"BLENDER-v405".to_vec();
        let scene: Vec<u8> = [start, end, step]
            .iter()
            .flat_map(|v| v.to_le_bytes())
            .collect();
        block(&mut out, b"SC\0\0", 1, &scene);
        block(&mut out, b"DNA1", 0, &dna);
        block(&mut out, b"ENDB", 0, &[]);
        out
    }

    fn zstd(bytes: &[u8]) -> Vec<u8> {
        ruzstd::encoding::compress_to_vec(bytes, ruzstd::encoding::CompressionLevel::Fastest)
    }

    #[test]
    fn compressed_files_are_read_like_plain_ones() {
        let plain = tiny_blend(7, 42, 3);
        let info = parse(&plain).expect("plain");
        let range = |i: &SceneInfo| (i.frame_start, i.frame_end, i.frame_step);
        assert_eq!((range(&info), info.compression), ((7, 42, 3), None));

        // As Blender 5.0 writes it: several zstd frames, then a seek table in a skippable frame.
        let (a, b) = plain.split_at(plain.len() / 3);
        let mut file = zstd(a);
        file.extend(zstd(b));
        file.extend_from_slice(&0x184D_2A5Eu32.to_le_bytes());
        file.extend_from_slice(&9u32.to_le_bytes());
        file.extend_from_slice(&[0; 9]);
        assert!(looks_like_blend(&file));
        let info = parse(&file).expect("zstd");
        assert_eq!((range(&info), info.compression), ((7, 42, 3), Some("zstd")));

        // As Blender before 3.0 wrote it.
        let mut gz = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
        std::io::Write::write_all(&mut gz, &plain).expect("gzip");
        let file = gz.finish().expect("gzip");
        assert!(looks_like_blend(&file));
        let info = parse(&file).expect("gzip");
        assert_eq!((range(&info), info.compression), ((7, 42, 3), Some("gzip")));
    }

    #[test]
    fn a_damaged_compressed_file_is_an_error_naming_its_format() {
        let file = zstd(&tiny_blend(1, 2, 1));
        let cut = parse(&file[..file.len() - 4]).expect_err("a cut zstd file");
        assert!(
            matches!(cut, BlendError::Decompress { format: "zstd", .. }),
            "{cut}"
        );
        assert!(
            cut.to_string()
                .starts_with("decompressing the .blend (zstd): "),
            "{cut}"
        );
        let err = parse(&[0x1f, 0x8b, 8, 0, 0]).expect_err("a cut gzip file");
        assert!(
            matches!(err, BlendError::Decompress { format: "gzip", .. }),
            "{err}"
        );
        // A compressed file that is not a .blend inside.
        let err = parse(&zstd(b"PK\x03\x04 not a blend")).expect_err("zstd of a zip");
        assert_eq!(err, BlendError::NotBlend);
    }
}
