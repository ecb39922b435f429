//! Which stacks a commit holds: the stack files matching the repository's
//! patterns (`plimsoll.yaml`, `stacks/*/plimsoll.yaml`,
//! `sites/**/plimsoll.yaml`), read from the object database, each with
//! the stack name its file declares.
//!
//! A stack is identified by where it lives ([`StackLocation`]: repository,
//! branch, file), not by what it says: ownership among replicas must not
//! depend on content that can be broken or hostile. Two files declaring
//! the same stack name would share one journal and one lease, so every
//! file of such a name is refused, the same way by every replica.

use std::collections::BTreeMap;
use std::path::Path;

use sha2::{Digest, Sha256};

/// At most this many stack files per repository; more is refused.
pub const MAX_STACKS: usize = 1_000;
/// At most this many tree entries are looked at per commit.
pub const MAX_ENTRIES: usize = 200_000;
/// Pattern segments at most (and so directory depth).
pub const MAX_DEPTH: usize = 32;

/// Where a stack lives.
#[derive(
    Clone, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, serde::Serialize, serde::Deserialize,
)]
pub struct StackLocation {
    /// The repository as configured (a URL, or a local path).
    pub repository: String,
    pub branch: String,
    /// The stack file, relative to the repository.
    pub file: String,
}

impl StackLocation {
    /// A stable key for leases and links: 16 hex digits of the location's
    /// SHA-256.
    pub fn key(&self) -> String {
        let mut h = Sha256::new();
        for part in [&self.repository, &self.branch, &self.file] {
            h.update(part.as_bytes());
            h.update([0]);
        }
        h.finalize()[..8]
            .iter()
            .map(|b| format!("{b:02x}"))
            .collect()
    }
}

/// A stack file found at a commit.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Discovered {
    pub file: String,
    /// The stack's name, or why the file cannot be used.
    pub name: Result<String, String>,
}

/// Whether `pattern` is one this module accepts: a relative path of at
/// most [`MAX_DEPTH`] segments, no `..`, no empty segment.
pub fn check_pattern(pattern: &str) -> Result<(), String> {
    let segments: Vec<&str> = pattern.split('/').collect();
    if pattern.is_empty()
        || pattern.starts_with('/')
        || segments.len() > MAX_DEPTH
        || segments
            .iter()
            .any(|s| s.is_empty() || *s == "." || *s == "..")
    {
        return Err(format!(
            "stack pattern {pattern:?} must be a relative path inside the repository \
             (segments of names, `*`, `?` and `**`; no `..`)"
        ));
    }
    Ok(())
}

/// Whether one path segment matches a segment pattern (`*`: any run of
/// characters, `?`: one character).
fn segment_matches(pattern: &[u8], name: &[u8]) -> bool {
    // Iterative wildcard matching with one backtrack point: linear for
    // practical patterns, never exponential.
    let (mut p, mut n) = (0, 0);
    let mut star: Option<(usize, usize)> = None;
    while n < name.len() {
        if p < pattern.len() && (pattern[p] == b'?' || pattern[p] == name[n]) {
            p += 1;
            n += 1;
        } else if p < pattern.len() && pattern[p] == b'*' {
            star = Some((p, n));
            p += 1;
        } else if let Some((sp, sn)) = star {
            p = sp + 1;
            n = sn + 1;
            star = Some((sp, sn + 1));
        } else {
            return false;
        }
    }
    pattern[p..].iter().all(|c| *c == b'*')
}

/// The pattern positions reachable after consuming segment `name` from
/// positions `states` (`**` matches zero or more segments).
fn step(patterns: &[Vec<&str>], states: &[(usize, usize)], name: &str) -> Vec<(usize, usize)> {
    let mut out = Vec::new();
    let push = |s: (usize, usize), out: &mut Vec<(usize, usize)>| {
        if !out.contains(&s) {
            out.push(s);
        }
    };
    for &(pi, si) in &closure(patterns, states) {
        let segs = &patterns[pi];
        if si >= segs.len() {
            continue;
        }
        if segs[si] == "**" {
            // `**` consumes this segment and stays.
            push((pi, si), &mut out);
        } else if segment_matches(segs[si].as_bytes(), name.as_bytes()) {
            push((pi, si + 1), &mut out);
        }
    }
    out
}

/// `states` plus the positions after skipping any `**` (zero segments).
fn closure(patterns: &[Vec<&str>], states: &[(usize, usize)]) -> Vec<(usize, usize)> {
    let mut out: Vec<(usize, usize)> = states.to_vec();
    let mut i = 0;
    while i < out.len() {
        let (pi, si) = out[i];
        if patterns[pi].get(si) == Some(&"**") && !out.contains(&(pi, si + 1)) {
            out.push((pi, si + 1));
        }
        i += 1;
    }
    out
}

/// Whether `path` (a relative file path) matches one of `patterns`.
pub fn matches(patterns: &[String], path: &str) -> bool {
    let pats: Vec<Vec<&str>> = patterns.iter().map(|p| p.split('/').collect()).collect();
    let mut states: Vec<(usize, usize)> = (0..pats.len()).map(|i| (i, 0)).collect();
    for seg in path.split('/') {
        states = step(&pats, &states, seg);
        if states.is_empty() {
            return false;
        }
    }
    closure(&pats, &states)
        .iter()
        .any(|&(pi, si)| si == pats[pi].len())
}

/// The stack files of `commit` matching `patterns`, sorted, each with its
/// stack name. Bounded: [`MAX_ENTRIES`] tree entries, [`MAX_STACKS`]
/// matches; only directories some pattern can still match are entered.
pub fn discover(repo: &Path, commit: &str, patterns: &[String]) -> anyhow::Result<Vec<Discovered>> {
    let git = git2::Repository::open(repo)?;
    let tree = git.find_commit(git2::Oid::from_str(commit)?)?.tree()?;
    let pats: Vec<Vec<&str>> = patterns.iter().map(|p| p.split('/').collect()).collect();
    let mut files = Vec::new();
    let mut seen = 0usize;
    let start: Vec<(usize, usize)> = (0..pats.len()).map(|i| (i, 0)).collect();
    walk(&git, &tree, "", &pats, &start, 0, &mut seen, &mut files)?;
    files.sort();
    let revision = plimsoll_syncer::git::Revision::open(repo, commit)?;
    Ok(files
        .into_iter()
        .map(|file| {
            let name = revision
                .read(&file)
                .map_err(|e| e.to_string())
                .and_then(|bytes| {
                    plimsoll_renderer::stack::parse(&format!("{file}@{}", &commit[..12]), &bytes)
                        .map(|s| s.name)
                        .map_err(|e| e.to_string())
                })
                // Shown on the status page and in logs: credentials in the
                // text go.
                .map_err(|e| plimsoll_planner::redact::redact_text(&e).into_owned());
            Discovered { file, name }
        })
        .collect())
}

#[allow(clippy::too_many_arguments)]
fn walk(
    git: &git2::Repository,
    tree: &git2::Tree<'_>,
    prefix: &str,
    pats: &[Vec<&str>],
    states: &[(usize, usize)],
    depth: usize,
    seen: &mut usize,
    out: &mut Vec<String>,
) -> anyhow::Result<()> {
    if depth >= MAX_DEPTH {
        return Ok(());
    }
    for entry in tree.iter() {
        *seen += 1;
        if *seen > MAX_ENTRIES {
            anyhow::bail!(
                "the repository's tree has more than {MAX_ENTRIES} entries where stack files are looked for; narrow the stack patterns"
            );
        }
        let Ok(name) = entry.name() else { continue };
        let next = step(pats, states, name);
        if next.is_empty() {
            continue;
        }
        let path = if prefix.is_empty() {
            name.to_string()
        } else {
            format!("{prefix}/{name}")
        };
        match entry.kind() {
            Some(git2::ObjectType::Blob)
                if closure(pats, &next)
                    .iter()
                    .any(|&(pi, si)| si == pats[pi].len()) =>
            {
                if out.len() >= MAX_STACKS {
                    anyhow::bail!(
                        "the stack patterns match more than {MAX_STACKS} files; narrow them"
                    );
                }
                out.push(path);
            }
            Some(git2::ObjectType::Tree) => {
                let sub = git.find_tree(entry.id())?;
                walk(git, &sub, &path, pats, &next, depth + 1, seen, out)?;
            }
            _ => {}
        }
    }
    Ok(())
}

/// Files whose stack name another file declares too: for each, why it is
/// refused (the same answer on every replica: the input is the commit).
pub fn duplicate_names(
    stacks: &[(StackLocation, Result<String, String>)],
) -> BTreeMap<StackLocation, String> {
    let mut by_name: BTreeMap<&str, Vec<&StackLocation>> = BTreeMap::new();
    for (loc, name) in stacks {
        if let Ok(n) = name {
            by_name.entry(n.as_str()).or_default().push(loc);
        }
    }
    let mut out = BTreeMap::new();
    for (name, locs) in by_name {
        if locs.len() < 2 {
            continue;
        }
        for loc in &locs {
            let others: Vec<String> = locs
                .iter()
                .filter(|o| *o != loc)
                .map(|o| format!("{} ({} {})", o.file, o.repository, o.branch))
                .collect();
            out.insert(
                (*loc).clone(),
                format!(
                    "stack name {name:?} is also declared by {}: stacks share journals and leases by name, so none of them is synced until the names differ",
                    others.join(", ")
                ),
            );
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn pats(p: &[&str]) -> Vec<String> {
        p.iter().map(|s| s.to_string()).collect()
    }

    #[test]
    fn patterns_match_by_segment() {
        let p = pats(&["stacks/*/plimsoll.yaml"]);
        assert!(matches(&p, "stacks/site-a/plimsoll.yaml"));
        assert!(!matches(&p, "stacks/plimsoll.yaml"));
        assert!(
            !matches(&p, "stacks/a/b/plimsoll.yaml"),
            "* stays in its segment"
        );
        assert!(!matches(&p, "other/a/plimsoll.yaml"));
        let p = pats(&["sites/**/plimsoll.yaml"]);
        assert!(
            matches(&p, "sites/plimsoll.yaml"),
            "** matches zero segments"
        );
        assert!(matches(&p, "sites/eu/prod/plimsoll.yaml"));
        assert!(!matches(&p, "plimsoll.yaml"));
        let p = pats(&["plimsoll.yaml", "s?te-*.yaml"]);
        assert!(matches(&p, "plimsoll.yaml"));
        assert!(matches(&p, "site-a.yaml"));
        assert!(!matches(&p, "sit-a.yaml"));
        assert!(matches(&pats(&["**"]), "a/b/c"));
    }

    #[test]
    fn wildcards_do_not_backtrack_exponentially() {
        let name = "a".repeat(10_000);
        let pattern = format!("{}b", "*a".repeat(50));
        assert!(!segment_matches(pattern.as_bytes(), name.as_bytes()));
        assert!(segment_matches(b"*a*a*a", name.as_bytes()));
    }

    #[test]
    fn patterns_are_checked() {
        for bad in ["", "/etc/x", "a/../b", "a//b", "./a"] {
            assert!(check_pattern(bad).is_err(), "{bad}");
        }
        assert!(check_pattern("stacks/*/plimsoll.yaml").is_ok());
        assert!(check_pattern(&"a/".repeat(40)).is_err());
    }

    #[test]
    fn keys_are_stable_and_differ_by_location() {
        let a = StackLocation {
            repository: "https://git.example/p.git".into(),
            branch: "main".into(),
            file: "stacks/a/plimsoll.yaml".into(),
        };
        let mut b = a.clone();
        b.file = "stacks/b/plimsoll.yaml".into();
        assert_eq!(a.key(), a.clone().key());
        assert_eq!(a.key().len(), 16);
        assert_ne!(a.key(), b.key());
    }

    #[test]
    fn files_declaring_one_name_are_all_refused() {
        let loc = |f: &str| StackLocation {
            repository: "r".into(),
            branch: "main".into(),
            file: f.into(),
        };
        let stacks = vec![
            (loc("a/plimsoll.yaml"), Ok("x".to_string())),
            (loc("b/plimsoll.yaml"), Ok("x".to_string())),
            (loc("c/plimsoll.yaml"), Ok("y".to_string())),
            (loc("d/plimsoll.yaml"), Err("broken".to_string())),
        ];
        let d = duplicate_names(&stacks);
        assert_eq!(d.len(), 2);
        assert!(d[&loc("a/plimsoll.yaml")].contains("also declared by b/plimsoll.yaml"));
        assert!(d[&loc("b/plimsoll.yaml")].contains("also declared by a/plimsoll.yaml"));
    }
}
