//! 8. Invalid RenderJobs are refused by the API server with a message a user understands.

use anyhow::{Result, bail};
use kube::api::{Api, DynamicObject, Patch, PatchParams, PostParams};
use kube::core::ApiResource;
use renderfarm::crd::RenderJob;
use serde_json::{Value, json};

use crate::harness::{Env, STORAGE, kubectl, merge};

fn valid_spec() -> Value {
    json!({"blendFile": "scenes/a.blend", "frames": {"start": 1, "end": 10}, "storage": {"claimName": STORAGE}})
}

fn object(ns: &str, name: &str, spec: Value) -> Result<DynamicObject> {
    Ok(serde_json::from_value(json!({
        "apiVersion": "renderfarm.io/v1alpha1", "kind": "RenderJob",
        "metadata": {"name": name, "namespace": ns}, "spec": spec,
    }))?)
}

/// The API server's answer to `attempt`: Ok(message) if refused with 422.
async fn refused(
    attempt: impl std::future::Future<Output = kube::Result<DynamicObject>>,
) -> Result<String> {
    match attempt.await {
        Ok(_) => bail!("accepted"),
        Err(kube::Error::Api(e)) if e.code == 422 => Ok(e.message),
        Err(e) => bail!("refused in an unexpected way: {e}"),
    }
}

#[tokio::test]
#[ignore = "needs a cluster: hack/test.sh"]
async fn invalid_renderjobs_are_refused_with_clear_messages() -> Result<()> {
    let env = Env::new("invalid").await?;
    let api: Api<DynamicObject> = Api::namespaced_with(
        env.client.clone(),
        &env.ns,
        &ApiResource::erase::<RenderJob>(&()),
    );
    let cases: Vec<(&str, Value, &str)> = vec![
        (
            "end before start",
            json!({"frames": {"start": 10, "end": 1}}),
            "frames.end must be greater than or equal to frames.start",
        ),
        (
            "step 0",
            json!({"frames": {"start": 1, "end": 10, "step": 0}}),
            "spec.frames.step in body should be greater than or equal to 1",
        ),
        (
            "negative frame",
            json!({"frames": {"start": -5, "end": 10}}),
            "spec.frames.start in body should be greater than or equal to 0",
        ),
        (
            "beyond Blender's range",
            json!({"frames": {"start": 1, "end": 2000000}}),
            "spec.frames.end in body should be less than or equal to 1048574",
        ),
        (
            "batchSize 0",
            json!({"batchSize": 0}),
            "spec.batchSize in body should be greater than or equal to 1",
        ),
        (
            "parallelism 0",
            json!({"parallelism": 0}),
            "spec.parallelism in body should be greater than or equal to 1",
        ),
        (
            "absurd parallelism",
            json!({"parallelism": 1000000}),
            "spec.parallelism in body should be less than or equal to 1000",
        ),
        (
            "millions of batches",
            json!({"frames": {"start": 0, "end": 1048574}, "batchSize": 1}),
            "would make more than 10000 batches",
        ),
        (
            "empty blendFile",
            json!({"blendFile": ""}),
            "spec.blendFile in body should be at least 1 chars long",
        ),
        (
            "path traversal",
            json!({"blendFile": "../../etc/passwd"}),
            "blendFile must be a relative path inside the storage volume",
        ),
        (
            "absolute blendFile",
            json!({"blendFile": "/etc/passwd"}),
            "blendFile must be a relative path inside the storage volume",
        ),
        (
            "output traversal",
            json!({"output": {"path": "renders/../../x_####"}}),
            "output.path must be a relative path inside the storage volume",
        ),
        (
            "unknown engine",
            json!({"engine": "POVRAY"}),
            "Unsupported value: \"POVRAY\"",
        ),
        (
            "unknown device",
            json!({"device": "TPU"}),
            "Unsupported value: \"TPU\"",
        ),
        (
            "unknown format",
            json!({"output": {"format": "GIF"}}),
            "Unsupported value: \"GIF\"",
        ),
        (
            "wrong type",
            json!({"batchSize": "five"}),
            "spec.batchSize in body must be of type integer",
        ),
        (
            "no storage",
            json!({"storage": null}),
            "spec.storage: Required value",
        ),
        (
            "backoffLimit out of range",
            json!({"backoffLimit": 1000}),
            "spec.backoffLimit in body should be less than or equal to 100",
        ),
        (
            "preview fps 0",
            json!({"preview": {"fps": 0}}),
            "spec.preview.fps in body should be greater than or equal to 1",
        ),
        (
            "preview fps too high",
            json!({"preview": {"fps": 240}}),
            "spec.preview.fps in body should be less than or equal to 120",
        ),
        (
            "preview too narrow",
            json!({"preview": {"width": 8}}),
            "spec.preview.width in body should be greater than or equal to 16",
        ),
        (
            "preview wider than 8K",
            json!({"preview": {"width": 8000}}),
            "spec.preview.width in body should be less than or equal to 7680",
        ),
        (
            "odd preview width",
            json!({"preview": {"width": 641}}),
            "preview.width must be even",
        ),
        (
            "unknown preview codec",
            json!({"preview": {"codec": "GIF"}}),
            "Unsupported value: \"GIF\"",
        ),
    ];
    let mut failures = Vec::new();
    for (i, (case, patch, expected)) in cases.iter().enumerate() {
        let mut spec = valid_spec();
        merge(&mut spec, patch.clone());
        if let Some(obj) = spec.as_object_mut() {
            obj.retain(|_, v| !v.is_null());
        }
        let obj = object(&env.ns, &format!("bad-{i}"), spec)?;
        match refused(api.create(&PostParams::default(), &obj)).await {
            Ok(msg) if msg.contains(expected) => eprintln!("refused {case}: {msg}"),
            Ok(msg) => failures.push(format!("{case}: message {msg:?} lacks {expected:?}")),
            Err(e) => failures.push(format!("{case}: {e}")),
        }
    }

    // Immutable fields: a render's frames, file, batches and output never change under it.
    let obj = object(&env.ns, "immutable", valid_spec())?;
    api.create(&PostParams::default(), &obj).await?;
    let updates = [
        (
            json!({"frames": {"start": 1, "end": 20}}),
            "frames are immutable",
        ),
        (
            json!({"blendFile": "scenes/b.blend"}),
            "blendFile is immutable",
        ),
        (json!({"batchSize": 7}), "batchSize is immutable"),
        (json!({"output": {"format": "JPEG"}}), "output is immutable"),
        (
            json!({"storage": {"claimName": "other"}}),
            "storage is immutable",
        ),
    ];
    for (patch, expected) in updates {
        match refused(api.patch(
            "immutable",
            &PatchParams::default(),
            &Patch::Merge(json!({"spec": patch.clone()})),
        ))
        .await
        {
            Ok(msg) if msg.contains(expected) => eprintln!("refused update {patch}: {msg}"),
            Ok(msg) => failures.push(format!("update {patch}: {msg:?} lacks {expected:?}")),
            Err(e) => failures.push(format!("update {patch}: {e}")),
        }
    }
    // Mutable fields stay mutable.
    api.patch(
        "immutable",
        &PatchParams::default(),
        &Patch::Merge(json!({"spec": {"parallelism": 3, "suspend": true, "preview": {"fps": 30}}})),
    )
    .await?;

    // Unknown fields: kubectl validates strictly, as users meet it.
    let manifest = serde_json::to_string(&json!({
        "apiVersion": "renderfarm.io/v1alpha1", "kind": "RenderJob",
        "metadata": {"name": "typo", "namespace": env.ns},
        "spec": {"blendFile": "a.blend", "frames": {"start": 1, "end": 2}, "storage": {"claimName": STORAGE}, "batchsize": 3},
    }))?;
    let path = std::env::temp_dir().join(format!("{}-typo.json", env.ns));
    std::fs::write(&path, manifest)?;
    let (ok, out) = kubectl(&["apply", "-f", &path.display().to_string()])?;
    if ok || !out.contains("unknown field \"spec.batchsize\"") {
        failures.push(format!("unknown field: {out}"));
    }
    let total = cases.len() + 5 + 1;
    eprintln!(
        "{} of {total} invalid RenderJobs refused with the expected message",
        total - failures.len()
    );
    assert!(failures.is_empty(), "{}", failures.join("\n"));
    Ok(())
}
