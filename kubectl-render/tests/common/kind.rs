//! A namespace on kind whose `render-storage` claim is a folder of this machine (the one
//! kind-config.yaml mounts at /renders), for the plugin's tests against real pods.

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

use anyhow::{Context as _, Result, ensure};
use k8s_openapi::api::core::v1::{Namespace, PersistentVolume, PersistentVolumeClaim};
use kube::Client;
use kube::api::{Api, PostParams};
use serde_json::json;

use super::{plugin, repo_root, wait_until};

pub fn host_storage() -> PathBuf {
    std::env::var_os("RENDERFARM_KIND_STORAGE")
        .map(PathBuf::from)
        .unwrap_or_else(|| repo_root().join("render"))
}

/// A namespace whose `render-storage` claim is `dir` on this machine.
pub struct Storage {
    pub ns: String,
    pub dir: PathBuf,
    pub scratch: PathBuf,
}

impl Storage {
    pub async fn new(client: Client) -> Result<Storage> {
        let ns = renderfarm_testkit::unique_name("rf-plugin-kind");
        let root = host_storage();
        ensure!(
            root.is_dir(),
            "{} does not exist: bring the kind lane up with `hack/kind.sh up`",
            root.display()
        );
        let dir = root.join("e2e").join(&ns);
        std::fs::create_dir_all(dir.join("scenes"))?;
        std::fs::create_dir_all(dir.join("renders"))?;
        // Render and transfer pods run as uid 1000, whoever runs the test.
        for d in ["", "scenes", "renders"] {
            set_mode(&dir.join(d), 0o777)?;
        }
        // The restricted Pod Security level: transfer pods (and render pods) must meet it.
        let namespace = json!({"metadata": {"name": ns, "labels": {
            "pod-security.kubernetes.io/enforce": "restricted",
        }}});
        Api::<Namespace>::all(client.clone())
            .create(&PostParams::default(), &serde_json::from_value(namespace)?)
            .await?;
        let pv = json!({
            "metadata": {"name": ns},
            "spec": {
                "capacity": {"storage": "1Gi"}, "accessModes": ["ReadWriteMany"],
                "storageClassName": "manual", "persistentVolumeReclaimPolicy": "Retain",
                "hostPath": {"path": format!("/renders/e2e/{ns}"), "type": "Directory"},
                "claimRef": {"namespace": ns, "name": "render-storage"},
            }
        });
        Api::<PersistentVolume>::all(client.clone())
            .create(&PostParams::default(), &serde_json::from_value(pv)?)
            .await?;
        let pvc = json!({
            "metadata": {"name": "render-storage"},
            "spec": {"accessModes": ["ReadWriteMany"], "storageClassName": "manual", "volumeName": ns,
                     "resources": {"requests": {"storage": "1Gi"}}}
        });
        let pvcs: Api<PersistentVolumeClaim> = Api::namespaced(client.clone(), &ns);
        pvcs.create(&PostParams::default(), &serde_json::from_value(pvc)?)
            .await?;
        wait_until(Duration::from_secs(60), "claim bound", || async {
            let pvc = pvcs.get("render-storage").await?;
            Ok((pvc.status.and_then(|s| s.phase).as_deref() == Some("Bound")).then_some(()))
        })
        .await?;
        let scratch = std::env::temp_dir().join(format!("kubectl-render-{ns}"));
        std::fs::create_dir_all(&scratch)?;
        Ok(Storage { ns, dir, scratch })
    }

    pub fn plugin(&self, args: &[&str]) -> Command {
        let mut cmd = plugin();
        cmd.args(["-n", &self.ns]).args(args);
        cmd
    }
}

impl Drop for Storage {
    fn drop(&mut self) {
        for args in [
            ["delete", "namespace", self.ns.as_str(), "--wait=false"],
            ["delete", "pv", self.ns.as_str(), "--wait=false"],
        ] {
            let _ = Command::new("kubectl").args(args).output();
        }
        let _ = std::fs::remove_dir_all(&self.dir);
        let _ = std::fs::remove_dir_all(&self.scratch);
    }
}

pub fn set_mode(path: &Path, mode: u32) -> Result<()> {
    use std::os::unix::fs::PermissionsExt as _;
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(mode))
        .with_context(|| format!("chmod {}", path.display()))
}
