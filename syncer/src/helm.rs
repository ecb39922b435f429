//! The helm executable: which one, `helm template` for the workloads a
//! chart renders, and an on-disk cache of those results.

use std::path::{Path, PathBuf};

use anyhow::{bail, Context};
use plimsoll_planner::journal::digest;
use plimsoll_renderer::stack::Release;

/// The helm executable: the flag, then `$PLIMSOLL_HELM`, then `helm`.
pub fn helm_executable(flag: Option<&Path>) -> PathBuf {
    flag.map(Path::to_path_buf)
        .or_else(|| std::env::var_os("PLIMSOLL_HELM").map(PathBuf::from))
        .unwrap_or_else(|| PathBuf::from("helm"))
}

pub use plimsoll_planner::manifests::Workloads;

/// Renders the chart with the release's values (`helm template`) to learn
/// its workloads.
pub fn template_workloads(
    helm: &Path,
    chart: &str,
    release: &Release,
    values_file: &Path,
) -> anyhow::Result<Workloads> {
    // Positionals after `--`: a name or chart can never be read as a flag
    // (the stack file validates them too).
    let out = std::process::Command::new(helm)
        .args([
            "template",
            "--namespace",
            &release.namespace,
            "--version",
            &release.version,
            "-f",
        ])
        .arg(values_file)
        .args(["--", &release.name, chart])
        .output()
        .with_context(|| format!("cannot run {}", helm.display()))?;
    if !out.status.success() {
        bail!(
            "helm template {} failed: {}",
            release.name,
            String::from_utf8_lossy(&out.stderr).trim()
        );
    }
    let manifests = String::from_utf8_lossy(&out.stdout);
    plimsoll_planner::manifests::workloads_from_manifests(&manifests)
        .with_context(|| format!("helm template {} printed invalid YAML", release.name))
}

/// `helm template`'s workloads cached on disk, for charts that are local
/// directories (an exported revision or the working tree): the key is the
/// helm executable (path, size, mtime), the chart's files, the release's
/// name, namespace and version, and the values. With 100 releases and
/// nothing changed, this is the difference between seconds and
/// milliseconds. `PLIMSOLL_NO_CACHE=1` turns it off.
pub struct TemplateCache {
    dir: PathBuf,
    /// Which helm: its resolved path, size and mtime.
    helm_id: String,
}

impl TemplateCache {
    /// `None` when turned off, without a cache directory, or when the helm
    /// executable cannot be identified.
    pub fn open(helm: &Path) -> Option<TemplateCache> {
        if std::env::var_os("PLIMSOLL_NO_CACHE").is_some() {
            return None;
        }
        let dir = cache_root()?.join("template");
        let resolved = resolve_executable(helm)?;
        let meta = std::fs::metadata(&resolved).ok()?;
        Some(TemplateCache {
            dir,
            helm_id: format!(
                "{}\0{}\0{:?}",
                resolved.display(),
                meta.len(),
                meta.modified().ok()
            ),
        })
    }

    pub fn workloads(
        &self,
        helm: &Path,
        chart: &str,
        chart_digest: &str,
        release: &Release,
        values_file: &Path,
        values_text: &str,
    ) -> anyhow::Result<Workloads> {
        let key = digest(
            format!(
                "v3\0{}\0{chart_digest}\0{}\0{}\0{}\0{values_text}",
                self.helm_id, release.name, release.namespace, release.version
            )
            .as_bytes(),
        );
        let path = self.dir.join(format!("{key}.json"));
        if let Some(hit) = std::fs::read(&path)
            .ok()
            .and_then(|b| serde_json::from_slice::<Workloads>(&b).ok())
        {
            return Ok(hit);
        }
        let w = template_workloads(helm, chart, release, values_file)?;
        // Best effort, atomically: a cache that cannot be written is no cache.
        if std::fs::create_dir_all(&self.dir).is_ok() {
            let tmp = self.dir.join(format!(".{key}.{}", std::process::id()));
            if std::fs::write(&tmp, serde_json::to_vec(&w)?).is_ok() {
                let _ = std::fs::rename(&tmp, &path);
            }
        }
        Ok(w)
    }
}

/// The helm executable's major version (`helm version --short`), asked
/// once per executable; `None` when it does not say.
pub async fn major_version(helm: &Path) -> Option<u32> {
    use std::collections::HashMap;
    use std::sync::Mutex;
    static KNOWN: Mutex<Option<HashMap<PathBuf, Option<u32>>>> = Mutex::new(None);
    if let Some(known) = KNOWN
        .lock()
        .ok()?
        .as_ref()
        .and_then(|m| m.get(helm).copied())
    {
        return known;
    }
    let out = tokio::time::timeout(
        std::time::Duration::from_secs(30),
        tokio::process::Command::new(helm)
            .args(["version", "--short"])
            .stdin(std::process::Stdio::null())
            .kill_on_drop(true)
            .output(),
    )
    .await
    .ok()?
    .ok()?;
    let text = String::from_utf8_lossy(&out.stdout);
    let major = text
        .trim()
        .trim_start_matches('v')
        .split('.')
        .next()
        .and_then(|m| m.parse().ok())
        .filter(|_| out.status.success());
    KNOWN
        .lock()
        .ok()?
        .get_or_insert_with(HashMap::new)
        .insert(helm.to_path_buf(), major);
    major
}

/// Plimsoll's cache directory: `$XDG_CACHE_HOME/plimsoll`, else
/// `~/.cache/plimsoll`.
pub fn cache_root() -> Option<PathBuf> {
    std::env::var_os("XDG_CACHE_HOME")
        .map(PathBuf::from)
        .or_else(|| std::env::var_os("HOME").map(|h| PathBuf::from(h).join(".cache")))
        .map(|c| c.join("plimsoll"))
}

/// The file an executable name resolves to (a path as given, else the
/// first match on `$PATH`), without running a shell.
fn resolve_executable(name: &Path) -> Option<PathBuf> {
    if name.components().count() > 1 {
        return name.canonicalize().ok();
    }
    std::env::split_paths(&std::env::var_os("PATH")?)
        .map(|dir| dir.join(name))
        .find(|p| p.is_file())
        .and_then(|p| p.canonicalize().ok())
}

/// Sha-256 over a chart directory's files (paths and contents, sorted).
pub fn chart_digest(dir: &Path) -> anyhow::Result<String> {
    let mut files = Vec::new();
    let mut stack = vec![dir.to_path_buf()];
    while let Some(d) = stack.pop() {
        for e in std::fs::read_dir(&d)? {
            let e = e?;
            if e.file_type()?.is_dir() {
                stack.push(e.path());
            } else {
                files.push(e.path());
            }
        }
    }
    files.sort();
    let mut all = Vec::new();
    for f in files {
        all.extend_from_slice(f.strip_prefix(dir)?.to_string_lossy().as_bytes());
        all.push(0);
        all.extend(std::fs::read(&f)?);
        all.push(0);
    }
    Ok(digest(&all))
}

/// The chart name of a reference (`repo/name`, a directory, a `.tgz`).
pub use plimsoll_renderer::stack::chart_name;
