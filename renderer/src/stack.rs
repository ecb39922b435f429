//! The stack file (`plimsoll.yaml`): variables, stages, releases and their
//! ordered layers.
//!
//! ```yaml
//! variables:
//!   segment: { values: [m, l, xl], default: m }
//! output: rendered
//! stages: [data, application]          # or entries with `after: [...]`
//! releases:
//!   - name: thingpark-data
//!     chart: actility/thingpark-data   # or a local directory / .tgz
//!     version: 2.2.2
//!     namespace: thingpark
//!     stage: data
//!     output: thingpark-data.yaml      # default: NAME.yaml
//!     layers:
//!       - profiles/${segment}.yaml
//!       - { path: site/data.yaml, mode: append }
//!     patches:                         # operator resources patched before the upgrade
//!       - apiVersion: psmdb.percona.com/v1
//!         kind: PerconaServerMongoDB
//!         name: mongo                  # namespace: the release's unless given
//!         patch:                       # RFC 6902 operations
//!           - { op: replace, path: /spec/enableVolumeExpansion, value: true }
//! catalog:                             # known versions: allowed upgrade paths
//!   thingpark-data: [2.2.1, 2.2.2, 3.0.0]
//! redact: ["*_dsn", licence]            # more secret keys (case-insensitive globs)
//! repositories:                        # where `NAME/chart` references come from
//!   - name: actility
//!     url: https://charts.example.com/stable   # or oci://registry.example.com/charts
//!     caFile: certs/charts-ca.pem      # optional: a CA of this repository
//!     credentials: { env: PLIMSOLL_ACTILITY }  # or { file: NAME } or { secret: NAME }
//! health:                              # CEL health rules per group/kind (Flux's healthCheckExprs)
//!   - apiVersion: example.com/v1
//!     kind: Widget
//!     current: status.phase == 'Ready' && status.version == desired.spec.version
//!     failed: status.phase == 'Failed'
//! ```

use std::collections::{BTreeMap, HashMap};

use crate::merge::MergeMode;
use plimsoll_yaml::{self as yaml, Kind, Node};

/// A stack file that cannot be used, with where the problem is.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[error("{file}:{line}:{column}: {message}")]
pub struct StackError {
    pub file: String,
    pub line: u32,
    pub column: u32,
    pub message: String,
}

/// A variable and the values it may take.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Variable {
    pub name: String,
    pub allowed: Vec<String>,
    pub default: Option<String>,
}

/// One input file of a release, before variables are substituted.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct LayerSpec {
    pub path: String,
    pub mode: MergeMode,
    pub line: u32,
}

/// A Helm release the stack renders values for.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Release {
    pub name: String,
    pub chart: String,
    pub version: String,
    pub namespace: String,
    pub stage: String,
    pub output: String,
    pub layers: Vec<LayerSpec>,
    /// Operator resources patched before the release's StatefulSets are
    /// re-created (plan step 3).
    pub patches: Vec<ResourcePatch>,
    /// How long the waits of this release may take (seconds); the sync's
    /// `--ready-timeout` otherwise.
    pub ready_timeout: Option<u64>,
    /// Resources that must be current before the release's first step.
    pub requires: Vec<ResourceTarget>,
    /// With a release manifest and no `version:`: the manifest's chart
    /// (column) whose version this release takes (`manifestChart:`, else
    /// the chart's name). `version` is empty until rendered.
    pub manifest_chart: Option<String>,
    pub line: u32,
    pub column: u32,
}

/// A JSON patch (RFC 6902) of one resource, declared for a release.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ResourcePatch {
    pub api_version: String,
    pub kind: String,
    pub name: String,
    pub namespace: String,
    /// The operations as JSON text (an array of `{op, path, ...}`).
    pub operations: String,
    pub line: u32,
}

/// A validated stack file. Releases are in stage order.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Stack {
    /// Names the stack's sync journal and lease (a DNS label; default
    /// `default`).
    pub name: String,
    pub variables: Vec<Variable>,
    pub stages: Vec<String>,
    pub output: String,
    pub releases: Vec<Release>,
    /// Release catalog: the known versions of each chart (by chart name),
    /// which decide the allowed upgrade paths.
    pub catalog: BTreeMap<String, Vec<String>>,
    /// Key patterns whose values are secret, beside the built-in ones
    /// (case-insensitive globs, `*` any run of characters).
    pub redact: Vec<String>,
    /// Health rules for custom resources, by group and kind.
    pub health: Vec<HealthDecl>,
    /// List fields moved one element per edit, growing before shrinking.
    pub phased_lists: Vec<PhasedListDecl>,
    /// Claims operators keep for custom resources (`operatorVolumes:`).
    pub operator_volumes: Vec<OperatorVolumeDecl>,
    /// The release manifest (`platform:`), when the stack is a platform.
    pub platform: Option<PlatformDecl>,
    /// Chart repositories and registries (`repositories:`).
    pub repositories: Vec<RepositoryDecl>,
    /// Storage pools for the capacity check (`storagePools:`).
    pub storage_pools: Vec<StoragePoolDecl>,
}

/// One entry of `storagePools:`: a StorageClass backed by a local pool (a
/// volume group on each node) or a replicated one (each claim stored
/// `replicas` times), with each node's free space.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct StoragePoolDecl {
    pub storage_class: String,
    pub replicated: bool,
    pub replicas: u32,
    /// (node, free size as a quantity), in the file's order.
    pub free: Vec<(String, String)>,
}

/// One entry of `repositories:`: a Helm chart repository (`https://`,
/// `http://`) or an OCI registry path (`oci://`).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct RepositoryDecl {
    pub name: String,
    /// Without credentials (never `user@`) and without a trailing `/`.
    pub url: String,
    /// A PEM file of the deployment repository: the CA the server's
    /// certificate is checked against.
    pub ca_file: Option<String>,
    pub credentials: Option<CredentialsDecl>,
    pub line: u32,
    pub column: u32,
}

/// Where a repository's credentials are: never in the deployment
/// repository itself, and each credential names the URL it may be sent to
/// (so a commit cannot send one to a server of its choosing).
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum CredentialsDecl {
    /// A file of the operator's credentials directory, by name.
    File(String),
    /// `PREFIX_URL`, `PREFIX_USERNAME`, `PREFIX_PASSWORD` (PREFIX starts
    /// with `PLIMSOLL_`).
    Env(String),
    /// A Secret in the daemon's namespace (keys `url`, `username`,
    /// `password`).
    Secret(String),
}

/// Where a release's chart comes from.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum ChartSource<'a> {
    /// A path of the deployment repository (a directory or a `.tgz`), or
    /// else a `repo/name` of helm's own repository configuration.
    Path(&'a str),
    /// `NAME/chart` of a declared Helm repository.
    Repository {
        repository: &'a RepositoryDecl,
        chart: &'a str,
    },
    /// An OCI reference (`oci://…`, or `NAME/chart` of a declared `oci://`
    /// repository); the declared repository it is under, if any.
    Oci {
        reference: String,
        repository: Option<&'a RepositoryDecl>,
    },
}

impl Stack {
    /// Where `chart` (a release's reference) comes from.
    pub fn chart_source<'a>(&'a self, chart: &'a str) -> ChartSource<'a> {
        if chart.starts_with("oci://") {
            let repository = self
                .repositories
                .iter()
                .filter(|r| url_within(chart, &r.url))
                .max_by_key(|r| r.url.len());
            return ChartSource::Oci {
                reference: chart.to_string(),
                repository,
            };
        }
        if let Some((name, rest)) = chart.split_once('/') {
            if let Some(repository) = self.repositories.iter().find(|r| r.name == name) {
                if repository.url.starts_with("oci://") {
                    return ChartSource::Oci {
                        reference: format!("{}/{rest}", repository.url),
                        repository: Some(repository),
                    };
                }
                return ChartSource::Repository {
                    repository,
                    chart: rest,
                };
            }
        }
        ChartSource::Path(chart)
    }
}

/// Whether `url` is `base` or below it (path segments, not characters:
/// `https://h/charts` does not contain `https://h/charts-evil`).
pub fn url_within(url: &str, base: &str) -> bool {
    let base = base.trim_end_matches('/');
    url == base
        || url
            .strip_prefix(base)
            .is_some_and(|rest| rest.starts_with('/'))
}

/// `platform:`: the release manifest (a file of the repository) and the
/// variable that selects the platform release.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct PlatformDecl {
    pub manifest: String,
    pub variable: String,
    pub line: u32,
    pub column: u32,
}

/// A family of claims an operator keeps for a kind, as declared: JSON
/// pointers into the resource (`*` the index of an item of `each`) and the
/// claim's name (`{name}`, `{item}`, `{ordinal}`).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct OperatorVolumeDecl {
    pub api_version: String,
    pub kind: String,
    pub each: Option<String>,
    pub item_name: Option<String>,
    pub replicas: Option<String>,
    pub default_replicas: u64,
    pub size: String,
    pub storage_class: Option<String>,
    pub pvc: String,
    /// A boolean field that must be true for the operator to grow claims.
    pub enabled_by: Option<String>,
}

/// A phased list as declared (`phasedLists:`): a list field of a custom
/// resource that is moved one element per edit, an add before each
/// removal, with a health wait between (the planner's `phased` module).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct PhasedListDecl {
    pub api_version: String,
    pub kind: String,
    /// JSON pointer of the list.
    pub path: String,
    /// The element field that names an element.
    pub key: String,
    /// What each element stands for, `{name}` and `{key}` substituted.
    pub element: Option<ResourceTemplateDecl>,
    pub before_remove: Vec<ResourceTemplateDecl>,
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ResourceTemplateDecl {
    pub api_version: String,
    pub kind: String,
    pub name: String,
}

/// A health rule as declared: CEL text, compiled (and its errors reported
/// at `line:column`) by the planner's health module.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct HealthDecl {
    pub api_version: String,
    pub kind: String,
    pub current: String,
    pub failed: Option<String>,
    pub line: u32,
    pub column: u32,
}

/// The variable values a render uses.
pub type Assignments = BTreeMap<String, String>;

struct Reader<'a> {
    file: &'a str,
    anchors: HashMap<String, Node>,
}

impl<'a> Reader<'a> {
    fn err(&self, n: &Node, message: impl Into<String>) -> StackError {
        StackError {
            file: self.file.to_string(),
            line: n.origin.line,
            column: n.origin.column,
            message: message.into(),
        }
    }

    /// Follows an alias to its anchored node.
    fn deref<'n>(&'n self, n: &'n Node) -> &'n Node {
        match n.kind {
            Kind::Alias => self.anchors.get(&n.value).unwrap_or(n),
            _ => n,
        }
    }

    fn string(&self, n: &Node, what: &str) -> Result<String, StackError> {
        let n = self.deref(n);
        match n.kind {
            Kind::Scalar if !n.is_null() => Ok(n.value.clone()),
            _ => Err(self.err(n, format!("{what} must be a string"))),
        }
    }

    fn map<'n>(&'n self, n: &'n Node, what: &str) -> Result<&'n Node, StackError> {
        let n = self.deref(n);
        match n.kind {
            Kind::Mapping => Ok(n),
            _ => Err(self.err(n, format!("{what} must be a mapping"))),
        }
    }

    fn seq<'n>(&'n self, n: &'n Node, what: &str) -> Result<&'n [Node], StackError> {
        let n = self.deref(n);
        match n.kind {
            Kind::Sequence => Ok(&n.content),
            _ => Err(self.err(n, format!("{what} must be a sequence"))),
        }
    }

    fn check_keys(&self, map: &Node, allowed: &[&str], what: &str) -> Result<(), StackError> {
        for (k, _) in map.pairs() {
            if !allowed.contains(&k.value.as_str()) {
                return Err(self.err(
                    k,
                    format!(
                        "unknown field {:?} in {what} (expected one of: {})",
                        k.value,
                        allowed.join(", ")
                    ),
                ));
            }
        }
        Ok(())
    }
}

fn collect_anchors(n: &Node, out: &mut HashMap<String, Node>) {
    if !n.anchor.is_empty() {
        out.insert(n.anchor.clone(), n.clone());
    }
    for c in &n.content {
        collect_anchors(c, out);
    }
}

/// Parses and validates a stack file.
/// Parses and validates a stack file; every error names file:line:col.
pub fn parse(file: &str, bytes: &[u8]) -> Result<Stack, StackError> {
    let root = parse_root(file, bytes)?;
    let mut anchors = HashMap::new();
    collect_anchors(&root, &mut anchors);
    let r = Reader { file, anchors };
    r.check_keys(
        &root,
        &[
            "apiVersion",
            "kind",
            "name",
            "variables",
            "output",
            "stages",
            "releases",
            "catalog",
            "redact",
            "health",
            "phasedLists",
            "operatorVolumes",
            "platform",
            "repositories",
            "storagePools",
        ],
        "the stack file",
    )?;
    let name = parse_name(&r, &root)?;
    let variables = parse_variables(&r, &root)?;
    let platform = parse_platform(&r, &root, &variables)?;
    let output = match root.get("output") {
        Some(o) => r.string(o, "output")?,
        None => "rendered".to_string(),
    };
    check_relative_path(&r, root.get("output").unwrap_or(&root), &output)?;
    let stage_decl = parse_stages(&r, &root)?;
    let rel_node = root
        .get("releases")
        .ok_or_else(|| r.err(&root, "the stack file declares no releases"))?;
    let mut releases: Vec<Release> = Vec::new();
    for rel in r.seq(rel_node, "releases")? {
        let rel = r.map(rel, "a release")?;
        let release = parse_release(&r, rel, &variables, platform.is_some())?;
        let (name, output) = (&release.name, &release.output);
        if releases.iter().any(|x: &Release| x.name == *name) {
            return Err(r.err(rel, format!("duplicate release name {name:?}")));
        }
        if releases.iter().any(|x: &Release| x.output == *output) {
            return Err(r.err(
                rel,
                format!("release {name:?} writes {output:?}, as an earlier release does"),
            ));
        }
        releases.push(release);
    }
    let catalog = parse_catalog(&r, &root)?;
    let redact = parse_redact(&r, &root)?;
    let health = parse_health(&r, &root)?;
    let phased_lists = parse_phased_lists(&r, &root)?;
    let operator_volumes = parse_operator_volumes(&r, &root)?;
    let repositories = parse_repositories(&r, &root)?;
    let storage_pools = parse_storage_pools(&r, &root)?;
    check_repository_references(&r, &root, &repositories, &releases)?;
    let stages = order_stages(&r, &root, stage_decl, &releases)?;
    releases.sort_by_key(|rel| {
        stages
            .iter()
            .position(|s| *s == rel.stage)
            .unwrap_or(usize::MAX)
    });
    Ok(Stack {
        name,
        variables,
        stages,
        output,
        releases,
        catalog,
        redact,
        health,
        phased_lists,
        operator_volumes,
        platform,
        repositories,
        storage_pools,
    })
}

/// `storagePools:` storageClass, kind (`local` or `replicated`),
/// replicas (replicated: 1 to 16), free (node: size).
fn parse_storage_pools(r: &Reader<'_>, root: &Node) -> Result<Vec<StoragePoolDecl>, StackError> {
    let Some(list) = root.get("storagePools") else {
        return Ok(Vec::new());
    };
    let mut out: Vec<StoragePoolDecl> = Vec::new();
    for entry in r.seq(list, "storagePools")? {
        let m = r.map(entry, "a storage pool")?;
        r.check_keys(
            m,
            &["storageClass", "kind", "replicas", "free"],
            "a storage pool",
        )?;
        let get = |k: &str| -> Result<(String, &Node), StackError> {
            let v = m
                .get(k)
                .ok_or_else(|| r.err(m, format!("a storage pool needs `{k}`")))?;
            Ok((r.string(v, k)?, v))
        };
        let (storage_class, at) = get("storageClass")?;
        if !is_dns_label(&storage_class.replace('.', "-"), 253) {
            return Err(r.err(
                at,
                format!("storageClass {storage_class:?} is not a StorageClass name"),
            ));
        }
        if out.iter().any(|p| p.storage_class == storage_class) {
            return Err(r.err(
                at,
                format!("storage pool {storage_class:?} is declared twice"),
            ));
        }
        let (kind, at) = get("kind")?;
        let replicated = match kind.as_str() {
            "local" => false,
            "replicated" => true,
            _ => {
                return Err(r.err(
                    at,
                    format!("kind {kind:?}: `local` (a volume group on each node) or `replicated`"),
                ))
            }
        };
        let replicas = match m.get("replicas") {
            Some(n) if replicated => match r.string(n, "replicas")?.parse::<u32>() {
                Ok(x) if (1..=16).contains(&x) => x,
                _ => return Err(r.err(n, "replicas: 1 to 16")),
            },
            Some(n) => return Err(r.err(n, "replicas: only for a replicated pool")),
            None if replicated => return Err(r.err(m, "a replicated pool needs `replicas`")),
            None => 1,
        };
        let free_node = m
            .get("free")
            .ok_or_else(|| r.err(m, "a storage pool needs `free` (node: size)"))?;
        let mut free = Vec::new();
        for (k, v) in r.map(free_node, "free")?.pairs().take(10_000) {
            if !is_dns_label(&k.value.replace('.', "-"), 253) {
                return Err(r.err(k, format!("node {:?} is not a node name", k.value)));
            }
            let size = r.string(v, "a size")?;
            if !is_quantity(&size) {
                return Err(r.err(v, format!("size {size:?} is not a quantity (e.g. 87Gi)")));
            }
            free.push((k.value.clone(), size));
        }
        if free.is_empty() {
            return Err(r.err(free_node, "free: at least one node"));
        }
        out.push(StoragePoolDecl {
            storage_class,
            replicated,
            replicas,
            free,
        });
    }
    Ok(out)
}

/// A Kubernetes quantity of bytes: digits, a fraction, a suffix.
fn is_quantity(s: &str) -> bool {
    let digits = s.trim_end_matches(|c: char| c.is_ascii_alphabetic());
    let suffix = &s[digits.len()..];
    !digits.is_empty()
        && s.len() <= 32
        && digits
            .parse::<f64>()
            .is_ok_and(|n| n.is_finite() && n >= 0.0)
        && [
            "", "Ki", "Mi", "Gi", "Ti", "Pi", "Ei", "k", "M", "G", "T", "P", "E",
        ]
        .contains(&suffix)
}

/// `repositories:` name (a DNS label), url, optional caFile and
/// credentials.
fn parse_repositories(r: &Reader<'_>, root: &Node) -> Result<Vec<RepositoryDecl>, StackError> {
    let Some(list) = root.get("repositories") else {
        return Ok(Vec::new());
    };
    let mut out: Vec<RepositoryDecl> = Vec::new();
    for entry in r.seq(list, "repositories")? {
        let m = r.map(entry, "a repository")?;
        r.check_keys(m, &["name", "url", "caFile", "credentials"], "a repository")?;
        let get = |k: &str| -> Result<(String, &Node), StackError> {
            let v = m
                .get(k)
                .ok_or_else(|| r.err(m, format!("a repository needs `{k}`")))?;
            Ok((r.string(v, k)?, v))
        };
        let (name, at) = get("name")?;
        check_dns_label(r, at, &name, "repository name")?;
        if out.iter().any(|o| o.name == name) {
            return Err(r.err(at, format!("repository {name:?} is declared twice")));
        }
        let (url, at) = get("url")?;
        check_repository_url(r, at, &url)?;
        let ca_file = match m.get("caFile") {
            Some(n) => {
                let path = r.string(n, "caFile")?;
                check_relative_path(r, n, &path)?;
                Some(path)
            }
            None => None,
        };
        let credentials = m
            .get("credentials")
            .map(|n| parse_credentials(r, n))
            .transpose()?;
        out.push(RepositoryDecl {
            name,
            url: url.trim_end_matches('/').to_string(),
            ca_file,
            credentials,
            line: m.origin.line,
            column: m.origin.column,
        });
    }
    Ok(out)
}

/// `https://`, `http://` or `oci://`, a host (and port), a path of plain
/// segments; no credentials, query or fragment: the URL is printed in
/// plans and passed to helm.
fn check_repository_url(r: &Reader<'_>, at: &Node, url: &str) -> Result<(), StackError> {
    let rest = ["https://", "http://", "oci://"]
        .iter()
        .find_map(|s| url.strip_prefix(s));
    let ok = rest.is_some_and(|rest| {
        let rest = rest.trim_end_matches('/');
        let mut segments = rest.split('/');
        let host = segments.next().unwrap_or("");
        !host.is_empty()
            && !host.starts_with(['-', '.', ':'])
            && host
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'-' | b'.' | b':' | b'[' | b']'))
            && segments.all(|seg| {
                !seg.is_empty()
                    && seg != "."
                    && seg != ".."
                    && seg.bytes().all(|b| {
                        b.is_ascii_alphanumeric() || matches!(b, b'-' | b'.' | b'_' | b'~')
                    })
            })
    }) && url.len() <= 512;
    if !ok {
        return Err(r.err(
            at,
            // Not echoed: it may hold a password.
            "a repository url must be https://, http:// or oci:// with a host and a plain path \
             (no user@, query or fragment; credentials go in `credentials:`)",
        ));
    }
    Ok(())
}

/// `credentials: {file: NAME}`, `{env: PLIMSOLL_…}` or `{secret: NAME}`.
fn parse_credentials(r: &Reader<'_>, n: &Node) -> Result<CredentialsDecl, StackError> {
    let m = r.map(n, "credentials")?;
    r.check_keys(m, &["file", "env", "secret"], "credentials")?;
    let mut pairs = m.pairs();
    let (Some((k, v)), None) = (pairs.next(), pairs.next()) else {
        return Err(r.err(m, "credentials: exactly one of `file`, `env`, `secret`"));
    };
    let value = r.string(v, &k.value)?;
    Ok(match k.value.as_str() {
        "file" => {
            if !is_dns_label(&value, 63) {
                return Err(r.err(v, format!("credentials file {value:?} must be a plain name (a-z, 0-9, '-'): a file of the operator's credentials directory, never a path")));
            }
            CredentialsDecl::File(value)
        }
        "env" => {
            let ok = value.len() <= 64
                && value.strip_prefix("PLIMSOLL_").is_some_and(|s| {
                    !s.is_empty()
                        && s.bytes()
                            .all(|b| b.is_ascii_uppercase() || b.is_ascii_digit() || b == b'_')
                });
            if !ok {
                return Err(r.err(v, format!("credentials env {value:?} must start with PLIMSOLL_ and hold only A-Z, 0-9 and '_': it names PREFIX_URL, PREFIX_USERNAME and PREFIX_PASSWORD")));
            }
            CredentialsDecl::Env(value)
        }
        _ => {
            check_dns_label(r, v, &value, "credentials secret")?;
            CredentialsDecl::Secret(value)
        }
    })
}

/// A release's `NAME/chart` of a declared repository names one chart (a
/// plain name); an `oci://` chart has a host and a path.
fn check_repository_references(
    r: &Reader<'_>,
    root: &Node,
    repositories: &[RepositoryDecl],
    releases: &[Release],
) -> Result<(), StackError> {
    let rel_nodes = root
        .get("releases")
        .map(|n| r.deref(n).content.clone())
        .unwrap_or_default();
    for (rel, node) in releases.iter().zip(rel_nodes.iter()) {
        let at = r.deref(node).get("chart").unwrap_or(node);
        let Some((name, chart)) = rel.chart.split_once('/') else {
            continue;
        };
        if !repositories.iter().any(|x| x.name == name) {
            continue;
        }
        let plain = !chart.is_empty()
            && chart.len() <= 128
            && !chart.starts_with(['-', '.'])
            && chart.bytes().all(|b| {
                b.is_ascii_lowercase() || b.is_ascii_digit() || matches!(b, b'-' | b'_' | b'.')
            });
        if !plain {
            return Err(r.err(
                at,
                format!("chart {:?}: after repository {name:?} comes one chart name (a-z, 0-9, '-', '_', '.')", rel.chart),
            ));
        }
    }
    Ok(())
}

/// `platform: {manifest: FILE, variable: NAME}`: NAME a declared variable
/// (its values must be releases of the manifest, checked when rendering).
fn parse_platform(
    r: &Reader<'_>,
    root: &Node,
    variables: &[Variable],
) -> Result<Option<PlatformDecl>, StackError> {
    let Some(n) = root.get("platform") else {
        return Ok(None);
    };
    let m = r.map(n, "platform")?;
    r.check_keys(m, &["manifest", "variable"], "platform")?;
    let get = |k: &str| -> Result<(String, &Node), StackError> {
        let v = m
            .get(k)
            .ok_or_else(|| r.err(m, format!("platform needs `{k}`")))?;
        Ok((r.string(v, k)?, v))
    };
    let (manifest, at) = get("manifest")?;
    check_relative_path(r, at, &manifest)?;
    let (variable, at) = get("variable")?;
    if !variables.iter().any(|v| v.name == variable) {
        return Err(r.err(
            at,
            format!("platform variable {variable:?} is not declared in `variables:`"),
        ));
    }
    Ok(Some(PlatformDecl {
        manifest,
        variable,
        line: m.origin.line,
        column: m.origin.column,
    }))
}

/// A JSON pointer of field names and indexes; `*` (an item of `each`) only
/// when `each` is given and the pointer is inside it.
fn pointer_ok(p: &str, each: Option<&str>) -> bool {
    let star_ok = each.is_some_and(|e| p.starts_with(&format!("{e}/*")));
    p.starts_with('/')
        && p.len() <= 256
        && p[1..].split('/').all(|seg| {
            (seg == "*" && star_ok)
                || (!seg.is_empty()
                    && seg
                        .chars()
                        .all(|c| c.is_ascii_alphanumeric() || "_-.".contains(c)))
        })
}

/// `operatorVolumes:` claim families: `apiVersion` (a custom resource's
/// group), `kind`, `pvc`, `size`, optional `storageClass`, `replicas`,
/// `defaultReplicas`, `each`, `itemName`.
fn parse_operator_volumes(
    r: &Reader<'_>,
    root: &Node,
) -> Result<Vec<OperatorVolumeDecl>, StackError> {
    let Some(list) = root.get("operatorVolumes") else {
        return Ok(Vec::new());
    };
    let what = "an operator volume rule";
    let mut out = Vec::new();
    for item in r.seq(list, "operatorVolumes")? {
        let m = r.map(item, what)?;
        r.check_keys(
            m,
            &[
                "apiVersion",
                "kind",
                "pvc",
                "size",
                "storageClass",
                "replicas",
                "defaultReplicas",
                "each",
                "itemName",
                "enabledBy",
            ],
            what,
        )?;
        let get = |k: &str| m.get(k).map(|n| r.string(n, k)).transpose();
        let need = |k: &str| -> Result<String, StackError> {
            get(k)?.ok_or_else(|| r.err(m, format!("{what} needs {k}")))
        };
        let api_version = need("apiVersion")?;
        let kind = need("kind")?;
        if !api_version.split('/').next().unwrap_or("").contains('.') {
            return Err(r.err(
                m.get("apiVersion").unwrap_or(m),
                format!("operator volume apiVersion {api_version:?}: a custom resource's group (`example.com/v1`)"),
            ));
        }
        let each = get("each")?;
        if let Some(e) = &each {
            if !pointer_ok(e, None) {
                return Err(r.err(
                    m.get("each").unwrap_or(m),
                    format!("each {e:?}: a JSON pointer of field names"),
                ));
            }
        }
        let pointer = |k: &str, required: bool| -> Result<Option<String>, StackError> {
            let v = if required { Some(need(k)?) } else { get(k)? };
            if let Some(p) = &v {
                if !pointer_ok(p, each.as_deref()) {
                    return Err(r.err(
                        m.get(k).unwrap_or(m),
                        format!("{k} {p:?}: a JSON pointer of field names (`*` for the item of `each`, inside it)"),
                    ));
                }
            }
            Ok(v)
        };
        let size = pointer("size", true)?.unwrap_or_default();
        let storage_class = pointer("storageClass", false)?;
        let replicas = pointer("replicas", false)?;
        let item_name = pointer("itemName", false)?;
        let enabled_by = pointer("enabledBy", false)?;
        let default_replicas = match get("defaultReplicas")? {
            None => 1,
            Some(t) => t
                .parse::<u64>()
                .ok()
                .filter(|n| *n <= 1000)
                .ok_or_else(|| {
                    r.err(
                        m.get("defaultReplicas").unwrap_or(m),
                        "defaultReplicas: a number up to 1000",
                    )
                })?,
        };
        let pvc = need("pvc")?;
        let pvc_ok = pvc.len() <= 253
            && pvc.contains("{ordinal}")
            && pvc
                .replace("{name}", "a")
                .replace("{item}", "a")
                .replace("{ordinal}", "0")
                .chars()
                .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '-' || c == '.');
        if !pvc_ok {
            return Err(r.err(
                m.get("pvc").unwrap_or(m),
                format!("pvc {pvc:?}: lowercase letters, digits, `-` and `.`, with `{{ordinal}}` (and `{{name}}`, `{{item}}`)"),
            ));
        }
        out.push(OperatorVolumeDecl {
            api_version,
            kind,
            each,
            item_name,
            replicas,
            default_replicas,
            size,
            storage_class,
            pvc,
            enabled_by,
        });
    }
    Ok(out)
}

/// `phasedLists:` rules: `apiVersion` (a custom resource's group), `kind`,
/// `path` (a JSON pointer), `key`, optional `element` and `beforeRemove`
/// resource templates.
fn parse_phased_lists(r: &Reader<'_>, root: &Node) -> Result<Vec<PhasedListDecl>, StackError> {
    let Some(list) = root.get("phasedLists") else {
        return Ok(Vec::new());
    };
    let field = |m: &Node, k: &str, what: &str| -> Result<String, StackError> {
        let n = m
            .get(k)
            .ok_or_else(|| r.err(m, format!("{what} needs {k}")))?;
        r.string(n, k)
    };
    let name_ok = |s: &str| {
        !s.is_empty()
            && s.len() <= 253
            && s.replace("{name}", "a")
                .replace("{key}", "a")
                .chars()
                .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '-' || c == '.')
    };
    let template = |n: &Node| -> Result<ResourceTemplateDecl, StackError> {
        let m = r.map(n, "a resource template")?;
        r.check_keys(m, &["apiVersion", "kind", "name"], "a resource template")?;
        let t = ResourceTemplateDecl {
            api_version: field(m, "apiVersion", "a resource template")?,
            kind: field(m, "kind", "a resource template")?,
            name: field(m, "name", "a resource template")?,
        };
        if !name_ok(&t.name) {
            return Err(r.err(
                m.get("name").unwrap_or(m),
                format!("resource name {:?}: lowercase letters, digits, `-` and `.`, with `{{name}}` and `{{key}}` substituted", t.name),
            ));
        }
        Ok(t)
    };
    let mut out: Vec<PhasedListDecl> = Vec::new();
    for item in r.seq(list, "phasedLists")? {
        let m = r.map(item, "a phased list")?;
        r.check_keys(
            m,
            &[
                "apiVersion",
                "kind",
                "path",
                "key",
                "element",
                "beforeRemove",
            ],
            "a phased list",
        )?;
        let api_version = field(m, "apiVersion", "a phased list")?;
        let kind = field(m, "kind", "a phased list")?;
        let path = field(m, "path", "a phased list")?;
        let key = field(m, "key", "a phased list")?;
        let group = api_version.split('/').next().unwrap_or("");
        if !group.contains('.') {
            return Err(r.err(
                m.get("apiVersion").unwrap_or(m),
                format!("phased list apiVersion {api_version:?}: a custom resource's group (`example.com/v1`)"),
            ));
        }
        let pointer_ok = path.starts_with('/')
            && path.len() <= 256
            && path[1..].split('/').all(|seg| {
                !seg.is_empty()
                    && seg
                        .chars()
                        .all(|c| c.is_ascii_alphanumeric() || "_-.".contains(c))
            });
        if !pointer_ok {
            return Err(r.err(
                m.get("path").unwrap_or(m),
                format!("phased list path {path:?}: a JSON pointer of field names (`/spec/policy/replicaPoolInfo`)"),
            ));
        }
        if key.is_empty() || key.len() > 128 {
            return Err(r.err(m.get("key").unwrap_or(m), "phased list key: a field name"));
        }
        if out.iter().any(|x| {
            x.kind == kind && x.path == path && x.api_version.split('/').next() == Some(group)
        }) {
            return Err(r.err(m, format!("a second phased list for {group} {kind} {path}")));
        }
        let element = m.get("element").map(template).transpose()?;
        let before_remove = match m.get("beforeRemove") {
            Some(n) => r
                .seq(n, "beforeRemove")?
                .iter()
                .map(template)
                .collect::<Result<Vec<_>, _>>()?,
            None => Vec::new(),
        };
        out.push(PhasedListDecl {
            api_version,
            kind,
            path,
            key,
            element,
            before_remove,
        });
    }
    Ok(out)
}

/// `health:` rules: `apiVersion` (a group with a dot), `kind`, CEL
/// `current` and optional `failed`.
fn parse_health(r: &Reader<'_>, root: &Node) -> Result<Vec<HealthDecl>, StackError> {
    let Some(list) = root.get("health") else {
        return Ok(Vec::new());
    };
    let mut out: Vec<HealthDecl> = Vec::new();
    for item in r.seq(list, "health")? {
        let m = r.map(item, "a health rule")?;
        r.check_keys(
            m,
            &["apiVersion", "kind", "current", "failed"],
            "a health rule",
        )?;
        let field = |k: &str| -> Result<String, StackError> {
            let n = m
                .get(k)
                .ok_or_else(|| r.err(m, format!("a health rule needs {k}")))?;
            r.string(n, k)
        };
        let api_version = field("apiVersion")?;
        let kind = field("kind")?;
        let current = field("current")?;
        let failed = m.get("failed").map(|n| r.string(n, "failed")).transpose()?;
        let group = api_version.split('/').next().unwrap_or("");
        if !group.contains('.') {
            return Err(r.err(
                m.get("apiVersion").unwrap_or(m),
                format!("health rule apiVersion {api_version:?}: a custom resource's group (`example.com/v1`)"),
            ));
        }
        if out
            .iter()
            .any(|h| h.kind == kind && h.api_version.split('/').next() == Some(group))
        {
            return Err(r.err(m, format!("a second health rule for {group} {kind}")));
        }
        let at = m.get("current").unwrap_or(m);
        out.push(HealthDecl {
            api_version,
            kind,
            current,
            failed,
            line: at.origin.line,
            column: at.origin.column,
        });
    }
    Ok(out)
}

/// `redact:` more secret key patterns: letters, digits, `_ - . *`.
fn parse_redact(r: &Reader<'_>, root: &Node) -> Result<Vec<String>, StackError> {
    let Some(list) = root.get("redact") else {
        return Ok(Vec::new());
    };
    let mut out = Vec::new();
    for p in r.seq(list, "redact")? {
        let pattern = r.string(p, "a redact pattern")?;
        let ok = !pattern.is_empty()
            && pattern.len() <= 128
            && pattern != "*"
            && pattern
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || "_-.*".contains(c));
        if !ok {
            return Err(r.err(
                p,
                format!("redact pattern {pattern:?}: letters, digits, `_ - . *` (not `*` alone), at most 128"),
            ));
        }
        out.push(pattern);
    }
    Ok(out)
}

/// The first document, which must be a mapping.
fn parse_root(file: &str, bytes: &[u8]) -> Result<Node, StackError> {
    let docs = yaml::parse_documents(bytes, 0).map_err(|e| StackError {
        file: file.to_string(),
        line: e.line as u32,
        column: e.column as u32,
        message: e.message,
    })?;
    match docs.first().map(Node::unwrap_document) {
        Some(n) if n.kind == Kind::Mapping => Ok(n.clone()),
        Some(n) => Err(StackError {
            file: file.to_string(),
            line: n.origin.line.max(1),
            column: n.origin.column.max(1),
            message: "a stack file must be a mapping".into(),
        }),
        None => Err(StackError {
            file: file.to_string(),
            line: 1,
            column: 1,
            message: "the stack file is empty".into(),
        }),
    }
}

/// The stack's name: a DNS label (it names the journal and the lease).
fn parse_name(r: &Reader<'_>, root: &Node) -> Result<String, StackError> {
    Ok(match root.get("name") {
        Some(n) => {
            let s = r.string(n, "name")?;
            let label = !s.is_empty()
                && s.len() <= 40
                && s.bytes()
                    .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-')
                && !s.starts_with('-')
                && !s.ends_with('-');
            if !label {
                return Err(r.err(
                    n,
                    format!("stack name {s:?} must be a DNS label of at most 40 characters (a-z, 0-9, -)"),
                ));
            }
            s
        }
        None => "default".to_string(),
    })
}

/// `variables:` each with its allowed values and an optional default.
fn parse_variables(r: &Reader<'_>, root: &Node) -> Result<Vec<Variable>, StackError> {
    let mut variables = Vec::new();
    if let Some(vars) = root.get("variables") {
        for (k, v) in r.map(vars, "variables")?.pairs() {
            let v = r.deref(v);
            let (allowed_node, default) = match v.kind {
                Kind::Sequence => (Some(v), None),
                Kind::Mapping => {
                    r.check_keys(v, &["values", "default"], "a variable")?;
                    let d = v
                        .get("default")
                        .map(|d| r.string(d, "default"))
                        .transpose()?;
                    (v.get("values"), d.map(|s| (s, v.get("default").cloned())))
                }
                _ => {
                    return Err(r.err(
                        v,
                        format!("variable {:?} must list its allowed values", k.value),
                    ))
                }
            };
            let allowed = match allowed_node {
                Some(a) => r
                    .seq(a, "values")?
                    .iter()
                    .map(|x| {
                        let value = r.string(x, "an allowed value")?;
                        check_variable_value(r, x, &k.value, &value)?;
                        Ok(value)
                    })
                    .collect::<Result<Vec<_>, StackError>>()?,
                None => return Err(r.err(v, format!("variable {:?} has no `values`", k.value))),
            };
            if allowed.is_empty() {
                return Err(r.err(k, format!("variable {:?} allows no value", k.value)));
            }
            if let Some((d, node)) = &default {
                if !allowed.contains(d) {
                    let at = node.as_ref().unwrap_or(k);
                    return Err(r.err(
                        at,
                        format!(
                            "default {d:?} of variable {:?} is not one of {}",
                            k.value,
                            allowed.join(", ")
                        ),
                    ));
                }
            }
            variables.push(Variable {
                name: k.value.clone(),
                allowed,
                default: default.map(|(d, _)| d),
            });
        }
    }
    Ok(variables)
}

/// `stages:` names in order, each optionally with `after` dependencies.
fn parse_stages(
    r: &Reader<'_>,
    root: &Node,
) -> Result<Vec<(String, Vec<String>, Node)>, StackError> {
    let mut stage_decl: Vec<(String, Vec<String>, Node)> = Vec::new();
    if let Some(st) = root.get("stages") {
        for s in r.seq(st, "stages")? {
            let s = r.deref(s);
            match s.kind {
                Kind::Scalar => stage_decl.push((r.string(s, "a stage")?, Vec::new(), s.clone())),
                Kind::Mapping => {
                    r.check_keys(s, &["name", "after"], "a stage")?;
                    let name = r.string(
                        s.get("name")
                            .ok_or_else(|| r.err(s, "a stage needs a name"))?,
                        "name",
                    )?;
                    let after = match s.get("after") {
                        Some(a) => r
                            .seq(a, "after")?
                            .iter()
                            .map(|x| r.string(x, "a stage name"))
                            .collect::<Result<Vec<_>, _>>()?,
                        None => Vec::new(),
                    };
                    stage_decl.push((name, after, s.clone()));
                }
                _ => return Err(r.err(s, "a stage is a name or a mapping with name and after")),
            }
        }
    }
    Ok(stage_decl)
}

/// One entry of `releases:`.
fn parse_release(
    r: &Reader<'_>,
    rel: &Node,
    variables: &[Variable],
    platform: bool,
) -> Result<Release, StackError> {
    let rel = r.map(rel, "a release")?;
    r.check_keys(
        rel,
        &[
            "name",
            "chart",
            "version",
            "namespace",
            "stage",
            "output",
            "layers",
            "patches",
            "readyTimeout",
            "requires",
            "manifestChart",
        ],
        "a release",
    )?;
    let field = |name: &str| -> Result<String, StackError> {
        let n = rel
            .get(name)
            .ok_or_else(|| r.err(rel, format!("release is missing `{name}`")))?;
        r.string(n, name)
    };
    let at = |key: &str| rel.get(key).unwrap_or(rel);
    let name = field("name")?;
    check_release_name(r, at("name"), &name)?;
    let chart = field("chart")?;
    check_chart_reference(r, at("chart"), &chart)?;
    // With a release manifest, a release without `version:` takes its
    // manifest chart's.
    let (version, manifest_chart) = match (rel.get("version"), platform) {
        (None, true) => {
            let column = match rel.get("manifestChart") {
                Some(n) => r.string(n, "manifestChart")?,
                None => chart_name(&chart),
            };
            (String::new(), Some(column))
        }
        (_, _) => {
            if let Some(n) = rel.get("manifestChart") {
                return Err(r.err(n, "manifestChart: only for a release whose version comes from the platform's manifest (no `version:`)"));
            }
            let version = field("version")?;
            check_version(r, at("version"), &version)?;
            (version, None)
        }
    };
    let namespace = field("namespace")?;
    check_dns_label(r, at("namespace"), &namespace, "namespace")?;
    let stage = field("stage")?;
    let output = match rel.get("output") {
        Some(o) => r.string(o, "output")?,
        None => format!("{name}.yaml"),
    };
    check_relative_path(r, rel.get("output").unwrap_or(rel), &output)?;
    let lnode = rel
        .get("layers")
        .ok_or_else(|| r.err(rel, format!("release {name:?} has no layers")))?;
    let layers = parse_layers(r, lnode, variables)?;
    if layers.is_empty() {
        return Err(r.err(lnode, format!("release {name:?} has no layers")));
    }
    let patches = match rel.get("patches") {
        Some(p) => resource_patches(r, p, &namespace)?,
        None => Vec::new(),
    };
    let requires = match rel.get("requires") {
        Some(n) => parse_requires(r, n, &namespace)?,
        None => Vec::new(),
    };
    let ready_timeout = match rel.get("readyTimeout") {
        None => None,
        Some(n) => {
            let text = r.string(n, "readyTimeout")?;
            match text.trim_end_matches('s').parse::<u64>() {
                Ok(secs) if (1..=86_400).contains(&secs) => Some(secs),
                _ => {
                    return Err(r.err(
                        n,
                        format!("readyTimeout {text:?}: seconds from 1 to 86400 (`900` or `900s`)"),
                    ))
                }
            }
        }
    };
    Ok(Release {
        ready_timeout,
        requires,
        manifest_chart,
        name,
        chart,
        version,
        namespace,
        stage,
        output,
        layers,
        patches,
        line: rel.origin.line,
        column: rel.origin.column,
    })
}

/// A release's `layers:`, each a path (with `${var}` placeholders of known
/// variables) and a merge mode.
fn parse_layers(
    r: &Reader<'_>,
    lnode: &Node,
    variables: &[Variable],
) -> Result<Vec<LayerSpec>, StackError> {
    let mut layers = Vec::new();
    for l in r.seq(lnode, "layers")? {
        let l = r.deref(l);
        let (path, mode) = match l.kind {
            Kind::Scalar => (r.string(l, "a layer")?, MergeMode::Replace),
            Kind::Mapping => {
                r.check_keys(l, &["path", "mode"], "a layer")?;
                let p = r.string(
                    l.get("path")
                        .ok_or_else(|| r.err(l, "a layer needs a path"))?,
                    "path",
                )?;
                let mode = match l.get("mode") {
                    Some(m) => {
                        let s = r.string(m, "mode")?;
                        MergeMode::parse(&s).ok_or_else(|| {
                            r.err(m, format!("unknown merge mode {s:?} (expected replace, append or by-index)"))
                        })?
                    }
                    None => MergeMode::Replace,
                };
                (p, mode)
            }
            _ => return Err(r.err(l, "a layer is a path or a mapping with path and mode")),
        };
        check_relative_path(r, l, &path)?;
        for var in placeholders(&path) {
            if !variables.iter().any(|v| v.name == var) {
                return Err(r.err(
                    l,
                    format!("layer {path:?} uses unknown variable ${{{var}}}"),
                ));
            }
        }
        layers.push(LayerSpec {
            path,
            mode,
            line: l.origin.line,
        });
    }
    Ok(layers)
}

/// `catalog:` the known versions of each chart (upgrade paths).
fn parse_catalog(r: &Reader<'_>, root: &Node) -> Result<BTreeMap<String, Vec<String>>, StackError> {
    let mut catalog = BTreeMap::new();
    if let Some(c) = root.get("catalog") {
        for (chart, versions) in r.map(c, "catalog")?.pairs() {
            let list = r
                .seq(versions, &format!("catalog entry {:?}", chart.value))?
                .iter()
                .map(|v| r.string(v, "a chart version"))
                .collect::<Result<Vec<_>, _>>()?;
            catalog.insert(chart.value.clone(), list);
        }
    }
    Ok(catalog)
}

const PATCH_OPS: &[&str] = &["add", "remove", "replace", "move", "copy", "test"];

fn resource_patches(
    r: &Reader,
    node: &Node,
    namespace: &str,
) -> Result<Vec<ResourcePatch>, StackError> {
    let mut out = Vec::new();
    for p in r.seq(node, "patches")? {
        let p = r.map(p, "a patch")?;
        r.check_keys(
            p,
            &["apiVersion", "kind", "name", "namespace", "patch"],
            "a patch",
        )?;
        let ops_node = p
            .get("patch")
            .ok_or_else(|| r.err(p, "patch is missing `patch` (RFC 6902 operations)"))?;
        let ops = r.seq(ops_node, "patch")?;
        if ops.is_empty() {
            return Err(r.err(ops_node, "patch has no operations"));
        }
        for op in ops {
            let op = r.map(op, "a patch operation")?;
            let kind = r.string(
                op.get("op")
                    .ok_or_else(|| r.err(op, "a patch operation needs `op`"))?,
                "op",
            )?;
            if !PATCH_OPS.contains(&kind.as_str()) {
                return Err(r.err(
                    op,
                    format!(
                        "unknown patch op {kind:?} (expected one of: {})",
                        PATCH_OPS.join(", ")
                    ),
                ));
            }
            let path = r.string(
                op.get("path")
                    .ok_or_else(|| r.err(op, "a patch operation needs `path`"))?,
                "path",
            )?;
            if !path.is_empty() && !path.starts_with('/') {
                return Err(r.err(
                    op,
                    format!("patch path {path:?} is not a JSON pointer (it starts with /)"),
                ));
            }
            if matches!(kind.as_str(), "add" | "replace" | "test") && op.get("value").is_none() {
                return Err(r.err(op, format!("a {kind} operation needs `value`")));
            }
        }
        let operations = plimsoll_yaml::json::to_json(r.deref(ops_node))
            .map_err(|e| r.err(ops_node, e.to_string()))?;
        let ResourceTarget {
            api_version,
            kind,
            name,
            namespace,
        } = resource_target(r, p, namespace)?;
        out.push(ResourcePatch {
            api_version,
            kind,
            name,
            namespace,
            operations,
            line: p.origin.line,
        });
    }
    Ok(out)
}

/// A resource named in the stack file (a patch target, a precondition).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ResourceTarget {
    pub api_version: String,
    pub kind: String,
    pub name: String,
    pub namespace: String,
}

/// `apiVersion`, `kind`, `name` and optional `namespace` of map `p`,
/// validated: they become the path of API requests (no '/', no '..').
fn resource_target(r: &Reader, p: &Node, namespace: &str) -> Result<ResourceTarget, StackError> {
    let field = |name: &str| -> Result<String, StackError> {
        let n = p
            .get(name)
            .ok_or_else(|| r.err(p, format!("missing `{name}`")))?;
        r.string(n, name)
    };
    let at = |key: &str| p.get(key).unwrap_or(p);
    let (api_version, kind, name) = (field("apiVersion")?, field("kind")?, field("name")?);
    let ok_api = !api_version.is_empty()
        && api_version.split('/').count() <= 2
        && api_version.split('/').all(|s| {
            !s.is_empty()
                && s.bytes()
                    .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'.' | b'-'))
        });
    if !ok_api {
        return Err(r.err(
            at("apiVersion"),
            format!("apiVersion {api_version:?} is not GROUP/VERSION or VERSION"),
        ));
    }
    if kind.is_empty() || !kind.bytes().all(|b| b.is_ascii_alphanumeric()) {
        return Err(r.err(
            at("kind"),
            format!("kind {kind:?} is not a Kubernetes kind"),
        ));
    }
    let ok_name = name.len() <= 253 && name.split('.').all(|label| is_dns_label(label, 63));
    if !ok_name {
        return Err(r.err(
            at("name"),
            format!("name {name:?} is not a Kubernetes object name (a DNS-1123 subdomain)"),
        ));
    }
    let namespace = match p.get("namespace") {
        Some(n) => {
            let ns = r.string(n, "namespace")?;
            check_dns_label(r, n, &ns, "namespace")?;
            ns
        }
        None => namespace.to_string(),
    };
    Ok(ResourceTarget {
        api_version,
        kind,
        name,
        namespace,
    })
}

/// A release's `requires:`: resources that must be current before its
/// first step (the plan waits for them; failed stops the sync).
fn parse_requires(
    r: &Reader,
    node: &Node,
    namespace: &str,
) -> Result<Vec<ResourceTarget>, StackError> {
    let mut out = Vec::new();
    for item in r.seq(node, "requires")? {
        let m = r.map(item, "a required resource")?;
        r.check_keys(
            m,
            &["apiVersion", "kind", "name", "namespace"],
            "a required resource",
        )?;
        out.push(resource_target(r, m, namespace)?);
    }
    Ok(out)
}

/// Orders stages by their `after` dependencies (declaration order breaks
/// ties) and checks that every stage has a release and every release a
/// declared stage.
fn order_stages(
    r: &Reader<'_>,
    root: &Node,
    decl: Vec<(String, Vec<String>, Node)>,
    releases: &[Release],
) -> Result<Vec<String>, StackError> {
    if decl.is_empty() {
        // Without a `stages` list, releases run in file order, one stage each.
        let mut out: Vec<String> = Vec::new();
        for rel in releases {
            if !out.contains(&rel.stage) {
                out.push(rel.stage.clone());
            }
        }
        return Ok(out);
    }
    for (i, (name, after, node)) in decl.iter().enumerate() {
        if decl[..i].iter().any(|(n, _, _)| n == name) {
            return Err(r.err(node, format!("stage {name:?} is declared twice")));
        }
        for a in after {
            if !decl.iter().any(|(n, _, _)| n == a) {
                return Err(r.err(
                    node,
                    format!("stage {name:?} runs after unknown stage {a:?}"),
                ));
            }
        }
    }
    for rel in releases {
        if !decl.iter().any(|(n, _, _)| *n == rel.stage) {
            let at = root.get("releases").unwrap_or(root);
            return Err(StackError {
                line: rel.line,
                column: 3,
                ..r.err(
                    at,
                    format!(
                        "release {:?} names undeclared stage {:?}",
                        rel.name, rel.stage
                    ),
                )
            });
        }
    }
    // Kahn's algorithm, picking the earliest declared ready stage.
    let mut done: Vec<String> = Vec::new();
    while done.len() < decl.len() {
        let next = decl
            .iter()
            .find(|(n, after, _)| !done.contains(n) && after.iter().all(|a| done.contains(a)));
        match next {
            Some((n, _, _)) => done.push(n.clone()),
            None => {
                let stuck: Vec<&str> = decl
                    .iter()
                    .filter(|(n, _, _)| !done.contains(n))
                    .map(|(n, _, _)| n.as_str())
                    .collect();
                let node = &decl
                    .iter()
                    .find(|(n, _, _)| !done.contains(n))
                    .expect("stuck stage")
                    .2;
                return Err(r.err(node, format!("stages form a cycle: {}", stuck.join(" -> "))));
            }
        }
    }
    for (name, _, node) in &decl {
        if !releases.iter().any(|rel| rel.stage == *name) {
            return Err(r.err(
                node,
                format!("stage {name:?} has no release (a gap in the stages)"),
            ));
        }
    }
    Ok(done)
}

/// A DNS-1123 label (`a-z`, `0-9`, `-`, alphanumeric at both ends).
fn is_dns_label(s: &str, max: usize) -> bool {
    !s.is_empty()
        && s.len() <= max
        && s.bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-')
        && !s.starts_with('-')
        && !s.ends_with('-')
}

/// Release names as Helm requires them: a DNS-1123 subdomain of at most 53
/// characters. They name files and reach helm's command line, so nothing
/// else is let through (`../x`, `--post-renderer=…`).
fn check_release_name(r: &Reader<'_>, at: &Node, name: &str) -> Result<(), StackError> {
    let ok = name.len() <= 53 && name.split('.').all(|label| is_dns_label(label, 63));
    if !ok {
        return Err(r.err(
            at,
            format!(
                "release name {name:?} must be a DNS-1123 subdomain of at most 53 characters \
                 (a-z, 0-9, '-' and '.', alphanumeric at both ends), as Helm requires"
            ),
        ));
    }
    Ok(())
}

fn check_dns_label(r: &Reader<'_>, at: &Node, value: &str, what: &str) -> Result<(), StackError> {
    if !is_dns_label(value, 63) {
        return Err(r.err(
            at,
            format!("{what} {value:?} must be a DNS label (a-z, 0-9, '-', at most 63 characters)"),
        ));
    }
    Ok(())
}

/// A chart reference: a relative path inside the repository, `repo/name`,
/// or `oci://host/path`; never something helm would read as a flag.
/// The chart name of a reference (`repo/name`, a directory, a `.tgz`
/// with or without its version).
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

fn check_chart_reference(r: &Reader<'_>, at: &Node, chart: &str) -> Result<(), StackError> {
    let safe = |s: &str| {
        !s.is_empty()
            && !s.starts_with('-')
            && s.bytes().all(|b| {
                b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.' | b'/' | b'@' | b':')
            })
    };
    if let Some(rest) = chart.strip_prefix("oci://") {
        let ok = safe(rest) && !rest.split('/').any(|seg| seg.is_empty() || seg == "..");
        if !ok {
            return Err(r.err(
                at,
                format!("chart {chart:?} is not a valid oci:// reference"),
            ));
        }
        return Ok(());
    }
    if !safe(chart) || chart.contains(['@', ':']) {
        return Err(r.err(
            at,
            format!(
                "chart {chart:?} must be a relative path inside the repository, repo/name or \
                 oci://…, and must not start with '-'"
            ),
        ));
    }
    check_relative_path(r, at, chart)
}

/// A chart version: what SemVer (with Helm's leniency) and Helm's version
/// constraints use; never a flag.
fn check_version(r: &Reader<'_>, at: &Node, version: &str) -> Result<(), StackError> {
    let ok = !version.is_empty()
        && !version.starts_with('-')
        && version.bytes().all(|b| {
            b.is_ascii_alphanumeric()
                || matches!(
                    b,
                    b'.' | b'-' | b'+' | b'~' | b'^' | b'*' | b'<' | b'>' | b'=' | b' ' | b','
                )
        });
    if !ok {
        return Err(r.err(at, format!("chart version {version:?} is not a version")));
    }
    Ok(())
}

/// A variable's allowed value: it is substituted into layer and output
/// paths, so only `A-Z a-z 0-9 . _ -`, never `..`, never a leading `-`.
fn check_variable_value(
    r: &Reader<'_>,
    at: &Node,
    variable: &str,
    value: &str,
) -> Result<(), StackError> {
    let ok = !value.is_empty()
        && !value.starts_with('-')
        && !value.contains("..")
        && value
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'.' | b'_' | b'-'));
    if !ok {
        return Err(r.err(
            at,
            format!(
                "value {value:?} of variable {variable:?} may hold only letters, digits, '.', '_' \
                 and '-' (no '..', no leading '-'): it is substituted into paths"
            ),
        ));
    }
    Ok(())
}

fn check_relative_path(r: &Reader<'_>, at: &Node, path: &str) -> Result<(), StackError> {
    let escapes = path.starts_with('/')
        || path.starts_with('\\')
        || path.split(['/', '\\']).any(|seg| seg == "..")
        || path.contains(':');
    if escapes || path.is_empty() {
        return Err(r.err(
            at,
            format!("path {path:?} escapes the repository (use a relative path inside it)"),
        ));
    }
    Ok(())
}

/// The `${name}` placeholders of a path.
pub fn placeholders(path: &str) -> Vec<String> {
    let mut out = Vec::new();
    let mut rest = path;
    while let Some(start) = rest.find("${") {
        match rest[start + 2..].find('}') {
            Some(end) => {
                out.push(rest[start + 2..start + 2 + end].to_string());
                rest = &rest[start + 2 + end + 1..];
            }
            None => break,
        }
    }
    out
}

/// Substitutes variables into a path.
pub fn substitute(path: &str, vars: &Assignments) -> String {
    let mut out = path.to_string();
    for (k, v) in vars {
        out = out.replace(&format!("${{{k}}}"), v);
    }
    out
}

/// A `--set` that cannot be used.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum AssignmentError {
    #[error("unknown variable {0:?} (the stack file declares: {1})")]
    Unknown(String, String),
    #[error("value {value:?} is not allowed for {name} (allowed: {allowed})")]
    NotAllowed {
        name: String,
        value: String,
        allowed: String,
    },
    #[error("variable {0} has no default; set it with --set {0}=VALUE")]
    Missing(String),
}

impl Stack {
    /// Resolves `--set` values against the declared variables and defaults.
    pub fn assignments(&self, set: &[(String, String)]) -> Result<Assignments, AssignmentError> {
        let mut out = Assignments::new();
        for (k, v) in set {
            let Some(var) = self.variables.iter().find(|x| x.name == *k) else {
                let names: Vec<&str> = self.variables.iter().map(|x| x.name.as_str()).collect();
                return Err(AssignmentError::Unknown(k.clone(), names.join(", ")));
            };
            if !var.allowed.contains(v) {
                return Err(AssignmentError::NotAllowed {
                    name: k.clone(),
                    value: v.clone(),
                    allowed: var.allowed.join(", "),
                });
            }
            out.insert(k.clone(), v.clone());
        }
        for var in &self.variables {
            if !out.contains_key(&var.name) {
                match &var.default {
                    Some(d) => {
                        out.insert(var.name.clone(), d.clone());
                    }
                    None => return Err(AssignmentError::Missing(var.name.clone())),
                }
            }
        }
        Ok(out)
    }

    pub fn release(&self, name: &str) -> Option<&Release> {
        self.releases.iter().find(|r| r.name == name)
    }
}
