//! The Blender add-on (blender-addon/), built into its zip and installed into Blender 4.5 and
//! 5.0 as PyPI's bpy module (`hack/blender.sh 4.5 5.0`), headless, with its user folders in a
//! temporary directory. blender-addon/tests/addon_test.py drives it (makes the scene, sets the
//! panel's properties, runs the operators) and prints one `ADDON-RESULT {json}` line; these
//! tests check that line and the cluster.
//!
//! - `local::`: no cluster. `cargo test -p kubectl-render --test addon -- --ignored local::`
//! - `on_kwok::`: the local control plane (`hack/cluster.sh up`, `eval "$(hack/cluster.sh
//!   env)"`). `cargo test -p kubectl-render --test addon -- --ignored on_kwok::`
//! - `on_bare::`: a control plane without renderfarm's CRD (as tests/bare.rs).
//!   `cargo test -p kubectl-render --test addon -- --ignored on_bare::`
//! - `on_kind::`: the kind lane (`hack/kind.sh up`, `eval "$(hack/kind.sh env)"`).
//!   `cargo test -p kubectl-render --test addon -- --ignored on_kind::`

mod common;

use std::path::{Path, PathBuf};
use std::process::Command;

use anyhow::{Context as _, Result, bail, ensure};
use serde_json::{Value, json};

/// The Blender series the add-on must work in.
const SERIES: [&str; 2] = ["4.5", "5.0"];

/// The venv python `hack/blender.sh SERIES` installed bpy into.
fn bpy_python(series: &str) -> Result<PathBuf> {
    let cache = std::env::var_os("RENDERFARM_CACHE")
        .map(PathBuf::from)
        .or_else(|| std::env::var_os("HOME").map(|h| PathBuf::from(h).join(".cache/renderfarm")))
        .context("neither RENDERFARM_CACHE nor HOME is set")?;
    let python = cache.join("blender").join(series).join("bin/python");
    ensure!(
        python.is_file(),
        "no Blender {series} at {}: run `hack/blender.sh 4.5 5.0`",
        python.display()
    );
    Ok(python)
}

/// A scratch folder of one test, removed on drop.
struct Scratch(PathBuf);

impl Scratch {
    fn new(test: &str) -> Result<Scratch> {
        let dir = std::env::temp_dir().join(format!(
            "renderfarm-addon-{test}-{}",
            renderfarm_testkit::unique_name("t")
        ));
        std::fs::create_dir_all(&dir).with_context(|| format!("creating {}", dir.display()))?;
        Ok(Scratch(dir))
    }

    fn path(&self, rel: &str) -> String {
        self.0.join(rel).to_string_lossy().into_owned()
    }
}

impl Drop for Scratch {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

/// The extension's zip, built by blender-addon/build.py into `dir`.
fn build_zip(dir: &Path) -> Result<PathBuf> {
    let zip = dir.join("renderfarm_submit.zip");
    let out = Command::new("python3")
        .arg(common::repo_root().join("blender-addon/build.py"))
        .arg(&zip)
        .output()
        .context("running python3 blender-addon/build.py")?;
    ensure!(
        out.status.success() && zip.is_file(),
        "build.py failed: {}",
        common::text(&out)
    );
    Ok(zip)
}

/// One case of addon_test.py in Blender `series`, its user folders (and HOME) in `scratch`;
/// `env` on top. Its `ADDON-RESULT` JSON.
fn run_case(
    series: &str,
    scratch: &Scratch,
    case: &str,
    opts: &Value,
    env: &[(&str, String)],
) -> Result<Value> {
    let zip = build_zip(&scratch.0)?;
    let home = scratch.0.join(format!("home-{series}"));
    let mut cmd = Command::new(bpy_python(series)?);
    cmd.arg("-B")
        .arg(common::repo_root().join("blender-addon/tests/addon_test.py"))
        .args([case, &zip.to_string_lossy(), &opts.to_string()])
        .env("HOME", &home)
        .env("BLENDER_USER_RESOURCES", home.join("resources"))
        .env("BLENDER_USER_CONFIG", home.join("config"))
        .env("BLENDER_USER_SCRIPTS", home.join("scripts"));
    for (k, v) in env {
        cmd.env(k, v);
    }
    let out = cmd
        .output()
        .with_context(|| format!("running Blender {series}"))?;
    let all = common::text(&out);
    let line = all
        .lines()
        .find_map(|l| l.strip_prefix("ADDON-RESULT "))
        .with_context(|| format!("Blender {series} {case}: no ADDON-RESULT line:\n{all}"))?;
    for l in all.lines().filter(|l| l.starts_with("progress:")) {
        println!("  {series} {l}");
    }
    let result: Value = serde_json::from_str(line)?;
    println!("Blender {series} {case}: {result}");
    ensure!(
        result["addons"] == json!(["bl_ext.user_default.renderfarm_submit"]),
        "Blender {series}: the extension did not install and enable:\n{all}"
    );
    Ok(result)
}

fn plugin_path() -> String {
    env!("CARGO_BIN_EXE_kubectl-render").to_string()
}

/// The error Submit reported, or a failure naming what it did instead.
fn submit_error(series: &str, result: &Value) -> Result<String> {
    match result["error"].as_str() {
        Some(e) => Ok(e.to_string()),
        None => bail!("Blender {series}: Submit reported no error: {result}"),
    }
}

mod local {
    use super::*;

    #[test]
    #[ignore = "needs Blender 4.5 and 5.0 as bpy: hack/blender.sh 4.5 5.0"]
    fn installs_and_the_panel_defaults_to_the_scenes_range() -> Result<()> {
        let scratch = Scratch::new("install")?;
        let kubeconfig = scratch.0.join("kubeconfig");
        std::fs::write(&kubeconfig, KUBECONFIG_TWO_CONTEXTS)?;
        for series in SERIES {
            let opts = json!({
                "frame_start": 3, "frame_end": 17, "engine": "CYCLES", "format": "JPEG",
                "plugin": plugin_path(), "kubeconfig": kubeconfig, "pick_context": "studio",
            });
            let r = run_case(series, &scratch, "install", &opts, &[])?;
            ensure!(
                r["panel"] == json!(true) && r["panel_context"] == json!("output"),
                "{r}"
            );
            ensure!(
                r["operators"] == json!(["submit", "fetch", "open_preview", "forget"]),
                "{r}"
            );
            let d = &r["defaults"];
            ensure!(d["claim"] == json!("render-storage"), "{d}");
            ensure!(
                d["use_scene_range"] == json!(true) && d["pack"] == json!(false),
                "{d}"
            );
            ensure!(
                d["batch"] == json!(5) && d["parallelism"] == json!(10),
                "{d}"
            );
            ensure!(r["contexts"] == json!(["CURRENT", "dev", "studio"]), "{r}");
            ensure!(r["namespace_after_pick"] == json!("shots"), "{r}");
            let argv: Vec<&str> = r["argv"]
                .as_array()
                .context("no argv")?
                .iter()
                .filter_map(Value::as_str)
                .collect();
            let line = argv.join(" ");
            for want in [
                "--context studio -n shots submit",
                "--frames 3-17 ",
                "--engine CYCLES",
                "--format JPEG",
                "--claim render-storage",
            ] {
                ensure!(
                    line.contains(want),
                    "Blender {series}: no `{want}` in: {line}"
                );
            }
        }
        Ok(())
    }

    #[test]
    #[ignore = "needs Blender 4.5 and 5.0 as bpy: hack/blender.sh 4.5 5.0"]
    fn an_unsaved_file_is_refused() -> Result<()> {
        let scratch = Scratch::new("unsaved")?;
        for series in SERIES {
            let opts = json!({"plugin": plugin_path()});
            let r = run_case(series, &scratch, "submit", &opts, &[])?;
            let e = submit_error(series, &r)?;
            ensure!(e.starts_with("The file is not saved: save it"), "{e}");
        }
        Ok(())
    }

    #[test]
    #[ignore = "needs Blender 4.5 and 5.0 as bpy: hack/blender.sh 4.5 5.0"]
    fn a_missing_plugin_is_reported() -> Result<()> {
        let scratch = Scratch::new("noplugin")?;
        for series in SERIES {
            let opts = json!({"plugin": scratch.path("no/kubectl-render"),
                              "save_to": scratch.path(&format!("{series}.blend"))});
            let r = run_case(series, &scratch, "submit", &opts, &[])?;
            let e = submit_error(series, &r)?;
            ensure!(e.starts_with("kubectl-render not found at "), "{e}");
            // And on PATH, when no path is set.
            let opts = json!({"save_to": scratch.path(&format!("{series}.blend"))});
            let path = [("PATH", scratch.path("empty"))];
            let r = run_case(series, &scratch, "submit", &opts, &path)?;
            let e = submit_error(series, &r)?;
            ensure!(e.starts_with("kubectl-render not found on PATH"), "{e}");
        }
        Ok(())
    }

    #[test]
    #[ignore = "needs Blender 4.5 and 5.0 as bpy: hack/blender.sh 4.5 5.0"]
    fn packing_without_bat_is_refused_before_any_cluster_call() -> Result<()> {
        let scratch = Scratch::new("nobat")?;
        for series in SERIES {
            let opts = json!({"plugin": plugin_path(), "pack": true,
                              "save_to": scratch.path(&format!("{series}.blend"))});
            // A kubeconfig nothing answers: the error must come before the cluster's.
            let env = [
                ("PATH", scratch.path("empty")),
                ("KUBECONFIG", closed_port_kubeconfig(&scratch)?),
            ];
            let r = run_case(series, &scratch, "submit", &opts, &env)?;
            let e = submit_error(series, &r)?;
            ensure!(
                e.starts_with("Pack dependencies needs blender-asset-tracer's `bat` command")
                    && e.contains("pip install blender-asset-tracer=="),
                "{e}"
            );
        }
        Ok(())
    }

    #[test]
    #[ignore = "needs Blender 4.5 and 5.0 as bpy: hack/blender.sh 4.5 5.0"]
    fn no_cluster_reachable_is_reported() -> Result<()> {
        let scratch = Scratch::new("nocluster")?;
        for series in SERIES {
            let opts = json!({"plugin": plugin_path(),
                              "save_to": scratch.path(&format!("{series}.blend"))});
            let env = [("KUBECONFIG", closed_port_kubeconfig(&scratch)?)];
            let r = run_case(series, &scratch, "submit", &opts, &env)?;
            let e = submit_error(series, &r)?;
            ensure!(
                e.starts_with("cannot reach the cluster at https://127.0.0.1:1"),
                "{e}"
            );
            ensure!(r["job"]["name"] == json!(""), "a render is followed: {r}");
        }
        Ok(())
    }

    /// A kubeconfig whose API server is a port nothing listens on.
    fn closed_port_kubeconfig(scratch: &Scratch) -> Result<String> {
        let path = scratch.path("closed-kubeconfig");
        std::fs::write(
            &path,
            "apiVersion: v1\nkind: Config\ncurrent-context: closed\nclusters:\n- cluster:\n    server: https://127.0.0.1:1\n    insecure-skip-tls-verify: true\n  name: closed\ncontexts:\n- context:\n    cluster: closed\n    user: nobody\n  name: closed\nusers:\n- name: nobody\n  user:\n    token: none\n",
        )?;
        Ok(path)
    }

    const KUBECONFIG_TWO_CONTEXTS: &str = "apiVersion: v1
clusters:
- cluster:
    server: https://127.0.0.1:1
  name: c
contexts:
- context:
    cluster: c
    user: u
  name: dev
- context:
    cluster: c
    namespace: shots # the studio's
    user: u
  name: \"studio\"
current-context: dev
kind: Config
users:
- name: u
  user:
    token: x
";
}

mod on_kwok {
    use super::*;
    use common::Env;

    /// Submit with the scene already in the claim (kwok pods cannot take an upload): the
    /// RenderJob has the scene's frames, engine and output format and the panel's settings,
    /// the dirty file was saved first, and the progress poll reads it back.
    #[tokio::test]
    #[ignore = "needs Blender (hack/blender.sh 4.5 5.0) and the local cluster: hack/cluster.sh up"]
    async fn submit_creates_the_renderjob_with_the_scenes_settings() -> Result<()> {
        let env = Env::new("addon").await?;
        let scratch = Scratch::new("kwok-submit")?;
        for series in SERIES {
            let name = format!("addon-{}", series.replace('.', ""));
            let opts = json!({
                "plugin": plugin_path(), "namespace": env.ns, "in_claim": "scenes/test.blend",
                "job_name": name, "frame_start": 3, "frame_end": 17, "frame_step": 2,
                "engine": "BLENDER_WORKBENCH", "format": "JPEG", "batch": 4, "parallelism": 3,
                "blender_version": series, "dirty": true, "follow": true, "timeout": 8,
                "save_to": scratch.path(&format!("{name}.blend")),
            });
            let r = run_case(series, &scratch, "submit", &opts, &[])?;
            ensure!(r["error"].is_null(), "Blender {series}: {r}");
            ensure!(
                r["dirty_before"] == json!(true),
                "the test made no change: {r}"
            );
            ensure!(
                r["saved_by_submit"] == json!(true),
                "the dirty file was not saved: {r}"
            );
            ensure!(r["job"]["name"] == json!(name), "{r}");
            // No operator here: the poll reads the spec's 8 frames and no status.
            ensure!(r["job"]["frames_total"] == json!(8), "{r}");
            ensure!(r["job"]["phase"] == json!("Pending"), "{r}");
            let rj = env.rjs().get(&name).await?;
            let s = &rj.spec;
            ensure!(
                (s.frames.start, s.frames.end, s.frames.step) == (3, 17, 2),
                "{:?}",
                s.frames
            );
            ensure!(s.engine.as_str() == "BLENDER_WORKBENCH", "{:?}", s.engine);
            ensure!(s.output.format.as_str() == "JPEG", "{:?}", s.output);
            ensure!((s.batch_size, s.parallelism) == (4, 3), "{s:?}");
            ensure!(s.blender_version.as_deref() == Some(series), "{s:?}");
            ensure!(s.blend_file == "scenes/test.blend", "{s:?}");
        }
        Ok(())
    }

    /// The saved file's upload fails (kwok runs no transfer pod's commands): the error is
    /// reported and no RenderJob is left behind.
    #[tokio::test]
    #[ignore = "needs Blender (hack/blender.sh 4.5 5.0) and the local cluster: hack/cluster.sh up"]
    async fn a_failed_upload_leaves_no_renderjob() -> Result<()> {
        let env = Env::new("addon-upload").await?;
        let scratch = Scratch::new("kwok-upload")?;
        for series in SERIES {
            let opts = json!({"plugin": plugin_path(), "namespace": env.ns,
                              "save_to": scratch.path(&format!("upload-{}.blend", &series[..1]))});
            let r = run_case(series, &scratch, "submit", &opts, &[])?;
            let e = submit_error(series, &r)?;
            ensure!(e.contains("transfer pod render-transfer-"), "{e}");
            let left = env.rjs().list(&Default::default()).await?.items;
            ensure!(
                left.is_empty(),
                "RenderJobs left after a failed upload: {left:?}"
            );
            ensure!(r["job"]["name"] == json!(""), "a render is followed: {r}");
        }
        Ok(())
    }

    /// A RenderJob the API server refuses (parallelism above its maximum): Submit reports the
    /// plugin's error line, the API server's words in it, verbatim.
    #[tokio::test]
    #[ignore = "needs Blender (hack/blender.sh 4.5 5.0) and the local cluster: hack/cluster.sh up"]
    async fn an_api_server_refusal_is_quoted() -> Result<()> {
        let env = Env::new("addon-refused").await?;
        let scratch = Scratch::new("kwok-refused")?;
        let out = env
            .plugin(&[
                "submit",
                "--in-claim",
                "scenes/test.blend",
                "--frames",
                "1-3",
                "--parallelism",
                "2000",
                "--name",
                "refused",
            ])
            .output()?;
        let stderr = String::from_utf8_lossy(&out.stderr);
        let want = stderr
            .trim_end()
            .strip_prefix("error: ")
            .with_context(|| format!("the plugin said: {stderr}"))?;
        ensure!(
            want.starts_with("the API server refused the RenderJob: ")
                && want.contains("spec.parallelism"),
            "{want}"
        );
        for series in SERIES {
            let opts = json!({"plugin": plugin_path(), "namespace": env.ns,
                              "in_claim": "scenes/test.blend", "job_name": "refused",
                              "frame_start": 1, "frame_end": 3, "parallelism": 2000,
                              "save_to": scratch.path(&format!("{series}.blend"))});
            let r = run_case(series, &scratch, "submit", &opts, &[])?;
            let e = submit_error(series, &r)?;
            ensure!(
                e == want,
                "Blender {series} reported:\n  {e}\nthe plugin said:\n  {want}"
            );
        }
        Ok(())
    }
}

mod on_bare {
    use super::*;

    #[test]
    #[ignore = "needs Blender and a cluster without renderfarm's CRD (see tests/bare.rs)"]
    fn renderfarm_not_installed_is_reported() -> Result<()> {
        let scratch = Scratch::new("bare")?;
        for series in SERIES {
            let opts = json!({"plugin": plugin_path(), "in_claim": "scenes/a.blend",
                              "save_to": scratch.path(&format!("{series}.blend"))});
            let r = run_case(series, &scratch, "submit", &opts, &[])?;
            let e = submit_error(series, &r)?;
            ensure!(
                e.starts_with("renderfarm is not installed in this cluster: the API server has no renderjobs.renderfarm.io/v1alpha1"),
                "{e}"
            );
        }
        Ok(())
    }
}

mod on_kind {
    use super::*;
    use common::kind::Storage;
    use renderfarm_testkit::frame::check_png;

    const FRAMES: u32 = 4;

    /// The demo scene submitted from the panel (uploaded through a transfer pod), its progress
    /// followed to Succeeded, and Fetch puts its frames, decoded and not blank, into the
    /// scene's output folder.
    #[tokio::test]
    #[ignore = "needs Blender (hack/blender.sh 4.5 5.0) and the kind lane: hack/kind.sh up"]
    async fn kind_submit_follows_progress_and_fetches_frames() -> Result<()> {
        let client = kube::Client::try_default()
            .await
            .context("no cluster: `hack/kind.sh up` and `eval \"$(hack/kind.sh env)\"`")?;
        let st = Storage::new(client).await?;
        for series in SERIES {
            let name = format!("addon-{}", series.replace('.', ""));
            let frames = st.scratch.join(format!("frames-{name}"));
            let opts = json!({
                "plugin": plugin_path(), "namespace": st.ns, "job_name": name,
                "make_scene": common::repo_root().join("node-image/scripts/make-scene.py"),
                "frames_end": FRAMES, "frame_start": 1, "frame_end": FRAMES, "engine": "CYCLES",
                "save_to": st.scratch.join(format!("{name}.blend")),
                "output": format!("{}/", frames.display()),
                "batch": 2, "parallelism": 2, "blender_version": series,
                "follow": true, "fetch": true, "timeout": 900,
            });
            let scratch = Scratch::new("kind")?;
            let r = run_case(series, &scratch, "submit", &opts, &[])?;
            ensure!(r["error"].is_null(), "Blender {series}: {r}");
            let job = &r["job"];
            ensure!(job["phase"] == json!("Succeeded"), "not Succeeded: {r}");
            ensure!(job["frames_done"] == json!(FRAMES), "{r}");
            ensure!(job["frames_total"] == json!(FRAMES), "{r}");
            let seen = r["seen"].as_array().context("no progress seen")?;
            ensure!(seen.len() >= 2, "the progress never changed: {r}");
            ensure!(r["fetch"]["error"].is_null(), "Fetch: {r}");
            ensure!(
                r["fetched_into"].as_str() == Some(&*frames.to_string_lossy()),
                "{r}"
            );
            for n in 1..=FRAMES {
                check_png(&frames.join(format!("frame_{n:04}.png")), 160, 90)?;
            }
            ensure!(
                job["thumbnail"]
                    .as_str()
                    .is_some_and(|t| t.ends_with("frame_0004.png")),
                "no thumbnail of the newest frame: {r}"
            );
        }
        Ok(())
    }
}
