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

impl ClusterOptions {
    /// helm's flags for the same cluster, each as one `--flag=value`
    /// argument: a value that begins with `-` is never read as a flag of
    /// its own. None when neither is set: helm then finds the cluster as
    /// [`connect`] does (`$KUBECONFIG`, `~/.kube/config`, in a pod its
    /// service account).
    pub fn helm_flags(&self) -> Vec<std::ffi::OsString> {
        let mut flags = Vec::new();
        if let Some(path) = &self.kubeconfig {
            let mut f = std::ffi::OsString::from("--kubeconfig=");
            f.push(path);
            flags.push(f);
        }
        if let Some(context) = &self.context {
            flags.push(format!("--kube-context={context}").into());
        }
        flags
    }
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn helm_is_told_the_same_kubeconfig_and_context_each_as_one_argument() {
        let none = ClusterOptions::default();
        assert!(none.helm_flags().is_empty());
        let both = ClusterOptions {
            kubeconfig: Some(PathBuf::from("/tmp/-odd path/kubeconfig")),
            context: Some("--all-namespaces".into()),
        };
        assert_eq!(
            both.helm_flags(),
            vec![
                std::ffi::OsString::from("--kubeconfig=/tmp/-odd path/kubeconfig"),
                std::ffi::OsString::from("--kube-context=--all-namespaces"),
            ]
        );
    }
}
