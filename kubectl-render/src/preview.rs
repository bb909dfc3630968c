//! What a render leaves to look at, as its status tells (`status.lastFrame`,
//! `status.preview`, `spec.preview`). Read from the object's JSON, so the plugin shows them
//! whatever operator version wrote them, and nothing when an older one did not.

use kube::api::{Api, DynamicObject, ListParams};
use kube::core::ApiResource;
use renderfarm_api::crd::RenderJob;
use serde::Deserialize;
use serde_json::Value;

use crate::cluster::Ctx;
use crate::error::{Error, Result, api_status};

/// `status.lastFrame`: the highest frame of the batch that finished most recently.
#[derive(Debug, Clone, Default, PartialEq, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct LastFrame {
    pub frame: Option<i32>,
    pub file: Option<String>,
    pub thumbnail: Option<String>,
}

/// `status.preview`: the preview step's state and files (paths relative to the storage mount).
#[derive(Debug, Clone, Default, PartialEq, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct PreviewStatus {
    #[serde(default)]
    pub state: String,
    pub video: Option<String>,
    pub contact_sheet: Option<String>,
    pub frames: Option<u32>,
    pub columns: Option<u32>,
    pub rows: Option<u32>,
    pub message: Option<String>,
}

impl PreviewStatus {
    pub fn ready(&self) -> bool {
        self.state == "Ready"
    }
}

/// A RenderJob with the preview fields its typed status may not carry.
#[derive(Debug, Clone)]
pub struct Render {
    pub rj: RenderJob,
    pub last_frame: Option<LastFrame>,
    pub preview: Option<PreviewStatus>,
    /// `spec.preview.fps` (24 when unset).
    pub fps: u32,
}

impl Render {
    pub fn from_json(value: Value) -> Result<Render> {
        let field = |a: &str, b: &str| value.get(a).and_then(|s| s.get(b)).cloned();
        let last_frame = field("status", "lastFrame").and_then(|v| serde_json::from_value(v).ok());
        let preview = field("status", "preview").and_then(|v| serde_json::from_value(v).ok());
        let fps = field("spec", "preview")
            .and_then(|p| p.get("fps").and_then(Value::as_u64))
            .map_or(24, |f| f as u32);
        let rj: RenderJob = serde_json::from_value(value)
            .map_err(|e| Error::Kube(format!("reading a RenderJob: {e}")))?;
        Ok(Render {
            rj,
            last_frame,
            preview,
            fps,
        })
    }

    fn from_dynamic(obj: DynamicObject) -> Result<Render> {
        let value = serde_json::to_value(obj)
            .map_err(|e| Error::Kube(format!("reading a RenderJob: {e}")))?;
        Render::from_json(value)
    }
}

fn api(ctx: &Ctx) -> Api<DynamicObject> {
    Api::namespaced_with(
        ctx.client.clone(),
        &ctx.namespace,
        &ApiResource::erase::<RenderJob>(&()),
    )
}

/// The RenderJob `name` with its preview fields, or [`Error::NotFound`].
pub async fn get(ctx: &Ctx, name: &str) -> Result<Render> {
    match api(ctx).get_opt(name).await {
        Ok(Some(obj)) => Render::from_dynamic(obj),
        Ok(None) => Err(ctx.not_found(name)),
        Err(e) if api_status(&e).map(|s| s.0) == Some(404) => {
            ctx.check_crd().await?;
            Err(ctx.not_found(name))
        }
        Err(e) => Err(ctx.unreachable(e)),
    }
}

/// Every RenderJob of the namespace, by name.
pub async fn list(ctx: &Ctx) -> Result<Vec<Render>> {
    let list = api(ctx)
        .list(&ListParams::default())
        .await
        .map_err(|e| ctx.unreachable(e))?;
    let mut renders = list
        .items
        .into_iter()
        .map(Render::from_dynamic)
        .collect::<Result<Vec<_>>>()?;
    renders.sort_by_key(|r| r.rj.metadata.name.clone());
    Ok(renders)
}

/// A path from status, relative to the storage mount, that stays inside it.
pub fn claim_path(path: &str) -> Option<&str> {
    let path = path.trim_start_matches("./");
    let ok = !path.is_empty()
        && !path.starts_with('/')
        && path
            .split('/')
            .all(|part| !part.is_empty() && part != "." && part != "..");
    ok.then_some(path)
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn preview_fields_come_from_the_json() {
        let r = Render::from_json(json!({
            "apiVersion": "renderfarm.io/v1alpha1", "kind": "RenderJob",
            "metadata": {"name": "shot"},
            "spec": {"blendFile": "a.blend", "frames": {"start": 1, "end": 4},
                     "storage": {"claimName": "c"}, "preview": {"fps": 12}},
            "status": {"phase": "Succeeded",
                       "lastFrame": {"frame": 4, "file": "renders/shot/frame_0004.png",
                                     "thumbnail": "renders/shot/.thumbs/frame_0004.jpg"},
                       "preview": {"state": "Ready", "video": "renders/shot/preview.mp4",
                                   "contactSheet": "renders/shot/contact.jpg", "frames": 4,
                                   "columns": 2, "rows": 2}},
        }))
        .expect("render");
        assert_eq!(r.fps, 12);
        assert_eq!(r.last_frame.and_then(|l| l.frame), Some(4));
        let p = r.preview.expect("preview");
        assert!(p.ready());
        assert_eq!(p.contact_sheet.as_deref(), Some("renders/shot/contact.jpg"));
        let old = Render::from_json(json!({
            "apiVersion": "renderfarm.io/v1alpha1", "kind": "RenderJob",
            "metadata": {"name": "old"},
            "spec": {"blendFile": "a.blend", "frames": {"start": 1, "end": 4},
                     "storage": {"claimName": "c"}},
        }))
        .expect("render without preview fields");
        assert_eq!((old.fps, old.preview, old.last_frame), (24, None, None));
    }

    #[test]
    fn claim_paths_stay_inside_the_claim() {
        assert_eq!(
            claim_path("renders/a/preview.mp4"),
            Some("renders/a/preview.mp4")
        );
        assert_eq!(claim_path("./renders/a.jpg"), Some("renders/a.jpg"));
        for bad in ["", "/etc/passwd", "renders/../../x", "a//b", "renders/./x"] {
            assert_eq!(claim_path(bad), None, "{bad}");
        }
    }
}
