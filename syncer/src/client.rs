//! A Kubernetes client: from a kubeconfig (a file, `$KUBECONFIG` or
//! `~/.kube/config`, with an optional context), else the pod's service
//! account. Nothing here runs before a command needs the cluster.

use std::path::PathBuf;

use anyhow::Context;

/// Which cluster to talk to.
#[derive(Clone, Debug, Default)]
pub struct ClusterOptions {
    /// Kubeconfig file (default: `$KUBECONFIG`, then `~/.kube/config`).
    pub kubeconfig: Option<PathBuf>,
    pub context: Option<String>,
}

/// Builds the client. With no kubeconfig at all, the in-cluster
/// configuration is tried; when both fail, both reasons are reported.
pub async fn connect(opts: &ClusterOptions) -> anyhow::Result<kube::Client> {
    let options = kube::config::KubeConfigOptions {
        context: opts.context.clone(),
        ..Default::default()
    };
    let config = match &opts.kubeconfig {
        Some(path) => {
            let kc = kube::config::Kubeconfig::read_from(path)
                .with_context(|| format!("cannot read {}", path.display()))?;
            kube::Config::from_custom_kubeconfig(kc, &options).await?
        }
        None => match kube::Config::from_kubeconfig(&options).await {
            Ok(c) => c,
            Err(kubeconfig) => kube::Config::incluster().map_err(|incluster| {
                anyhow::anyhow!(
                    "no usable kubeconfig ({kubeconfig}) and not running in a cluster ({incluster})"
                )
            })?,
        },
    };
    Ok(kube::Client::try_from(config)?)
}
