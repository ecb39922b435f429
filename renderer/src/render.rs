//! Rendering a stack: every release's layers merged into one values
//! document, with the lock (digests of inputs and outputs) and lints.
//!
//! Pure: files are read through the `read` function the caller passes, so
//! the same code renders from a working tree or from a git revision.

use sha2::{Digest, Sha256};

use crate::merge::{Candidate, MergeEvent, MergeMode};
use crate::stack::{substitute, Assignments, Release, Stack};
use crate::yq::{self, Layer, LayerError};
use plimsoll_yaml::{Node, Origin};

/// One input of a rendered release, after variable substitution.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct InputFile {
    pub path: String,
    pub sha256: String,
    pub mode: MergeMode,
}

/// What a lint found.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum LintKind {
    NullClobber,
    TypeChange,
    UnknownKey,
}

impl LintKind {
    pub fn name(self) -> &'static str {
        match self {
            LintKind::NullClobber => "null-clobber",
            LintKind::TypeChange => "type-change",
            LintKind::UnknownKey => "unknown-key",
        }
    }
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Lint {
    pub kind: LintKind,
    pub release: String,
    pub file: String,
    pub line: u32,
    pub column: u32,
    pub message: String,
}

impl std::fmt::Display for Lint {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "{}:{}:{}: [{}] {}: {}",
            self.file,
            self.line,
            self.column,
            self.kind.name(),
            self.release,
            self.message
        )
    }
}

/// One release's rendered values.
#[derive(Clone, Debug)]
pub struct RenderedRelease {
    pub release: Release,
    /// Where the output goes, relative to the repository root.
    pub output_path: String,
    pub result: Candidate,
    /// The rendered YAML, byte-identical to yq's output for the same files.
    pub text: String,
    pub inputs: Vec<InputFile>,
    pub lints: Vec<Lint>,
}

/// A release's values that cannot be converted to JSON within the
/// expansion budget, with the layer file where the expansion started.
#[derive(Clone, Debug, thiserror::Error)]
#[error("release {release}: {file}:{error}")]
pub struct ValuesJsonError {
    pub release: String,
    pub file: String,
    pub error: plimsoll_yaml::json::JsonError,
}

impl RenderedRelease {
    /// The rendered values as JSON (yq's typing), within the expansion
    /// budget ([`plimsoll_yaml::json`]).
    pub fn values_json(&self) -> Result<String, ValuesJsonError> {
        plimsoll_yaml::json::to_json(&self.result.node).map_err(|error| ValuesJsonError {
            release: self.release.name.clone(),
            file: self
                .inputs
                .get(error.layer() as usize)
                .map_or_else(|| "(merged)".to_string(), |i| i.path.clone()),
            error,
        })
    }
}

#[derive(Clone, Debug)]
pub struct Rendered {
    pub assignments: Assignments,
    pub releases: Vec<RenderedRelease>,
    /// Path of the lock file, relative to the repository root.
    pub lock_path: String,
    /// With a release manifest: the manifest and the release selected.
    pub platform: Option<RenderedPlatform>,
}

/// A stack's release manifest as rendered: the platform release selected
/// and which Helm release is which manifest chart.
#[derive(Clone, Debug)]
pub struct RenderedPlatform {
    pub manifest: crate::manifest::Manifest,
    pub manifest_sha256: String,
    pub release: String,
    /// Helm release name to manifest chart.
    pub charts: std::collections::BTreeMap<String, String>,
}

#[derive(Debug, thiserror::Error)]
pub enum RenderError {
    // The causes are shown in the message, not chained as sources: a
    // chain printed with `{:#}` would repeat them.
    #[error("plimsoll.yaml:{line}: release {release:?}: cannot read layer {path}: {error}")]
    MissingLayer {
        release: String,
        path: String,
        line: u32,
        error: std::io::Error,
    },
    #[error("release {release:?}: {error}")]
    Layer { release: String, error: LayerError },
    #[error("plimsoll.yaml:{line}: cannot read the release manifest {path}: {error}")]
    MissingManifest {
        path: String,
        line: u32,
        error: std::io::Error,
    },
    #[error(transparent)]
    Manifest(#[from] crate::manifest::ManifestError),
    /// The stack and its manifest disagree.
    #[error("plimsoll.yaml:{line}:{column}: {message}")]
    Platform {
        line: u32,
        column: u32,
        message: String,
    },
    #[error(
        "release {release:?}: the rendered values do not parse again ({error}); yq's merge \
         writes this too (for example an alias the merge placed before its anchor, or a tag \
         go-yaml prints after a comment), and Helm could not read it; nothing is written"
    )]
    Unparseable {
        release: String,
        error: plimsoll_yaml::SyntaxError,
    },
    /// Two outputs, or an output and an input, are one file.
    #[error("{first} and {second} are the same file ({path}); nothing is written")]
    OutputCollision {
        path: String,
        first: String,
        second: String,
    },
}

/// A repository-relative path in one spelling: `./a//b.yaml` is
/// `a/b.yaml`. `None` for a path that leaves the repository.
pub fn normalize(path: &str) -> Option<String> {
    let mut parts: Vec<&str> = Vec::new();
    for seg in path.split('/') {
        match seg {
            "" | "." => {}
            ".." => return None,
            s => parts.push(s),
        }
    }
    if path.starts_with('/') || parts.is_empty() {
        return None;
    }
    Some(parts.join("/"))
}

/// Every output is its own file: not another output (the lock file
/// included), not a layer, not the stack file, after normalisation and
/// variable substitution.
fn check_outputs(rendered: &Rendered) -> Result<(), RenderError> {
    let mut seen: std::collections::HashMap<String, String> = std::collections::HashMap::new();
    seen.insert(crate::STACK_FILE.to_string(), "the stack file".into());
    for r in &rendered.releases {
        for i in &r.inputs {
            if let Some(n) = normalize(&i.path) {
                // A layer shared by releases is one input, not a collision.
                seen.entry(n)
                    .or_insert_with(|| format!("layer {} of release {}", i.path, r.release.name));
            }
        }
    }
    let outputs = rendered
        .releases
        .iter()
        .map(|r| {
            (
                r.output_path.as_str(),
                format!("the output {} of release {}", r.output_path, r.release.name),
            )
        })
        .chain(std::iter::once((
            rendered.lock_path.as_str(),
            format!("the lock file {}", rendered.lock_path),
        )));
    for (path, what) in outputs {
        let Some(n) = normalize(path) else {
            return Err(RenderError::OutputCollision {
                path: path.to_string(),
                first: what,
                second: "a path outside the repository".into(),
            });
        };
        if let Some(first) = seen.get(&n) {
            return Err(RenderError::OutputCollision {
                path: n,
                first: first.clone(),
                second: what,
            });
        }
        seen.insert(n, what);
    }
    Ok(())
}

pub fn sha256_hex(bytes: &[u8]) -> String {
    let digest = Sha256::digest(bytes);
    let mut s = String::with_capacity(64);
    for b in digest {
        s.push_str(&format!("{b:02x}"));
    }
    s
}

/// Renders every release of `stack` with `vars`, reading layer files
/// (paths relative to the repository root) through `read`.
pub fn render(
    stack: &Stack,
    vars: &Assignments,
    read: &dyn Fn(&str) -> std::io::Result<Vec<u8>>,
) -> Result<Rendered, RenderError> {
    let platform = match &stack.platform {
        Some(p) => Some(render_platform(stack, p, vars, read)?),
        None => None,
    };
    let mut releases = Vec::new();
    let mut cache = yq::ParseCache::default();
    for release in &stack.releases {
        let mut rendered = render_release(stack, release, vars, read, &mut cache)?;
        if let (Some(chart), Some(p)) = (&release.manifest_chart, &platform) {
            // Checked by render_platform: the release and chart exist.
            rendered.release.version = p
                .manifest
                .release(&p.release)
                .and_then(|r| r.charts.get(chart))
                .cloned()
                .unwrap_or_default();
        }
        releases.push(rendered);
    }
    let rendered = Rendered {
        assignments: vars.clone(),
        releases,
        lock_path: join(&substitute(&stack.output, vars), "plimsoll.lock"),
        platform,
    };
    check_outputs(&rendered)?;
    Ok(rendered)
}

/// Reads the release manifest and checks the stack against it: every
/// value of the platform variable is a manifest release, every release
/// without `version:` a manifest chart.
fn render_platform(
    stack: &Stack,
    p: &crate::stack::PlatformDecl,
    vars: &Assignments,
    read: &dyn Fn(&str) -> std::io::Result<Vec<u8>>,
) -> Result<RenderedPlatform, RenderError> {
    let bytes = read(&p.manifest).map_err(|error| RenderError::MissingManifest {
        path: p.manifest.clone(),
        line: p.line,
        error,
    })?;
    let manifest = crate::manifest::Manifest::parse(&p.manifest, &bytes)?;
    let tags: Vec<&str> = manifest.releases.iter().map(|r| r.tag.as_str()).collect();
    if let Some(var) = stack.variables.iter().find(|v| v.name == p.variable) {
        if let Some(missing) = var.allowed.iter().find(|a| !tags.contains(&a.as_str())) {
            return Err(RenderError::Platform {
                line: p.line,
                column: p.column,
                message: format!(
                    "platform variable {} allows {missing}, which the manifest {} does not list (it lists: {})",
                    p.variable,
                    p.manifest,
                    tags.join(", ")
                ),
            });
        }
    }
    let release = vars.get(&p.variable).cloned().unwrap_or_default();
    let mut charts = std::collections::BTreeMap::new();
    for r in &stack.releases {
        let Some(chart) = &r.manifest_chart else {
            continue;
        };
        if !manifest.charts.contains(chart) {
            return Err(RenderError::Platform {
                line: r.line,
                column: r.column,
                message: format!(
                    "release {:?}: the manifest {} does not cover chart {chart} (it covers: {}; name its column with `manifestChart:`)",
                    r.name,
                    p.manifest,
                    manifest.charts.join(", ")
                ),
            });
        }
        charts.insert(r.name.clone(), chart.clone());
    }
    Ok(RenderedPlatform {
        manifest_sha256: sha256_hex(&bytes),
        manifest,
        release,
        charts,
    })
}

fn join(dir: &str, file: &str) -> String {
    if dir.is_empty() || dir == "." {
        file.to_string()
    } else {
        format!("{}/{}", dir.trim_end_matches('/'), file)
    }
}

/// Reads and substitutes a release's layers.
pub fn load_layers(
    release: &Release,
    vars: &Assignments,
    read: &dyn Fn(&str) -> std::io::Result<Vec<u8>>,
) -> Result<Vec<(String, Vec<u8>, MergeMode)>, RenderError> {
    release
        .layers
        .iter()
        .map(|spec| {
            let path = substitute(&spec.path, vars);
            let bytes = read(&path).map_err(|error| RenderError::MissingLayer {
                release: release.name.clone(),
                path: path.clone(),
                line: spec.line,
                error,
            })?;
            Ok((path, bytes, spec.mode))
        })
        .collect()
}

fn render_release(
    stack: &Stack,
    release: &Release,
    vars: &Assignments,
    read: &dyn Fn(&str) -> std::io::Result<Vec<u8>>,
    cache: &mut yq::ParseCache,
) -> Result<RenderedRelease, RenderError> {
    let files = load_layers(release, vars, read)?;
    let layers: Vec<Layer<'_>> = files
        .iter()
        .map(|(path, bytes, mode)| Layer {
            name: path,
            bytes,
            mode: *mode,
        })
        .collect();
    let mut events = Vec::new();
    let result = yq::merge_layers_cached(&layers, &mut events, cache).map_err(|error| {
        RenderError::Layer {
            release: release.name.clone(),
            error,
        }
    })?;
    let text = yq::print(&result);
    // Never hand Helm a values file it cannot read.
    if let Err(error) = plimsoll_yaml::parse_documents(text.as_bytes(), 0) {
        return Err(RenderError::Unparseable {
            release: release.name.clone(),
            error,
        });
    }
    let lints = events
        .iter()
        .map(|(idx, ev)| lint_from_event(&release.name, &files, *idx, ev))
        .collect();
    Ok(RenderedRelease {
        release: release.clone(),
        output_path: join(
            &substitute(&stack.output, vars),
            &substitute(&release.output, vars),
        ),
        result,
        text,
        inputs: files
            .iter()
            .map(|(path, bytes, mode)| InputFile {
                path: path.clone(),
                sha256: sha256_hex(bytes),
                mode: *mode,
            })
            .collect(),
        lints,
    })
}

fn place(files: &[(String, Vec<u8>, MergeMode)], o: Origin) -> String {
    match files.get(o.layer as usize) {
        Some((path, _, _)) => format!("{path}:{}", o.line),
        None => "an earlier layer".to_string(),
    }
}

fn lint_from_event(
    release: &str,
    files: &[(String, Vec<u8>, MergeMode)],
    idx: usize,
    ev: &MergeEvent,
) -> Lint {
    let file = files.get(idx).map(|f| f.0.clone()).unwrap_or_default();
    match ev {
        MergeEvent::NullClobber {
            path,
            at,
            erased_keys,
            erased_origin,
        } => Lint {
            kind: LintKind::NullClobber,
            release: release.to_string(),
            file,
            line: at.line,
            column: at.column,
            message: format!(
                "`{}` is null here and erases what earlier layers set under it ({}): {}",
                format_path(path),
                place(files, *erased_origin),
                erased_keys.join(", ")
            ),
        },
        MergeEvent::TypeChange {
            path,
            at,
            from,
            to,
            from_origin,
        } => Lint {
            kind: LintKind::TypeChange,
            release: release.to_string(),
            file,
            line: at.line,
            column: at.column,
            message: format!(
                "`{}` changes from a {from} ({}) to a {to}",
                format_path(path),
                place(files, *from_origin)
            ),
        },
    }
}

/// Formats a key path as `a.b."c.d".[0]`.
pub fn format_path(path: &[String]) -> String {
    path.iter()
        .map(|p| {
            if p.contains('.') || p.is_empty() {
                format!("{p:?}")
            } else {
                p.clone()
            }
        })
        .collect::<Vec<_>>()
        .join(".")
}

/// The lock file: variable values and the sha256 of every input and output.
pub fn lock_text(rendered: &Rendered) -> String {
    let mut out =
        String::from("# Written by `plimsoll render`; `plimsoll render --check` verifies it.\n");
    out.push_str("version: 1\nvariables:\n");
    for (k, v) in &rendered.assignments {
        out.push_str(&format!("  {}: {}\n", yaml_str(k), yaml_str(v)));
    }
    if let Some(p) = &rendered.platform {
        out.push_str(&format!(
            "platform:\n  release: {}\n  manifest: {}\n  sha256: {}\n",
            yaml_str(&p.release),
            yaml_str(&p.manifest.file),
            p.manifest_sha256
        ));
    }
    out.push_str("releases:\n");
    for r in &rendered.releases {
        out.push_str(&format!("  - name: {}\n", yaml_str(&r.release.name)));
        out.push_str(&format!("    chart: {}\n", yaml_str(&r.release.chart)));
        out.push_str(&format!("    version: {}\n", yaml_str(&r.release.version)));
        out.push_str(&format!("    output: {}\n", yaml_str(&r.output_path)));
        out.push_str(&format!("    sha256: {}\n", sha256_hex(r.text.as_bytes())));
        out.push_str("    inputs:\n");
        for i in &r.inputs {
            out.push_str(&format!(
                "      - path: {}\n        sha256: {}\n",
                yaml_str(&i.path),
                i.sha256
            ));
        }
    }
    out
}

/// A string as a YAML scalar, quoted when a plain scalar would change it.
fn yaml_str(s: &str) -> String {
    let plain_ok = !s.is_empty()
        && plimsoll_yaml::resolve::resolve(s) == "!!str"
        && s.chars()
            .all(|c| c.is_ascii_alphanumeric() || "-_./@+".contains(c))
        && !s.starts_with(['-', '.', '@']);
    if plain_ok {
        s.to_string()
    } else {
        format!("{s:?}")
    }
}

/// The value at `path` (keys, or `[n]` for sequence indexes).
pub fn lookup<'n>(root: &'n Node, path: &[String]) -> Option<&'n Node> {
    let mut n = root.unwrap_document();
    for p in path {
        n = match n.kind {
            plimsoll_yaml::Kind::Mapping => n.get(p)?,
            plimsoll_yaml::Kind::Sequence => {
                let idx: usize = p
                    .trim_start_matches('[')
                    .trim_end_matches(']')
                    .parse()
                    .ok()?;
                n.content.get(idx)?
            }
            _ => return None,
        };
    }
    Some(n)
}

/// Splits `a.b."c.d"[0]` into keys.
pub fn parse_path(s: &str) -> Vec<String> {
    let mut out = Vec::new();
    let mut cur = String::new();
    let mut chars = s.chars().peekable();
    let mut quoted = false;
    while let Some(c) = chars.next() {
        match c {
            '"' => quoted = !quoted,
            '.' if !quoted => {
                if !cur.is_empty() {
                    out.push(std::mem::take(&mut cur));
                }
            }
            '[' if !quoted => {
                if !cur.is_empty() {
                    out.push(std::mem::take(&mut cur));
                }
                let mut idx = String::new();
                for d in chars.by_ref() {
                    if d == ']' {
                        break;
                    }
                    idx.push(d);
                }
                out.push(idx);
            }
            _ => cur.push(c),
        }
    }
    if !cur.is_empty() {
        out.push(cur);
    }
    out
}

/// One layer's effect on a key path.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ExplainStep {
    pub file: String,
    pub line: u32,
    /// The value after this layer, as YAML; `None` when the path is absent.
    pub value: Option<String>,
}

/// The history of a key path through a release's layers: every layer that
/// changed it, in order. The last step is the final value.
pub fn explain(
    release: &Release,
    vars: &Assignments,
    read: &dyn Fn(&str) -> std::io::Result<Vec<u8>>,
    path: &[String],
) -> Result<Vec<ExplainStep>, RenderError> {
    let files = load_layers(release, vars, read)?;
    let mut steps: Vec<ExplainStep> = Vec::new();
    let mut previous: Option<String> = None;
    let mut cache = yq::ParseCache::default();
    for i in 0..files.len() {
        // Merging a prefix of the layers shows the value after layer i.
        let layers: Vec<Layer<'_>> = files[..=i]
            .iter()
            .map(|(p, b, m)| Layer {
                name: p,
                bytes: b,
                mode: *m,
            })
            .collect();
        let mut events = Vec::new();
        let acc = yq::merge_layers_cached(&layers, &mut events, &mut cache).map_err(|error| {
            RenderError::Layer {
                release: release.name.clone(),
                error,
            }
        })?;
        let node = lookup(&acc.node, path);
        let value = node.map(|n| plimsoll_yaml::to_string(n, 2).trim_end().to_string());
        if value != previous {
            let line = match node {
                Some(n) if n.origin.layer as usize == i => n.origin.line,
                _ => 0,
            };
            steps.push(ExplainStep {
                file: files[i].0.clone(),
                line,
                value: value.clone(),
            });
            previous = value;
        }
    }
    Ok(steps)
}
