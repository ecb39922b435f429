//! Test support: a real Kubernetes control plane and the real Helm engine,
//! started by the tests that need them.
//!
//! - [`Env`]: where the provisioned binaries are (`scripts/provision-test-env.sh`
//!   writes them to `~/.cache/plimsoll-test-env/env.sh`).
//! - [`ControlPlane`]: etcd, kube-apiserver (TLS, token auth, RBAC) and
//!   kube-controller-manager on loopback, free ports, a temporary directory;
//!   a kubeconfig; a `helm` command backed by the Helm SDK. Everything is
//!   stopped when the value is dropped (also on panic), and by a watchdog if
//!   the test process dies without unwinding.
//!
//! Only the node (kubelet) and the storage driver are stood in for; those
//! actors live in [`actors`]. Nothing here is used by product code.

use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

pub mod actors;
pub mod charts;
pub mod operators;

/// The Kubernetes versions the test control plane runs.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum KubeVersion {
    /// v1.20.2, built from Debian bookworm's `kubernetes` source package.
    V1_20,
    /// v1.32.13, built from the source archive in `testenv/kubernetes/`.
    V1_32,
}

impl KubeVersion {
    pub const ALL: [KubeVersion; 2] = [KubeVersion::V1_20, KubeVersion::V1_32];

    pub fn as_str(self) -> &'static str {
        match self {
            KubeVersion::V1_20 => "1.20",
            KubeVersion::V1_32 => "1.32",
        }
    }

    pub fn parse(s: &str) -> Option<KubeVersion> {
        KubeVersion::ALL.into_iter().find(|v| v.as_str() == s)
    }

    /// The version this test process uses: `PLIMSOLL_KUBE_VERSION` (set by
    /// [`on_both_versions!`] for each test), else 1.20.
    pub fn current() -> KubeVersion {
        std::env::var("PLIMSOLL_KUBE_VERSION")
            .ok()
            .and_then(|v| KubeVersion::parse(&v))
            .unwrap_or(KubeVersion::V1_20)
    }

    /// Selects this version for the rest of the test process (nextest runs
    /// every test in a process of its own).
    pub fn select(self) {
        std::env::set_var("PLIMSOLL_KUBE_VERSION", self.as_str());
    }

    /// The suffix of the provisioned variables (`PLIMSOLL_ETCD_1_32`).
    fn var_suffix(self) -> &'static str {
        match self {
            KubeVersion::V1_20 => "",
            KubeVersion::V1_32 => "_1_32",
        }
    }
}

/// Runs a control-plane test once per Kubernetes version: `NAME::v1_20`
/// and `NAME::v1_32`, each a test of its own.
#[macro_export]
macro_rules! on_both_versions {
    ($(#[$meta:meta])* async fn $name:ident() $body:block) => {
        $(#[$meta])*
        mod $name {
            #[allow(unused_imports)]
            use super::*;

            #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
            async fn v1_20() {
                $crate::KubeVersion::V1_20.select();
                $body
            }

            #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
            async fn v1_32() {
                $crate::KubeVersion::V1_32.select();
                $body
            }
        }
    };
    ($(#[$meta:meta])* fn $name:ident() $body:block) => {
        $(#[$meta])*
        mod $name {
            #[allow(unused_imports)]
            use super::*;

            #[test]
            fn v1_20() {
                $crate::KubeVersion::V1_20.select();
                $body
            }

            #[test]
            fn v1_32() {
                $crate::KubeVersion::V1_32.select();
                $body
            }
        }
    };
}

/// Paths of the provisioned test environment, for one Kubernetes version.
#[derive(Clone, Debug)]
pub struct Env {
    pub version: KubeVersion,
    pub etcd: PathBuf,
    pub kube_apiserver: PathBuf,
    pub kube_controller_manager: PathBuf,
    pub helm_python: PathBuf,
    /// The helm command line itself (the official Helm 4 binary).
    pub helm_cli: PathBuf,
    /// kube-controller-manager's client rate (`--kube-api-qps`, burst
    /// twice that); `None` keeps Kubernetes' default of 20 requests a
    /// second, which bounds how fast Deployments come up (about five
    /// requests each: ReplicaSet, Pod, statuses).
    pub controller_manager_qps: Option<u32>,
}

/// What the API server audits: deletes of the objects that hold data or
/// own it (StatefulSets, claims, volumes), with their request bodies; the
/// safety checks read them ([`ControlPlane::audited_deletes`]).
const AUDIT_POLICY: &str = r#"apiVersion: audit.k8s.io/v1
kind: Policy
omitStages: [RequestReceived]
rules:
  - level: Request
    verbs: [delete, deletecollection]
    resources:
      - group: apps
        resources: [statefulsets]
      - group: ""
        resources: [persistentvolumeclaims, persistentvolumes]
  - level: None
"#;

const PROVISION_HINT: &str = "provision it with `bash scripts/provision-test-env.sh` (about 6 minutes the first time, seconds afterwards)";

impl Env {
    /// Reads the environment of [`KubeVersion::current`] from `PLIMSOLL_*`
    /// variables, or from the `env.sh` the provisioning script wrote.
    pub fn discover() -> Result<Env, String> {
        Env::discover_version(KubeVersion::current())
    }

    /// Reads the environment of one Kubernetes version.
    pub fn discover_version(version: KubeVersion) -> Result<Env, String> {
        let mut vars: std::collections::HashMap<String, String> = std::env::vars().collect();
        let root = std::env::var("PLIMSOLL_TEST_ENV")
            .map(PathBuf::from)
            .unwrap_or_else(|_| {
                PathBuf::from(std::env::var("HOME").unwrap_or_default())
                    .join(".cache/plimsoll-test-env")
            });
        if let Ok(text) = std::fs::read_to_string(root.join("env.sh")) {
            for line in text.lines() {
                if let Some((k, v)) = line.strip_prefix("export ").and_then(|l| l.split_once('=')) {
                    vars.entry(k.to_string())
                        .or_insert_with(|| v.trim_matches('"').to_string());
                }
            }
        }
        let get = |k: &str| -> Result<PathBuf, String> {
            let p = vars
                .get(k)
                .map(PathBuf::from)
                .ok_or_else(|| format!("{k} is not set"))?;
            if p.exists() {
                Ok(p)
            } else {
                Err(format!("{k}={} does not exist", p.display()))
            }
        };
        let x = version.var_suffix();
        Ok(Env {
            version,
            etcd: get(&format!("PLIMSOLL_ETCD{x}"))?,
            kube_apiserver: get(&format!("PLIMSOLL_KUBE_APISERVER{x}"))?,
            kube_controller_manager: get(&format!("PLIMSOLL_KUBE_CONTROLLER_MANAGER{x}"))?,
            helm_python: get("PLIMSOLL_HELM_PYTHON")?,
            helm_cli: get("PLIMSOLL_HELM_CLI")?,
            controller_manager_qps: None,
        })
    }

    /// The environment, or `None` with a message saying how to provision it.
    /// In CI (`CI=true`) a missing environment fails the test instead.
    pub fn require() -> Option<Env> {
        match Env::discover() {
            Ok(env) => Some(env),
            Err(why) => {
                if std::env::var("CI").as_deref() == Ok("true") {
                    panic!("the test environment is not available in CI ({why}); {PROVISION_HINT}");
                }
                eprintln!("SKIPPED: needs the real test environment ({why}); {PROVISION_HINT}");
                None
            }
        }
    }
}

/// A loopback port free now, below Linux's ephemeral range (32768-60999):
/// a port from that range can be taken as the source port of any outgoing
/// connection (another test's clients) before the component binds it.
fn free_port() -> u16 {
    use std::hash::{BuildHasher, Hasher};
    for _ in 0..200 {
        let mut h = std::collections::hash_map::RandomState::new().build_hasher();
        h.write_u32(std::process::id());
        let port = 20_000 + (h.finish() % 12_000) as u16;
        if std::net::TcpListener::bind(("127.0.0.1", port)).is_ok() {
            return port;
        }
    }
    std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .expect("a free loopback port")
}

/// Marks a start that failed because a component's port was taken between
/// choosing it and binding it; such a start is tried again on new ports.
const PORT_TAKEN: &str = "its port was taken";

/// Writes an executable `helm` command at `path` backed by the Helm SDK
/// front end (`testenv/helm/helm.py`), for a cluster's kubeconfig or, for
/// `helm template`, none.
pub fn write_helm_command(
    env: &Env,
    path: &Path,
    kubeconfig: Option<&Path>,
) -> Result<PathBuf, String> {
    let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("helm/helm.py");
    let kc = kubeconfig
        .map(|k| format!(" --kubeconfig {}", k.display()))
        .unwrap_or_default();
    // client-go caches discovery and the OpenAPI documents per API server
    // address under `~/.kube/cache` (3 MB a cluster, and every test cluster
    // has a new port: a gigabyte after a few hundred runs); a cluster's own
    // directory goes away with it.
    let cache = kubeconfig
        .and_then(Path::parent)
        .map(|d| format!("KUBECACHEDIR={} ", d.join("kube-cache").display()))
        .unwrap_or_default();
    let text = format!(
        "#!/bin/sh\n{cache}exec {} {}{kc} \"$@\"\n",
        env.helm_python.display(),
        script.display()
    );
    write_executable(path, &text)?;
    Ok(path.to_path_buf())
}

/// Writes a script and makes it executable.
fn write_executable(path: &Path, text: &str) -> Result<(), String> {
    use std::os::unix::fs::PermissionsExt;
    std::fs::write(path, text).map_err(|e| e.to_string())?;
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o755))
        .map_err(|e| e.to_string())
}

/// A running control plane. Dropping it stops every process.
pub struct ControlPlane {
    /// The Kubernetes version running.
    pub version: KubeVersion,
    dir: tempfile::TempDir,
    pgid: u32,
    children: Vec<(&'static str, Child)>,
    /// Holds the write end of the watchdog's stdin: when this process dies,
    /// the pipe closes and the watchdog stops the components.
    watchdog: Option<Child>,
    pub api_port: u16,
    pub token: String,
    pub kubeconfig: PathBuf,
    /// A `helm` command backed by the Helm SDK (see `testenv/helm/helm.py`).
    pub helm: PathBuf,
    /// The helm command line itself, with its own configuration, cache and
    /// data directories in this control plane's directory, and no cluster:
    /// whoever runs it says which (`--kubeconfig`), as Plimsoll must.
    pub helm_cli: PathBuf,
    /// How kube-apiserver was started, to restart it.
    apiserver: Option<(PathBuf, Vec<String>)>,
}

impl ControlPlane {
    /// Starts etcd, kube-apiserver and kube-controller-manager of the
    /// environment's version and waits until the API server reports ready.
    pub async fn start(env: &Env) -> Result<ControlPlane, String> {
        ControlPlane::start_version(env, env.version).await
    }

    /// Starts a control plane of `version` (its binaries must be in `env`).
    pub async fn start_version(env: &Env, version: KubeVersion) -> Result<ControlPlane, String> {
        let mut attempt = 1;
        loop {
            match ControlPlane::start_once(env, version).await {
                Err(why) if why.contains(PORT_TAKEN) && attempt < 3 => {
                    eprintln!("control plane start {attempt} failed ({why}); trying new ports");
                    attempt += 1;
                }
                done => return done,
            }
        }
    }

    async fn start_once(env: &Env, version: KubeVersion) -> Result<ControlPlane, String> {
        let env = &if env.version == version {
            env.clone()
        } else {
            Env::discover_version(version)?
        };
        let dir = tempfile::Builder::new()
            .prefix("plimsoll-cp-")
            .tempdir()
            .map_err(|e| e.to_string())?;
        let d = dir.path().to_path_buf();
        let (etcd_port, peer_port, api_port) = (free_port(), free_port(), free_port());
        let token = format!("plimsoll-test-{}", std::process::id());
        std::fs::write(
            d.join("tokens.csv"),
            format!("{token},admin,admin,system:masters\n"),
        )
        .map_err(|e| e.to_string())?;
        std::fs::write(d.join("audit-policy.yaml"), AUDIT_POLICY).map_err(|e| e.to_string())?;
        let status = Command::new("openssl")
            .args(["genrsa", "-out"])
            .arg(d.join("sa.key"))
            .arg("2048")
            .stderr(Stdio::null())
            .status()
            .map_err(|e| format!("openssl: {e}"))?;
        if !status.success() {
            return Err("openssl genrsa failed".into());
        }
        let kubeconfig = d.join("kubeconfig");
        std::fs::write(
            &kubeconfig,
            format!(
                "apiVersion: v1\nkind: Config\nclusters:\n- name: test\n  cluster:\n    server: https://127.0.0.1:{api_port}\n    certificate-authority: {ca}\nusers:\n- name: admin\n  user:\n    token: {token}\ncontexts:\n- name: test\n  context:\n    cluster: test\n    user: admin\n    namespace: default\ncurrent-context: test\n",
                ca = d.join("certs/apiserver.crt").display()
            ),
        )
        .map_err(|e| e.to_string())?;

        let log = |name: &str| -> Result<Stdio, String> {
            std::fs::File::create(d.join(format!("{name}.log")))
                .map(Stdio::from)
                .map_err(|e| e.to_string())
        };
        let mut cp = ControlPlane {
            version,
            dir,
            pgid: 0,
            children: Vec::new(),
            watchdog: None,
            api_port,
            token,
            kubeconfig: kubeconfig.clone(),
            helm: d.join("helm"),
            helm_cli: d.join("helm-cli"),
            apiserver: None,
        };

        let etcd = Command::new(&env.etcd)
            .arg("--data-dir")
            .arg(d.join("etcd"))
            .args(["--name", "default"])
            .arg(format!("--listen-client-urls=http://127.0.0.1:{etcd_port}"))
            .arg(format!(
                "--advertise-client-urls=http://127.0.0.1:{etcd_port}"
            ))
            .arg(format!("--listen-peer-urls=http://127.0.0.1:{peer_port}"))
            .arg(format!(
                "--initial-advertise-peer-urls=http://127.0.0.1:{peer_port}"
            ))
            .arg(format!(
                "--initial-cluster=default=http://127.0.0.1:{peer_port}"
            ))
            .process_group(0)
            .stdout(log("etcd")?)
            .stderr(log("etcd")?)
            .spawn()
            .map_err(|e| format!("etcd: {e}"))?;
        cp.pgid = etcd.id();
        cp.start_watchdog();
        cp.record_pid(etcd.id());
        cp.children.push(("etcd", etcd));

        let mut args = vec![
            format!("--etcd-servers=http://127.0.0.1:{etcd_port}"),
            "--bind-address=127.0.0.1".to_string(),
            format!("--secure-port={api_port}"),
            format!("--cert-dir={}", d.join("certs").display()),
            format!("--token-auth-file={}", d.join("tokens.csv").display()),
            "--authorization-mode=RBAC".to_string(),
            "--service-cluster-ip-range=10.0.0.0/24".to_string(),
            "--service-account-issuer=https://kubernetes.default.svc".to_string(),
            format!("--service-account-key-file={}", d.join("sa.key").display()),
            format!(
                "--service-account-signing-key-file={}",
                d.join("sa.key").display()
            ),
            format!(
                "--audit-policy-file={}",
                d.join("audit-policy.yaml").display()
            ),
            format!("--audit-log-path={}", d.join("audit.log").display()),
        ];
        match env.version {
            // The insecure port was removed in 1.24.
            // CSIStorageCapacity is alpha in 1.20: its feature gate and
            // storage.k8s.io/v1alpha1 on, for the capacity check.
            KubeVersion::V1_20 => args.extend([
                "--insecure-port=0".to_string(),
                "--feature-gates=CSIStorageCapacity=true".to_string(),
                "--runtime-config=storage.k8s.io/v1alpha1=true".to_string(),
            ]),
            // CSIStorageCapacity is served at storage.k8s.io/v1 (GA in 1.24).
            KubeVersion::V1_32 => {}
        }
        cp.apiserver = Some((env.kube_apiserver.clone(), args));
        cp.spawn_apiserver()?;

        // The API server writes its self-signed serving certificate (and the
        // CA that signed it) at start; clients verify against it.
        let cert = d.join("certs/apiserver.crt");
        let deadline = Instant::now() + Duration::from_secs(60);
        while !cert.exists() {
            if Instant::now() > deadline {
                return Err(format!(
                    "no serving certificate after 60 s; logs in {}",
                    cp.keep_logs().display()
                ));
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        // The file may still be being written: retry reading it briefly.
        let mut client = cp.client().await;
        for _ in 0..20 {
            if client.is_ok() {
                break;
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
            client = cp.client().await;
        }
        let client = client?;
        cp.wait_ready(&client).await?;

        let mut cm = Command::new(&env.kube_controller_manager);
        cm.arg(format!("--kubeconfig={}", kubeconfig.display()))
            .arg("--bind-address=127.0.0.1")
            .args(["--secure-port=0", "--leader-elect=false", "--controllers=*"]);
        if let Some(qps) = env.controller_manager_qps {
            cm.arg(format!("--kube-api-qps={qps}"))
                .arg(format!("--kube-api-burst={}", qps * 2));
        }
        if env.version == KubeVersion::V1_20 {
            // The insecure port was removed in 1.24.
            cm.arg("--port=0");
        }
        let cm = cm
            .arg(format!(
                "--service-account-private-key-file={}",
                d.join("sa.key").display()
            ))
            .process_group(cp.pgid as i32)
            .stdout(log("kube-controller-manager")?)
            .stderr(log("kube-controller-manager")?)
            .spawn()
            .map_err(|e| format!("kube-controller-manager: {e}"))?;
        cp.record_pid(cm.id());
        cp.children.push(("kube-controller-manager", cm));

        cp.write_helm_wrapper(env)?;
        Ok(cp)
    }

    fn spawn_apiserver(&mut self) -> Result<(), String> {
        let (bin, args) = self.apiserver.clone().ok_or("no kube-apiserver command")?;
        let log = || -> Result<Stdio, String> {
            std::fs::OpenOptions::new()
                .create(true)
                .append(true)
                .open(self.dir.path().join("kube-apiserver.log"))
                .map(Stdio::from)
                .map_err(|e| e.to_string())
        };
        let apiserver = Command::new(&bin)
            .args(&args)
            .process_group(self.pgid as i32)
            .stdout(log()?)
            .stderr(log()?)
            .spawn()
            .map_err(|e| format!("kube-apiserver: {e}"))?;
        self.record_pid(apiserver.id());
        self.children.push(("kube-apiserver", apiserver));
        Ok(())
    }

    /// Every delete of a StatefulSet, PersistentVolumeClaim or
    /// PersistentVolume the API server was asked for, as its audit log
    /// records them (one JSON event each, with the request's
    /// DeleteOptions in `requestObject` and who asked in `user`).
    pub fn audited_deletes(&self) -> Vec<serde_json::Value> {
        std::fs::read_to_string(self.dir.path().join("audit.log"))
            .unwrap_or_default()
            .lines()
            .filter_map(|l| serde_json::from_str(l).ok())
            .collect()
    }

    /// Stops kube-apiserver (SIGTERM, as a rolling control-plane update
    /// does), waits `down`, starts it again on the same port with the same
    /// certificates and waits until it is ready. etcd and the
    /// controller-manager keep running.
    pub async fn restart_apiserver(&mut self, down: Duration) -> Result<(), String> {
        if let Some(i) = self
            .children
            .iter()
            .position(|(n, _)| *n == "kube-apiserver")
        {
            let (_, mut child) = self.children.remove(i);
            // Our own unreaped child: its pid cannot have been reused.
            let _ = Command::new("kill")
                .arg("-TERM")
                .arg(child.id().to_string())
                .status();
            let deadline = Instant::now() + Duration::from_secs(20);
            while child.try_wait().map_err(|e| e.to_string())?.is_none() {
                if Instant::now() > deadline {
                    let _ = child.kill();
                }
                tokio::time::sleep(Duration::from_millis(50)).await;
            }
        }
        tokio::time::sleep(down).await;
        self.spawn_apiserver()?;
        let deadline = Instant::now() + Duration::from_secs(60);
        loop {
            if let Ok(client) = self.client().await {
                if self.wait_ready(&client).await.is_ok() {
                    return Ok(());
                }
            }
            if Instant::now() > deadline {
                return Err("kube-apiserver did not come back within 60 s".into());
            }
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
    }

    /// Stops the control plane if this test process dies without dropping it
    /// (SIGKILL, abort). The watchdog waits for its stdin to close, which
    /// happens when this process exits, then signals only the recorded pids
    /// whose command line is still one of our components: a pid or process
    /// group id may have been reused by then, and must not be signalled
    /// blindly.
    fn start_watchdog(&mut self) {
        let pids = self.dir.path().join("pids");
        let script = format!(
            "cat >/dev/null; for sig in TERM KILL; do for p in $(cat '{pids}' 2>/dev/null); do \
               if tr '\\0' ' ' </proc/$p/cmdline 2>/dev/null | grep -q -e etcd -e kube-apiserver -e kube-controller-manager; \
               then kill -$sig $p 2>/dev/null; fi; done; sleep 3; done",
            pids = pids.display()
        );
        self.watchdog = Command::new("sh")
            .args(["-c", &script])
            .process_group(0)
            .stdin(Stdio::piped())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .ok();
    }

    /// Records a component's pid for the watchdog.
    fn record_pid(&self, pid: u32) {
        use std::io::Write;
        if let Ok(mut f) = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(self.dir.path().join("pids"))
        {
            let _ = writeln!(f, "{pid}");
        }
    }

    fn write_helm_wrapper(&self, env: &Env) -> Result<(), String> {
        write_helm_command(env, &self.helm, Some(&self.kubeconfig))?;
        // The helm binary with its own homes and cache in this directory.
        let home = self.dir.path().join("helm-cli-home");
        let cli = |cluster: &str| {
            format!(
                "#!/bin/sh\nHELM_CONFIG_HOME={h}/config HELM_CACHE_HOME={h}/cache HELM_DATA_HOME={h}/data \
                 KUBECACHEDIR={h}/kube-cache {cluster}\"$@\"\n",
                h = home.display()
            )
        };
        let nowhere = format!(
            "KUBECONFIG={}/no-kubeconfig exec {} ",
            home.display(),
            env.helm_cli.display()
        );
        write_executable(&self.helm_cli, &cli(&nowhere))?;
        if std::env::var("PLIMSOLL_TEST_HELM").as_deref() == Ok("cli") {
            // The whole suite against the helm binary: `helm` is it too,
            // with this cluster's kubeconfig as the SDK front end has.
            let here = format!(
                "exec {} --kubeconfig {} ",
                env.helm_cli.display(),
                self.kubeconfig.display()
            );
            write_executable(&self.helm, &cli(&here))?;
        }
        Ok(())
    }

    /// A client for the control plane (admin token).
    pub async fn client(&self) -> Result<kube::Client, String> {
        let kc =
            kube::config::Kubeconfig::read_from(&self.kubeconfig).map_err(|e| e.to_string())?;
        let config =
            kube::Config::from_custom_kubeconfig(kc, &kube::config::KubeConfigOptions::default())
                .await
                .map_err(|e| e.to_string())?;
        kube::Client::try_from(config).map_err(|e| e.to_string())
    }

    async fn wait_ready(&mut self, client: &kube::Client) -> Result<(), String> {
        let deadline = Instant::now() + Duration::from_secs(90);
        loop {
            let req = http::Request::get("/readyz")
                .body(Vec::new())
                .expect("request");
            if let Ok(text) = client.request_text(req).await {
                if text.trim() == "ok" {
                    return Ok(());
                }
            }
            let exited = self.children.iter_mut().find_map(|(name, child)| {
                child
                    .try_wait()
                    .ok()
                    .flatten()
                    .map(|status| (*name, status))
            });
            let exited = exited.map(|(name, status)| {
                let log = std::fs::read_to_string(self.dir.path().join(format!("{name}.log")))
                    .unwrap_or_default();
                if log.contains("address already in use") {
                    format!("{name} exited early ({status}): {PORT_TAKEN}")
                } else {
                    format!("{name} exited early ({status})")
                }
            });
            if let Some(why) = exited {
                return Err(format!("{why}; logs in {}", self.keep_logs().display()));
            }
            if Instant::now() > deadline {
                return Err(format!(
                    "kube-apiserver not ready after 90 s; logs in {}",
                    self.keep_logs().display()
                ));
            }
            tokio::time::sleep(Duration::from_millis(250)).await;
        }
    }

    /// Creates a fresh namespace for one test and waits until the
    /// controller-manager has given it a default service account.
    pub async fn namespace(&self, client: &kube::Client, name: &str) -> Result<String, String> {
        use k8s_openapi::api::core::v1::{Namespace, ServiceAccount};
        use kube::api::{Api, PostParams};
        let ns: Namespace = serde_json::from_value(serde_json::json!({
            "apiVersion": "v1", "kind": "Namespace", "metadata": {"name": name}
        }))
        .map_err(|e| e.to_string())?;
        Api::<Namespace>::all(client.clone())
            .create(&PostParams::default(), &ns)
            .await
            .map_err(|e| e.to_string())?;
        let sas: Api<ServiceAccount> = Api::namespaced(client.clone(), name);
        let deadline = Instant::now() + Duration::from_secs(60);
        while sas
            .get_opt("default")
            .await
            .map_err(|e| e.to_string())?
            .is_none()
        {
            if Instant::now() > deadline {
                return Err(format!("no default service account in {name} after 60 s (is kube-controller-manager running?)"));
            }
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
        Ok(name.to_string())
    }

    /// Process ids of etcd, kube-apiserver and kube-controller-manager.
    pub fn pids(&self) -> Vec<u32> {
        self.children.iter().map(|(_, c)| c.id()).collect()
    }

    /// Copies the component logs to `target/testenv-logs/` and returns where.
    pub fn keep_logs(&self) -> PathBuf {
        let target = Path::new(env!("CARGO_MANIFEST_DIR")).join("../target/testenv-logs");
        let dest = target.join(format!("{}-{}", std::process::id(), self.api_port));
        let _ = std::fs::create_dir_all(&dest);
        if let Ok(entries) = std::fs::read_dir(self.dir.path()) {
            for e in entries.flatten() {
                if e.path().extension().is_some_and(|x| x == "log") {
                    let _ = std::fs::copy(e.path(), dest.join(e.file_name()));
                }
            }
        }
        dest
    }
}

/// A control plane ready for charts with volumes: a namespace, an
/// expandable StorageClass (`plimsoll-test-expandable`) served by the
/// storage stand-in, and a stand-in node. Dropping it stops everything.
pub struct Cluster {
    pub cp: ControlPlane,
    pub client: kube::Client,
    pub namespace: String,
    pub storage: actors::StorageActor,
    pub node: actors::NodeActor,
}

/// The expandable StorageClass [`Cluster`] creates.
pub const EXPANDABLE_CLASS: &str = "plimsoll-test-expandable";

impl Cluster {
    pub async fn start(env: &Env, namespace: &str) -> Result<Cluster, String> {
        let cp = ControlPlane::start(env).await?;
        let client = cp.client().await?;
        let namespace = cp.namespace(&client, namespace).await?;
        actors::create_storage_class(&client, EXPANDABLE_CLASS, true)
            .await
            .map_err(|e| e.to_string())?;
        let storage = actors::StorageActor::start(
            client.clone(),
            EXPANDABLE_CLASS,
            actors::StorageBehaviour::default(),
        )
        .await;
        let node =
            actors::NodeActor::start(client.clone(), "stand-in", actors::NodeBehaviour::default())
                .await
                .map_err(|e| e.to_string())?;
        Ok(Cluster {
            cp,
            client,
            namespace,
            storage,
            node,
        })
    }
}

impl Drop for ControlPlane {
    fn drop(&mut self) {
        if std::thread::panicking() {
            eprintln!("control plane logs kept in {}", self.keep_logs().display());
        }
        // Signal our own children only while they are unreaped: until we
        // wait on them their pids cannot be reused.
        for (_, child) in &mut self.children {
            if let Ok(None) = child.try_wait() {
                let _ = Command::new("kill")
                    .arg("-TERM")
                    .arg(child.id().to_string())
                    .status();
            }
        }
        let deadline = Instant::now() + Duration::from_secs(5);
        for (_, child) in &mut self.children {
            while Instant::now() < deadline {
                if let Ok(Some(_)) = child.try_wait() {
                    break;
                }
                std::thread::sleep(Duration::from_millis(50));
            }
            let _ = child.kill();
            let _ = child.wait();
        }
        if let Some(mut w) = self.watchdog.take() {
            // Everything is stopped and reaped: the watchdog finds nothing
            // to signal whatever it does now.
            let _ = w.kill();
            let _ = w.wait();
        }
    }
}
