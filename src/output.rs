//! Writing outputs: all or nothing, through temporary files and renames,
//! never through a symlink.

use std::io::Write;
use std::path::{Path, PathBuf};

use anyhow::{bail, Context};

pub struct Output {
    pub path: PathBuf,
    pub text: String,
}

/// Refuses, before anything is written, an output that is a symlink or a
/// directory, and (for outputs under `within`, the repository) one whose
/// way there crosses a symlink: a repository must not be able to make
/// Plimsoll write outside itself.
pub fn check_targets(outputs: &[Output], within: Option<&Path>) -> anyhow::Result<()> {
    for o in outputs {
        if let Ok(m) = std::fs::symlink_metadata(&o.path) {
            if m.file_type().is_symlink() {
                bail!("{} is a symlink; nothing is written", o.path.display());
            }
            if m.is_dir() {
                bail!("{} is a directory; nothing is written", o.path.display());
            }
        }
        let Some(root) = within else { continue };
        let Ok(rel) = o.path.strip_prefix(root) else {
            bail!(
                "{} is outside the repository {}; nothing is written",
                o.path.display(),
                root.display()
            );
        };
        let mut at = root.to_path_buf();
        for part in rel.parent().into_iter().flat_map(Path::components) {
            at.push(part);
            match std::fs::symlink_metadata(&at) {
                Ok(m) if m.file_type().is_symlink() => bail!(
                    "{} is a symlink on the way to {}; nothing is written",
                    at.display(),
                    o.path.display()
                ),
                Ok(m) if !m.is_dir() => bail!(
                    "{} is not a directory (on the way to {}); nothing is written",
                    at.display(),
                    o.path.display()
                ),
                _ => {}
            }
        }
    }
    Ok(())
}

/// Writes every output all or nothing: every target is checked
/// ([`check_targets`]), then every temporary file is written beside its
/// target (created exclusively: never through a planted file or symlink)
/// and synced, and only then are they renamed. A failure before the
/// renames leaves every output as it was, and no temporary file or new
/// directory behind.
pub fn write_all_atomically(outputs: &[Output], within: Option<&Path>) -> anyhow::Result<()> {
    check_targets(outputs, within)?;
    let mut temps: Vec<(PathBuf, &Path)> = Vec::new();
    let mut created: Vec<PathBuf> = Vec::new();
    let result = (|| -> anyhow::Result<()> {
        for o in outputs {
            let dir = o.path.parent().unwrap_or(Path::new("."));
            create_dirs(dir, &mut created)?;
            let name = o.path.file_name().unwrap_or_default().to_string_lossy();
            let tmp = dir.join(format!(".{name}.plimsoll-tmp-{}", std::process::id()));
            let mut f = std::fs::OpenOptions::new()
                .write(true)
                .create_new(true)
                .open(&tmp)
                .with_context(|| format!("cannot write {}", tmp.display()))?;
            temps.push((tmp.clone(), &o.path));
            f.write_all(o.text.as_bytes())
                .and_then(|()| f.sync_all())
                .with_context(|| format!("cannot write {}", tmp.display()))?;
        }
        Ok(())
    })();
    if let Err(e) = result {
        for (tmp, _) in &temps {
            let _ = std::fs::remove_file(tmp);
        }
        for dir in created.iter().rev() {
            let _ = std::fs::remove_dir(dir);
        }
        return Err(e);
    }
    for (i, (tmp, dest)) in temps.iter().enumerate() {
        if let Err(e) = std::fs::rename(tmp, dest) {
            for (rest, _) in &temps[i..] {
                let _ = std::fs::remove_file(rest);
            }
            return Err(e).with_context(|| {
                format!(
                    "cannot replace {} ({i} of {} outputs were replaced)",
                    dest.display(),
                    temps.len()
                )
            });
        }
    }
    // The renames themselves survive a crash once the directories are synced.
    let mut dirs: Vec<&Path> = temps.iter().filter_map(|(_, d)| d.parent()).collect();
    dirs.sort();
    dirs.dedup();
    for d in dirs {
        if let Ok(f) = std::fs::File::open(d) {
            let _ = f.sync_all();
        }
    }
    Ok(())
}

/// `create_dir_all`, remembering which directories it made.
fn create_dirs(dir: &Path, created: &mut Vec<PathBuf>) -> anyhow::Result<()> {
    if dir.as_os_str().is_empty() || dir.is_dir() {
        return Ok(());
    }
    if let Some(parent) = dir.parent() {
        create_dirs(parent, created)?;
    }
    std::fs::create_dir(dir).with_context(|| format!("cannot create {}", dir.display()))?;
    created.push(dir.to_path_buf());
    Ok(())
}
