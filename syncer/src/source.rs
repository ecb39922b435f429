//! Where the desired state's files come from: a deployment repository's
//! working tree or one of its git revisions, and the stack file
//! (`plimsoll.yaml`) read from there with the variables set for this run.

use std::path::{Path, PathBuf};

use anyhow::Context;
use plimsoll_renderer::keys;
use plimsoll_renderer::render::{self, Rendered};
use plimsoll_renderer::stack::{self, Assignments, Stack};

use crate::git::Revision;

/// The stack file's name inside a repository.
pub use plimsoll_renderer::STACK_FILE;

/// A deployment repository and the stack variables set for it.
#[derive(Clone, Debug)]
pub struct StackSource {
    pub repo: PathBuf,
    /// The stack file, relative to the repository (default
    /// [`STACK_FILE`]; `stacks/site-a/plimsoll.yaml` for one of several).
    /// Paths inside it stay relative to the repository's root, so stacks
    /// can share layers.
    pub stack_file: String,
    /// `--set VAR=VALUE` assignments, in order.
    pub set: Vec<(String, String)>,
    /// Where chart repository credentials are looked up.
    pub credentials: crate::charts::CredentialStore,
}

impl StackSource {
    pub fn new(repo: impl Into<PathBuf>) -> StackSource {
        StackSource {
            repo: repo.into(),
            stack_file: STACK_FILE.to_string(),
            set: Vec::new(),
            credentials: crate::charts::CredentialStore::with_dir(None),
        }
    }

    /// The stack file of the working tree.
    pub fn load_stack(&self) -> anyhow::Result<(Stack, Assignments)> {
        let read = repo_reader(&self.repo);
        let path = self.repo.join(&self.stack_file);
        let bytes =
            read(&self.stack_file).with_context(|| format!("cannot read {}", path.display()))?;
        self.stack_from(&path.display().to_string(), &bytes)
    }

    /// A stack file's bytes parsed, with this source's assignments applied.
    pub fn stack_from(&self, name: &str, bytes: &[u8]) -> anyhow::Result<(Stack, Assignments)> {
        let stack = stack::parse(name, bytes)?;
        let vars = stack.assignments(&self.set)?;
        Ok((stack, vars))
    }

    /// Renders the working tree.
    pub fn render_working_tree(&self) -> anyhow::Result<(Stack, Rendered)> {
        let (stack, vars) = self.load_stack()?;
        let read = repo_reader(&self.repo);
        let rendered = render::render(&stack, &vars, &read)?;
        Ok((stack, rendered))
    }

    /// Renders the stack as it is at a git revision.
    pub fn render_revision(&self, rv: &Revision) -> anyhow::Result<(Stack, Rendered)> {
        let bytes = rv
            .read(&self.stack_file)
            .with_context(|| format!("{} at {}", self.stack_file, rv.commit))?;
        let name = format!("{}@{}", self.stack_file, &rv.commit[..12]);
        let (stack, vars) = self.stack_from(&name, &bytes)?;
        let read = |p: &str| rv.read(p);
        let rendered = render::render(&stack, &vars, &read)?;
        Ok((stack, rendered))
    }

    /// The resources the working tree's releases declare patches for.
    pub fn patch_targets(&self) -> anyhow::Result<Vec<plimsoll_planner::state::ResourceRef>> {
        let (stack, _) = self.load_stack()?;
        Ok(stack
            .releases
            .iter()
            .flat_map(|r| r.patches.iter())
            .map(|p| plimsoll_planner::state::ResourceRef {
                api_version: p.api_version.clone(),
                kind: p.kind.clone(),
                namespace: p.namespace.clone(),
                name: p.name.clone(),
            })
            .collect())
    }

    /// The namespaces of the working tree's releases, sorted.
    pub fn release_namespaces(&self) -> anyhow::Result<Vec<String>> {
        let (stack, _) = self.load_stack()?;
        Ok(namespaces_of(stack.releases.iter().map(|r| &r.namespace)))
    }
}

/// Distinct namespaces, sorted.
pub fn namespaces_of<'a>(names: impl Iterator<Item = &'a String>) -> Vec<String> {
    let mut ns: Vec<String> = names.cloned().collect();
    ns.sort();
    ns.dedup();
    ns
}

/// Reads a file that is input (a layer, a stack file), bounded: only
/// regular files (a FIFO would block, a device never end), and at most one
/// byte more than the YAML layer accepts, so that an oversized file is
/// refused by the parser with its usual message instead of being read
/// whole (`/dev/zero`, a multi-gigabyte file).
pub fn read_input(path: &Path) -> std::io::Result<Vec<u8>> {
    use std::io::Read;
    let meta = std::fs::metadata(path)?;
    if !meta.is_file() {
        return Err(std::io::Error::new(
            std::io::ErrorKind::InvalidInput,
            format!(
                "{} is not a regular file (a directory, FIFO or device is never read)",
                path.display()
            ),
        ));
    }
    let limit = plimsoll_yaml::MAX_INPUT_BYTES as u64 + 1;
    let mut out = Vec::with_capacity(meta.len().min(limit) as usize);
    std::fs::File::open(path)?
        .take(limit)
        .read_to_end(&mut out)?;
    Ok(out)
}

/// Reads files of the repository, refusing paths that leave it.
pub fn repo_reader(repo: &Path) -> impl Fn(&str) -> std::io::Result<Vec<u8>> + '_ {
    move |rel: &str| {
        let path = repo.join(rel);
        let canon = path.canonicalize()?;
        let root = repo.canonicalize()?;
        if !canon.starts_with(&root) {
            return Err(std::io::Error::new(
                std::io::ErrorKind::PermissionDenied,
                format!("{rel} resolves outside the repository"),
            ));
        }
        read_input(&canon)
    }
}

/// The default values of a chart available locally (a directory or a
/// packaged `.tgz`, relative to the repository), or `None`.
pub fn chart_defaults(repo: &Path, chart: &str) -> anyhow::Result<Option<plimsoll_yaml::Node>> {
    let path = repo.join(chart);
    let files = if path.is_dir() {
        chart_dir(&path)?
    } else if path.is_file() && chart.ends_with(".tgz") {
        let bytes =
            std::fs::read(&path).with_context(|| format!("cannot read {}", path.display()))?;
        keys::chart_from_tgz(&bytes).with_context(|| path.display().to_string())?
    } else {
        return Ok(None);
    };
    Ok(Some(
        keys::defaults(&files).with_context(|| path.display().to_string())?,
    ))
}

fn chart_dir(dir: &Path) -> anyhow::Result<keys::ChartFiles> {
    let mut files = keys::ChartFiles::default();
    let values = dir.join("values.yaml");
    if values.is_file() {
        files.values = Some(std::fs::read(&values)?);
    }
    let charts = dir.join("charts");
    if charts.is_dir() {
        let mut entries: Vec<_> = std::fs::read_dir(&charts)?.collect::<Result<_, _>>()?;
        entries.sort_by_key(|e| e.file_name());
        for e in entries {
            let p = e.path();
            let name = e.file_name().to_string_lossy().into_owned();
            if p.is_dir() {
                files.subcharts.push((name, chart_dir(&p)?));
            } else if let Some(stem) = name.strip_suffix(".tgz") {
                let sub = keys::chart_from_tgz(&std::fs::read(&p)?)?;
                let stem = match stem.rfind('-') {
                    Some(i) if stem[i + 1..].starts_with(|c: char| c.is_ascii_digit()) => {
                        &stem[..i]
                    }
                    _ => stem,
                };
                files.subcharts.push((stem.to_string(), sub));
            }
        }
    }
    Ok(files)
}
