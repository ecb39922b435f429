//! Which followed repositories a push webhook is about. A forge's payload
//! names its repository by several URLs (GitHub, Gitea and Forgejo:
//! `repository.clone_url`, `ssh_url`, `html_url`…; GitLab: `project.*`
//! and `repository.*`; Bitbucket: `repository.links.html.href`); each is
//! compared with the followed repositories' URLs once both are reduced to
//! `host/path` (no scheme, user, port, `.git` or trailing slash; the host
//! in lower case). A payload that names no repository (a ping, a body
//! that is not JSON) wakes every follower, as before; one that names only
//! repositories not followed wakes none. Pure: no I/O.

/// Reduces a repository URL to `host/path` for comparison:
/// `https://user@GitHub.com:443/org/repo.git/` → `github.com/org/repo`,
/// `git@github.com:org/repo.git` → `github.com/org/repo`. `None` when it
/// has no host and path.
pub fn url_key(url: &str) -> Option<String> {
    let url = url.trim();
    let (rest, scp_like) = match url.split_once("://") {
        Some((_, rest)) => (rest, false),
        // scp-like `user@host:path` (no scheme; a colon before any slash).
        None => match url.find(':') {
            Some(i) if !url[..i].contains('/') => (url, true),
            _ => return None,
        },
    };
    let (authority, path) = if scp_like {
        rest.split_once(':')?
    } else {
        rest.split_once('/')?
    };
    let host = authority.rsplit_once('@').map_or(authority, |(_, h)| h);
    let host = if scp_like {
        host
    } else {
        host.split_once(':').map_or(host, |(h, _)| h)
    };
    let path = path
        .split(['?', '#'])
        .next()
        .unwrap_or_default()
        .trim_matches('/');
    let path = path
        .strip_suffix(".git")
        .unwrap_or(path)
        .trim_end_matches('/');
    if host.is_empty() || path.is_empty() {
        return None;
    }
    Some(format!("{}/{}", host.to_ascii_lowercase(), path))
}

/// The repository URLs a push payload names, reduced by [`url_key`].
pub fn payload_repositories(body: &[u8]) -> Vec<String> {
    let Ok(v) = serde_json::from_slice::<serde_json::Value>(body) else {
        return Vec::new();
    };
    const FIELDS: [&str; 9] = [
        "clone_url",
        "ssh_url",
        "git_url",
        "html_url",
        "url",
        "git_http_url",
        "git_ssh_url",
        "web_url",
        "homepage",
    ];
    let mut keys = Vec::new();
    for object in ["repository", "project"] {
        for field in FIELDS {
            if let Some(key) = v[object][field].as_str().and_then(url_key) {
                keys.push(key);
            }
        }
    }
    if let Some(key) = v["repository"]["links"]["html"]["href"]
        .as_str()
        .and_then(url_key)
    {
        keys.push(key);
    }
    keys.sort();
    keys.dedup();
    keys
}

/// A followed repository as a webhook payload is matched against it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Followed {
    /// Its URL's key ([`url_key`]); `None` for a local repository.
    pub key: Option<String>,
    /// The branch it tracks.
    pub branch: String,
}

/// The branch a push payload names (`"ref": "refs/heads/BRANCH"`, as
/// GitHub, GitLab and Gitea send), if it names one.
pub fn payload_branch(body: &[u8]) -> Option<String> {
    let v = serde_json::from_slice::<serde_json::Value>(body).ok()?;
    v["ref"]
        .as_str()?
        .strip_prefix("refs/heads/")
        .map(str::to_string)
}

/// Which of the followed repositories a payload wakes: indexes into
/// `followed`. Those it names (every one when it names none), except the
/// ones tracking another branch than the one it says was pushed; a payload
/// that names no branch (a tag, another event) wakes them all the same: a
/// fetch too many costs little, one too few delays a sync.
pub fn woken(followed: &[Followed], body: &[u8]) -> Vec<usize> {
    let named = payload_repositories(body);
    let branch = payload_branch(body);
    followed
        .iter()
        .enumerate()
        .filter(|(_, f)| named.is_empty() || f.key.as_ref().is_some_and(|k| named.contains(k)))
        .filter(|(_, f)| branch.as_ref().is_none_or(|b| *b == f.branch))
        .map(|(i, _)| i)
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn urls_reduce_to_host_and_path() {
        for (url, key) in [
            ("https://github.com/org/repo.git", "github.com/org/repo"),
            (
                "https://user@GitHub.com:443/org/repo.git/",
                "github.com/org/repo",
            ),
            ("git@github.com:org/repo.git", "github.com/org/repo"),
            (
                "ssh://git@gitlab.example:2222/group/sub/repo",
                "gitlab.example/group/sub/repo",
            ),
            ("http://gitea.local/org/repo?x=1", "gitea.local/org/repo"),
            ("git://github.com/org/repo.git", "github.com/org/repo"),
        ] {
            assert_eq!(url_key(url).as_deref(), Some(key), "{url}");
        }
        for bad in [
            "",
            "/srv/repo",
            "repo",
            "https://host",
            "https://host/",
            "file:///srv/repo",
        ] {
            assert_eq!(url_key(bad), None, "{bad}");
        }
    }

    fn followed(key: Option<String>, branch: &str) -> Followed {
        Followed {
            key,
            branch: branch.into(),
        }
    }

    #[test]
    fn a_push_wakes_the_repository_it_names() {
        let followed = vec![
            followed(url_key("https://github.com/org/platform.git"), "main"),
            followed(url_key("git@gitlab.example:team/site.git"), "main"),
            followed(None, "main"),
        ];
        let github = br#"{"ref":"refs/heads/main","repository":{"full_name":"org/platform",
            "clone_url":"https://github.com/org/platform.git","ssh_url":"git@github.com:org/platform.git",
            "html_url":"https://github.com/org/platform"}}"#;
        assert_eq!(woken(&followed, github), vec![0]);
        let gitlab = br#"{"object_kind":"push","project":{"git_http_url":"https://gitlab.example/team/site.git",
            "git_ssh_url":"git@gitlab.example:team/site.git","web_url":"https://gitlab.example/team/site"}}"#;
        assert_eq!(woken(&followed, gitlab), vec![1]);
        let bitbucket =
            br#"{"repository":{"links":{"html":{"href":"https://bitbucket.org/org/platform"}}}}"#;
        assert!(woken(&followed, bitbucket).is_empty(), "not followed");
        // Names nothing: every follower looks.
        assert_eq!(woken(&followed, b"{}"), vec![0, 1, 2]);
        assert_eq!(woken(&followed, b"not json"), vec![0, 1, 2]);
        assert_eq!(
            woken(&followed, br#"{"zen":"Keep it simple."}"#),
            vec![0, 1, 2]
        );
    }

    #[test]
    fn a_push_to_another_branch_wakes_only_the_followers_of_that_branch() {
        let followed = vec![
            followed(url_key("https://github.com/org/platform.git"), "main"),
            followed(url_key("https://github.com/org/platform.git"), "staging"),
            followed(None, "main"),
        ];
        let push = |r: &str| {
            format!(
                r#"{{"ref":"{r}","repository":{{"clone_url":"https://github.com/org/platform.git"}}}}"#
            )
        };
        assert_eq!(
            woken(&followed, push("refs/heads/main").as_bytes()),
            vec![0]
        );
        assert_eq!(
            woken(&followed, push("refs/heads/staging").as_bytes()),
            vec![1]
        );
        assert!(woken(&followed, push("refs/heads/feature").as_bytes()).is_empty());
        // A tag names no branch: the repository's followers look.
        assert_eq!(
            woken(&followed, push("refs/tags/v1").as_bytes()),
            vec![0, 1]
        );
        // Names no repository but a branch: that branch's followers.
        assert_eq!(
            woken(&followed, br#"{"ref":"refs/heads/main"}"#),
            vec![0, 2]
        );
    }
}
