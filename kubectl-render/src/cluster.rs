//! The connection to the user's cluster: their kubeconfig, nothing else.

use k8s_openapi::api::core::v1::PersistentVolumeClaim;
use kube::config::{KubeConfigOptions, Kubeconfig};
use kube::{Api, Client, Config};
use renderfarm_api::crd::RenderJob;

use crate::cli::Global;
use crate::error::{Error, Result, api_status};

pub const API_VERSION: &str = "renderfarm.io/v1alpha1";

/// A client and the namespace the command works in.
#[derive(Clone)]
pub struct Ctx {
    pub client: Client,
    pub namespace: String,
    pub url: String,
}

impl Ctx {
    pub async fn new(global: &Global) -> Result<Ctx> {
        let kubeconfig = match &global.kubeconfig {
            Some(path) => Kubeconfig::read_from(path),
            None => Kubeconfig::read(),
        }
        .map_err(|e| match e {
            // The path, not its Debug quoting.
            kube::config::KubeconfigError::ReadConfig(source, path) => {
                Error::NoKubeconfig(format!("cannot read {}: {source}", path.display()))
            }
            e => Error::NoKubeconfig(one_line(&e)),
        })?;
        let options = KubeConfigOptions {
            context: global.context.clone(),
            ..Default::default()
        };
        let config = Config::from_custom_kubeconfig(kubeconfig, &options)
            .await
            .map_err(|e| Error::NoKubeconfig(one_line(&e)))?;
        let namespace = global
            .namespace
            .clone()
            .unwrap_or_else(|| config.default_namespace.clone());
        let url = config.cluster_url.to_string();
        let client = Client::try_from(config).map_err(|e| Error::Unreachable {
            url: url.clone(),
            reason: one_line(&e),
        })?;
        Ok(Ctx {
            client,
            namespace,
            url,
        })
    }

    pub fn rjs(&self) -> Api<RenderJob> {
        Api::namespaced(self.client.clone(), &self.namespace)
    }

    pub fn api<K>(&self) -> Api<K>
    where
        K: kube::Resource<Scope = k8s_openapi::NamespaceResourceScope>,
        <K as kube::Resource>::DynamicType: Default,
    {
        Api::namespaced(self.client.clone(), &self.namespace)
    }

    /// Fails with [`Error::CrdMissing`] when the API server does not serve RenderJobs.
    pub async fn check_crd(&self) -> Result<()> {
        match self.client.list_api_group_resources(API_VERSION).await {
            Ok(list) if list.resources.iter().any(|r| r.name == "renderjobs") => Ok(()),
            Ok(_) => Err(Error::CrdMissing),
            Err(e) if api_status(&e).map(|s| s.0) == Some(404) => Err(Error::CrdMissing),
            Err(e) => Err(self.unreachable(e)),
        }
    }

    /// Fails with [`Error::ClaimMissing`] when the claim does not exist.
    pub async fn check_claim(&self, claim: &str) -> Result<PersistentVolumeClaim> {
        match self.api::<PersistentVolumeClaim>().get_opt(claim).await? {
            Some(pvc) => Ok(pvc),
            None => Err(Error::ClaimMissing {
                claim: claim.to_string(),
                namespace: self.namespace.clone(),
            }),
        }
    }

    /// The RenderJob, or [`Error::NotFound`].
    pub async fn renderjob(&self, name: &str) -> Result<RenderJob> {
        match self.rjs().get_opt(name).await {
            Ok(Some(rj)) => Ok(rj),
            Ok(None) => Err(self.not_found(name)),
            Err(e) if api_status(&e).map(|s| s.0) == Some(404) => {
                // 404 without a name: the resource type itself is missing.
                self.check_crd().await?;
                Err(self.not_found(name))
            }
            Err(e) => Err(self.unreachable(e)),
        }
    }

    pub fn not_found(&self, name: &str) -> Error {
        Error::NotFound {
            name: name.to_string(),
            namespace: self.namespace.clone(),
        }
    }

    /// A transport error as "cannot reach the cluster"; API answers pass through.
    pub fn unreachable(&self, e: kube::Error) -> Error {
        match e {
            kube::Error::HyperError(_) | kube::Error::Service(_) => Error::Unreachable {
                url: self.url.clone(),
                reason: one_line(&e),
            },
            e => e.into(),
        }
    }
}

/// An error and its causes on one line, without repeats.
pub fn one_line(e: &dyn std::error::Error) -> String {
    let mut parts: Vec<String> = vec![e.to_string()];
    let mut source = e.source();
    while let Some(s) = source {
        let text = s.to_string();
        if !parts.iter().any(|p| p.contains(&text)) {
            parts.push(text);
        }
        source = s.source();
    }
    parts.join(": ").replace('\n', " ")
}
