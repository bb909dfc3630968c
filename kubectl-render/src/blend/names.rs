//! The names a RenderJob may choose from in a .blend: its scenes, each scene's cameras and view
//! layers, read from the file's blocks (no Blender needed). Pointers in a .blend are the
//! addresses the data had when saved; each block carries its own, so a pointer is followed by
//! finding the block saved at that address.

use std::collections::HashMap;

use super::{BlendError, Block, Dna, Layout, block, gunzip, header, unzstd};
use super::{GZIP_MAGIC, ZSTD_MAGIC};

/// Blender's object type of a camera (`OB_CAMERA`).
const OB_CAMERA: i32 = 11;
/// A view layer Blender renders (`VIEW_LAYER_RENDER`).
const VIEW_LAYER_RENDER: i32 = 1;
/// Collections nest; a damaged file could loop.
const MAX_DEPTH: usize = 64;

/// One scene of a .blend and what it offers.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SceneNames {
    pub name: String,
    /// The scene the file opens with.
    pub active: bool,
    /// The scene's camera, if it has one.
    pub camera: Option<String>,
    /// Camera objects in the scene's collections, sorted.
    pub cameras: Vec<String>,
    /// View layers in the scene's order, each with whether it renders.
    pub view_layers: Vec<(String, bool)>,
}

/// The scenes of a .blend (plain or compressed), in the file's order.
pub fn scenes(bytes: &[u8]) -> Result<Vec<SceneNames>, BlendError> {
    if bytes.starts_with(&GZIP_MAGIC) {
        scenes_plain(&gunzip(bytes)?)
    } else if bytes.starts_with(&ZSTD_MAGIC) {
        scenes_plain(&unzstd(bytes)?)
    } else {
        scenes_plain(bytes)
    }
}

struct File<'a> {
    dna: Dna,
    layout: Layout,
    at: HashMap<u64, &'a Block<'a>>,
}

impl File<'_> {
    fn ptr(&self, b: &Block, path: &[&str]) -> Option<&Block<'_>> {
        let p = self.dna.read_ptr(b, path, self.layout)?;
        (p != 0).then(|| self.at.get(&p).copied()).flatten()
    }

    /// An ID's name without its two-letter code (`SCShot` → `Shot`).
    fn id_name(&self, b: &Block) -> Option<String> {
        let name = self.dna.read_str(b, &["id", "name"])?;
        Some(name.get(2..).unwrap_or_default().to_string())
    }

    /// The blocks of a ListBase, following `next`.
    fn list(&self, b: &Block, field: &str) -> Vec<&Block<'_>> {
        let mut out = Vec::new();
        let mut item = self.ptr(b, &[field, "first"]);
        while let Some(i) = item {
            if out.len() > 100_000 || out.iter().any(|o: &&Block| o.old == i.old) {
                break;
            }
            out.push(i);
            item = self.ptr(i, &["next"]);
        }
        out
    }

    /// Camera objects of a collection and of the collections it holds.
    fn cameras(&self, collection: &Block, depth: usize, out: &mut Vec<String>) {
        if depth > MAX_DEPTH {
            return;
        }
        for link in self.list(collection, "gobject") {
            if let Some(ob) = self.ptr(link, &["ob"])
                && self.dna.read_int(ob, &["type"], self.layout) == Some(OB_CAMERA)
                && let Some(name) = self.id_name(ob)
            {
                out.push(name);
            }
        }
        for child in self.list(collection, "children") {
            if let Some(c) = self.ptr(child, &["collection"]) {
                self.cameras(c, depth + 1, out);
            }
        }
    }

    fn scene(&self, sc: &Block, active: Option<u64>) -> Option<SceneNames> {
        let mut cameras = Vec::new();
        if let Some(master) = self.ptr(sc, &["master_collection"]) {
            self.cameras(master, 0, &mut cameras);
        }
        cameras.sort();
        cameras.dedup();
        let view_layers = self
            .list(sc, "view_layers")
            .into_iter()
            .filter_map(|vl| {
                let name = self.dna.read_str(vl, &["name"])?;
                let flag = self.dna.read_int(vl, &["flag"], self.layout).unwrap_or(0);
                Some((name, flag & VIEW_LAYER_RENDER != 0))
            })
            .collect();
        Some(SceneNames {
            name: self.id_name(sc)?,
            active: Some(sc.old) == active,
            camera: self.ptr(sc, &["camera"]).and_then(|c| self.id_name(c)),
            cameras,
            view_layers,
        })
    }
}

fn scenes_plain(bytes: &[u8]) -> Result<Vec<SceneNames>, BlendError> {
    let (layout, _, mut pos) = header(bytes)?;
    let mut blocks = Vec::new();
    let mut dna = None;
    while pos < bytes.len() {
        let (b, next) = block(bytes, pos, layout)?;
        pos = next;
        match &b.code {
            b"ENDB" => break,
            b"DNA1" => dna = Some(Dna::parse(b.data, layout)?),
            _ => blocks.push(b),
        }
    }
    let dna = dna.ok_or(BlendError::Damaged("no DNA1 block"))?;
    let file = File {
        dna,
        layout,
        at: blocks.iter().map(|b| (b.old, b)).collect(),
    };
    let glob = blocks.iter().find(|b| &b.code == b"GLOB");
    let mut active = glob.and_then(|g| file.dna.read_ptr(g, &["curscene"], layout));
    let scenes: Vec<&Block> = blocks.iter().filter(|b| &b.code == b"SC\0\0").collect();
    if !scenes.iter().any(|s| Some(s.old) == active) {
        // As Blender opens it: the first scene.
        active = scenes.first().map(|s| s.old);
    }
    let out: Vec<SceneNames> = scenes
        .iter()
        .filter_map(|sc| file.scene(sc, active))
        .collect();
    if out.is_empty() {
        return Err(BlendError::NoScene);
    }
    Ok(out)
}

/// `kubectl render submit --list`'s text: each scene, its cameras and view layers, marking
/// the defaults a RenderJob that names none renders.
pub fn describe(scenes: &[SceneNames]) -> String {
    let mut out = String::new();
    for s in scenes {
        let active = if s.active { "  (active)" } else { "" };
        out.push_str(&format!("scene {:?}{active}\n", s.name));
        let cams: Vec<String> = s
            .cameras
            .iter()
            .map(|c| {
                let mark = if s.camera.as_ref() == Some(c) {
                    " *"
                } else {
                    ""
                };
                format!("{c:?}{mark}")
            })
            .collect();
        out.push_str(&format!("  cameras:     {}\n", list_or_none(&cams)));
        let layers: Vec<String> = s
            .view_layers
            .iter()
            .map(|(l, render)| format!("{l:?}{}", if *render { " *" } else { "" }))
            .collect();
        out.push_str(&format!("  view layers: {}\n", list_or_none(&layers)));
    }
    out.push_str("* the scene's camera, and the view layers it renders when none is named\n");
    out
}

fn list_or_none(items: &[String]) -> String {
    if items.is_empty() {
        "none".to_string()
    } else {
        items.join(", ")
    }
}
