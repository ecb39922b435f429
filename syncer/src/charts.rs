//! Charts from where they live: Helm chart repositories and OCI
//! registries declared in the stack file (`repositories:`), pulled through
//! the helm executable once per (source, chart, version) and kept by
//! content digest, so that what was planned is byte for byte what is
//! applied.
//!
//! Credentials never come from the deployment repository: the stack file
//! only says where they are (a file of the operator's credentials
//! directory, environment variables, a Secret of the daemon's namespace),
//! and each credential names the URL it may be sent to. Passwords reach
//! helm on its standard input, never on a command line, in a private
//! helm configuration that is removed afterwards.

use std::collections::BTreeMap;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{bail, Context};
use plimsoll_planner::journal::digest;
use plimsoll_renderer::stack::{url_within, CredentialsDecl, RepositoryDecl};

/// Largest chart archive accepted from a repository.
const MAX_CHART_BYTES: u64 = 64 * 1024 * 1024;
/// How long one helm call of a pull may take (a server that never answers
/// must not hold a sync forever).
const PULL_TIMEOUT: Duration = Duration::from_secs(300);

/// A repository credential: the URL it is for, and the login.
#[derive(Clone)]
pub struct Credential {
    pub url: String,
    pub username: String,
    pub password: String,
}

impl std::fmt::Debug for Credential {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "Credential {{ url: {:?}, username: {:?}, password: *** }}",
            self.url, self.username
        )
    }
}

/// Reads a Secret's data by name (the in-cluster daemon's namespace).
pub type SecretReader = dyn Fn(&str) -> anyhow::Result<BTreeMap<String, Vec<u8>>> + Send + Sync;

/// Where the credentials the stack file names are looked up.
#[derive(Clone, Default)]
pub struct CredentialStore {
    /// The operator's credentials directory: `--credentials-dir`, else
    /// `$PLIMSOLL_CREDENTIALS_DIR`, else `~/.config/plimsoll/credentials`.
    pub dir: Option<PathBuf>,
    /// Secrets, for the in-cluster daemon.
    pub secrets: Option<Arc<SecretReader>>,
}

impl std::fmt::Debug for CredentialStore {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("CredentialStore")
            .field("dir", &self.dir)
            .field("secrets", &self.secrets.is_some())
            .finish()
    }
}

impl CredentialStore {
    /// The directory from the flag, the environment or the default.
    pub fn with_dir(flag: Option<&Path>) -> CredentialStore {
        let dir = flag
            .map(Path::to_path_buf)
            .or_else(|| std::env::var_os("PLIMSOLL_CREDENTIALS_DIR").map(PathBuf::from))
            .or_else(|| {
                std::env::var_os("XDG_CONFIG_HOME")
                    .map(PathBuf::from)
                    .or_else(|| std::env::var_os("HOME").map(|h| PathBuf::from(h).join(".config")))
                    .map(|c| c.join("plimsoll/credentials"))
            });
        CredentialStore { dir, secrets: None }
    }

    /// The credential `decl` names, checked to be for `url`.
    pub fn resolve(&self, decl: &CredentialsDecl, url: &str) -> anyhow::Result<Credential> {
        let (what, fields) = match decl {
            CredentialsDecl::File(name) => {
                let dir = self.dir.as_ref().context(
                    "no credentials directory (set --credentials-dir or PLIMSOLL_CREDENTIALS_DIR)",
                )?;
                let path = dir.join(name);
                let bytes = crate::source::read_input(&path)
                    .with_context(|| format!("cannot read credentials file {}", path.display()))?;
                let fields = credential_file(&bytes)
                    .with_context(|| format!("credentials file {}", path.display()))?;
                (format!("credentials file {}", path.display()), fields)
            }
            CredentialsDecl::Env(prefix) => {
                let mut fields = BTreeMap::new();
                for k in ["url", "username", "password"] {
                    let var = format!("{prefix}_{}", k.to_uppercase());
                    let v = std::env::var(&var)
                        .with_context(|| format!("environment variable {var} is not set"))?;
                    fields.insert(k.to_string(), v);
                }
                (format!("environment variables {prefix}_*"), fields)
            }
            CredentialsDecl::Secret(name) => {
                let read = self
                    .secrets
                    .as_ref()
                    .with_context(|| format!("credentials secret {name:?}: Secrets are read only by the in-cluster daemon; use `file` or `env` here"))?;
                let data = read(name).with_context(|| format!("cannot read Secret {name:?}"))?;
                let fields = data
                    .into_iter()
                    .map(|(k, v)| (k, String::from_utf8_lossy(&v).into_owned()))
                    .collect();
                (format!("Secret {name}"), fields)
            }
        };
        let get = |k: &str| {
            fields
                .get(k)
                .filter(|v| !v.is_empty())
                .cloned()
                .with_context(|| format!("{what} has no {k}"))
        };
        let credential = Credential {
            url: get("url")?.trim_end_matches('/').to_string(),
            username: get("username")?,
            password: get("password")?,
        };
        if !url_within(url, &credential.url) {
            bail!(
                "{what} is for {}, not for {url}: a credential is sent only to the URL it names",
                credential.url
            );
        }
        Ok(credential)
    }
}

/// `url:`, `username:`, `password:` of a credentials file (YAML).
fn credential_file(bytes: &[u8]) -> anyhow::Result<BTreeMap<String, String>> {
    let docs = plimsoll_yaml::parse_documents(bytes, 0)
        .map_err(|e| anyhow::anyhow!("line {}:{}: {}", e.line, e.column, e.message))?;
    let root = docs
        .first()
        .map(plimsoll_yaml::Node::unwrap_document)
        .filter(|n| n.kind == plimsoll_yaml::Kind::Mapping)
        .context("must be a mapping of url, username and password")?;
    Ok(root
        .pairs()
        .filter(|(_, v)| v.kind == plimsoll_yaml::Kind::Scalar)
        .map(|(k, v)| (k.value.clone(), v.value.clone()))
        .collect())
}

/// A chart of a declared repository or an OCI reference.
#[derive(Clone, Debug)]
pub enum RemoteChart<'a> {
    /// `chart` of the Helm repository at `repository.url`.
    Repository {
        repository: &'a RepositoryDecl,
        chart: &'a str,
    },
    /// `oci://host/path/chart`, and the declared repository it is under.
    Oci {
        reference: &'a str,
        repository: Option<&'a RepositoryDecl>,
    },
}

impl RemoteChart<'_> {
    /// The chart's URL without version (printed in plans; keys the cache).
    pub fn source(&self) -> String {
        match self {
            RemoteChart::Repository { repository, chart } => format!("{}/{chart}", repository.url),
            RemoteChart::Oci { reference, .. } => reference.to_string(),
        }
    }

    fn repository(&self) -> Option<&RepositoryDecl> {
        match self {
            RemoteChart::Repository { repository, .. } => Some(repository),
            RemoteChart::Oci { repository, .. } => *repository,
        }
    }

    fn chart_name(&self) -> String {
        match self {
            RemoteChart::Repository { chart, .. } => chart.to_string(),
            RemoteChart::Oci { reference, .. } => plimsoll_renderer::stack::chart_name(reference),
        }
    }
}

/// A chart archive on disk and its content digest (`sha256:…`).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct PulledChart {
    pub path: PathBuf,
    pub digest: String,
}

/// Pulls charts and keeps them: `DIR/sha256/HEX.tgz` by content, and
/// `DIR/pulled/KEY` naming the digest pulled for a (source, version).
pub struct ChartStore {
    dir: PathBuf,
    helm: PathBuf,
    credentials: CredentialStore,
}

impl ChartStore {
    /// The store under the user's cache directory (`plimsoll/charts`), or
    /// under `fallback` (a run's own directory) when there is none or
    /// caching is turned off (`PLIMSOLL_NO_CACHE`).
    pub fn open(helm: &Path, credentials: CredentialStore, fallback: &Path) -> ChartStore {
        let dir = match crate::helm::cache_root() {
            Some(root) if std::env::var_os("PLIMSOLL_NO_CACHE").is_none() => root.join("charts"),
            _ => fallback.join("charts"),
        };
        ChartStore {
            dir,
            helm: helm.to_path_buf(),
            credentials,
        }
    }

    /// The chart at `version`: from the store when this (source, version)
    /// was pulled before and its archive is intact, else pulled now.
    /// `ca` is the repository's CA certificate (PEM), if it declares one.
    pub fn fetch(
        &self,
        remote: &RemoteChart<'_>,
        version: &str,
        ca: Option<&[u8]>,
    ) -> anyhow::Result<PulledChart> {
        let source = remote.source();
        // A range (`^1.2`) may resolve to a newer version each time: only
        // exact versions are remembered.
        let exact = version
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'.' | b'-' | b'+'));
        let key = digest(format!("v1\0{source}\0{version}").as_bytes());
        let pulled = self.dir.join("pulled").join(key);
        if exact {
            if let Some(hit) = std::fs::read_to_string(&pulled)
                .ok()
                .and_then(|d| self.intact(d.trim()))
            {
                return Ok(hit);
            }
        }
        let bytes = self
            .pull(remote, version, ca)
            .with_context(|| format!("cannot pull chart {source} version {version}"))?;
        let (name, got) = plimsoll_renderer::keys::chart_metadata(&bytes)
            .with_context(|| format!("{source} {version}: the archive is not a chart"))?;
        if name != remote.chart_name()
            || (exact && got.trim_start_matches('v') != version.trim_start_matches('v'))
        {
            bail!(
                "{source}: asked for {} {version}, the repository served {name} {got}",
                remote.chart_name()
            );
        }
        let content = format!("sha256:{}", digest(&bytes));
        let blob = self.blob(&content);
        write_atomically(&blob, &bytes)?;
        if exact {
            write_atomically(&pulled, content.as_bytes())?;
        }
        Ok(PulledChart {
            path: blob,
            digest: content,
        })
    }

    fn blob(&self, content: &str) -> PathBuf {
        self.dir
            .join("sha256")
            .join(format!("{}.tgz", content.trim_start_matches("sha256:")))
    }

    /// The stored archive of `content`, if its bytes still hash to it.
    fn intact(&self, content: &str) -> Option<PulledChart> {
        if !content.starts_with("sha256:") || content.len() != 71 {
            return None;
        }
        let path = self.blob(content);
        let bytes = std::fs::read(&path).ok()?;
        (format!("sha256:{}", digest(&bytes)) == content).then(|| PulledChart {
            path,
            digest: content.to_string(),
        })
    }

    /// `helm pull` in a private helm configuration; the archive's bytes.
    fn pull(
        &self,
        remote: &RemoteChart<'_>,
        version: &str,
        ca: Option<&[u8]>,
    ) -> anyhow::Result<Vec<u8>> {
        std::fs::create_dir_all(&self.dir)
            .with_context(|| format!("cannot create {}", self.dir.display()))?;
        let home = tempfile::Builder::new()
            .prefix(".pull-")
            .tempdir_in(&self.dir)
            .context("cannot create a temporary helm home")?;
        let h = home.path();
        let ca_file = match ca {
            Some(pem) => {
                let p = h.join("ca.pem");
                std::fs::write(&p, pem)?;
                Some(p)
            }
            None => None,
        };
        let source = remote.source();
        let credential =
            match remote
                .repository()
                .and_then(|r| r.credentials.as_ref().map(|c| (r, c)))
            {
                Some((repo, decl)) => {
                    let url = match remote {
                        RemoteChart::Repository { .. } => repo.url.clone(),
                        RemoteChart::Oci { .. } => source.clone(),
                    };
                    Some(self.credentials.resolve(decl, &url).with_context(|| {
                        format!("the credentials of repository {:?}", repo.name)
                    })?)
                }
                None => None,
            };
        let helm = HelmCall {
            helm: &self.helm,
            home: h,
            secret: credential.as_ref().map(|c| c.password.as_str()),
        };
        let out = h.join("out");
        std::fs::create_dir_all(&out)?;
        let ca_args = |args: &mut Vec<std::ffi::OsString>| {
            if let Some(ca) = &ca_file {
                args.push("--ca-file".into());
                args.push(ca.into());
            }
        };
        let mut pull: Vec<std::ffi::OsString> = vec![
            "pull".into(),
            "--version".into(),
            version.into(),
            "--destination".into(),
            out.clone().into(),
        ];
        ca_args(&mut pull);
        match remote {
            RemoteChart::Repository { repository, chart } => {
                let mut add: Vec<std::ffi::OsString> =
                    vec!["repo".into(), "add".into(), "--force-update".into()];
                if let Some(c) = &credential {
                    // `--username=VALUE`: a username is never read as a flag.
                    add.extend([
                        format!("--username={}", c.username).into(),
                        "--password-stdin".into(),
                    ]);
                }
                ca_args(&mut add);
                add.extend([
                    "--".into(),
                    "plimsoll".into(),
                    repository.url.clone().into(),
                ]);
                helm.run(&add, credential.as_ref().map(|c| c.password.as_str()))?;
                pull.extend(["--".into(), format!("plimsoll/{chart}").into()]);
            }
            RemoteChart::Oci { reference, .. } => {
                if let Some(c) = &credential {
                    let host = reference
                        .trim_start_matches("oci://")
                        .split('/')
                        .next()
                        .unwrap_or_default();
                    let mut login: Vec<std::ffi::OsString> = vec![
                        "registry".into(),
                        "login".into(),
                        format!("--username={}", c.username).into(),
                        "--password-stdin".into(),
                    ];
                    ca_args(&mut login);
                    login.extend(["--".into(), host.into()]);
                    helm.run(&login, Some(&c.password))?;
                }
                pull.extend(["--".into(), (*reference).into()]);
            }
        }
        helm.run(&pull, None)?;
        let archives: Vec<PathBuf> = std::fs::read_dir(&out)?
            .filter_map(|e| e.ok().map(|e| e.path()))
            .filter(|p| p.extension().is_some_and(|x| x == "tgz"))
            .collect();
        let [archive] = archives.as_slice() else {
            bail!("helm pull left {} archives, expected one", archives.len());
        };
        let meta = std::fs::metadata(archive)?;
        if !meta.is_file() || meta.len() > MAX_CHART_BYTES {
            bail!(
                "the archive is larger than the {} MiB limit",
                MAX_CHART_BYTES / (1024 * 1024)
            );
        }
        Ok(std::fs::read(archive)?)
    }
}

/// One helm process of a pull, in the private helm home.
struct HelmCall<'a> {
    helm: &'a Path,
    home: &'a Path,
    /// Removed from anything helm prints before it is shown.
    secret: Option<&'a str>,
}

impl HelmCall<'_> {
    fn run(&self, args: &[std::ffi::OsString], stdin: Option<&str>) -> anyhow::Result<()> {
        let h = self.home;
        let mut child = Command::new(self.helm)
            .args(args)
            .env("HELM_CONFIG_HOME", h.join("config"))
            .env("HELM_CACHE_HOME", h.join("cache"))
            .env("HELM_DATA_HOME", h.join("data"))
            .env("HELM_REPOSITORY_CONFIG", h.join("config/repositories.yaml"))
            .env("HELM_REPOSITORY_CACHE", h.join("cache/repository"))
            .env(
                "HELM_REGISTRY_CONFIG",
                h.join("config/registry/config.json"),
            )
            .stdin(if stdin.is_some() {
                Stdio::piped()
            } else {
                Stdio::null()
            })
            // To a file, not a pipe: a pipe nobody reads while we wait
            // would stall helm once full.
            .stdout(Stdio::null())
            .stderr(std::fs::File::create(h.join("stderr"))?)
            .spawn()
            .with_context(|| format!("cannot run {}", self.helm.display()))?;
        if let (Some(text), Some(mut pipe)) = (stdin, child.stdin.take()) {
            pipe.write_all(text.as_bytes())?;
        }
        let started = Instant::now();
        let status = loop {
            if let Some(s) = child.try_wait()? {
                break s;
            }
            if started.elapsed() > PULL_TIMEOUT {
                let _ = child.kill();
                let _ = child.wait();
                bail!(
                    "helm {} did not finish within {} s",
                    args.first().and_then(|a| a.to_str()).unwrap_or(""),
                    PULL_TIMEOUT.as_secs()
                );
            }
            std::thread::sleep(Duration::from_millis(20));
        };
        if status.success() {
            return Ok(());
        }
        let mut stderr = String::new();
        if let Ok(f) = std::fs::File::open(h.join("stderr")) {
            use std::io::Read;
            let _ = f.take(64 * 1024).read_to_string(&mut stderr);
        }
        let mut message = stderr.trim().trim_start_matches("Error: ").to_string();
        if let Some(secret) = self.secret.filter(|s| !s.is_empty()) {
            message = message.replace(secret, "***");
        }
        let hint = if message.contains("401") || message.contains("nauthorized") {
            " (the server refused the credentials: check the repository's `credentials:`)"
        } else if message.contains("not found") {
            " (the repository does not have this chart version)"
        } else {
            ""
        };
        bail!("{message}{hint}")
    }
}

/// Writes `bytes` to `path` through a temporary file and a rename.
fn write_atomically(path: &Path, bytes: &[u8]) -> anyhow::Result<()> {
    let dir = path.parent().context("a path without a directory")?;
    std::fs::create_dir_all(dir)?;
    let mut tmp = tempfile::NamedTempFile::new_in(dir)?;
    tmp.write_all(bytes)?;
    tmp.persist(path)
        .map_err(|e| e.error)
        .with_context(|| format!("cannot write {}", path.display()))?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_credential_goes_only_to_the_url_it_names() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(
            dir.path().join("charts"),
            "url: https://charts.example.com/stable/\nusername: u\npassword: p\n",
        )
        .unwrap();
        let store = CredentialStore {
            dir: Some(dir.path().to_path_buf()),
            secrets: None,
        };
        let decl = CredentialsDecl::File("charts".into());
        let c = store
            .resolve(&decl, "https://charts.example.com/stable")
            .unwrap();
        assert_eq!((c.username.as_str(), c.password.as_str()), ("u", "p"));
        assert!(store
            .resolve(&decl, "https://charts.example.com/stable/sub")
            .is_ok());
        for elsewhere in [
            "https://charts.example.com/stable-evil",
            "https://charts.example.com.evil/stable",
            "http://charts.example.com/stable",
            "https://evil.example/stable",
        ] {
            let e = store.resolve(&decl, elsewhere).unwrap_err().to_string();
            assert!(
                e.contains("a credential is sent only to the URL it names"),
                "{e}"
            );
        }
        // Without a password, or without a Secret reader: said, not guessed.
        std::fs::write(dir.path().join("charts"), "url: https://h\nusername: u\n").unwrap();
        let e = store.resolve(&decl, "https://h").unwrap_err().to_string();
        assert!(e.ends_with("has no password"), "{e}");
        let e = store
            .resolve(&CredentialsDecl::Secret("s".into()), "https://h")
            .unwrap_err()
            .to_string();
        assert!(e.contains("only by the in-cluster daemon"), "{e}");
        assert!(
            !format!("{c:?}").contains("\"p\""),
            "Debug never shows the password"
        );
    }
}
