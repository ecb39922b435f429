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

/// Which of the followed repositories (their URL keys; `None` for a local
/// repository) a payload wakes: indexes into `followed`.
pub fn woken(followed: &[Option<String>], body: &[u8]) -> Vec<usize> {
    let named = payload_repositories(body);
    if named.is_empty() {
        return (0..followed.len()).collect();
    }
    followed
        .iter()
        .enumerate()
        .filter(|(_, key)| key.as_ref().is_some_and(|k| named.contains(k)))
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

    #[test]
    fn a_push_wakes_the_repository_it_names() {
        let followed = vec![
            url_key("https://github.com/org/platform.git"),
            url_key("git@gitlab.example:team/site.git"),
            None,
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
}
