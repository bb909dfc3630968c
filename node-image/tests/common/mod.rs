//! What the Blender tests share: the test Blender, found as `hack/blender.sh` installs it.

use std::path::{Path, PathBuf};
use std::sync::OnceLock;

/// The `blender` command of a Blender series: `RENDER_NODE_TEST_BLENDER_4_5` (`_5_0`, …) if
/// set, else the venv `hack/blender.sh SERIES` installs in `$RENDERFARM_CACHE` (default
/// `$HOME/.cache/renderfarm`). Panics when it is missing: the tests fail, not skip, without it.
pub fn blender_of(series: &str) -> PathBuf {
    let var = format!("RENDER_NODE_TEST_BLENDER_{}", series.replace('.', "_"));
    let path = std::env::var_os(&var)
        .map(PathBuf::from)
        .unwrap_or_else(|| {
            let cache = std::env::var_os("RENDERFARM_CACHE")
                .map(PathBuf::from)
                .unwrap_or_else(|| {
                    PathBuf::from(std::env::var_os("HOME").expect("HOME")).join(".cache/renderfarm")
                });
            cache.join("blender").join(series).join("bin/blender")
        });
    assert!(
        path.exists(),
        "these tests need Blender {series}: {} is missing; install it with `hack/blender.sh {series}`",
        path.display()
    );
    path
}

/// Blender 4.5, which renders in these tests.
pub fn blender() -> &'static Path {
    static BLENDER: OnceLock<PathBuf> = OnceLock::new();
    BLENDER.get_or_init(|| blender_of("4.5"))
}
