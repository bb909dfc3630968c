//! What renders: `submit --list` shows a .blend's scenes, cameras and view layers, and
//! `--scene`, `--camera` and `--view-layer` are checked against them before anything is sent
//! (render-node checks them again: a file in the claim is not read here).

use std::path::Path;

use serde_json::Value;

use crate::blend::names::{self, SceneNames};
use crate::cli::Submit;
use crate::error::{Error, Result};

/// The scenes of the file at `path`.
fn scenes_of(path: &Path) -> Result<Vec<SceneNames>> {
    let unreadable = |reason: String| Error::BlendUnreadable {
        path: path.to_path_buf(),
        reason,
    };
    let bytes = std::fs::read(path).map_err(|e| unreadable(e.to_string()))?;
    names::scenes(&bytes).map_err(|e| unreadable(e.to_string()))
}

/// `submit --list`: print the file's scenes with their cameras and view layers.
pub fn list(args: &Submit) -> Result<()> {
    let path = args
        .scene
        .as_deref()
        .ok_or_else(|| Error::Usage("--list needs a .blend file on this machine".into()))?;
    crate::print_bytes(names::describe(&scenes_of(path)?).as_bytes());
    Ok(())
}

/// Whether the names asked for are in the file; a file that cannot be read this way is left
/// to render-node.
pub fn check(args: &Submit, path: &Path) -> Result<()> {
    if args.scene_name.is_none() && args.camera.is_none() && args.view_layers.is_empty() {
        return Ok(());
    }
    let Ok(scenes) = scenes_of(path) else {
        return Ok(());
    };
    check_names(&scenes, args).map_err(|why| {
        Error::Usage(format!(
            "{why} (kubectl render submit {} --list shows them)",
            path.display()
        ))
    })
}

fn quoted(items: impl IntoIterator<Item = impl AsRef<str>>) -> String {
    let all: Vec<String> = items
        .into_iter()
        .map(|i| format!("{:?}", i.as_ref()))
        .collect();
    if all.is_empty() {
        "none".into()
    } else {
        all.join(", ")
    }
}

fn check_names(scenes: &[SceneNames], args: &Submit) -> std::result::Result<(), String> {
    let scene = match &args.scene_name {
        Some(name) => scenes.iter().find(|s| &s.name == name).ok_or_else(|| {
            format!(
                "scene {name:?} is not in the file; its scenes: {}",
                quoted(scenes.iter().map(|s| &s.name))
            )
        })?,
        None => match scenes.iter().find(|s| s.active) {
            Some(s) => s,
            None => return Ok(()),
        },
    };
    if let Some(cam) = &args.camera
        && !scene.cameras.contains(cam)
    {
        return Err(format!(
            "camera {cam:?} is not in scene {:?}; its cameras: {}",
            scene.name,
            quoted(&scene.cameras)
        ));
    }
    let unknown: Vec<&String> = args
        .view_layers
        .iter()
        .filter(|l| !scene.view_layers.iter().any(|(n, _)| n == *l))
        .collect();
    if !unknown.is_empty() {
        return Err(format!(
            "view layers {} are not in scene {:?}; its view layers: {}",
            quoted(unknown),
            scene.name,
            quoted(scene.view_layers.iter().map(|(n, _)| n))
        ));
    }
    Ok(())
}

/// The RenderJob spec's `scene`, `camera` and `viewLayers` from the flags.
pub fn add_to_spec(spec: &mut Value, args: &Submit) {
    if let Some(s) = &args.scene_name {
        spec["scene"] = Value::from(s.as_str());
    }
    if let Some(c) = &args.camera {
        spec["camera"] = Value::from(c.as_str());
    }
    if !args.view_layers.is_empty() {
        let mut layers = args.view_layers.clone();
        // The CRD keeps them as a set.
        layers.dedup();
        spec["viewLayers"] = Value::from(layers);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::Parser;

    fn submit(extra: &[&str]) -> Submit {
        let argv = ["kubectl-render", "submit", "shot.blend"]
            .into_iter()
            .chain(extra.iter().copied());
        match crate::cli::Cli::try_parse_from(argv)
            .expect("arguments")
            .command
        {
            crate::cli::Command::Submit(s) => s,
            _ => panic!("not submit"),
        }
    }

    fn scenes() -> Vec<SceneNames> {
        vec![
            SceneNames {
                name: "Shot".into(),
                active: true,
                camera: Some("CamA".into()),
                cameras: vec!["CamA".into(), "CamB".into()],
                view_layers: vec![("Beauty".into(), true), ("Shadow".into(), false)],
            },
            SceneNames {
                name: "Alt".into(),
                active: false,
                camera: None,
                cameras: vec![],
                view_layers: vec![("ViewLayer".into(), true)],
            },
        ]
    }

    #[test]
    fn names_are_checked_against_the_scene_they_belong_to() {
        let ok = submit(&["--camera", "CamB", "--view-layer", "Shadow"]);
        assert_eq!(check_names(&scenes(), &ok), Ok(()));
        let e = check_names(&scenes(), &submit(&["--scene", "Nope"])).unwrap_err();
        assert_eq!(
            e,
            r#"scene "Nope" is not in the file; its scenes: "Shot", "Alt""#
        );
        let e =
            check_names(&scenes(), &submit(&["--scene", "Alt", "--camera", "CamA"])).unwrap_err();
        assert_eq!(
            e,
            r#"camera "CamA" is not in scene "Alt"; its cameras: none"#
        );
        let e = check_names(
            &scenes(),
            &submit(&["--view-layer", "X", "--view-layer", "Beauty"]),
        )
        .unwrap_err();
        assert_eq!(
            e,
            r#"view layers "X" are not in scene "Shot"; its view layers: "Beauty", "Shadow""#
        );
    }

    #[test]
    fn flags_become_the_spec() {
        let args = submit(&["--scene", "Shot", "--view-layer", "A", "--view-layer", "B"]);
        let mut spec = serde_json::json!({});
        add_to_spec(&mut spec, &args);
        assert_eq!(
            spec,
            serde_json::json!({"scene": "Shot", "viewLayers": ["A", "B"]})
        );
        assert!(submit(&["--list"]).list);
    }
}
