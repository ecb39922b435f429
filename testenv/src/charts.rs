//! Where charts live, for tests, on loopback with TLS from a test CA:
//!
//! - [`ChartRepository`]: a Helm chart repository, which is static files
//!   (`index.yaml` and packaged charts) over HTTPS, here served by
//!   Python's `http.server` (`testenv/charts/serve.py`) with basic auth;
//! - [`OciRegistry`]: a real OCI registry, Debian's `docker-registry`
//!   (the CNCF distribution registry), with htpasswd (bcrypt) auth.
//!
//! Charts are packaged, indexed and pushed with the test `helm` command
//! (the Helm SDK). Dropping a server stops it.

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use crate::{write_helm_command, Env};

/// A CA and a certificate for 127.0.0.1 it signed (openssl).
pub struct TestCa {
    /// The CA certificate (PEM): what clients trust.
    pub ca: PathBuf,
    cert: PathBuf,
    key: PathBuf,
}

fn run(cmd: &mut Command) -> Result<String, String> {
    let out = cmd
        .output()
        .map_err(|e| format!("cannot run {cmd:?}: {e}"))?;
    if !out.status.success() {
        return Err(format!(
            "{cmd:?} failed: {}",
            String::from_utf8_lossy(&out.stderr).trim()
        ));
    }
    Ok(String::from_utf8_lossy(&out.stdout).into_owned())
}

impl TestCa {
    pub fn new(dir: &Path) -> Result<TestCa, String> {
        let p = |n: &str| dir.join(n);
        let ec = [
            "-newkey",
            "ec",
            "-pkeyopt",
            "ec_paramgen_curve:prime256v1",
            "-nodes",
        ];
        run(Command::new("openssl")
            .args(["req", "-x509"])
            .args(ec)
            .arg("-keyout")
            .arg(p("ca.key"))
            .arg("-out")
            .arg(p("ca.pem"))
            .args(["-days", "2", "-subj", "/CN=plimsoll test CA"]))?;
        run(Command::new("openssl")
            .arg("req")
            .args(ec)
            .arg("-keyout")
            .arg(p("server.key"))
            .arg("-out")
            .arg(p("server.csr"))
            .args(["-subj", "/CN=127.0.0.1"]))?;
        std::fs::write(
            p("ext.cnf"),
            "subjectAltName=IP:127.0.0.1,DNS:localhost\nbasicConstraints=CA:FALSE\nextendedKeyUsage=serverAuth\n",
        )
        .map_err(|e| e.to_string())?;
        run(Command::new("openssl")
            .args(["x509", "-req", "-days", "2", "-CAcreateserial"])
            .arg("-in")
            .arg(p("server.csr"))
            .arg("-CA")
            .arg(p("ca.pem"))
            .arg("-CAkey")
            .arg(p("ca.key"))
            .arg("-out")
            .arg(p("server.pem"))
            .arg("-extfile")
            .arg(p("ext.cnf")))?;
        Ok(TestCa {
            ca: p("ca.pem"),
            cert: p("server.pem"),
            key: p("server.key"),
        })
    }
}

/// A server process, stopped when dropped.
struct Server {
    child: Child,
    log: PathBuf,
}

impl Server {
    /// Waits until `port` accepts connections (or the process exits).
    fn wait_listening(&mut self, port: u16, what: &str) -> Result<(), String> {
        let deadline = Instant::now() + Duration::from_secs(20);
        while Instant::now() < deadline {
            if let Ok(Some(status)) = self.child.try_wait() {
                return Err(format!(
                    "{what} exited ({status}): {}",
                    std::fs::read_to_string(&self.log).unwrap_or_default()
                ));
            }
            if std::net::TcpStream::connect(("127.0.0.1", port)).is_ok() {
                return Ok(());
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        Err(format!(
            "{what} did not listen on 127.0.0.1:{port} within 20 s"
        ))
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// A Helm chart repository over HTTPS with basic auth.
pub struct ChartRepository {
    server: Server,
    /// `https://127.0.0.1:PORT/charts`.
    pub url: String,
    /// The CA its certificate is signed by (PEM).
    pub ca: PathBuf,
    root: PathBuf,
    helm: PathBuf,
    _dir: tempfile::TempDir,
}

impl ChartRepository {
    pub fn start(env: &Env, username: &str, password: &str) -> Result<ChartRepository, String> {
        let dir = tempfile::tempdir().map_err(|e| e.to_string())?;
        let ca = TestCa::new(dir.path())?;
        let root = dir.path().join("www");
        std::fs::create_dir_all(root.join("charts")).map_err(|e| e.to_string())?;
        let port = crate::free_port();
        let log = dir.path().join("access.log");
        let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("charts/serve.py");
        let child = Command::new("python3")
            .arg(script)
            .arg(&root)
            .arg(port.to_string())
            .arg(&ca.cert)
            .arg(&ca.key)
            .args([username, password])
            .stdout(Stdio::null())
            .stderr(std::fs::File::create(&log).map_err(|e| e.to_string())?)
            .spawn()
            .map_err(|e| format!("cannot start the chart repository: {e}"))?;
        let mut server = Server { child, log };
        server.wait_listening(port, "the chart repository")?;
        let helm = write_helm_command(env, &dir.path().join("helm"), None)?;
        Ok(ChartRepository {
            server,
            url: format!("https://127.0.0.1:{port}/charts"),
            ca: ca.ca,
            root,
            helm,
            _dir: dir,
        })
    }

    /// Packages `chart_dir` into the repository and indexes it again.
    pub fn publish(&self, chart_dir: &Path) -> Result<(), String> {
        let charts = self.root.join("charts");
        run(Command::new(&self.helm)
            .args(["package", "--destination"])
            .arg(&charts)
            .arg("--")
            .arg(chart_dir))?;
        run(Command::new(&self.helm)
            .args(["repo", "index", "--url", &self.url, "--"])
            .arg(&charts))?;
        Ok(())
    }

    /// How many requests for `path` (e.g. `/charts/app-1.0.0.tgz`) were
    /// answered 200 so far.
    pub fn served(&self, path: &str) -> usize {
        std::fs::read_to_string(&self.server.log)
            .unwrap_or_default()
            .lines()
            .filter(|l| l.contains(&format!("GET {path} ")) && l.contains("\" 200 "))
            .count()
    }
}

/// An OCI registry (Debian's `docker-registry`) over HTTPS with htpasswd
/// auth.
pub struct OciRegistry {
    _server: Server,
    /// `127.0.0.1:PORT`.
    pub host: String,
    pub ca: PathBuf,
    helm: PathBuf,
    dir: tempfile::TempDir,
}

/// Where Debian installs the registry.
const DOCKER_REGISTRY: &str = "/usr/bin/docker-registry";

impl OciRegistry {
    pub fn start(env: &Env, username: &str, password: &str) -> Result<OciRegistry, String> {
        if !Path::new(DOCKER_REGISTRY).exists() {
            return Err(format!(
                "{DOCKER_REGISTRY} is missing: `bash scripts/provision-test-env.sh` installs Debian's docker-registry"
            ));
        }
        let dir = tempfile::tempdir().map_err(|e| e.to_string())?;
        let ca = TestCa::new(dir.path())?;
        // The registry accepts bcrypt entries only.
        let htpasswd = run(Command::new("htpasswd").args(["-Bbn", username, password]))?;
        let htpasswd_file = dir.path().join("htpasswd");
        std::fs::write(&htpasswd_file, htpasswd).map_err(|e| e.to_string())?;
        let port = crate::free_port();
        let config = dir.path().join("config.yml");
        let text = serde_json::json!({
            "version": "0.1",
            "log": {"level": "info", "accesslog": {"disabled": false}},
            "storage": {"filesystem": {"rootdirectory": dir.path().join("data")}},
            "http": {
                "addr": format!("127.0.0.1:{port}"),
                "tls": {"certificate": ca.cert, "key": ca.key},
            },
            "auth": {"htpasswd": {"realm": "plimsoll", "path": htpasswd_file}},
        });
        // JSON is YAML.
        std::fs::write(&config, text.to_string()).map_err(|e| e.to_string())?;
        let log = dir.path().join("registry.log");
        let child = Command::new(DOCKER_REGISTRY)
            .arg("serve")
            .arg(&config)
            .stdout(
                std::fs::File::create(dir.path().join("stdout.log")).map_err(|e| e.to_string())?,
            )
            .stderr(std::fs::File::create(&log).map_err(|e| e.to_string())?)
            .spawn()
            .map_err(|e| format!("cannot start docker-registry: {e}"))?;
        let mut server = Server { child, log };
        server.wait_listening(port, "docker-registry")?;
        let helm = write_helm_command(env, &dir.path().join("helm"), None)?;
        let registry = OciRegistry {
            _server: server,
            host: format!("127.0.0.1:{port}"),
            ca: ca.ca,
            helm,
            dir,
        };
        let mut login = Command::new(&registry.helm);
        login
            .args([
                "registry",
                "login",
                "--username",
                username,
                "--password-stdin",
                "--ca-file",
            ])
            .arg(&registry.ca)
            .args(["--", &registry.host]);
        registry.with_config(&mut login);
        let mut child = login
            .stdin(Stdio::piped())
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .map_err(|e| e.to_string())?;
        {
            use std::io::Write;
            let mut stdin = child.stdin.take().ok_or("no stdin")?;
            stdin
                .write_all(password.as_bytes())
                .map_err(|e| e.to_string())?;
        }
        let out = child.wait_with_output().map_err(|e| e.to_string())?;
        if !out.status.success() {
            return Err(format!(
                "helm registry login failed: {}",
                String::from_utf8_lossy(&out.stderr)
            ));
        }
        Ok(registry)
    }

    fn with_config(&self, cmd: &mut Command) {
        cmd.env(
            "HELM_REGISTRY_CONFIG",
            self.dir.path().join("registry-config.json"),
        );
    }

    /// Packages `chart_dir` and pushes it under `oci://HOST/PATH`.
    pub fn push(&self, chart_dir: &Path, path: &str) -> Result<(), String> {
        let out = self.dir.path().join("packaged");
        let _ = std::fs::remove_dir_all(&out);
        std::fs::create_dir_all(&out).map_err(|e| e.to_string())?;
        run(Command::new(&self.helm)
            .args(["package", "--destination"])
            .arg(&out)
            .arg("--")
            .arg(chart_dir))?;
        let archive = std::fs::read_dir(&out)
            .map_err(|e| e.to_string())?
            .filter_map(|e| e.ok().map(|e| e.path()))
            .next()
            .ok_or("helm package wrote nothing")?;
        let mut push = Command::new(&self.helm);
        push.arg("push")
            .arg("--ca-file")
            .arg(&self.ca)
            .arg("--")
            .arg(&archive)
            .arg(format!("oci://{}/{path}", self.host));
        self.with_config(&mut push);
        run(&mut push)?;
        Ok(())
    }
}
