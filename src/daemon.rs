//! `plimsoll daemon`: follow the tracked branch and keep the cluster at it.
//!
//! Triggers: a timer (the interval, jittered), changes under a local
//! repository's `.git` (notify), and `POST /hook` (push webhooks). On a new
//! commit it syncs; on every interval it also compares the live state with
//! the last synced commit (drift), reports it, and with `--self-heal`
//! syncs it back. `/metrics`, `/healthz` and `/readyz` are served on
//! `--listen`. SIGTERM stops at the next safe boundary of a running sync
//! (the executor never stops between an orphan delete and its upgrade);
//! the journal lets the next start finish the job.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use anyhow::Context;
use k8s_openapi::api::core::v1::Event;
use kube::api::{Api, PostParams};
use plimsoll_syncer::plan::{self, PlanOptions};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::sync::mpsc;

use crate::desired::DesiredState;
use crate::sync::{sync_once, SyncOptions, SyncOutcome};
use crate::Common;

/// Where the deployment repository comes from.
#[derive(Clone, Debug)]
pub enum Source {
    /// A local repository (watched with notify).
    Local(PathBuf),
    /// A remote URL, fetched into a bare mirror.
    Remote { url: String, mirror: PathBuf },
}

#[derive(Clone, Debug)]
pub struct DaemonOptions {
    pub source: Source,
    pub branch: String,
    pub interval: Duration,
    pub listen: Option<std::net::SocketAddr>,
    pub self_heal: bool,
    pub webhook_secret: Option<Vec<u8>>,
}

const DURATION_BUCKETS: [f64; 8] = [1.0, 5.0, 15.0, 30.0, 60.0, 300.0, 900.0, 3600.0];

/// What `/metrics` reports.
#[derive(Default)]
pub struct Metrics {
    stack: String,
    synced_revision: String,
    sync_duration_buckets: [u64; DURATION_BUCKETS.len()],
    sync_duration_sum: f64,
    sync_duration_count: u64,
    syncs: BTreeMap<&'static str, u64>,
    steps_executed: BTreeMap<String, u64>,
    steps_failed: BTreeMap<String, u64>,
    drift: BTreeMap<String, u64>,
    last_error: String,
    last_error_time: f64,
    reconcile_cpu_seconds: f64,
    ready: bool,
}

fn escape_label(v: &str) -> String {
    v.replace('\\', "\\\\")
        .replace('"', "\\\"")
        .replace('\n', "\\n")
}

impl Metrics {
    /// Prometheus text exposition format (version 0.0.4).
    pub fn render(&self) -> String {
        let s = escape_label(&self.stack);
        let mut o = String::new();
        o.push_str("# HELP plimsoll_synced_revision_info The commit the cluster was last synced to.\n# TYPE plimsoll_synced_revision_info gauge\n");
        o.push_str(&format!(
            "plimsoll_synced_revision_info{{stack=\"{s}\",revision=\"{}\"}} 1\n",
            escape_label(&self.synced_revision)
        ));
        o.push_str("# HELP plimsoll_sync_duration_seconds Duration of syncs that changed the cluster.\n# TYPE plimsoll_sync_duration_seconds histogram\n");
        let mut cumulative = 0;
        for (i, le) in DURATION_BUCKETS.iter().enumerate() {
            cumulative += self.sync_duration_buckets[i];
            o.push_str(&format!(
                "plimsoll_sync_duration_seconds_bucket{{stack=\"{s}\",le=\"{le}\"}} {cumulative}\n"
            ));
        }
        o.push_str(&format!(
            "plimsoll_sync_duration_seconds_bucket{{stack=\"{s}\",le=\"+Inf\"}} {}\n\
             plimsoll_sync_duration_seconds_sum{{stack=\"{s}\"}} {}\n\
             plimsoll_sync_duration_seconds_count{{stack=\"{s}\"}} {}\n",
            self.sync_duration_count, self.sync_duration_sum, self.sync_duration_count
        ));
        o.push_str(
            "# HELP plimsoll_syncs_total Syncs by result.\n# TYPE plimsoll_syncs_total counter\n",
        );
        for (result, n) in &self.syncs {
            o.push_str(&format!(
                "plimsoll_syncs_total{{stack=\"{s}\",result=\"{result}\"}} {n}\n"
            ));
        }
        o.push_str("# HELP plimsoll_steps_executed_total Plan steps executed, by kind.\n# TYPE plimsoll_steps_executed_total counter\n");
        for (kind, n) in &self.steps_executed {
            o.push_str(&format!(
                "plimsoll_steps_executed_total{{stack=\"{s}\",kind=\"{kind}\"}} {n}\n"
            ));
        }
        o.push_str("# HELP plimsoll_steps_failed_total Plan steps that failed, by kind.\n# TYPE plimsoll_steps_failed_total counter\n");
        for (kind, n) in &self.steps_failed {
            o.push_str(&format!(
                "plimsoll_steps_failed_total{{stack=\"{s}\",kind=\"{kind}\"}} {n}\n"
            ));
        }
        o.push_str("# HELP plimsoll_drift Steps needed to bring a release back to the synced commit (0: no drift).\n# TYPE plimsoll_drift gauge\n");
        for (release, n) in &self.drift {
            o.push_str(&format!(
                "plimsoll_drift{{stack=\"{s}\",release=\"{}\"}} {n}\n",
                escape_label(release)
            ));
        }
        o.push_str("# HELP plimsoll_last_error_info The last error (empty when the last pass succeeded).\n# TYPE plimsoll_last_error_info gauge\n");
        o.push_str(&format!(
            "plimsoll_last_error_info{{stack=\"{s}\",message=\"{}\"}} 1\n",
            escape_label(&self.last_error)
        ));
        o.push_str("# HELP plimsoll_last_error_timestamp_seconds When the last error happened.\n# TYPE plimsoll_last_error_timestamp_seconds gauge\n");
        o.push_str(&format!(
            "plimsoll_last_error_timestamp_seconds{{stack=\"{s}\"}} {}\n",
            self.last_error_time
        ));
        o.push_str("# HELP plimsoll_reconcile_cpu_seconds CPU time of the last reconcile pass.\n# TYPE plimsoll_reconcile_cpu_seconds gauge\n");
        o.push_str(&format!(
            "plimsoll_reconcile_cpu_seconds{{stack=\"{s}\"}} {}\n",
            self.reconcile_cpu_seconds
        ));
        o
    }

    fn observe_duration(&mut self, seconds: f64) {
        if let Some(i) = DURATION_BUCKETS.iter().position(|le| seconds <= *le) {
            self.sync_duration_buckets[i] += 1;
        }
        self.sync_duration_sum += seconds;
        self.sync_duration_count += 1;
    }

    fn error(&mut self, message: &str) {
        self.last_error = message.to_string();
        self.last_error_time = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.as_secs_f64())
            .unwrap_or(0.0);
    }
}

/// CPU time of this process (user + system), from /proc.
fn cpu_seconds() -> f64 {
    let Ok(stat) = std::fs::read_to_string("/proc/self/stat") else {
        return 0.0;
    };
    // Fields after the command name (which may contain spaces).
    let rest = stat.rsplit_once(')').map(|(_, r)| r).unwrap_or("");
    let f: Vec<&str> = rest.split_whitespace().collect();
    let ticks = |i: usize| f.get(i).and_then(|v| v.parse::<f64>().ok()).unwrap_or(0.0);
    // utime and stime are fields 14 and 15 (1-based); `rest` starts at 3.
    (ticks(11) + ticks(12)) / 100.0
}

/// HMAC-SHA256 (RFC 2104), for GitHub-style webhook signatures.
pub fn hmac_sha256(key: &[u8], message: &[u8]) -> [u8; 32] {
    use sha2::{Digest, Sha256};
    let mut k = [0u8; 64];
    if key.len() > 64 {
        k[..32].copy_from_slice(&Sha256::digest(key));
    } else {
        k[..key.len()].copy_from_slice(key);
    }
    let mut inner = Sha256::new();
    inner.update(k.map(|b| b ^ 0x36));
    inner.update(message);
    let mut outer = Sha256::new();
    outer.update(k.map(|b| b ^ 0x5c));
    outer.update(inner.finalize());
    outer.finalize().into()
}

fn signature_ok(secret: &[u8], body: &[u8], header: Option<&str>) -> bool {
    let Some(hex) = header.and_then(|h| h.trim().strip_prefix("sha256=")) else {
        return false;
    };
    let mac = hmac_sha256(secret, body);
    let want: String = mac.iter().map(|b| format!("{b:02x}")).collect();
    // Constant time: compare every byte.
    want.len() == hex.len()
        && want
            .bytes()
            .zip(hex.to_ascii_lowercase().bytes())
            .fold(0u8, |acc, (a, b)| acc | (a ^ b))
            == 0
}

/// Serves `/metrics`, `/healthz`, `/readyz` and `POST /hook`.
async fn serve(
    listener: tokio::net::TcpListener,
    metrics: Arc<Mutex<Metrics>>,
    trigger: mpsc::Sender<&'static str>,
    secret: Option<Vec<u8>>,
) {
    loop {
        let Ok((mut conn, _)) = listener.accept().await else {
            continue;
        };
        let (metrics, trigger, secret) = (metrics.clone(), trigger.clone(), secret.clone());
        tokio::spawn(async move {
            let mut buf = Vec::new();
            let mut chunk = [0u8; 8192];
            // Headers, then a body of Content-Length (at most 1 MiB).
            let (head_end, length) = loop {
                let Ok(Ok(n)) =
                    tokio::time::timeout(Duration::from_secs(10), conn.read(&mut chunk)).await
                else {
                    return;
                };
                if n == 0 {
                    return;
                }
                buf.extend_from_slice(&chunk[..n]);
                if let Some(i) = buf.windows(4).position(|w| w == b"\r\n\r\n") {
                    let head = String::from_utf8_lossy(&buf[..i]).to_ascii_lowercase();
                    let length = head
                        .lines()
                        .find_map(|l| l.strip_prefix("content-length:"))
                        .and_then(|v| v.trim().parse::<usize>().ok())
                        .unwrap_or(0);
                    break (i + 4, length);
                }
                if buf.len() > 64 * 1024 {
                    return;
                }
            };
            if length > 1 << 20 {
                let _ = conn
                    .write_all(b"HTTP/1.1 413 Payload Too Large\r\nContent-Length: 0\r\nConnection: close\r\n\r\n")
                    .await;
                return;
            }
            while buf.len() < head_end + length {
                let Ok(Ok(n)) =
                    tokio::time::timeout(Duration::from_secs(10), conn.read(&mut chunk)).await
                else {
                    return;
                };
                if n == 0 {
                    break;
                }
                buf.extend_from_slice(&chunk[..n]);
            }
            let head = String::from_utf8_lossy(&buf[..head_end]).into_owned();
            let body = &buf[head_end..(head_end + length).min(buf.len())];
            let mut first = head.lines().next().unwrap_or("").split_whitespace();
            let (method, path) = (first.next().unwrap_or(""), first.next().unwrap_or(""));
            let header = |name: &str| {
                head.lines().find_map(|l| {
                    let (k, v) = l.split_once(':')?;
                    k.eq_ignore_ascii_case(name).then(|| v.trim().to_string())
                })
            };
            let (status, content_type, text) = match (method, path) {
                ("GET", "/metrics") => (
                    "200 OK",
                    "text/plain; version=0.0.4",
                    metrics.lock().map(|m| m.render()).unwrap_or_default(),
                ),
                ("GET", "/healthz") => ("200 OK", "text/plain", "ok\n".to_string()),
                ("GET", "/readyz") => {
                    if metrics.lock().map(|m| m.ready).unwrap_or(false) {
                        ("200 OK", "text/plain", "ready\n".to_string())
                    } else {
                        (
                            "503 Service Unavailable",
                            "text/plain",
                            "not ready: no reconcile pass has completed\n".to_string(),
                        )
                    }
                }
                ("POST", "/hook") => {
                    let ok = match &secret {
                        Some(s) => signature_ok(s, body, header("x-hub-signature-256").as_deref()),
                        None => true,
                    };
                    if ok {
                        let _ = trigger.try_send("webhook");
                        (
                            "202 Accepted",
                            "text/plain",
                            "fetch scheduled\n".to_string(),
                        )
                    } else {
                        (
                            "401 Unauthorized",
                            "text/plain",
                            "bad signature\n".to_string(),
                        )
                    }
                }
                _ => ("404 Not Found", "text/plain", "not found\n".to_string()),
            };
            let response = format!(
                "HTTP/1.1 {status}\r\nContent-Type: {content_type}\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{text}",
                text.len()
            );
            let _ = conn.write_all(response.as_bytes()).await;
        });
    }
}

/// Watches a local repository's `.git` for ref changes.
fn watch_local(
    repo: &Path,
    trigger: mpsc::Sender<&'static str>,
) -> anyhow::Result<notify::RecommendedWatcher> {
    use notify::Watcher;
    let git_dir = git2::Repository::open(repo)
        .with_context(|| format!("{} is not a git repository", repo.display()))?
        .path()
        .to_path_buf();
    let mut watcher = notify::recommended_watcher(move |event: notify::Result<notify::Event>| {
        if let Ok(e) = event {
            // Ref updates: loose refs, packed refs, HEAD; not objects.
            let relevant = e.paths.iter().any(|p| {
                let s = p.to_string_lossy();
                s.contains("/refs/") || s.ends_with("packed-refs") || s.ends_with("HEAD")
            });
            if relevant {
                let _ = trigger.try_send("notify");
            }
        }
    })?;
    watcher.watch(&git_dir, notify::RecursiveMode::Recursive)?;
    Ok(watcher)
}

fn jittered(interval: Duration) -> Duration {
    // ±10 %, from the clock's nanoseconds (no RNG dependency needed).
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.subsec_nanos())
        .unwrap_or(0);
    let f = 0.9 + f64::from(nanos % 1000) / 1000.0 * 0.2;
    interval.mul_f64(f)
}

/// Creates a Warning Event on the release's first workload.
async fn drift_event(
    client: &kube::Client,
    namespace: &str,
    release: &plimsoll_syncer::state::DesiredRelease,
    message: &str,
) {
    let (kind, name) = match (release.statefulsets.first(), release.deployments.first()) {
        (Some(s), _) => ("StatefulSet", s.name.clone()),
        (None, Some(d)) => ("Deployment", d.clone()),
        _ => return,
    };
    let uid = match kind {
        "StatefulSet" => {
            Api::<k8s_openapi::api::apps::v1::StatefulSet>::namespaced(client.clone(), namespace)
                .get_opt(&name)
                .await
                .ok()
                .flatten()
                .and_then(|o| o.metadata.uid)
        }
        _ => Api::<k8s_openapi::api::apps::v1::Deployment>::namespaced(client.clone(), namespace)
            .get_opt(&name)
            .await
            .ok()
            .flatten()
            .and_then(|o| o.metadata.uid),
    };
    let now = k8s_openapi::jiff::Timestamp::now();
    let event: Event = match serde_json::from_value(serde_json::json!({
        "metadata": {"generateName": format!("{name}.plimsoll-drift-"), "namespace": namespace},
        "involvedObject": {"apiVersion": "apps/v1", "kind": kind, "namespace": namespace, "name": name, "uid": uid},
        "type": "Warning", "reason": "Drift", "message": message,
        "source": {"component": "plimsoll"},
        "firstTimestamp": now.to_string(), "lastTimestamp": now.to_string(), "count": 1,
    })) {
        Ok(e) => e,
        Err(_) => return,
    };
    if let Err(e) = Api::<Event>::namespaced(client.clone(), namespace)
        .create(&PostParams::default(), &event)
        .await
    {
        tracing::warn!(release = %release.name, "cannot record the drift event: {e}");
    }
}

struct Daemon {
    common: Common,
    opts: DaemonOptions,
    sync: SyncOptions,
    client: kube::Client,
    metrics: Arc<Mutex<Metrics>>,
    stop: Arc<AtomicBool>,
    /// The desired state of the last synced commit, kept for drift checks.
    synced: Option<(String, Arc<DesiredState>)>,
}

impl Daemon {
    async fn desired(&self, commit: &str) -> anyhow::Result<DesiredState> {
        let common = self.common.clone();
        let commit = commit.to_string();
        let helm = self.sync.settings.helm.clone();
        tokio::task::spawn_blocking(move || crate::desired::load(&common, Some(&commit), &helm))
            .await?
    }

    async fn sync(&mut self, desired: &DesiredState, why: &str) -> anyhow::Result<bool> {
        let progress: Arc<dyn Fn(&str) + Send + Sync> =
            Arc::new(|line: &str| tracing::info!("{line}"));
        tracing::info!(
            revision = desired.revision.as_deref().unwrap_or(""),
            "syncing ({why})"
        );
        let outcome = sync_once(
            &self.client,
            desired,
            &self.sync,
            self.stop.clone(),
            progress,
        )
        .await;
        let mut m = self
            .metrics
            .lock()
            .map_err(|_| anyhow::anyhow!("metrics lock"))?;
        match outcome {
            Ok(SyncOutcome::Done {
                report, elapsed, ..
            }) => {
                for (k, n) in &report.executed {
                    *m.steps_executed.entry(k.clone()).or_default() += u64::from(*n);
                }
                m.observe_duration(elapsed.as_secs_f64());
                *m.syncs.entry("succeeded").or_default() += 1;
                m.last_error.clear();
                tracing::info!(seconds = elapsed.as_secs_f64(), "sync complete");
                Ok(true)
            }
            Ok(SyncOutcome::NothingToDo) => {
                *m.syncs.entry("nothing-to-do").or_default() += 1;
                m.last_error.clear();
                tracing::info!("nothing to do");
                Ok(true)
            }
            Ok(SyncOutcome::DryRun { .. }) => Ok(false),
            Ok(SyncOutcome::Refused(p)) => {
                *m.syncs.entry("refused").or_default() += 1;
                let why: Vec<String> = p.refusals.iter().map(|r| r.message()).collect();
                m.error(&why.join("; "));
                tracing::error!(refusals = %why.join("; "), "the plan is refused; nothing changed");
                Ok(false)
            }
            Ok(SyncOutcome::Stopped { .. }) => {
                *m.syncs.entry("stopped").or_default() += 1;
                Ok(false)
            }
            Err(e) => {
                *m.syncs.entry("failed").or_default() += 1;
                if let Some(plimsoll_syncer::execute::ExecError::Step { step, .. }) =
                    e.downcast_ref::<plimsoll_syncer::execute::ExecError>()
                {
                    let kind = step.split('/').nth(2).unwrap_or("unknown").to_string();
                    *m.steps_failed.entry(kind).or_default() += 1;
                }
                m.error(&format!("{e:#}"));
                tracing::error!("sync failed: {e:#}");
                Ok(false)
            }
        }
    }

    /// Compares the live state with the synced commit; reports and, with
    /// self-heal, syncs back.
    async fn check_drift(&mut self) -> anyhow::Result<()> {
        let Some((commit, desired)) = self.synced.clone() else {
            return Ok(());
        };
        let observed = crate::observe_all(
            &self.client,
            &crate::sync::namespaces_of(&self.sync, &desired),
            &desired.patch_targets(),
        )
        .await?;
        let p = plan::plan(
            &desired.releases,
            &observed,
            &PlanOptions {
                strict: self.sync.strict,
                catalogs: desired.catalogs.clone(),
            },
        );
        let mut drifted = Vec::new();
        {
            let mut m = self
                .metrics
                .lock()
                .map_err(|_| anyhow::anyhow!("metrics lock"))?;
            for r in &desired.releases {
                let steps = p
                    .releases
                    .iter()
                    .find(|x| x.release == r.name)
                    .map_or(0, |x| x.steps.len() as u64);
                // Drift that cannot be synced back (a PVC grown by hand
                // past the desired size) counts too.
                let refused = p.refusals.iter().filter(|x| x.release() == r.name).count() as u64;
                m.drift.insert(r.name.clone(), steps + refused);
            }
        }
        for rp in &p.releases {
            let what: Vec<String> = rp.steps.iter().map(|s| s.describe()).collect();
            let message = format!(
                "{} drifted from {}: {}",
                rp.release,
                &commit[..12.min(commit.len())],
                what.join("; ")
            );
            tracing::warn!(release = %rp.release, "{message}");
            if let Some(r) = desired.releases.iter().find(|r| r.name == rp.release) {
                drift_event(&self.client, &r.namespace, r, &message).await;
            }
            drifted.push(rp.release.clone());
        }
        for r in &p.refusals {
            tracing::warn!("drift that cannot be synced back: {}", r.message());
        }
        if !drifted.is_empty() && self.opts.self_heal {
            self.sync(&desired, "self-heal").await?;
        }
        Ok(())
    }

    async fn pass(&mut self, why: &str) -> anyhow::Result<()> {
        let cpu = cpu_seconds();
        let head = {
            let this = (self.opts.source.clone(), self.opts.branch.clone());
            tokio::task::spawn_blocking(move || Daemon::head_of(&this.0, &this.1)).await??
        };
        let new_commit = self.synced.as_ref().is_none_or(|(c, _)| *c != head);
        if new_commit {
            tracing::info!(revision = %head, trigger = why, "new commit on {}", self.opts.branch);
            let desired = self.desired(&head).await?;
            if let Ok(mut m) = self.metrics.lock() {
                m.stack = desired.stack_name.clone();
            }
            if self.sync(&desired, why).await? {
                let mut m = self
                    .metrics
                    .lock()
                    .map_err(|_| anyhow::anyhow!("metrics lock"))?;
                m.synced_revision = head.clone();
                drop(m);
                self.synced = Some((head, Arc::new(desired)));
            }
        } else {
            self.check_drift().await?;
        }
        let mut m = self
            .metrics
            .lock()
            .map_err(|_| anyhow::anyhow!("metrics lock"))?;
        m.ready = true;
        m.reconcile_cpu_seconds = cpu_seconds() - cpu;
        tracing::debug!(cpu_seconds = m.reconcile_cpu_seconds, "reconcile pass done");
        Ok(())
    }

    fn head_of(source: &Source, branch: &str) -> anyhow::Result<String> {
        Ok(match source {
            Source::Local(path) => plimsoll_syncer::git::branch_head(path, branch)?,
            Source::Remote { url, mirror } => {
                plimsoll_syncer::git::fetch_branch(url, mirror, branch)?
            }
        })
    }
}

/// Runs the daemon until SIGTERM or Ctrl-C.
pub fn cmd_daemon(
    common: Common,
    client_of: impl std::future::Future<Output = anyhow::Result<kube::Client>>,
    sync: SyncOptions,
    opts: DaemonOptions,
) -> anyhow::Result<ExitCode> {
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()?;
    rt.block_on(async move {
        let client = client_of.await?;
        let metrics = Arc::new(Mutex::new(Metrics::default()));
        let (tx, mut rx) = mpsc::channel::<&'static str>(16);
        if let Some(addr) = opts.listen {
            let listener = tokio::net::TcpListener::bind(addr)
                .await
                .with_context(|| format!("cannot listen on {addr}"))?;
            tracing::info!(
                "serving /metrics, /healthz, /readyz and POST /hook on {}",
                listener.local_addr()?
            );
            tokio::spawn(serve(
                listener,
                metrics.clone(),
                tx.clone(),
                opts.webhook_secret.clone(),
            ));
        }
        let _watcher = match &opts.source {
            Source::Local(path) => Some(watch_local(path, tx.clone())?),
            Source::Remote { .. } => None,
        };
        let stop = Arc::new(AtomicBool::new(false));
        let (stop_tx, mut stop_rx) = mpsc::channel::<()>(1);
        {
            let stop = stop.clone();
            tokio::spawn(async move {
                if crate::sync::stop_requested().await {
                    tracing::info!("stop requested: stopping at the next safe boundary");
                    stop.store(true, Ordering::SeqCst);
                    let _ = stop_tx.send(()).await;
                }
            });
        }
        let mut daemon = Daemon {
            common,
            sync,
            client,
            metrics: metrics.clone(),
            stop: stop.clone(),
            synced: None,
            opts,
        };
        let mut why = "start";
        loop {
            let started = Instant::now();
            if let Err(e) = daemon.pass(why).await {
                tracing::error!("reconcile pass failed: {e:#}");
                if let Ok(mut m) = metrics.lock() {
                    m.error(&format!("{e:#}"));
                }
            }
            if stop.load(Ordering::SeqCst) {
                break;
            }
            let wait = jittered(daemon.opts.interval)
                .saturating_sub(started.elapsed().min(daemon.opts.interval / 2));
            tokio::select! {
                t = rx.recv() => {
                    why = t.unwrap_or("timer");
                    // Coalesce a burst of notifications into one pass.
                    tokio::time::sleep(Duration::from_millis(50)).await;
                    while rx.try_recv().is_ok() {}
                }
                _ = tokio::time::sleep(wait) => { why = "timer"; }
                _ = stop_rx.recv() => break,
            }
        }
        tracing::info!("stopped");
        Ok(ExitCode::SUCCESS)
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hmac_matches_rfc_4231_test_case_2() {
        let mac = hmac_sha256(b"Jefe", b"what do ya want for nothing?");
        let hex: String = mac.iter().map(|b| format!("{b:02x}")).collect();
        assert_eq!(
            hex,
            "5bdcc146bf60754e6a042426089575c75a003f089d2739839dec58b964ec3843"
        );
        assert!(signature_ok(
            b"Jefe",
            b"what do ya want for nothing?",
            Some(&format!("sha256={hex}"))
        ));
        assert!(!signature_ok(
            b"Jefe",
            b"what do ya want for something?",
            Some(&format!("sha256={hex}"))
        ));
        assert!(!signature_ok(b"Jefe", b"x", None));
    }

    #[test]
    fn metrics_render_in_prometheus_text_format() {
        let mut m = Metrics {
            stack: "example".into(),
            synced_revision: "abc".into(),
            ..Default::default()
        };
        m.observe_duration(3.0);
        m.drift.insert("data".into(), 2);
        m.error("boom \"quoted\"");
        let t = m.render();
        assert!(
            t.contains("plimsoll_synced_revision_info{stack=\"example\",revision=\"abc\"} 1"),
            "{t}"
        );
        assert!(
            t.contains("plimsoll_sync_duration_seconds_bucket{stack=\"example\",le=\"1\"} 0"),
            "{t}"
        );
        assert!(
            t.contains("plimsoll_sync_duration_seconds_bucket{stack=\"example\",le=\"5\"} 1"),
            "{t}"
        );
        assert!(
            t.contains("plimsoll_sync_duration_seconds_count{stack=\"example\"} 1"),
            "{t}"
        );
        assert!(
            t.contains("plimsoll_drift{stack=\"example\",release=\"data\"} 2"),
            "{t}"
        );
        assert!(t.contains("message=\"boom \\\"quoted\\\"\""), "{t}");
    }
}
