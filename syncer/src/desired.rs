//! The desired state of a source (a git revision or the working tree):
//! rendered values, the chart rendered with them through the helm
//! executable (`helm template`), declared patches, what `helm upgrade`
//! will need, and a digest of all of it. Shared by `plan`, `sync` and the
//! daemon.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use anyhow::Context;
use plimsoll_planner::health::{HealthRuleSpec, HealthRules};
use plimsoll_planner::journal::digest;
use plimsoll_planner::phased::{PhasedList, PhasedLists, ResourceTemplate};
use plimsoll_planner::plan::{values_diff, AttributedChange, ValuesSinceBase};
use plimsoll_planner::redact::{Redactor, Scrubber};
use plimsoll_planner::state::{DesiredPatch, DesiredRelease, DesiredResource, ResourceRef};
use plimsoll_planner::version::Catalog;
use plimsoll_renderer::render::{self, Rendered, RenderedRelease};
use rayon::prelude::*;

use crate::charts::{ChartStore, RemoteChart};
use crate::execute::ReleaseSource;
use crate::git::Revision;
use crate::helm::{self, TemplateCache, Workloads};
use crate::source::StackSource;
use plimsoll_renderer::stack::ChartSource;

pub struct DesiredState {
    pub stack_name: String,
    /// The commit, when read from git.
    pub revision: Option<String>,
    pub releases: Vec<DesiredRelease>,
    pub sources: BTreeMap<String, ReleaseSource>,
    pub catalogs: BTreeMap<String, Catalog>,
    /// Which values are secret (built-in rule and the stack's `redact:`).
    pub redactor: Redactor,
    /// The desired state's secret strings, removed from free text.
    pub scrubber: Scrubber,
    /// The stack's health rules, compiled, and the built-ins.
    pub health: std::sync::Arc<HealthRules>,
    /// List fields moved one element per edit (built-ins and the stack's
    /// `phasedLists:`).
    pub phased_lists: PhasedLists,
    /// The release manifest and the platform release selected.
    pub platform: Option<plimsoll_planner::platform::Platform>,
    /// The stack's `operatorVolumes:` (claims operators keep).
    pub operator_volumes: Vec<plimsoll_planner::plan::OperatorVolumeRule>,
    /// The stack's `storagePools:`, sizes in bytes.
    pub storage_pools: Vec<plimsoll_planner::capacity::StoragePool>,
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
        // Patched resources, and the versioned custom resources the charts
        // render (their live spec tells a version change mixed with other
        // edits).
        let mut t: Vec<ResourceRef> = self
            .releases
            .iter()
            .flat_map(|r| {
                r.patches.iter().map(|p| p.target.clone()).chain(
                    r.custom_resources
                        .iter()
                        .filter(|c| {
                            plimsoll_planner::health::version_field(
                                &c.target.api_version,
                                &c.target.kind,
                            )
                            .is_some()
                        })
                        .map(|c| c.target.clone()),
                )
            })
            .collect();
        t.sort();
        t.dedup();
        t
    }

    /// The namespaces of the desired releases, sorted.
    pub fn namespaces(&self) -> Vec<String> {
        crate::source::namespaces_of(self.releases.iter().map(|r| &r.namespace))
    }
}

/// A release's rendered values as JSON (yq's typing of scalars).
pub fn values_of(r: &RenderedRelease) -> anyhow::Result<serde_json::Value> {
    let text = r.values_json()?;
    Ok(serde_json::from_str(&text)?)
}

/// How many `helm template` processes run at once: they wait on a child
/// process, so more than the cores, but bounded.
fn template_workers() -> usize {
    std::thread::available_parallelism().map_or(2, |n| n.get().clamp(2, 8))
}

/// A release's values file and chart, ready for helm.
struct Prepared {
    chart: String,
    values_file: PathBuf,
    /// Digest of a chart kept in the repository (a directory or a `.tgz`)
    /// or pulled from a repository or registry.
    chart_digest: Option<String>,
    pulled: Option<plimsoll_planner::state::ChartPull>,
}

/// The context of an error in the repository's content (the stack file,
/// a layer, a budget exceeded): the same revision fails the same way every
/// time, so the daemon does not retry it until the branch moves.
#[derive(Clone, Copy, Debug)]
pub struct UnusableContent;

impl std::fmt::Display for UnusableContent {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("the repository's content cannot be used")
    }
}

/// Whether `e` is about the repository's content ([`UnusableContent`]).
pub fn is_unusable_content(e: &anyhow::Error) -> bool {
    e.downcast_ref::<UnusableContent>().is_some()
}

/// Reads and renders the desired state: of `rev` from the object
/// database, or of the working tree.
pub fn load(source: &StackSource, rev: Option<&str>, helm: &Path) -> anyhow::Result<DesiredState> {
    let revision = rev.map(|r| Revision::open(&source.repo, r)).transpose()?;
    let (stack, rendered) = match &revision {
        Some(rv) => source.render_revision(rv),
        None => source.render_working_tree(),
    }
    .map_err(|e| e.context(UnusableContent))?;
    // Values as JSON first, within the expansion budget: an alias bomb is
    // refused here, before helm reads the file.
    let mut values = rendered
        .releases
        .iter()
        .map(values_of)
        .collect::<anyhow::Result<Vec<_>>>()
        .map_err(|e| e.context(UnusableContent))?
        .into_iter();
    let workdir = tempfile::Builder::new()
        .prefix("plimsoll-desired-")
        .tempdir()
        .context("cannot create a temporary directory")?;
    // Values files and chart references first (git2 objects stay on this
    // thread), then `helm template` for every release in parallel: it is
    // the slow part with many releases.
    let mut prepared = Vec::new();
    let store = ChartStore::open(helm, source.credentials.clone(), workdir.path());
    for r in &rendered.releases {
        let dir = workdir.path().join(&r.release.name);
        std::fs::create_dir_all(&dir)?;
        let values_file = dir.join("values.yaml");
        std::fs::write(&values_file, &r.text)?;
        let chart_source = stack.chart_source(&r.release.chart);
        let remote = match &chart_source {
            ChartSource::Path(_) => None,
            &ChartSource::Repository { repository, chart } => Some((
                RemoteChart::Repository { repository, chart },
                Some(repository),
            )),
            &ChartSource::Oci {
                ref reference,
                repository,
            } => Some((
                RemoteChart::Oci {
                    reference: reference.as_str(),
                    repository,
                },
                repository,
            )),
        };
        if let Some((remote, repository)) = remote {
            // Pulled once per (source, version) and kept by digest: the
            // archive planned is the archive applied.
            let ca = match repository.and_then(|x| x.ca_file.as_deref()) {
                Some(path) => Some(
                    match &revision {
                        Some(rv) => rv.read(path),
                        None => crate::source::repo_reader(&source.repo)(path),
                    }
                    .with_context(|| {
                        format!(
                            "caFile {path} of repository {:?}",
                            repository.map(|x| x.name.as_str()).unwrap_or_default()
                        )
                    })
                    .map_err(|e| e.context(UnusableContent))?,
                ),
                None => None,
            };
            let pulled = store
                .fetch(&remote, &r.release.version, ca.as_deref())
                .with_context(|| format!("release {}", r.release.name))?;
            prepared.push(Prepared {
                chart: pulled.path.display().to_string(),
                values_file,
                chart_digest: Some(pulled.digest.clone()),
                pulled: Some(plimsoll_planner::state::ChartPull {
                    source: remote.source(),
                    digest: pulled.digest,
                }),
            });
            continue;
        }
        let (chart, chart_digest) =
            local_chart(&source.repo, revision.as_ref(), &r.release.chart, &dir)?;
        prepared.push(Prepared {
            chart,
            values_file,
            chart_digest,
            pulled: None,
        });
    }
    let cache = TemplateCache::open(helm);
    let pool = rayon::ThreadPoolBuilder::new()
        .num_threads(template_workers().min(prepared.len().max(1)))
        .stack_size(plimsoll_yaml::STACK_BYTES)
        .build()
        .context("cannot start the helm template workers")?;
    let workloads: Vec<anyhow::Result<Workloads>> = pool.install(|| {
        prepared
            .par_iter()
            .zip(rendered.releases.par_iter())
            .map(|(p, r)| match (&cache, &p.chart_digest) {
                (Some(cache), Some(digest)) => {
                    cache.workloads(helm, &p.chart, digest, &r.release, &p.values_file, &r.text)
                }
                _ => helm::template_workloads(helm, &p.chart, &r.release, &p.values_file),
            })
            .collect()
    });

    let mut releases = Vec::new();
    let mut sources = BTreeMap::new();
    let mut digest_input = String::new();
    for ((r, p), w) in rendered.releases.iter().zip(prepared).zip(workloads) {
        let name = &r.release.name;
        let values = values.next().unwrap_or_default();
        let Workloads {
            statefulsets,
            deployments,
            daemonsets,
            custom_resources,
            manifest,
        } = w?;
        // A rendered resource without a namespace is in the release's.
        let custom_resources: Vec<DesiredResource> = custom_resources
            .into_iter()
            .map(|mut c| {
                if c.target.namespace.is_empty() {
                    c.target.namespace = r.release.namespace.clone();
                }
                c
            })
            .collect();
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
        digest_input.push_str(p.chart_digest.as_deref().unwrap_or(""));
        sources.insert(
            name.clone(),
            ReleaseSource {
                chart: p.chart,
                version: r.release.version.clone(),
                values_file: p.values_file,
                values: values.clone(),
                statefulsets: statefulsets.iter().map(|s| s.name.clone()).collect(),
            },
        );
        releases.push(DesiredRelease {
            name: name.clone(),
            namespace: r.release.namespace.clone(),
            stage: r.release.stage.clone(),
            chart: helm::chart_name(&r.release.chart),
            version: r.release.version.clone(),
            values,
            statefulsets,
            deployments,
            daemonsets,
            patches,
            custom_resources,
            ready_timeout: r.release.ready_timeout,
            requires: r
                .release
                .requires
                .iter()
                .map(|t| ResourceRef {
                    api_version: t.api_version.clone(),
                    kind: t.kind.clone(),
                    namespace: t.namespace.clone(),
                    name: t.name.clone(),
                })
                .collect(),
            manifest,
            pulled: p.pulled.clone(),
        });
    }
    let redactor = Redactor::with_patterns(&stack.redact);
    let health = std::sync::Arc::new(
        health_rules(&stack, &source.stack_file).map_err(|e| e.context(UnusableContent))?,
    );
    let scrubber = scrubber_for(&redactor, &releases);
    Ok(DesiredState {
        stack_name: stack.name.clone(),
        redactor,
        scrubber,
        health,
        phased_lists: phased_lists(&stack),
        platform: rendered
            .platform
            .as_ref()
            .map(|p| plimsoll_planner::platform::Platform {
                manifest: p.manifest.file.clone(),
                releases: p
                    .manifest
                    .releases
                    .iter()
                    .map(|r| plimsoll_planner::platform::PlatformRelease {
                        tag: r.tag.clone(),
                        charts: r.charts.clone(),
                    })
                    .collect(),
                target: p.release.clone(),
                charts: p.charts.clone(),
            }),
        operator_volumes: stack
            .operator_volumes
            .iter()
            .map(|v| plimsoll_planner::plan::OperatorVolumeRule {
                group: v.api_version.split('/').next().unwrap_or("").to_string(),
                kind: v.kind.clone(),
                each: v.each.clone(),
                item_name: v.item_name.clone(),
                replicas: v.replicas.clone(),
                default_replicas: v.default_replicas,
                size: v.size.clone(),
                storage_class: v.storage_class.clone(),
                pvc: v.pvc.clone(),
                enabled_by: v.enabled_by.clone(),
            })
            .collect(),
        storage_pools: stack
            .storage_pools
            .iter()
            .map(|p| plimsoll_planner::capacity::StoragePool {
                storage_class: p.storage_class.clone(),
                replicated: p.replicated,
                replicas: p.replicas,
                free: p
                    .free
                    .iter()
                    .map(|(n, q)| {
                        let bytes = plimsoll_planner::state::quantity_bytes(q).unwrap_or(0);
                        (n.clone(), bytes.min(u64::MAX as u128) as u64)
                    })
                    .collect(),
            })
            .collect(),
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
        digest: digest(digest_input.as_bytes()),
        rendered,
        _workdir: workdir,
    })
}

/// The built-in phased lists and the stack file's.
fn phased_lists(stack: &plimsoll_renderer::stack::Stack) -> PhasedLists {
    let template = |t: &plimsoll_renderer::stack::ResourceTemplateDecl| ResourceTemplate {
        api_version: t.api_version.clone(),
        kind: t.kind.clone(),
        name: t.name.clone(),
    };
    PhasedLists::with(
        stack
            .phased_lists
            .iter()
            .map(|p| PhasedList {
                group: p.api_version.split('/').next().unwrap_or("").to_string(),
                kind: p.kind.clone(),
                path: p.path.clone(),
                key: p.key.clone(),
                element: p.element.as_ref().map(template),
                before_remove: p.before_remove.iter().map(template).collect(),
            })
            .collect(),
    )
}

impl DesiredState {
    /// What the planner is told besides the two states.
    pub fn plan_options(&self, strict: bool) -> plimsoll_planner::plan::PlanOptions {
        plimsoll_planner::plan::PlanOptions {
            strict,
            catalogs: self.catalogs.clone(),
            redactor: self.redactor.clone(),
            phased_lists: self.phased_lists.clone(),
            operator_volumes: self.operator_volumes.clone(),
            platform: self.platform.clone(),
            manifest_context: None,
            storage_pools: self.storage_pools.clone(),
        }
    }
}

/// The stack file's health rules, compiled (a rule that does not compile
/// is an error at its position).
fn health_rules(
    stack: &plimsoll_renderer::stack::Stack,
    stack_file: &str,
) -> anyhow::Result<HealthRules> {
    let specs: Vec<HealthRuleSpec> = stack
        .health
        .iter()
        .map(|h| HealthRuleSpec {
            api_version: h.api_version.clone(),
            kind: h.kind.clone(),
            current: h.current.clone(),
            failed: h.failed.clone(),
            at: format!("{stack_file}:{}:{}", h.line, h.column),
        })
        .collect();
    Ok(HealthRules::compile(&specs)?)
}

/// Every secret string of the releases' values and declared patches.
fn scrubber_for(redactor: &Redactor, releases: &[DesiredRelease]) -> Scrubber {
    let mut secrets = Vec::new();
    for r in releases {
        redactor.secret_strings(&r.values, false, &mut secrets);
        for p in &r.patches {
            let masked = redactor.redact_operations(&p.operations, p.target.is_secret());
            // The values the masking changed are the secret ones.
            if let (Some(ops), Some(masked)) = (p.operations.as_array(), masked.as_array()) {
                for (op, m) in ops.iter().zip(masked) {
                    if op.get("value") != m.get("value") {
                        if let Some(v) = op.get("value") {
                            redactor.secret_strings(v, true, &mut secrets);
                        }
                    }
                }
            }
        }
    }
    Scrubber::new(secrets)
}

/// The chart as helm takes it, and its digest when it is kept in the
/// repository: a directory or a packaged `.tgz` of the same revision
/// (exported into `dir`) or of the working tree. Anything else is a
/// `repo/name` of helm's own configuration, passed on as it is.
fn local_chart(
    repo: &Path,
    revision: Option<&Revision>,
    chart: &str,
    dir: &Path,
) -> anyhow::Result<(String, Option<String>)> {
    let archive_digest = |bytes: &[u8]| format!("sha256:{}", digest(bytes));
    Ok(match revision {
        Some(rev) if rev.is_dir(chart) => {
            let exported = dir.join("chart");
            rev.export_dir(chart, &exported)?;
            // Hashed once, for the desired digest and the template cache.
            let d = helm::chart_digest(&exported)?;
            (exported.display().to_string(), Some(d))
        }
        Some(rev) if chart.ends_with(".tgz") => match rev.read(chart) {
            Ok(bytes) => {
                let exported = dir.join("chart.tgz");
                std::fs::write(&exported, &bytes)?;
                (exported.display().to_string(), Some(archive_digest(&bytes)))
            }
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => (chart.to_string(), None),
            Err(e) => return Err(anyhow::Error::new(e).context(UnusableContent)),
        },
        Some(_) => (chart.to_string(), None),
        None => {
            let local = repo.join(chart);
            if local.is_dir() {
                let path = local.canonicalize()?;
                let d = helm::chart_digest(&path)?;
                (path.display().to_string(), Some(d))
            } else if local.is_file() {
                let path = crate::source::repo_reader(repo)(chart)
                    .map(|bytes| archive_digest(&bytes))
                    .map_err(|e| anyhow::Error::new(e).context(UnusableContent))?;
                (local.canonicalize()?.display().to_string(), Some(path))
            } else {
                (chart.to_string(), None)
            }
        }
    })
}

/// Rendered values changes since `base`, each attributed to the layer
/// (file:line) the new value comes from. The current side's values are
/// the desired state's (converted once).
pub fn values_since_base(
    current: &DesiredState,
    base: &Rendered,
    base_name: &str,
) -> anyhow::Result<Vec<ValuesSinceBase>> {
    let mut out = Vec::new();
    for (r, d) in current.rendered.releases.iter().zip(&current.releases) {
        let before = match base
            .releases
            .iter()
            .find(|b| b.release.name == r.release.name)
        {
            Some(b) => values_of(b)?,
            None => serde_json::Value::Object(Default::default()),
        };
        let changes: Vec<_> = values_diff(&current.redactor, &before, &d.values)
            .into_iter()
            .map(|change| {
                let layer = render::lookup(&r.result.node, &change.keys)
                    .filter(|_| change.to.is_some())
                    .and_then(|n| {
                        r.inputs
                            .get(n.origin.layer as usize)
                            .map(|i| format!("{}:{}", i.path, n.origin.line))
                    });
                AttributedChange { change, layer }
            })
            .collect();
        if !changes.is_empty() {
            out.push(ValuesSinceBase {
                release: r.release.name.clone(),
                base: base_name.to_string(),
                changes,
            });
        }
    }
    Ok(out)
}
