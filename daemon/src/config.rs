//! What the daemon follows: repositories (local or remote), a branch of
//! each, and the stack files in them; and how it runs (interval, HTTP,
//! identity among replicas).
//!
//! One repository comes from the command line (`--repo`/`--url`,
//! `--branch`, `--stacks`); several from a file (`--config FILE`):
//!
//! ```yaml
//! repositories:
//!   - url: https://git.example/platform.git   # or  path: /srv/platform
//!     branch: main
//!     stacks: ["stacks/*/plimsoll.yaml"]        # default: [plimsoll.yaml]
//!     set: {segment: l}                         # stack variables
//!     mirror: /var/cache/plimsoll/platform      # optional, for url
//! ```

use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

use serde_json::Value;

use crate::discover::check_pattern;

/// Where a deployment repository comes from.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Upstream {
    /// A local repository (watched with notify).
    Local(PathBuf),
    /// A remote URL, fetched into a bare mirror.
    Remote { url: String, mirror: PathBuf },
}

impl Upstream {
    /// A remote repository; its mirror defaults to
    /// `~/.cache/plimsoll/mirrors/ID` (ID: from the URL's digest).
    pub fn remote(url: String, mirror: Option<PathBuf>) -> Upstream {
        let mirror = mirror.unwrap_or_else(|| {
            let home = std::env::var_os("HOME")
                .map(PathBuf::from)
                .unwrap_or_else(std::env::temp_dir);
            let id = plimsoll_planner::journal::digest(url.as_bytes());
            home.join(".cache/plimsoll/mirrors").join(&id[..16])
        });
        Upstream::Remote { url, mirror }
    }

    /// The repository the stack files are read from (the mirror of a remote).
    pub fn local_path(&self) -> &std::path::Path {
        match self {
            Upstream::Local(p) => p,
            Upstream::Remote { mirror, .. } => mirror,
        }
    }

    /// How it is named in stack locations, the status page and logs.
    pub fn display(&self) -> String {
        match self {
            Upstream::Local(p) => p.display().to_string(),
            Upstream::Remote { url, .. } => plimsoll_planner::redact::redact_text(url).into_owned(),
        }
    }
}

/// One followed repository.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Repository {
    pub upstream: Upstream,
    /// The tracked branch: only its commits are synced.
    pub branch: String,
    /// Stack file patterns (`*`, `?` within a segment, `**` across).
    pub stacks: Vec<String>,
    /// Stack variables set for every stack of this repository.
    pub set: Vec<(String, String)>,
}

/// The status page: where it listens and who may read it.
#[derive(Clone, Debug)]
pub struct StatusOptions {
    pub listen: SocketAddr,
    /// Required as `Authorization: Bearer TOKEN` (or as the password of
    /// Basic authentication, which browsers ask for) when set.
    pub token: Option<String>,
    /// The address was given: failing to bind it is an error (the default
    /// address may be taken by another daemon on the machine: a warning).
    pub explicit: bool,
}

/// The default address of the status page: this machine only.
pub const DEFAULT_STATUS_LISTEN: &str = "127.0.0.1:8081";

#[derive(Clone, Debug)]
pub struct DaemonOptions {
    pub repositories: Vec<Repository>,
    /// Between fetches and drift checks (jittered by 10 %).
    pub interval: Duration,
    /// `/metrics`, `/healthz`, `/readyz`, `POST /hook`.
    pub listen: Option<SocketAddr>,
    pub status: Option<StatusOptions>,
    pub self_heal: bool,
    pub webhook_secret: Option<Vec<u8>>,
    /// Chart repository credentials (files, environment; the daemon adds
    /// Secrets of the journal namespace).
    pub credentials: plimsoll_syncer::charts::CredentialStore,
    /// This replica's name among its peers (unique per process).
    pub identity: String,
    /// Replicas of one group share the group's stacks.
    pub group: String,
    /// Stacks this replica syncs at once, at most (others wait, queued;
    /// drift checks are not limited).
    pub max_syncs: usize,
}

/// The group name: a label value (63 characters, alphanumerics, `-`, `_`,
/// `.`, starting and ending alphanumeric).
pub fn check_group(group: &str) -> Result<(), String> {
    let ok = !group.is_empty()
        && group.len() <= 63
        && group
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"-_.".contains(&b))
        && group.as_bytes()[0].is_ascii_alphanumeric()
        && group.as_bytes()[group.len() - 1].is_ascii_alphanumeric();
    if ok {
        Ok(())
    } else {
        Err(format!(
            "group {group:?} must be a label value: at most 63 letters, digits, '-', '_' or '.', starting and ending with a letter or digit"
        ))
    }
}

/// A replica identity: printable ASCII without spaces, at most 128 bytes.
pub fn check_identity(identity: &str) -> Result<(), String> {
    if identity.is_empty()
        || identity.len() > 128
        || !identity.bytes().all(|b| b.is_ascii_graphic())
    {
        return Err(format!(
            "identity {identity:?} must be 1 to 128 printable ASCII characters without spaces"
        ));
    }
    Ok(())
}

/// A branch name as git takes it (and never a flag).
pub fn check_branch(branch: &str) -> Result<(), String> {
    if branch.is_empty()
        || branch.starts_with('-')
        || !git2::Reference::is_valid_name(&format!("refs/heads/{branch}"))
    {
        return Err(format!("{branch:?} is not a valid branch name"));
    }
    Ok(())
}

/// Reads a `--config` file (YAML) into repositories.
pub fn parse_config(name: &str, bytes: &[u8]) -> anyhow::Result<Vec<Repository>> {
    let docs =
        plimsoll_yaml::parse_documents(bytes, 0).map_err(|e| anyhow::anyhow!("{name}:{e}"))?;
    let Some(doc) = docs.first() else {
        anyhow::bail!("{name}: empty; it must hold `repositories:`");
    };
    let json = plimsoll_yaml::json::to_json(doc).map_err(|e| anyhow::anyhow!("{name}:{e}"))?;
    let root: Value = serde_json::from_str(&json)?;
    let err = |at: &str, why: &str| anyhow::anyhow!("{name}: {at}: {why}");
    let root = root
        .as_object()
        .ok_or_else(|| err("the document", "must be a map with `repositories:`"))?;
    if let Some(k) = root.keys().find(|k| *k != "repositories") {
        return Err(err(k, "unknown key (only `repositories:`)"));
    }
    let list = root
        .get("repositories")
        .and_then(Value::as_array)
        .filter(|l| !l.is_empty())
        .ok_or_else(|| err("repositories", "must be a non-empty list"))?;
    let mut out = Vec::new();
    for (i, r) in list.iter().enumerate() {
        let at = format!("repositories[{i}]");
        let r = r.as_object().ok_or_else(|| err(&at, "must be a map"))?;
        for k in r.keys() {
            if !["url", "path", "branch", "stacks", "set", "mirror"].contains(&k.as_str()) {
                return Err(err(&format!("{at}.{k}"), "unknown key"));
            }
        }
        let string = |k: &str| -> anyhow::Result<Option<String>> {
            match r.get(k) {
                None | Some(Value::Null) => Ok(None),
                Some(Value::String(s)) => Ok(Some(s.clone())),
                Some(_) => Err(err(&format!("{at}.{k}"), "must be a string")),
            }
        };
        let upstream = match (string("url")?, string("path")?) {
            (Some(url), None) => {
                if url.starts_with('-') {
                    return Err(err(&format!("{at}.url"), "must not start with '-'"));
                }
                Upstream::remote(url, string("mirror")?.map(PathBuf::from))
            }
            (None, Some(path)) => Upstream::Local(PathBuf::from(path)),
            _ => return Err(err(&at, "needs exactly one of `url:` and `path:`")),
        };
        let branch = string("branch")?.unwrap_or_else(|| "main".to_string());
        check_branch(&branch).map_err(|e| err(&format!("{at}.branch"), &e))?;
        let stacks = match r.get("stacks") {
            None | Some(Value::Null) => vec![plimsoll_renderer::STACK_FILE.to_string()],
            Some(Value::Array(l)) if !l.is_empty() => l
                .iter()
                .map(|p| {
                    let p = p
                        .as_str()
                        .ok_or_else(|| err(&format!("{at}.stacks"), "must list strings"))?;
                    check_pattern(p).map_err(|e| err(&format!("{at}.stacks"), &e))?;
                    Ok(p.to_string())
                })
                .collect::<anyhow::Result<_>>()?,
            Some(_) => return Err(err(&format!("{at}.stacks"), "must be a non-empty list")),
        };
        let set = match r.get("set") {
            None | Some(Value::Null) => Vec::new(),
            Some(Value::Object(m)) => m
                .iter()
                .map(|(k, v)| {
                    let v = match v {
                        Value::String(s) => s.clone(),
                        Value::Number(n) => n.to_string(),
                        Value::Bool(b) => b.to_string(),
                        _ => return Err(err(&format!("{at}.set.{k}"), "must be a scalar")),
                    };
                    Ok((k.clone(), v))
                })
                .collect::<anyhow::Result<_>>()?,
            Some(_) => return Err(err(&format!("{at}.set"), "must be a map")),
        };
        let repo = Repository {
            upstream,
            branch,
            stacks,
            set,
        };
        if out
            .iter()
            .any(|o: &Repository| o.upstream == repo.upstream && o.branch == repo.branch)
        {
            return Err(err(&at, "the same repository and branch is listed twice"));
        }
        out.push(repo);
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_config_lists_repositories() {
        let text = b"repositories:\n  - url: https://git.example/p.git\n    stacks: [\"stacks/*/plimsoll.yaml\"]\n    set: {segment: l, replicas: 3}\n  - path: /srv/other\n    branch: release\n";
        let r = parse_config("daemon.yaml", text).unwrap();
        assert_eq!(r.len(), 2);
        assert_eq!(r[0].branch, "main");
        assert_eq!(r[0].stacks, ["stacks/*/plimsoll.yaml"]);
        assert_eq!(
            r[0].set,
            [
                ("replicas".into(), "3".into()),
                ("segment".into(), "l".into())
            ]
        );
        assert_eq!(r[1].upstream, Upstream::Local("/srv/other".into()));
        assert_eq!(r[1].stacks, ["plimsoll.yaml"]);
    }

    #[test]
    fn bad_configs_say_where() {
        for (text, want) in [
            (
                "repositories: []\n",
                "repositories: must be a non-empty list",
            ),
            ("repos: []\n", "repos: unknown key"),
            (
                "repositories:\n  - {url: a, path: b}\n",
                "repositories[0]: needs exactly one",
            ),
            (
                "repositories:\n  - {path: /a, stacks: [\"../x\"]}\n",
                "repositories[0].stacks",
            ),
            (
                "repositories:\n  - {path: /a, branch: \"--upload-pack=x\"}\n",
                "not a valid branch",
            ),
            (
                "repositories:\n  - {url: \"--config=x\"}\n",
                "must not start with '-'",
            ),
            (
                "repositories:\n  - {path: /a, color: red}\n",
                "repositories[0].color: unknown key",
            ),
            (
                "repositories:\n  - {path: /a}\n  - {path: /a}\n",
                "listed twice",
            ),
        ] {
            let e = parse_config("d.yaml", text.as_bytes())
                .unwrap_err()
                .to_string();
            assert!(e.contains(want), "{text}: {e}");
            assert!(e.starts_with("d.yaml"), "{e}");
        }
    }

    #[test]
    fn groups_and_identities_are_checked() {
        assert!(check_group("default").is_ok());
        assert!(check_group("-x").is_err());
        assert!(check_group(&"a".repeat(64)).is_err());
        assert!(check_identity("host-a-123").is_ok());
        assert!(check_identity("a b").is_err());
        assert!(check_identity("").is_err());
    }
}
