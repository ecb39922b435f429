//! Reading a revision from the object database: any commit, bare clones,
//! working tree untouched.

use std::path::Path;

use plimsoll_syncer::git::Revision;

fn commit(repo: &git2::Repository, files: &[(&str, &str)], message: &str) -> git2::Oid {
    let mut index = repo.index().unwrap();
    for (path, body) in files {
        let full = repo.workdir().unwrap().join(path);
        std::fs::create_dir_all(full.parent().unwrap()).unwrap();
        std::fs::write(&full, body).unwrap();
        index.add_path(Path::new(path)).unwrap();
    }
    index.write().unwrap();
    let tree = repo.find_tree(index.write_tree().unwrap()).unwrap();
    let sig = git2::Signature::now("test", "test@plimsoll.invalid").unwrap();
    let parents: Vec<git2::Commit> = repo
        .head()
        .ok()
        .and_then(|h| h.peel_to_commit().ok())
        .into_iter()
        .collect();
    let parent_refs: Vec<&git2::Commit> = parents.iter().collect();
    repo.commit(Some("HEAD"), &sig, &sig, message, &tree, &parent_refs)
        .unwrap()
}

#[test]
fn reads_any_revision_without_touching_the_working_tree_and_from_bare_clones() {
    let dir = tempfile::tempdir().unwrap();
    let repo = git2::Repository::init(dir.path()).unwrap();
    let first = commit(&repo, &[("profiles/m.yaml", "size: 10Gi\n")], "first");
    let second = commit(&repo, &[("profiles/m.yaml", "size: 15Gi\n")], "second");
    // An uncommitted edit in the working tree is not what a revision reads.
    std::fs::write(dir.path().join("profiles/m.yaml"), "size: 99Gi\n").unwrap();

    let at_first = Revision::open(dir.path(), &first.to_string()).unwrap();
    assert_eq!(at_first.read("profiles/m.yaml").unwrap(), b"size: 10Gi\n");
    let head = Revision::open(dir.path(), "HEAD").unwrap();
    assert_eq!(head.commit, second.to_string());
    assert_eq!(head.read("profiles/m.yaml").unwrap(), b"size: 15Gi\n");
    assert_eq!(
        std::fs::read(dir.path().join("profiles/m.yaml")).unwrap(),
        b"size: 99Gi\n",
        "working tree untouched"
    );
    assert!(head
        .read("profiles/xl.yaml")
        .unwrap_err()
        .to_string()
        .contains("does not exist at commit"));
    assert!(head.read("profiles").is_err(), "a directory is not a file");
    assert!(Revision::open(dir.path(), "no-such-branch").is_err());

    let bare_dir = tempfile::tempdir().unwrap();
    git2::build::RepoBuilder::new()
        .bare(true)
        .clone(
            dir.path().to_str().unwrap(),
            &bare_dir.path().join("repo.git"),
        )
        .unwrap();
    let bare = Revision::open(&bare_dir.path().join("repo.git"), &first.to_string()).unwrap();
    assert_eq!(bare.read("profiles/m.yaml").unwrap(), b"size: 10Gi\n");
}

#[test]
fn fetches_only_the_tracked_branch_into_a_bare_mirror_and_follows_it() {
    let dir = tempfile::tempdir().unwrap();
    let repo = git2::Repository::init(dir.path()).unwrap();
    let first = commit(&repo, &[("plimsoll.yaml", "a: 1\n")], "first");
    let branch = repo.head().unwrap().shorthand().unwrap().to_string();
    // Another branch's commit is never what the mirror tracks.
    let other = repo.find_commit(first).unwrap();
    repo.branch("feature", &other, false).unwrap();

    let url = format!("file://{}", dir.path().display());
    let mirror = tempfile::tempdir().unwrap();
    let mirror_path = mirror.path().join("mirror.git");
    let head = plimsoll_syncer::git::fetch_branch(&url, &mirror_path, &branch).unwrap();
    assert_eq!(head, first.to_string());
    let mirrored = git2::Repository::open_bare(&mirror_path).unwrap();
    assert!(
        mirrored.find_reference("refs/heads/feature").is_err(),
        "only the tracked branch"
    );

    let second = commit(&repo, &[("plimsoll.yaml", "a: 2\n")], "second");
    let head = plimsoll_syncer::git::fetch_branch(&url, &mirror_path, &branch).unwrap();
    assert_eq!(head, second.to_string());
    let rev = Revision::open(&mirror_path, &branch).unwrap();
    assert_eq!(rev.read("plimsoll.yaml").unwrap(), b"a: 2\n");
    assert_eq!(
        plimsoll_syncer::git::branch_head(dir.path(), &branch).unwrap(),
        second.to_string()
    );
    assert!(plimsoll_syncer::git::fetch_branch(&url, &mirror_path, "no-such-branch").is_err());
}
