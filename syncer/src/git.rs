//! Files of a git revision, read straight from the object database: no
//! checkout, no change to the working tree, and bare clones work. The
//! renderer reads layers through [`Revision::read`].

use std::path::Path;

/// A resolved revision of a repository.
pub struct Revision {
    repo: git2::Repository,
    tree: git2::Oid,
    /// The commit id the revision resolved to.
    pub commit: String,
}

#[derive(Debug, thiserror::Error)]
pub enum GitError {
    #[error("{path}: not a git repository: {source}")]
    Open { path: String, source: git2::Error },
    #[error("revision {rev:?}: {source}")]
    Revision { rev: String, source: git2::Error },
}

impl Revision {
    /// Opens the repository at (or above) `path` and resolves `rev`
    /// (a branch, tag, commit id or any rev-parse expression).
    pub fn open(path: &Path, rev: &str) -> Result<Revision, GitError> {
        let repo = git2::Repository::open(path).map_err(|source| GitError::Open {
            path: path.display().to_string(),
            source,
        })?;
        let commit = repo
            .revparse_single(rev)
            .and_then(|o| o.peel_to_commit())
            .map_err(|source| GitError::Revision {
                rev: rev.to_string(),
                source,
            })?;
        let tree = commit.tree_id();
        let id = commit.id().to_string();
        drop(commit);
        Ok(Revision {
            repo,
            tree,
            commit: id,
        })
    }

    /// Whether `path` is a directory at this revision.
    pub fn is_dir(&self, path: &str) -> bool {
        let Ok(tree) = self.repo.find_tree(self.tree) else {
            return false;
        };
        tree.get_path(Path::new(path))
            .map(|e| e.kind() == Some(git2::ObjectType::Tree))
            .unwrap_or(false)
    }

    /// Writes the directory `path` of this revision under `dest` (for tools
    /// that need files, such as `helm template` on a chart in the repository).
    pub fn export_dir(&self, path: &str, dest: &Path) -> std::io::Result<()> {
        let err = |e: git2::Error| std::io::Error::other(e.to_string());
        let tree = self.repo.find_tree(self.tree).map_err(err)?;
        let sub = tree
            .get_path(Path::new(path))
            .and_then(|e| e.to_object(&self.repo))
            .and_then(|o| o.peel_to_tree())
            .map_err(err)?;
        let mut failure = None;
        sub.walk(git2::TreeWalkMode::PreOrder, |root, entry| {
            if entry.kind() != Some(git2::ObjectType::Blob) {
                return git2::TreeWalkResult::Ok;
            }
            let rel = Path::new(root).join(entry.name().unwrap_or_default());
            if rel
                .components()
                .any(|c| matches!(c, std::path::Component::ParentDir))
            {
                return git2::TreeWalkResult::Skip;
            }
            let write = || -> std::io::Result<()> {
                let blob = self.repo.find_blob(entry.id()).map_err(err)?;
                let target = dest.join(&rel);
                std::fs::create_dir_all(target.parent().unwrap_or(dest))?;
                std::fs::write(target, blob.content())
            };
            match write() {
                Ok(()) => git2::TreeWalkResult::Ok,
                Err(e) => {
                    failure = Some(e);
                    git2::TreeWalkResult::Abort
                }
            }
        })
        .map_err(err)
        .ok();
        match failure {
            Some(e) => Err(e),
            None => Ok(()),
        }
    }

    /// The contents of `path` (relative to the repository root) at this
    /// revision. Paths leaving the root do not resolve.
    pub fn read(&self, path: &str) -> std::io::Result<Vec<u8>> {
        let not_found = |why: String| std::io::Error::new(std::io::ErrorKind::NotFound, why);
        let tree = self
            .repo
            .find_tree(self.tree)
            .map_err(|e| not_found(e.to_string()))?;
        let entry = tree.get_path(Path::new(path)).map_err(|_| {
            not_found(format!(
                "{path} does not exist at commit {}",
                &self.commit[..12]
            ))
        })?;
        // Bounded before the object is inflated: a huge blob is refused.
        let limit = plimsoll_yaml::MAX_INPUT_BYTES;
        if let Ok((size, _)) = self.repo.odb().and_then(|odb| odb.read_header(entry.id())) {
            if size > limit {
                return Err(std::io::Error::new(
                    std::io::ErrorKind::InvalidData,
                    format!(
                        "{path} at commit {} is larger than the {} MiB limit",
                        &self.commit[..12],
                        limit / (1024 * 1024)
                    ),
                ));
            }
        }
        let blob = entry
            .to_object(&self.repo)
            .and_then(|o| o.peel_to_blob())
            .map_err(|_| {
                not_found(format!(
                    "{path} is not a file at commit {}",
                    &self.commit[..12]
                ))
            })?;
        Ok(blob.content().to_vec())
    }
}

/// The commit a branch of a local repository points at.
pub fn branch_head(path: &Path, branch: &str) -> Result<String, GitError> {
    let repo = git2::Repository::open(path).map_err(|source| GitError::Open {
        path: path.display().to_string(),
        source,
    })?;
    let reference = format!("refs/heads/{branch}");
    let id = repo
        .refname_to_id(&reference)
        .map_err(|source| GitError::Revision {
            rev: reference,
            source,
        })?;
    Ok(id.to_string())
}

/// Fetches `branch` of `url` into a bare mirror at `mirror` (created on
/// first use) and returns the commit it points at. Only that branch is
/// fetched; the mirror's `refs/heads/BRANCH` follows it (forced: a
/// rewritten branch is followed, as a GitOps source must be).
pub fn fetch_branch(url: &str, mirror: &Path, branch: &str) -> Result<String, GitError> {
    let open_err = |source| GitError::Open {
        path: mirror.display().to_string(),
        source,
    };
    let repo = match git2::Repository::open_bare(mirror) {
        Ok(r) => r,
        Err(_) => git2::Repository::init_bare(mirror).map_err(open_err)?,
    };
    let refspec = format!("+refs/heads/{branch}:refs/heads/{branch}");
    let mut remote = repo.remote_anonymous(url).map_err(open_err)?;
    remote
        .fetch(&[refspec.as_str()], None, None)
        .map_err(|source| GitError::Revision {
            rev: format!("{url} {branch}"),
            source,
        })?;
    drop(remote);
    branch_head(mirror, branch)
}
