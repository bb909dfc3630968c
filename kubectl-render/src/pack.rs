//! `--pack`: blender-asset-tracer (`bat pack`) collects the scene's textures, linked
//! libraries and caches into a folder, with paths rewritten so the copy is self-contained.

use std::path::{Path, PathBuf};
use std::process::Command;

use crate::error::{Error, Result};
use crate::upload::Bundle;

/// The blender-asset-tracer `--pack` is tested with (`install_bat` in hack/test.sh), which the
/// hint names when `bat` is missing. It reads .blend files itself and installs on Python 3.11
/// or newer; the 2.x versions need Blender 5.1 and Python 3.13.
pub const BAT_VERSION: &str = "1.23";

/// A packed scene: the bundle and the folder it lives in, removed on drop.
pub struct Packed {
    pub bundle: Bundle,
    dir: PathBuf,
}

impl Drop for Packed {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

pub fn pack(blend: &Path) -> Result<Packed> {
    // Debian's `bat` is a cat clone: only blender-asset-tracer's has a `pack` verb.
    let help = Command::new("bat").args(["pack", "--help"]).output();
    match help {
        Ok(out)
            if out.status.success()
                && String::from_utf8_lossy(&out.stdout).contains("blendfile") => {}
        _ => return Err(Error::BatMissing),
    }
    let name = blend
        .file_name()
        .and_then(|n| n.to_str())
        .ok_or_else(|| Error::Pack("the file name is not valid UTF-8".into()))?
        .to_string();
    let project = blend
        .canonicalize()
        .map_err(Error::io(format!("resolving {}", blend.display())))?
        .parent()
        .map(Path::to_path_buf)
        .ok_or_else(|| Error::Pack("the scene has no folder".into()))?;
    let dir = std::env::temp_dir().join(format!("kubectl-render-pack-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    crate::out!("packing {name} with bat pack");
    let out = Command::new("bat")
        .arg("pack")
        .arg("-p")
        .arg(&project)
        .arg(project.join(&name))
        .arg(&dir)
        .output()
        .map_err(Error::io("running bat pack"))?;
    if !out.status.success() {
        let _ = std::fs::remove_dir_all(&dir);
        let err = String::from_utf8_lossy(&out.stderr);
        let last = err
            .lines()
            .rev()
            .find(|l| !l.trim().is_empty())
            .unwrap_or("no output");
        return Err(Error::Pack(last.trim().to_string()));
    }
    let bundle = Bundle::tree(&dir, &name);
    match bundle {
        Ok(bundle) => {
            crate::out!(
                "packed {} files, {}",
                bundle.entries.len(),
                crate::progress::bytes(bundle.bytes())
            );
            Ok(Packed { bundle, dir })
        }
        Err(e) => {
            let _ = std::fs::remove_dir_all(&dir);
            Err(e)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_hint_names_the_version_the_tests_install() {
        let hint = Error::BatMissing.to_string();
        assert!(
            hint.contains(&format!("pip install blender-asset-tracer=={BAT_VERSION} ")),
            "{hint}"
        );
        let test_sh =
            std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/../hack/test.sh"))
                .expect("hack/test.sh");
        let install_bat = test_sh
            .split_once("\ninstall_bat() {\n")
            .and_then(|(_, body)| body.split_once("\n}\n"))
            .map(|(body, _)| body)
            .expect("install_bat in hack/test.sh");
        assert!(
            install_bat.contains(&format!("local version={BAT_VERSION}\n")),
            "hack/test.sh installs another blender-asset-tracer than the hint names:\n{install_bat}"
        );
    }
}
