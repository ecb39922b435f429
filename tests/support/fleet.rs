//! A fleet for the daemon's tests and soak: a repository of many small
//! stacks (`stacks/sNN/plimsoll.yaml`, one release each of a chart that
//! renders a ConfigMap), and daemon replicas run as processes.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use super::commit_all;

/// The chart every fleet stack deploys: a ConfigMap holding `message`, and
/// with `fail: true` a template that fails (a broken release).
pub const CHART: &str = "apiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: {{ .Release.Name }}\ndata:\n  message: {{ .Values.message | quote }}\n";

pub struct FleetRepo {
    pub dir: tempfile::TempDir,
    git: git2::Repository,
    pub namespace: String,
}

impl FleetRepo {
    /// `stacks` stacks `s00`, `s01`, … each with release `rNN` of the
    /// ConfigMap chart in `namespace`, message `v1`; committed on `main`.
    pub fn new(namespace: &str, stacks: usize) -> FleetRepo {
        let dir = tempfile::tempdir().unwrap();
        let git = git2::Repository::init(dir.path()).unwrap();
        git.set_head("refs/heads/main").unwrap();
        let repo = FleetRepo {
            dir,
            git,
            namespace: namespace.to_string(),
        };
        repo.write(
            "charts/cm/Chart.yaml",
            "apiVersion: v2\nname: cm\nversion: 1.0.0\n",
        );
        repo.write("charts/cm/values.yaml", "message: hello\n");
        repo.write("charts/cm/templates/cm.yaml", CHART);
        for i in 0..stacks {
            repo.add_stack(i, namespace);
        }
        repo.commit("stacks");
        repo
    }

    pub fn path(&self) -> &Path {
        self.dir.path()
    }

    pub fn write(&self, rel: &str, text: &str) {
        let p = self.dir.path().join(rel);
        std::fs::create_dir_all(p.parent().unwrap()).unwrap();
        std::fs::write(p, text).unwrap();
    }

    /// Stack `i` with its release in `namespace`.
    pub fn add_stack(&self, i: usize, namespace: &str) {
        self.write(
            &format!("stacks/s{i:02}/plimsoll.yaml"),
            &format!(
                "name: s{i:02}\nreleases:\n  - name: r{i:02}\n    chart: charts/cm\n    version: 1.0.0\n    namespace: {namespace}\n    stage: apps\n    layers: [stacks/s{i:02}/values.yaml]\n"
            ),
        );
        self.write(&format!("stacks/s{i:02}/values.yaml"), "message: v1\n");
    }

    pub fn set_message(&self, i: usize, message: &str) {
        self.write(
            &format!("stacks/s{i:02}/values.yaml"),
            &format!("message: {message}\n"),
        );
    }

    pub fn commit(&self, message: &str) -> String {
        commit_all(&self.git, message)
    }
}

/// The `message` of each release's ConfigMap in `namespace` (`rNN` →
/// message), as the cluster has them.
pub async fn messages(client: &kube::Client, namespace: &str) -> BTreeMap<String, String> {
    let api: kube::Api<k8s_openapi::api::core::v1::ConfigMap> =
        kube::Api::namespaced(client.clone(), namespace);
    let Ok(list) = api.list(&Default::default()).await else {
        return BTreeMap::new();
    };
    list.items
        .into_iter()
        .filter_map(|c| {
            let name = c.metadata.name?;
            let m = c.data?.get("message")?.clone();
            name.starts_with('r').then_some((name, m))
        })
        .collect()
}

/// A free loopback port (bound, then released).
pub fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// A daemon replica run as a process.
pub struct Replica {
    pub identity: String,
    pub child: Option<Child>,
    pub log: PathBuf,
    pub addr: String,
    pub status: String,
}

impl Replica {
    /// `plimsoll daemon` following `repo`'s stacks as `identity`.
    pub fn start(
        repo: &Path,
        kubeconfig: &Path,
        helm: &Path,
        identity: &str,
        logs: &Path,
        extra: &[&str],
    ) -> Replica {
        let addr = format!("127.0.0.1:{}", free_port());
        let status = format!("127.0.0.1:{}", free_port());
        // Several lives of one identity append to one log.
        let log = logs.join(format!("{identity}.log"));
        let file = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(&log)
            .unwrap();
        let child = Command::new(env!("CARGO_BIN_EXE_plimsoll"))
            .current_dir(repo)
            .args([
                "daemon",
                "--branch",
                "main",
                "--stacks",
                "stacks/*/plimsoll.yaml",
            ])
            .args([
                "--identity",
                identity,
                "--listen",
                &addr,
                "--status-listen",
                &status,
            ])
            .arg("--kubeconfig")
            .arg(kubeconfig)
            .arg("--helm")
            .arg(helm)
            .args(extra)
            .stdout(Stdio::null())
            .stderr(file)
            .spawn()
            .unwrap();
        Replica {
            identity: identity.to_string(),
            child: Some(child),
            log,
            addr,
            status,
        }
    }

    pub fn log(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }

    pub fn is_running(&mut self) -> bool {
        self.child
            .as_mut()
            .is_some_and(|c| c.try_wait().ok().flatten().is_none())
    }

    /// `/status.json`, when the replica answers.
    pub fn status_json(&self) -> Option<serde_json::Value> {
        let (code, body) = http_get(&self.status, "/status.json")?;
        if code != 200 {
            return None;
        }
        serde_json::from_str(body.split("\r\n\r\n").nth(1)?).ok()
    }

    /// Keys of the stacks this replica says it holds.
    pub fn held(&self) -> Option<Vec<String>> {
        let v = self.status_json()?;
        Some(
            v["stacks"]
                .as_array()?
                .iter()
                .filter(|s| s["mine"] == true)
                .filter_map(|s| s["key"].as_str().map(str::to_string))
                .collect(),
        )
    }

    /// SIGKILL to the replica and its helm processes (as the pod's death
    /// does): no clean stop, its leases expire.
    pub fn kill(&mut self) {
        if let Some(mut c) = self.child.take() {
            super::kill_tree(&mut c);
        }
    }

    /// SIGTERM without waiting: the process stops at its next safe
    /// boundary (a helm upgrade running finishes first) and gives its
    /// leases back, while the rest goes on (a rolling update).
    pub fn signal_term(&mut self) {
        if let Some(c) = &self.child {
            let _ = Command::new("kill")
                .args(["-TERM", &c.id().to_string()])
                .status();
        }
    }

    /// SIGTERM: a clean stop (leases given back); waits for the exit.
    pub fn terminate(&mut self) -> Option<std::process::ExitStatus> {
        let mut c = self.child.take()?;
        let _ = Command::new("kill")
            .args(["-TERM", &c.id().to_string()])
            .status();
        for _ in 0..600 {
            if let Ok(Some(s)) = c.try_wait() {
                return Some(s);
            }
            std::thread::sleep(Duration::from_millis(100));
        }
        let _ = c.kill();
        c.wait().ok()
    }
}

impl Drop for Replica {
    fn drop(&mut self) {
        self.kill();
    }
}

impl Replica {
    /// Waits (up to `limit`) for a process sent SIGTERM to exit by itself.
    pub fn wait_exit(&mut self, limit: Duration) -> Option<std::process::ExitStatus> {
        let c = self.child.as_mut()?;
        let start = std::time::Instant::now();
        while start.elapsed() < limit {
            if let Ok(Some(s)) = c.try_wait() {
                return Some(s);
            }
            std::thread::sleep(Duration::from_millis(100));
        }
        None
    }
}

/// `GET path` over plain HTTP/1.1: (status, whole response).
pub fn http_get(addr: &str, path: &str) -> Option<(u16, String)> {
    use std::io::{Read, Write};
    let mut s = std::net::TcpStream::connect(addr).ok()?;
    s.set_read_timeout(Some(Duration::from_secs(10))).ok()?;
    write!(s, "GET {path} HTTP/1.1\r\nHost: x\r\n\r\n").ok()?;
    let mut out = String::new();
    let _ = s.read_to_string(&mut out);
    let code = out.split_whitespace().nth(1)?.parse().ok()?;
    Some((code, out))
}

/// A replica's working intervals per stack key, from its log lines
/// `working on the stack` / `stopped working on the stack` (RFC 3339
/// timestamps in UTC, as seconds); an interval still open ends at `end`.
pub fn working_intervals(log: &str, end: f64) -> Intervals {
    let mut open: BTreeMap<String, f64> = BTreeMap::new();
    let mut out: BTreeMap<String, Vec<(f64, f64)>> = BTreeMap::new();
    for line in log.lines() {
        let Some(t) = line.split_whitespace().next().and_then(rfc3339_seconds) else {
            continue;
        };
        let key = line.split("key=").nth(1).map(|k| {
            k.trim_matches('"')
                .split(['"', ' '])
                .next()
                .unwrap_or("")
                .to_string()
        });
        let Some(key) = key else { continue };
        if line.contains("stopped working on the stack") {
            if let Some(s) = open.remove(&key) {
                out.entry(key).or_default().push((s, t));
            }
        } else if line.contains("working on the stack") {
            open.insert(key, t);
        }
    }
    for (k, s) in open {
        out.entry(k).or_default().push((s, end));
    }
    out
}

/// `2026-12-06T19:22:01.043498Z` as seconds since the epoch (UTC).
pub fn rfc3339_seconds(s: &str) -> Option<f64> {
    let s = s.strip_suffix('Z')?;
    let (date, time) = s.split_once('T')?;
    let mut d = date.split('-').map(|x| x.parse::<i64>());
    let (y, m, day) = (d.next()?.ok()?, d.next()?.ok()?, d.next()?.ok()?);
    let mut t = time.split(':');
    let (h, mi) = (
        t.next()?.parse::<i64>().ok()?,
        t.next()?.parse::<i64>().ok()?,
    );
    let sec: f64 = t.next()?.parse().ok()?;
    // Days from civil (Howard Hinnant's algorithm).
    let y = if m <= 2 { y - 1 } else { y };
    let era = y.div_euclid(400);
    let yoe = y - era * 400;
    let doy = (153 * (m + if m > 2 { -3 } else { 9 }) + 2) / 5 + day - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    let days = era * 146_097 + doe - 719_468;
    Some((days * 86_400 + h * 3600 + mi * 60) as f64 + sec)
}

/// Now, as seconds since the epoch.
pub fn now_seconds() -> f64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs_f64()
}

/// Working intervals (start, end in seconds) by stack key.
pub type Intervals = BTreeMap<String, Vec<(f64, f64)>>;

/// Pairs of replicas that worked on one stack at the same time:
/// `(stack key, replica a, replica b, overlap in seconds)`.
pub fn overlaps(by_replica: &BTreeMap<String, Intervals>) -> Vec<(String, String, String, f64)> {
    let mut out = Vec::new();
    let names: Vec<&String> = by_replica.keys().collect();
    for (i, a) in names.iter().enumerate() {
        for b in &names[i + 1..] {
            for (key, ia) in &by_replica[*a] {
                let Some(ib) = by_replica[*b].get(key) else {
                    continue;
                };
                for (s1, e1) in ia {
                    for (s2, e2) in ib {
                        let o = e1.min(*e2) - s1.max(*s2);
                        if o > 0.0 {
                            out.push((key.clone(), (*a).clone(), (*b).clone(), o));
                        }
                    }
                }
            }
        }
    }
    out
}
