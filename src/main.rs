//! The `plimsoll` command: glue between the command line and the crates.
//! Only this file knows about clap, anyhow, the filesystem layout of
//! outputs and exit codes.

use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::ExitCode;

use anyhow::{bail, Context};
use clap::{Parser, Subcommand, ValueEnum};
use plimsoll_renderer::merge::MergeMode;
use plimsoll_renderer::render::{self, Rendered};
use plimsoll_renderer::stack::{self, Stack};
use plimsoll_renderer::yq::{self, Layer};
use plimsoll_renderer::{json, keys};

mod daemon;
mod desired;
mod sync;

#[derive(Parser)]
#[command(
    name = "plimsoll",
    version,
    about = "Layered values rendering and safe transitions for Helm-deployed stateful platforms"
)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Merge values files exactly as `yq eval-all '. as $item ireduce ({}; . * $item)'` does.
    Merge {
        /// How sequences combine: replace (yq `*`), append (`*+`), by-index (`*d`).
        #[arg(long, default_value = "replace", value_parser = parse_mode)]
        mode: MergeMode,
        /// Layers, first to last.
        #[arg(required = true)]
        files: Vec<PathBuf>,
    },
    /// Render every release of the stack file (plimsoll.yaml) into its values file.
    Render {
        #[command(flatten)]
        common: Common,
        /// Write outputs under this directory instead of the stack file's `output`.
        #[arg(long)]
        out: Option<PathBuf>,
        /// Render in memory and exit 1 if the committed outputs or lock are stale.
        #[arg(long)]
        check: bool,
        /// Output format of the rendered values.
        #[arg(long, value_enum, default_value_t = Format::Yaml)]
        format: Format,
        /// Treat lint warnings as errors.
        #[arg(long)]
        strict: bool,
        /// Report keys that neither an earlier layer nor the chart's values.yaml defines.
        #[arg(long)]
        strict_keys: bool,
    },
    /// Write the live state the planner needs (Helm releases, StatefulSets,
    /// PVCs, StorageClasses, Deployments) to a file, for offline planning.
    Snapshot {
        #[command(flatten)]
        common: Common,
        #[command(flatten)]
        cluster: Cluster,
        /// Output file (JSON); stdout when absent.
        #[arg(long)]
        out: Option<PathBuf>,
    },
    /// Plan the transition from the live state to the repository's desired state.
    Plan {
        #[command(flatten)]
        common: Common,
        #[command(flatten)]
        cluster: Cluster,
        /// Plan against a snapshot file instead of the cluster.
        #[arg(long)]
        live: Option<PathBuf>,
        /// Plan the repository as it is at this git revision (read from the
        /// object database: no checkout; bare clones work).
        #[arg(long)]
        rev: Option<String>,
        /// Also show each release's rendered values changes since this
        /// revision, with the layer that caused each change.
        #[arg(long)]
        base: Option<String>,
        #[arg(long, value_enum, default_value_t = PlanFormat::Text)]
        format: PlanFormat,
        /// Refuse a chart version bump mixed with value changes.
        #[arg(long)]
        strict: bool,
        /// The helm executable used for `helm template` (default: $PLIMSOLL_HELM, then `helm`).
        #[arg(long)]
        helm: Option<PathBuf>,
    },
    /// Plan and execute: expand volumes, patch operator resources, re-create
    /// StatefulSets (orphan delete), helm upgrade, wait until ready; journaled
    /// in the cluster so that an interrupted sync resumes.
    Sync {
        #[command(flatten)]
        common: Common,
        #[command(flatten)]
        cluster: Cluster,
        #[command(flatten)]
        sync: SyncArgs,
        /// Sync the repository as it is at this git revision (default: HEAD
        /// when --repo is a git repository, else the working tree).
        #[arg(long)]
        rev: Option<String>,
        /// Sync the working tree even in a git repository (uncommitted files).
        #[arg(long, conflicts_with = "rev")]
        working_tree: bool,
        /// Print what would be done; change nothing.
        #[arg(long)]
        dry_run: bool,
        /// Do not ask; required when not attached to a terminal.
        #[arg(long, short = 'y')]
        yes: bool,
    },
    /// Follow a branch of the deployment repository and keep the cluster at
    /// it: sync new commits, report drift (and heal it with --self-heal),
    /// serve /metrics, /healthz, /readyz and POST /hook.
    Daemon {
        #[command(flatten)]
        common: Common,
        #[command(flatten)]
        cluster: Cluster,
        #[command(flatten)]
        sync: SyncArgs,
        /// Fetch this remote repository (into --mirror) instead of following
        /// the local repository --repo.
        #[arg(long)]
        url: Option<String>,
        /// Bare mirror for --url (default: ~/.cache/plimsoll/mirrors/ID).
        #[arg(long)]
        mirror: Option<PathBuf>,
        /// The tracked branch: only its commits are synced.
        #[arg(long, default_value = "main")]
        branch: String,
        /// Seconds between fetches and drift checks (jittered by 10 %).
        #[arg(long, default_value_t = 60)]
        interval: u64,
        /// Address of the HTTP endpoint (/metrics, /healthz, /readyz, POST /hook).
        #[arg(long)]
        listen: Option<std::net::SocketAddr>,
        /// Sync drift back to the last synced commit.
        #[arg(long)]
        self_heal: bool,
        /// File holding the webhook secret: POST /hook then requires a valid
        /// X-Hub-Signature-256 (HMAC-SHA256 of the body).
        #[arg(long)]
        webhook_secret_file: Option<PathBuf>,
        #[arg(long, value_enum, default_value_t = LogFormat::Text)]
        log_format: LogFormat,
    },
    /// Show a key's final value, the layer that set it and what it overrode.
    Explain {
        #[command(flatten)]
        common: Common,
        /// Release name.
        release: String,
        /// Key path, e.g. `mariadb-galera.persistence.size` or `a."dotted.key"[0]`.
        path: String,
    },
}

#[derive(clap::Args, Clone)]
struct Common {
    /// The deployment repository (holds plimsoll.yaml).
    #[arg(long, default_value = ".")]
    repo: PathBuf,
    /// Set a stack variable, e.g. --set segment=l.
    #[arg(long = "set", value_name = "VAR=VALUE", value_parser = parse_assignment)]
    set: Vec<(String, String)>,
}

#[derive(clap::Args)]
struct Cluster {
    /// Kubeconfig file (default: $KUBECONFIG, then ~/.kube/config).
    #[arg(long)]
    kubeconfig: Option<PathBuf>,
    /// Kubeconfig context.
    #[arg(long)]
    context: Option<String>,
    /// Namespaces to read (default: the namespaces of the stack's releases).
    #[arg(long = "namespace", short = 'n')]
    namespaces: Vec<String>,
}

#[derive(clap::Args, Clone)]
struct SyncArgs {
    /// Refuse a chart version bump mixed with value changes.
    #[arg(long)]
    strict: bool,
    /// The helm executable (default: $PLIMSOLL_HELM, then `helm`).
    #[arg(long)]
    helm: Option<PathBuf>,
    /// Namespace of the journal ConfigMap and the Lease.
    #[arg(long, default_value = "plimsoll")]
    journal_namespace: String,
    /// Wait up to this many seconds for another syncer's lease instead of exiting.
    #[arg(long, value_name = "SECONDS")]
    wait_for_lease: Option<u64>,
    /// Seconds to wait for each volume expansion.
    #[arg(long, default_value_t = 600, value_name = "SECONDS")]
    expansion_timeout: u64,
    /// Seconds helm may take (`helm upgrade --wait --timeout`).
    #[arg(long, default_value_t = 600, value_name = "SECONDS")]
    helm_timeout: u64,
    /// Seconds to wait until a release's StatefulSets and Deployments are ready.
    #[arg(long, default_value_t = 600, value_name = "SECONDS")]
    ready_timeout: u64,
}

impl SyncArgs {
    fn options(&self, namespaces: Vec<String>, dry_run: bool) -> sync::SyncOptions {
        sync::SyncOptions {
            journal_namespace: self.journal_namespace.clone(),
            strict: self.strict,
            dry_run,
            settings: plimsoll_syncer::execute::Settings {
                helm: desired::helm_executable(self.helm.as_deref()),
                expansion_timeout: std::time::Duration::from_secs(self.expansion_timeout),
                helm_timeout: std::time::Duration::from_secs(self.helm_timeout),
                ready_timeout: std::time::Duration::from_secs(self.ready_timeout),
                poll: std::time::Duration::from_millis(500),
            },
            lease_duration: std::time::Duration::from_secs(15),
            wait_for_lease: self.wait_for_lease.map(std::time::Duration::from_secs),
            namespaces,
        }
    }
}

#[derive(Clone, Copy, PartialEq, Eq, ValueEnum)]
enum LogFormat {
    Text,
    Json,
}

fn init_logging(format: LogFormat) {
    let builder = tracing_subscriber::fmt()
        .with_max_level(tracing::Level::INFO)
        .with_writer(std::io::stderr)
        .with_ansi(false);
    match format {
        LogFormat::Text => builder.init(),
        LogFormat::Json => builder.json().flatten_event(true).init(),
    }
}

#[derive(Clone, Copy, PartialEq, Eq, ValueEnum)]
enum PlanFormat {
    Text,
    Markdown,
    Json,
}

#[derive(Clone, Copy, PartialEq, Eq, ValueEnum)]
enum Format {
    Yaml,
    Json,
}

fn parse_mode(s: &str) -> Result<MergeMode, String> {
    MergeMode::parse(s)
        .ok_or_else(|| format!("unknown merge mode {s:?} (replace, append, by-index)"))
}

fn parse_assignment(s: &str) -> Result<(String, String), String> {
    match s.split_once('=') {
        Some((k, v)) if !k.is_empty() => Ok((k.to_string(), v.to_string())),
        _ => Err(format!("expected VAR=VALUE, got {s:?}")),
    }
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    match run(cli) {
        Ok(code) => code,
        Err(err) => {
            if is_broken_pipe(&err) {
                return ExitCode::SUCCESS;
            }
            eprintln!("error: {err:#}");
            ExitCode::from(1)
        }
    }
}

fn is_broken_pipe(err: &anyhow::Error) -> bool {
    err.chain()
        .filter_map(|e| e.downcast_ref::<std::io::Error>())
        .any(|e| e.kind() == std::io::ErrorKind::BrokenPipe)
}

fn run(cli: Cli) -> anyhow::Result<ExitCode> {
    match cli.command {
        Command::Merge { mode, files } => cmd_merge(mode, &files),
        Command::Render {
            common,
            out,
            check,
            format,
            strict,
            strict_keys,
        } => cmd_render(&common, out.as_deref(), check, format, strict, strict_keys),
        Command::Explain {
            common,
            release,
            path,
        } => cmd_explain(&common, &release, &path),
        Command::Sync {
            common,
            cluster,
            sync: args,
            rev,
            working_tree,
            dry_run,
            yes,
        } => {
            let helm = desired::helm_executable(args.helm.as_deref());
            // What is committed is what is synced, as the daemon does.
            let rev = rev.or_else(|| {
                (!working_tree && git2::Repository::open(&common.repo).is_ok())
                    .then(|| "HEAD".to_string())
            });
            let desired = desired::load(&common, rev.as_deref(), &helm)?;
            match &desired.revision {
                Some(commit) => {
                    eprintln!("syncing {} (commit {commit})", rev.as_deref().unwrap_or(""))
                }
                None => eprintln!("syncing the working tree of {}", common.repo.display()),
            }
            let opts = args.options(cluster.namespaces.clone(), dry_run);
            sync::cmd_sync(kube_client(&cluster), desired, opts, yes)
        }
        Command::Daemon {
            mut common,
            cluster,
            sync: args,
            url,
            mirror,
            branch,
            interval,
            listen,
            self_heal,
            webhook_secret_file,
            log_format,
        } => {
            init_logging(log_format);
            let source = match url {
                Some(url) => {
                    let mirror = mirror.unwrap_or_else(|| {
                        let home = std::env::var_os("HOME")
                            .map(PathBuf::from)
                            .unwrap_or_else(std::env::temp_dir);
                        let id = plimsoll_syncer::journal::digest(url.as_bytes());
                        home.join(".cache/plimsoll/mirrors").join(&id[..16])
                    });
                    common.repo = mirror.clone();
                    daemon::Source::Remote { url, mirror }
                }
                None => daemon::Source::Local(common.repo.clone()),
            };
            let webhook_secret = webhook_secret_file
                .map(|p| {
                    std::fs::read(&p)
                        .map(|b| b.trim_ascii().to_vec())
                        .with_context(|| format!("cannot read {}", p.display()))
                })
                .transpose()?;
            let opts = daemon::DaemonOptions {
                source,
                branch,
                interval: std::time::Duration::from_secs(interval.max(1)),
                listen,
                self_heal,
                webhook_secret,
            };
            let sync = args.options(cluster.namespaces.clone(), false);
            daemon::cmd_daemon(common, kube_client(&cluster), sync, opts)
        }
        Command::Snapshot {
            common,
            cluster,
            out,
        } => cmd_snapshot(&common, &cluster, out.as_deref()),
        Command::Plan {
            common,
            cluster,
            live,
            rev,
            base,
            format,
            strict,
            helm,
        } => cmd_plan(
            &common,
            &cluster,
            live.as_deref(),
            (rev.as_deref(), base.as_deref()),
            format,
            strict,
            helm.as_deref(),
        ),
    }
}

fn cmd_merge(mode: MergeMode, files: &[PathBuf]) -> anyhow::Result<ExitCode> {
    let contents: Vec<Vec<u8>> = files
        .iter()
        .map(|f| std::fs::read(f).with_context(|| format!("cannot read {}", f.display())))
        .collect::<anyhow::Result<_>>()?;
    let names: Vec<String> = files.iter().map(|f| f.display().to_string()).collect();
    let layers: Vec<Layer<'_>> = names
        .iter()
        .zip(&contents)
        .map(|(name, bytes)| Layer { name, bytes, mode })
        .collect();
    let out = yq::eval_all(&layers)?;
    // Print what yq prints, but say so when that is not valid YAML.
    if let Err(e) = plimsoll_renderer::yaml::parse_documents(out.as_bytes(), 0) {
        eprintln!(
            "warning: the merged output does not parse again ({e}); yq prints the same, \
             and Helm could not read it (an alias before its anchor?)"
        );
    }
    std::io::stdout().write_all(out.as_bytes())?;
    Ok(ExitCode::SUCCESS)
}

/// Reads files of the repository, refusing paths that leave it.
fn repo_reader(repo: &Path) -> impl Fn(&str) -> std::io::Result<Vec<u8>> + '_ {
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
        std::fs::read(canon)
    }
}

fn load_stack(common: &Common) -> anyhow::Result<(Stack, stack::Assignments)> {
    let path = common.repo.join("plimsoll.yaml");
    let bytes = std::fs::read(&path).with_context(|| format!("cannot read {}", path.display()))?;
    stack_from(common, &path.display().to_string(), &bytes)
}

fn stack_from(
    common: &Common,
    name: &str,
    bytes: &[u8],
) -> anyhow::Result<(Stack, stack::Assignments)> {
    let stack = stack::parse(name, bytes)?;
    let vars = stack.assignments(&common.set)?;
    Ok((stack, vars))
}

struct Output {
    path: PathBuf,
    text: String,
}

fn planned_outputs(
    rendered: &Rendered,
    repo: &Path,
    out: Option<&Path>,
    format: Format,
) -> anyhow::Result<Vec<Output>> {
    let mut outputs = Vec::new();
    for r in &rendered.releases {
        let (rel_path, text) = match format {
            Format::Yaml => (r.output_path.clone(), r.text.clone()),
            Format::Json => {
                let p = Path::new(&r.output_path)
                    .with_extension("json")
                    .display()
                    .to_string();
                let text = json::to_json(&r.result.node)
                    .with_context(|| format!("release {}", r.release.name))?;
                (p, text)
            }
        };
        outputs.push(Output {
            path: place(repo, out, &rel_path),
            text,
        });
    }
    outputs.push(Output {
        path: place(repo, out, &rendered.lock_path),
        text: render::lock_text(rendered),
    });
    Ok(outputs)
}

/// Where an output path (relative to the repository, under the stack's
/// output directory) goes when `--out` overrides that directory.
fn place(repo: &Path, out: Option<&Path>, rel: &str) -> PathBuf {
    match out {
        Some(dir) => dir.join(Path::new(rel).file_name().unwrap_or_default()),
        None => repo.join(rel),
    }
}

fn cmd_render(
    common: &Common,
    out: Option<&Path>,
    check: bool,
    format: Format,
    strict: bool,
    strict_keys: bool,
) -> anyhow::Result<ExitCode> {
    let (stack, vars) = load_stack(common)?;
    let read = repo_reader(&common.repo);
    let rendered = render::render(&stack, &vars, &read)?;

    let mut lints: Vec<render::Lint> = rendered
        .releases
        .iter()
        .flat_map(|r| r.lints.clone())
        .collect();
    if strict_keys {
        for r in &rendered.releases {
            match chart_defaults(&common.repo, &r.release.chart)? {
                Some(defaults) => {
                    let files = render::load_layers(&r.release, &vars, &read)?;
                    lints.extend(keys::unknown_keys(&r.release.name, &files, &defaults)?);
                }
                None => eprintln!(
                    "note: release {}: chart {} is not available locally; unknown keys not checked",
                    r.release.name, r.release.chart
                ),
            }
        }
    }
    let level = if strict { "error" } else { "warning" };
    for l in &lints {
        eprintln!("{level}: {l}");
    }
    if strict && !lints.is_empty() {
        eprintln!(
            "error: {} lint finding(s) with --strict; nothing written",
            lints.len()
        );
        return Ok(ExitCode::from(1));
    }

    let outputs = planned_outputs(&rendered, &common.repo, out, format)?;
    if check {
        let mut stale = 0;
        for o in &outputs {
            match std::fs::read(&o.path) {
                Ok(disk) if disk == o.text.as_bytes() => {}
                Ok(_) => {
                    println!("stale: {}", o.path.display());
                    stale += 1;
                }
                Err(_) => {
                    println!("missing: {}", o.path.display());
                    stale += 1;
                }
            }
        }
        if stale > 0 {
            eprintln!("{stale} output(s) out of date: run `plimsoll render` and commit the result");
            return Ok(ExitCode::from(1));
        }
        println!("up to date: {} file(s)", outputs.len());
        return Ok(ExitCode::SUCCESS);
    }
    write_all_atomically(&outputs)?;
    for o in &outputs {
        println!("wrote {}", o.path.display());
    }
    Ok(ExitCode::SUCCESS)
}

/// Writes every output to a temporary file beside it, then renames them
/// all: a failure before the renames leaves every earlier output as it was.
fn write_all_atomically(outputs: &[Output]) -> anyhow::Result<()> {
    let mut temps: Vec<(PathBuf, &Path)> = Vec::new();
    let result = (|| -> anyhow::Result<()> {
        for o in outputs {
            let dir = o.path.parent().unwrap_or(Path::new("."));
            std::fs::create_dir_all(dir)
                .with_context(|| format!("cannot create {}", dir.display()))?;
            let name = o.path.file_name().unwrap_or_default().to_string_lossy();
            let tmp = dir.join(format!(".{name}.plimsoll-tmp-{}", std::process::id()));
            let mut f = std::fs::File::create(&tmp)
                .with_context(|| format!("cannot write {}", tmp.display()))?;
            temps.push((tmp.clone(), &o.path));
            f.write_all(o.text.as_bytes())?;
            f.sync_all()?;
        }
        Ok(())
    })();
    if let Err(e) = result {
        for (tmp, _) in &temps {
            let _ = std::fs::remove_file(tmp);
        }
        return Err(e);
    }
    for (tmp, dest) in &temps {
        std::fs::rename(tmp, dest).with_context(|| format!("cannot replace {}", dest.display()))?;
    }
    Ok(())
}

/// The default values of a chart available locally (a directory or a
/// packaged `.tgz`, relative to the repository), or `None`.
fn chart_defaults(
    repo: &Path,
    chart: &str,
) -> anyhow::Result<Option<plimsoll_renderer::yaml::Node>> {
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

fn cmd_explain(common: &Common, release: &str, path: &str) -> anyhow::Result<ExitCode> {
    let (stack, vars) = load_stack(common)?;
    let Some(rel) = stack.release(release) else {
        let names: Vec<&str> = stack.releases.iter().map(|r| r.name.as_str()).collect();
        bail!("no release {release:?} (releases: {})", names.join(", "));
    };
    let keys = render::parse_path(path);
    let read = repo_reader(&common.repo);
    let steps = render::explain(rel, &vars, &read, &keys)?;
    let mut out = std::io::stdout().lock();
    let Some(last) = steps.last() else {
        writeln!(out, "{path}: not set by any layer of {release}")?;
        return Ok(ExitCode::from(1));
    };
    match &last.value {
        Some(v) => writeln!(out, "{path} = {}", indent_block(v))?,
        None => writeln!(out, "{path} is absent from the rendered values")?,
    }
    writeln!(out, "  set by {}:{}", last.file, last.line)?;
    for s in steps.iter().rev().skip(1) {
        let what = match &s.value {
            Some(v) => indent_block(v),
            None => "(absent)".to_string(),
        };
        writeln!(out, "  overrode {what}  ({}:{})", s.file, s.line)?;
    }
    Ok(ExitCode::SUCCESS)
}

fn indent_block(v: &str) -> String {
    if v.contains('\n') {
        format!("\n    {}", v.replace('\n', "\n    "))
    } else {
        v.to_string()
    }
}

fn runtime() -> anyhow::Result<tokio::runtime::Runtime> {
    Ok(tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()?)
}

async fn kube_client(cluster: &Cluster) -> anyhow::Result<kube::Client> {
    let options = kube::config::KubeConfigOptions {
        context: cluster.context.clone(),
        ..Default::default()
    };
    let config = match &cluster.kubeconfig {
        Some(path) => {
            let kc = kube::config::Kubeconfig::read_from(path)
                .with_context(|| format!("cannot read {}", path.display()))?;
            kube::Config::from_custom_kubeconfig(kc, &options).await?
        }
        None => kube::Config::from_kubeconfig(&options)
            .await
            .or_else(|_| kube::Config::incluster())?,
    };
    Ok(kube::Client::try_from(config)?)
}

/// The namespaces to read: given ones, else those of the stack's releases.
fn namespaces(common: &Common, cluster: &Cluster) -> anyhow::Result<Vec<String>> {
    if !cluster.namespaces.is_empty() {
        return Ok(cluster.namespaces.clone());
    }
    let (stack, _) = load_stack(common)?;
    let mut ns: Vec<String> = stack.releases.iter().map(|r| r.namespace.clone()).collect();
    ns.sort();
    ns.dedup();
    Ok(ns)
}

fn observe_cluster(
    common: &Common,
    cluster: &Cluster,
    targets: &[plimsoll_syncer::state::ResourceRef],
) -> anyhow::Result<plimsoll_syncer::state::ObservedState> {
    let ns = namespaces(common, cluster)?;
    runtime()?.block_on(async {
        let client = kube_client(cluster).await?;
        observe_all(&client, &ns, targets).await
    })
}

/// Reads the namespaces' observed state and the declared patch targets.
async fn observe_all(
    client: &kube::Client,
    ns: &[String],
    targets: &[plimsoll_syncer::state::ResourceRef],
) -> anyhow::Result<plimsoll_syncer::state::ObservedState> {
    {
        let client = client.clone();
        let mut all = plimsoll_syncer::state::ObservedState::default();
        for n in ns {
            let o = plimsoll_syncer::observe::observe(&client, n)
                .await
                .with_context(|| format!("reading namespace {n}"))?;
            all.releases.extend(o.releases);
            all.statefulsets.extend(o.statefulsets);
            all.pvcs.extend(o.pvcs);
            all.deployments.extend(o.deployments);
            if all.storage_classes.is_empty() {
                all.storage_classes = o.storage_classes;
            }
        }
        all.resources = plimsoll_syncer::observe::observe_resources(&client, targets)
            .await
            .context("reading the resources the stack patches")?;
        Ok(all)
    }
}

fn cmd_snapshot(
    common: &Common,
    cluster: &Cluster,
    out: Option<&Path>,
) -> anyhow::Result<ExitCode> {
    // The resources the stack declares patches for are part of the snapshot.
    let targets: Vec<_> = match load_stack(common) {
        Ok((stack, _)) => stack
            .releases
            .iter()
            .flat_map(|r| r.patches.iter())
            .map(|p| plimsoll_syncer::state::ResourceRef {
                api_version: p.api_version.clone(),
                kind: p.kind.clone(),
                namespace: p.namespace.clone(),
                name: p.name.clone(),
            })
            .collect(),
        Err(_) if !cluster.namespaces.is_empty() => Vec::new(),
        Err(e) => return Err(e),
    };
    let observed = observe_cluster(common, cluster, &targets)?;
    let text = serde_json::to_string_pretty(&observed)? + "\n";
    match out {
        Some(path) => write_all_atomically(&[Output {
            path: path.to_path_buf(),
            text,
        }])?,
        None => std::io::stdout().write_all(text.as_bytes())?,
    }
    Ok(ExitCode::SUCCESS)
}

/// Rendered values changes since `base`, each attributed to the layer
/// (file:line) the new value comes from.
fn values_since_base(
    current: &Rendered,
    base: &Rendered,
    base_name: &str,
) -> anyhow::Result<Vec<plimsoll_syncer::plan::ValuesSinceBase>> {
    let as_json = |node: &plimsoll_renderer::yaml::Node| -> anyhow::Result<serde_json::Value> {
        Ok(serde_json::from_str(&json::to_json(node)?)?)
    };
    let mut out = Vec::new();
    for r in &current.releases {
        let before = match base
            .releases
            .iter()
            .find(|b| b.release.name == r.release.name)
        {
            Some(b) => as_json(&b.result.node)?,
            None => serde_json::Value::Object(Default::default()),
        };
        let after = as_json(&r.result.node)?;
        let changes: Vec<_> = plimsoll_syncer::plan::values_diff(&before, &after)
            .into_iter()
            .map(|change| {
                let layer = render::lookup(&r.result.node, &change.keys)
                    .filter(|_| change.to.is_some())
                    .and_then(|n| {
                        r.inputs
                            .get(n.origin.layer as usize)
                            .map(|i| format!("{}:{}", i.path, n.origin.line))
                    });
                plimsoll_syncer::plan::AttributedChange { change, layer }
            })
            .collect();
        if !changes.is_empty() {
            out.push(plimsoll_syncer::plan::ValuesSinceBase {
                release: r.release.name.clone(),
                base: base_name.to_string(),
                changes,
            });
        }
    }
    Ok(out)
}

fn cmd_plan(
    common: &Common,
    cluster: &Cluster,
    live: Option<&Path>,
    (rev, base): (Option<&str>, Option<&str>),
    format: PlanFormat,
    strict: bool,
    helm: Option<&Path>,
) -> anyhow::Result<ExitCode> {
    let helm = desired::helm_executable(helm);
    let desired = desired::load(common, rev, &helm)?;
    let observed = match live {
        Some(path) => {
            let text = std::fs::read_to_string(path)
                .with_context(|| format!("cannot read {}", path.display()))?;
            serde_json::from_str(&text)
                .with_context(|| format!("{} is not a Plimsoll snapshot", path.display()))?
        }
        None => observe_cluster(common, cluster, &desired.patch_targets())?,
    };
    let options = plimsoll_syncer::plan::PlanOptions {
        strict,
        catalogs: desired.catalogs.clone(),
    };
    let mut plan = plimsoll_syncer::plan::plan(&desired.releases, &observed, &options);
    if let Some(b) = base {
        let base_rev = plimsoll_syncer::git::Revision::open(&common.repo, b)?;
        let (_, base_rendered) = desired::render_revision(common, &base_rev)?;
        plan.values_since_base = values_since_base(&desired.rendered, &base_rendered, b)?;
    }
    let text = match format {
        PlanFormat::Text => plimsoll_syncer::plan::to_text(&plan),
        PlanFormat::Markdown => plimsoll_syncer::plan::to_markdown(&plan),
        PlanFormat::Json => plimsoll_syncer::plan::to_json(&plan),
    };
    std::io::stdout().write_all(text.as_bytes())?;
    Ok(ExitCode::from(plan.exit_code()))
}
