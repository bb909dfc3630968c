//! Helpers for the plugin's tests on a real cluster: a namespace with a render claim, the
//! real operator binary watching it, kwok Stages, and the plugin binary run as a user would.
#![allow(dead_code)]

pub mod kind;

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::time::Duration;

use anyhow::{Context as _, Result, bail, ensure};
use k8s_openapi::api::core::v1::{Namespace, PersistentVolume, PersistentVolumeClaim};
use k8s_openapi::apiextensions_apiserver::pkg::apis::apiextensions::v1::CustomResourceDefinition;
use kube::api::{Api, DynamicObject, Patch, PatchParams, PostParams};
use kube::core::{ApiResource, GroupVersionKind};
use kube::{Client, ResourceExt as _};
use renderfarm_api::crd::RenderJob;
use renderfarm_testkit::frame::decode_png;
use serde_json::{Value, json};

pub const STORAGE: &str = "render-storage";
pub const SCENARIO_LABEL: &str = "kwok.renderfarm.io/scenario";

pub fn repo_root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("..")
}

/// The plugin binary, run as `kubectl render` runs it.
pub fn plugin() -> Command {
    Command::new(env!("CARGO_BIN_EXE_kubectl-render"))
}

pub fn text(out: &Output) -> String {
    format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    )
}

// Every test crate's poll; the tests and common/kind.rs take it from here.
pub use renderfarm_testkit::wait::wait_until;

pub struct Env {
    pub client: Client,
    pub ns: String,
    operator: Option<Child>,
    pub log: PathBuf,
    stages: Vec<String>,
}

impl Env {
    /// A namespace `rf-plugin-<test>-<n>` with a bound claim (kwok pods never touch it).
    pub async fn new(test: &str) -> Result<Env> {
        let client = Client::try_default()
            .await
            .context("no cluster: `hack/cluster.sh up` and `eval \"$(hack/cluster.sh env)\"`")?;
        ensure_crd(&client).await?;
        let ns = renderfarm_testkit::unique_name(&format!("rf-plugin-{test}"));
        Api::<Namespace>::all(client.clone())
            .create(
                &PostParams::default(),
                &serde_json::from_value(json!({"metadata": {"name": ns}}))?,
            )
            .await?;
        let pv = json!({
            "metadata": {"name": ns},
            "spec": {
                "capacity": {"storage": "1Gi"}, "accessModes": ["ReadWriteMany"], "storageClassName": "manual",
                "hostPath": {"path": format!("/tmp/renderfarm-e2e/{ns}")},
                "claimRef": {"namespace": ns, "name": STORAGE},
                "persistentVolumeReclaimPolicy": "Delete",
            }
        });
        Api::<PersistentVolume>::all(client.clone())
            .create(&PostParams::default(), &serde_json::from_value(pv)?)
            .await?;
        let pvcs: Api<PersistentVolumeClaim> = Api::namespaced(client.clone(), &ns);
        let pvc = json!({
            "metadata": {"name": STORAGE},
            "spec": {"accessModes": ["ReadWriteMany"], "storageClassName": "manual", "volumeName": ns,
                     "resources": {"requests": {"storage": "1Gi"}}}
        });
        pvcs.create(&PostParams::default(), &serde_json::from_value(pvc)?)
            .await?;
        let log = repo_root()
            .join("target/e2e-logs")
            .join(format!("{ns}.log"));
        if let Some(dir) = log.parent() {
            std::fs::create_dir_all(dir)?;
        }
        Ok(Env {
            client,
            ns,
            operator: None,
            log,
            stages: Vec::new(),
        })
    }

    pub fn rjs(&self) -> Api<RenderJob> {
        Api::namespaced(self.client.clone(), &self.ns)
    }

    pub fn api<K>(&self) -> Api<K>
    where
        K: kube::Resource<Scope = k8s_openapi::NamespaceResourceScope>,
        <K as kube::Resource>::DynamicType: Default,
    {
        Api::namespaced(self.client.clone(), &self.ns)
    }

    /// The real operator, watching only this namespace.
    pub fn start_operator(&mut self) -> Result<()> {
        let bin = operator_binary()?;
        let port = std::net::TcpListener::bind("127.0.0.1:0")?
            .local_addr()?
            .port();
        let log = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(&self.log)?;
        let child = Command::new(bin)
            .args(["--namespace", &self.ns, "--log-format", "json"])
            .args(["--listen", &format!("127.0.0.1:{port}")])
            .env("RUST_LOG", "info,renderfarm=debug")
            .stdout(Stdio::from(log.try_clone()?))
            .stderr(Stdio::from(log))
            .spawn()
            .context("starting renderfarm-operator")?;
        self.operator = Some(child);
        Ok(())
    }

    /// A RenderJob whose pods kwok Stages of this namespace's scenario decide.
    pub async fn create(&self, name: &str, spec: Value) -> Result<RenderJob> {
        let mut full = json!({
            "blendFile": "scenes/test.blend",
            "storage": {"claimName": STORAGE},
            "podMetadata": {"labels": {SCENARIO_LABEL: self.ns}},
        });
        if let (Value::Object(base), Value::Object(extra)) = (&mut full, spec) {
            base.extend(extra);
        }
        let rj: RenderJob = serde_json::from_value(json!({
            "apiVersion": "renderfarm.io/v1alpha1", "kind": "RenderJob",
            "metadata": {"name": name, "namespace": self.ns}, "spec": full,
        }))?;
        Ok(self.rjs().create(&PostParams::default(), &rj).await?)
    }

    /// A kwok Stage from one of `hack/kwok/`'s templates, removed again on drop.
    pub async fn stage(&mut self, template: &str, vars: &[(&str, &str)]) -> Result<String> {
        let mut text = std::fs::read_to_string(repo_root().join("hack/kwok").join(template))
            .with_context(|| format!("reading stage template {template}"))?;
        let vars: BTreeMap<&str, &str> = vars.iter().copied().collect();
        for (k, v) in &vars {
            text = text.replace(&format!("${{{k}}}"), v);
        }
        let obj: DynamicObject = serde_yaml::from_str(&text)?;
        let name = obj.name_any();
        stages(&self.client)
            .patch(
                &name,
                &PatchParams::apply("kubectl-render-e2e").force(),
                &Patch::Apply(&obj),
            )
            .await?;
        self.stages.push(name.clone());
        Ok(name)
    }

    pub async fn delete_stage(&mut self, name: &str) -> Result<()> {
        stages(&self.client)
            .delete(name, &Default::default())
            .await?;
        self.stages.retain(|s| s != name);
        Ok(())
    }

    /// The plugin in this namespace.
    pub fn plugin(&self, args: &[&str]) -> Command {
        let mut cmd = plugin();
        cmd.args(["-n", &self.ns]).args(args);
        cmd
    }
}

impl Drop for Env {
    fn drop(&mut self) {
        if let Some(mut child) = self.operator.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
        let mut cleanup = vec![
            vec!["delete", "namespace", self.ns.as_str(), "--wait=false"],
            vec!["delete", "pv", self.ns.as_str(), "--wait=false"],
        ];
        for s in &self.stages {
            cleanup.push(vec![
                "delete",
                "stages.kwok.x-k8s.io",
                s.as_str(),
                "--wait=false",
            ]);
        }
        for args in cleanup {
            let _ = Command::new("kubectl")
                .args(args)
                .stdout(Stdio::null())
                .stderr(Stdio::null())
                .status();
        }
    }
}

fn stages(client: &Client) -> Api<DynamicObject> {
    let gvk = GroupVersionKind::gvk("kwok.x-k8s.io", "v1alpha1", "Stage");
    Api::all_with(client.clone(), &ApiResource::from_gvk(&gvk))
}

/// The checked-in CRD, as users install it.
async fn ensure_crd(client: &Client) -> Result<()> {
    let yaml = std::fs::read_to_string(repo_root().join("crds/renderjob.yaml"))?;
    let crd: CustomResourceDefinition = serde_yaml::from_str(&yaml)?;
    let api: Api<CustomResourceDefinition> = Api::all(client.clone());
    api.patch(
        &crd.name_any(),
        &PatchParams::apply("renderfarm-e2e").force(),
        &Patch::Apply(&crd),
    )
    .await?;
    wait_until(Duration::from_secs(30), "CRD established", || async {
        let crd = api.get(&crd.name_any()).await?;
        let ok = crd
            .status
            .and_then(|s| s.conditions)
            .unwrap_or_default()
            .iter()
            .any(|c| c.type_ == "Established" && c.status == "True");
        Ok(ok.then_some(()))
    })
    .await
}

/// `renderfarm-operator` from this workspace's target folder, built when missing.
fn operator_binary() -> Result<PathBuf> {
    let target = std::env::var_os("CARGO_TARGET_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| repo_root().join("target"));
    let bin = target.join("debug/renderfarm-operator");
    let status = Command::new(env!("CARGO"))
        .args(["build", "-p", "renderfarm", "--bin", "renderfarm-operator"])
        .current_dir(repo_root())
        .status()
        .context("cargo build -p renderfarm")?;
    if !status.success() || !bin.is_file() {
        bail!("could not build {}", bin.display());
    }
    Ok(bin)
}

/// The Blender the node image has (4.5 from PyPI's bpy, as `hack/blender.sh` installs it on
/// the host); Debian's `blender` where that is not installed.
pub fn blender_command() -> Command {
    let path = Command::new(repo_root().join("hack/blender.sh"))
        .args(["path", "4.5"])
        .output()
        .ok()
        .map(|o| String::from_utf8_lossy(&o.stdout).trim().to_string())
        .filter(|p| Path::new(p).is_file());
    Command::new(path.unwrap_or_else(|| "blender".into()))
}

/// Run Blender in the background; its whole output.
pub fn blender(args: &[&str]) -> Result<String> {
    let out = blender_command()
        .args(["-b", "--factory-startup"])
        .args(args)
        .output()
        .context("running blender")?;
    Ok(format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    ))
}

/// A pure-green texture in `textures/`, and `project/scene.blend` showing it on a plane that
/// fills the camera, with an emission shader so the colour is the texture's.
pub fn textured_scene(root: &Path) -> Result<PathBuf> {
    std::fs::create_dir_all(root.join("textures"))?;
    std::fs::create_dir_all(root.join("project"))?;
    let tex = root.join("textures/green.png");
    let blend = root.join("project/scene.blend");
    let script = format!(
        r#"
import bpy
bpy.ops.wm.read_factory_settings(use_empty=True)
img = bpy.data.images.new("green", 8, 8)
img.pixels = [0.0, 1.0, 0.0, 1.0] * 64
img.filepath_raw = {tex:?}
img.file_format = "PNG"
img.save()
scene = bpy.context.scene
scene.render.engine = "CYCLES"
scene.cycles.samples = 1
scene.cycles.use_denoising = False
# Colours as they are (Blender 4.x defaults to AgX, which desaturates pure green).
scene.view_settings.view_transform = "Standard"
scene.render.resolution_x = 32
scene.render.resolution_y = 32
scene.frame_start = 1
scene.frame_end = 1
bpy.ops.mesh.primitive_plane_add(size=4)
plane = bpy.context.active_object
mat = bpy.data.materials.new("tex")
mat.use_nodes = True
nodes = mat.node_tree.nodes
for n in list(nodes):
    nodes.remove(n)
out = nodes.new("ShaderNodeOutputMaterial")
emit = nodes.new("ShaderNodeEmission")
image = nodes.new("ShaderNodeTexImage")
image.image = bpy.data.images.load({tex:?})
mat.node_tree.links.new(image.outputs["Color"], emit.inputs["Color"])
mat.node_tree.links.new(emit.outputs["Emission"], out.inputs["Surface"])
plane.data.materials.append(mat)
bpy.ops.object.camera_add(location=(0, 0, 3))
scene.camera = bpy.context.active_object
bpy.ops.wm.save_as_mainfile(filepath={blend:?}, relative_remap=True, compress=False)
"#
    );
    let log = blender(&["--python-expr", &script])?;
    ensure!(blend.is_file(), "no scene: {log}");
    Ok(blend)
}

/// Mean (r, g, b) of a PNG, 0..255.
pub fn png_mean(png: &Path) -> Result<(f64, f64, f64)> {
    Ok(decode_png(png)?.mean())
}

/// `kubectl render ui --port 0` started from `cmd`: the process and its base URL
/// (`http://127.0.0.1:PORT/`), read from its first line.
pub fn start_ui(mut cmd: Command) -> Result<(Child, String)> {
    use std::io::BufRead as _;
    let mut ui = cmd
        .args(["ui", "--port", "0"])
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .context("starting kubectl render ui")?;
    let mut first = String::new();
    std::io::BufReader::new(ui.stdout.take().context("ui stdout")?).read_line(&mut first)?;
    println!("ui: {}", first.trim_end());
    let url = first
        .split_whitespace()
        .find(|w| w.starts_with("http://127.0.0.1:"))
        .map(str::to_string);
    match url {
        Some(url) => Ok((ui, url)),
        None => {
            // It said something else: stop it, and say why it did not serve.
            let _ = ui.kill();
            let out = ui.wait_with_output()?;
            anyhow::bail!(
                "no URL in {first:?}: {}",
                String::from_utf8_lossy(&out.stderr)
            )
        }
    }
}

/// Stop the ui as Ctrl-C does; its exit status and stderr.
pub fn stop_ui(ui: Child) -> Result<(std::process::ExitStatus, String)> {
    Command::new("kill")
        .args(["-INT", &ui.id().to_string()])
        .status()?;
    let out = ui.wait_with_output()?;
    Ok((
        out.status,
        String::from_utf8_lossy(&out.stderr).into_owned(),
    ))
}

/// One HTTP/1.1 GET of `path` from `base` (`http://127.0.0.1:PORT/`): status, head, body.
pub fn http_get(base: &str, path: &str, host: Option<&str>) -> Result<(u16, String, Vec<u8>)> {
    use std::io::{Read as _, Write as _};
    let addr = base
        .trim_start_matches("http://")
        .trim_end_matches('/')
        .to_string();
    let mut conn = std::net::TcpStream::connect(&addr)?;
    conn.set_read_timeout(Some(Duration::from_secs(60)))?;
    write!(
        conn,
        "GET {path} HTTP/1.1\r\nHost: {}\r\nConnection: close\r\n\r\n",
        host.unwrap_or(&addr)
    )?;
    let mut raw = Vec::new();
    conn.read_to_end(&mut raw)?;
    let split = raw
        .windows(4)
        .position(|w| w == b"\r\n\r\n")
        .context("no end of headers")?;
    let head = String::from_utf8_lossy(&raw[..split]).into_owned();
    let code = head
        .split_whitespace()
        .nth(1)
        .and_then(|c| c.parse().ok())
        .with_context(|| format!("bad status line: {head}"))?;
    Ok((code, head, raw[split + 4..].to_vec()))
}
