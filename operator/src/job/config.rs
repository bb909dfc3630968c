//! What the operator's configuration says of the Jobs it makes: the images by Blender
//! version, disruptions allowed, where batch pods wait for their network isolation.

use std::collections::{BTreeMap, BTreeSet};

use render_contract::IsolationProbe;

use super::policy::MAX_DISRUPTIONS;
use crate::crd::RenderJob;

/// Settings that come from the operator's configuration, not from the RenderJob.
#[derive(Debug, Clone)]
pub struct JobConfig {
    /// The render-node image of the default Blender version.
    pub image: String,
    pub image_pull_policy: Option<String>,
    /// Render-node images of other Blender versions, by version (`5.0`).
    pub images: BTreeMap<String, String>,
    /// The Blender version of a RenderJob that names none.
    pub default_version: String,
    /// Disruptions a batch may have before it fails as `Evicted`.
    pub max_disruptions: usize,
    /// Where batch pods wait, before Blender starts, until their NetworkPolicy is in force.
    pub isolation: Option<Isolation>,
}

/// The namespaces whose batch pods a NetworkPolicy isolates (`*`: every namespace), and what
/// render-node connects to there to learn that the policy is in force for its pod (an address
/// the policy blocks): a network plugin may judge a new pod's connections only a moment after
/// its container started.
#[derive(Debug, Clone, PartialEq)]
pub struct Isolation {
    pub namespaces: BTreeSet<String>,
    pub probe: IsolationProbe,
}

impl Isolation {
    /// Whether batch pods in `namespace` wait.
    pub fn covers(&self, namespace: &str) -> bool {
        self.namespaces.contains("*") || self.namespaces.contains(namespace)
    }
}

/// A RenderJob asks for a Blender version the operator has no image for.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("blenderVersion {version} is not offered here; this cluster offers {offered}")]
pub struct NotOffered {
    pub version: String,
    /// The versions offered, comma-separated.
    pub offered: String,
}

/// The Blender version the operator renders with when not told otherwise.
pub const DEFAULT_BLENDER_VERSION: &str = "4.5";

impl JobConfig {
    /// One render-node image, for the default Blender version.
    pub fn new(image: impl Into<String>) -> JobConfig {
        JobConfig {
            image: image.into(),
            image_pull_policy: None,
            images: BTreeMap::new(),
            default_version: DEFAULT_BLENDER_VERSION.to_string(),
            max_disruptions: MAX_DISRUPTIONS,
            isolation: None,
        }
    }

    /// The Blender versions offered, in order.
    pub fn offered(&self) -> Vec<&str> {
        let mut v: Vec<&str> = self.images.keys().map(String::as_str).collect();
        if !self.images.contains_key(&self.default_version) {
            v.push(&self.default_version);
        }
        v.sort_unstable();
        v
    }

    /// The render-node image for `rj`: its own `spec.image`, else its Blender version's; an
    /// error naming the offered versions when the operator offers not that version.
    pub fn image_for(&self, rj: &RenderJob) -> Result<String, NotOffered> {
        if let Some(image) = &rj.spec.image {
            return Ok(image.clone());
        }
        let version = rj
            .spec
            .blender_version
            .as_deref()
            .unwrap_or(&self.default_version);
        match self.images.get(version) {
            Some(image) => Ok(image.clone()),
            None if version == self.default_version => Ok(self.image.clone()),
            None => Err(NotOffered {
                version: version.to_string(),
                offered: self.offered().join(", "),
            }),
        }
    }
}
