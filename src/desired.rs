//! The desired state of a revision (or the working tree): rendered values,
//! the chart rendered with them through the helm executable (`helm
//! template`), declared patches, and what `helm upgrade` will need. Shared
//! by `plan`, `sync` and `daemon`.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use anyhow::{bail, Context};
use plimsoll_renderer::json;
use plimsoll_renderer::render::{self, Rendered};
use plimsoll_syncer::execute::ReleaseSource;
use plimsoll_syncer::git::Revision;
use plimsoll_syncer::state::{DesiredPatch, DesiredRelease, ResourceRef};
use plimsoll_syncer::version::Catalog;

use crate::Common;

pub struct DesiredState {
    pub stack_name: String,
    /// The commit, when read from git.
    pub revision: Option<String>,
    pub releases: Vec<DesiredRelease>,
    pub sources: BTreeMap<String, ReleaseSource>,
    pub catalogs: BTreeMap<String, Catalog>,
    pub rendered: Rendered,
    /// Sha-256 of everything a sync applies (values, charts, versions,
    /// patches): the journal resumes only a plan for the same digest.
    pub digest: String,
    /// Holds the values files and exported charts `helm` reads.
    _workdir: tempfile::TempDir,
}

impl DesiredState {
    /// Every resource a release declares a patch for.
    pub fn patch_targets(&self) -> Vec<ResourceRef> {
        let mut t: Vec<ResourceRef> = self
            .releases
            .iter()
            .flat_map(|r| r.patches.iter().map(|p| p.target.clone()))
            .collect();
        t.sort();
        t.dedup();
        t
    }
}

/// The helm executable: the flag, then `$PLIMSOLL_HELM`, then `helm`.
pub fn helm_executable(flag: Option<&Path>) -> PathBuf {
    flag.map(Path::to_path_buf)
        .or_else(|| std::env::var_os("PLIMSOLL_HELM").map(PathBuf::from))
        .unwrap_or_else(|| PathBuf::from("helm"))
}

/// Renders the stack as it is at a git revision.
pub fn render_revision(
    common: &Common,
    rv: &Revision,
) -> anyhow::Result<(plimsoll_renderer::stack::Stack, Rendered)> {
    let bytes = rv
        .read("plimsoll.yaml")
        .with_context(|| format!("plimsoll.yaml at {}", rv.commit))?;
    let name = format!("plimsoll.yaml@{}", &rv.commit[..12]);
    let (stack, vars) = crate::stack_from(common, &name, &bytes)?;
    let read = |p: &str| rv.read(p);
    let rendered = render::render(&stack, &vars, &read)?;
    Ok((stack, rendered))
}

/// Reads and renders the desired state: of `rev` from the object
/// database, or of the working tree.
pub fn load(common: &Common, rev: Option<&str>, helm: &Path) -> anyhow::Result<DesiredState> {
    let revision = rev.map(|r| Revision::open(&common.repo, r)).transpose()?;
    let (stack, rendered) = match &revision {
        Some(rv) => render_revision(common, rv)?,
        None => {
            let (stack, vars) = crate::load_stack(common)?;
            let read = crate::repo_reader(&common.repo);
            let rendered = render::render(&stack, &vars, &read)?;
            (stack, rendered)
        }
    };
    let workdir = tempfile::Builder::new()
        .prefix("plimsoll-desired-")
        .tempdir()
        .context("cannot create a temporary directory")?;
    let mut releases = Vec::new();
    let mut sources = BTreeMap::new();
    let mut digest_input = String::new();
    // Values files and chart references first (git2 objects stay on this
    // thread), then `helm template` for every release in parallel: it is
    // the slow part with many releases.
    let mut prepared = Vec::new();
    for r in &rendered.releases {
        let dir = workdir.path().join(&r.release.name);
        std::fs::create_dir_all(&dir)?;
        let values_file = dir.join("values.yaml");
        std::fs::write(&values_file, &r.text)?;
        let chart = chart_reference(&common.repo, revision.as_ref(), &r.release.chart, &dir)?;
        // A chart kept in the repository is part of the desired state (and
        // of the template cache's key); hashed once, used for both.
        let local = match &revision {
            Some(rv) => rv.is_dir(&r.release.chart),
            None => Path::new(&chart).is_dir(),
        };
        let digest = local.then(|| chart_digest(Path::new(&chart))).transpose()?;
        prepared.push((chart, values_file, digest));
    }
    let cache = TemplateCache::open(helm);
    let workers = std::thread::available_parallelism().map_or(2, |n| n.get().clamp(2, 8));
    let mut workloads: Vec<Option<anyhow::Result<_>>> = (0..prepared.len()).map(|_| None).collect();
    let next = std::sync::atomic::AtomicUsize::new(0);
    let results = std::sync::Mutex::new(&mut workloads);
    std::thread::scope(|scope| {
        for _ in 0..workers.min(prepared.len()) {
            scope.spawn(|| loop {
                let i = next.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
                let Some((chart, values_file, digest)) = prepared.get(i) else {
                    break;
                };
                let r = &rendered.releases[i];
                let w = match (&cache, digest) {
                    (Some(cache), Some(digest)) => {
                        cache.workloads(helm, chart, digest, &r.release, values_file, &r.text)
                    }
                    _ => chart_workloads(helm, chart, &r.release, values_file),
                };
                if let Ok(mut slots) = results.lock() {
                    slots[i] = Some(w);
                }
            });
        }
    });
    for ((r, (chart, values_file, chart_digest)), w) in
        rendered.releases.iter().zip(prepared).zip(workloads)
    {
        let name = &r.release.name;
        let values_json =
            json::to_json(&r.result.node).with_context(|| format!("release {name}"))?;
        let values: serde_json::Value = serde_json::from_str(&values_json)?;
        let (statefulsets, deployments) =
            w.ok_or_else(|| anyhow::anyhow!("helm template {name} did not run"))??;
        let patches = r
            .release
            .patches
            .iter()
            .map(|p| {
                Ok(DesiredPatch {
                    target: ResourceRef {
                        api_version: p.api_version.clone(),
                        kind: p.kind.clone(),
                        namespace: p.namespace.clone(),
                        name: p.name.clone(),
                    },
                    operations: serde_json::from_str(&p.operations)?,
                })
            })
            .collect::<anyhow::Result<Vec<_>>>()?;
        digest_input.push_str(&format!(
            "{name}\0{}\0{}\0{}\0{}\0",
            r.release.chart,
            r.release.version,
            r.text,
            serde_json::to_string(&patches)?
        ));
        digest_input.push_str(chart_digest.as_deref().unwrap_or(""));
        sources.insert(
            name.clone(),
            ReleaseSource {
                chart: chart.clone(),
                version: r.release.version.clone(),
                values_file,
                values: values.clone(),
                statefulsets: statefulsets.iter().map(|s| s.name.clone()).collect(),
            },
        );
        releases.push(DesiredRelease {
            name: name.clone(),
            namespace: r.release.namespace.clone(),
            stage: r.release.stage.clone(),
            chart: chart_name(&r.release.chart),
            version: r.release.version.clone(),
            values,
            statefulsets,
            deployments,
            patches,
        });
    }
    Ok(DesiredState {
        stack_name: stack.name.clone(),
        revision: revision.as_ref().map(|r| r.commit.clone()),
        releases,
        sources,
        catalogs: stack
            .catalog
            .iter()
            .map(|(chart, versions)| {
                (
                    chart.clone(),
                    Catalog {
                        versions: versions.clone(),
                    },
                )
            })
            .collect(),
        digest: plimsoll_syncer::journal::digest(digest_input.as_bytes()),
        rendered,
        _workdir: workdir,
    })
}

type Workloads = (Vec<plimsoll_syncer::state::DesiredStatefulSet>, Vec<String>);

/// `helm template`'s workloads cached on disk, for charts that are local
/// directories (an exported revision or the working tree): the key is the
/// helm executable (path, size, mtime), the chart's files, the release's
/// name, namespace and version, and the values. With 100 releases and
/// nothing changed, this is the difference between seconds and
/// milliseconds. `PLIMSOLL_NO_CACHE=1` turns it off.
struct TemplateCache {
    dir: PathBuf,
    /// Which helm: its resolved path, size and mtime.
    helm_id: String,
}

impl TemplateCache {
    /// `None` when turned off, without a cache directory, or when the helm
    /// executable cannot be identified.
    fn open(helm: &Path) -> Option<TemplateCache> {
        if std::env::var_os("PLIMSOLL_NO_CACHE").is_some() {
            return None;
        }
        let dir = std::env::var_os("XDG_CACHE_HOME")
            .map(PathBuf::from)
            .or_else(|| std::env::var_os("HOME").map(|h| PathBuf::from(h).join(".cache")))?
            .join("plimsoll/template");
        let resolved = std::process::Command::new("sh")
            .args(["-c", "command -v \"$1\"", "sh"])
            .arg(helm)
            .output()
            .ok()
            .map(|o| String::from_utf8_lossy(&o.stdout).trim().to_string())
            .filter(|p| !p.is_empty())?;
        let meta = std::fs::metadata(&resolved).ok()?;
        Some(TemplateCache {
            dir,
            helm_id: format!("{resolved}\0{}\0{:?}", meta.len(), meta.modified().ok()),
        })
    }

    fn workloads(
        &self,
        helm: &Path,
        chart: &str,
        chart_digest: &str,
        release: &plimsoll_renderer::stack::Release,
        values_file: &Path,
        values_text: &str,
    ) -> anyhow::Result<Workloads> {
        let key = plimsoll_syncer::journal::digest(
            format!(
                "v1\0{}\0{chart_digest}\0{}\0{}\0{}\0{values_text}",
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
        let w = chart_workloads(helm, chart, release, values_file)?;
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

/// Sha-256 over a chart directory's files (paths and contents, sorted).
fn chart_digest(dir: &Path) -> anyhow::Result<String> {
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
    Ok(plimsoll_syncer::journal::digest(&all))
}

/// The chart as helm takes it: a chart kept in the repository comes from
/// the same revision (exported into `dir`) or the working tree.
fn chart_reference(
    repo: &Path,
    revision: Option<&Revision>,
    chart: &str,
    dir: &Path,
) -> anyhow::Result<String> {
    Ok(match revision {
        Some(rev) if rev.is_dir(chart) => {
            let exported = dir.join("chart");
            rev.export_dir(chart, &exported)?;
            exported.display().to_string()
        }
        Some(_) => chart.to_string(),
        None => {
            let local = repo.join(chart);
            if local.exists() {
                local.canonicalize()?.display().to_string()
            } else {
                chart.to_string()
            }
        }
    })
}

/// Renders the chart with the release's values (`helm template`) to learn
/// its StatefulSets (with claim templates) and Deployments.
fn chart_workloads(
    helm: &Path,
    chart: &str,
    release: &plimsoll_renderer::stack::Release,
    values_file: &Path,
) -> anyhow::Result<Workloads> {
    let out = std::process::Command::new(helm)
        .args([
            "template",
            &release.name,
            chart,
            "--namespace",
            &release.namespace,
            "--version",
            &release.version,
            "-f",
        ])
        .arg(values_file)
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
    plimsoll_syncer::desired::workloads_from_manifests(&manifests)
        .with_context(|| format!("helm template {} printed invalid YAML", release.name))
}

/// The chart name of a reference (`repo/name`, a directory, a `.tgz`).
pub fn chart_name(reference: &str) -> String {
    let last = reference
        .trim_end_matches('/')
        .rsplit('/')
        .next()
        .unwrap_or(reference);
    let stem = last.strip_suffix(".tgz").unwrap_or(last);
    match stem.rfind('-') {
        Some(i) if stem[i + 1..].starts_with(|c: char| c.is_ascii_digit()) => stem[..i].to_string(),
        _ => stem.to_string(),
    }
}
