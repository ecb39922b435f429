//! Writing outputs: all or nothing, through temporary files and renames.

use std::io::Write;
use std::path::{Path, PathBuf};

use anyhow::Context;

pub struct Output {
    pub path: PathBuf,
    pub text: String,
}

/// Writes every output to a temporary file beside it, then renames them
/// all: a failure before the renames leaves every earlier output as it was.
pub fn write_all_atomically(outputs: &[Output]) -> anyhow::Result<()> {
    let mut temps: Vec<(PathBuf, &Path)> = Vec::new();
    let result = (|| -> anyhow::Result<()> {
        for o in outputs {
            let dir = o.path.parent().unwrap_or(Path::new("."));
            std::fs::create_dir_all(dir)
                .with_context(|| format!("cannot create {}", dir.display()))?;
            let name = o.path.file_name().unwrap_or_default().to_string_lossy();
            let tmp = dir.join(format!(".{name}.plimsoll-tmp-{}", std::process::id()));
            let mut f = std::fs::File::create(&tmp)
                .with_context(|| format!("cannot write {}", tmp.display()))?;
            temps.push((tmp.clone(), &o.path));
            f.write_all(o.text.as_bytes())?;
            f.sync_all()?;
        }
        Ok(())
    })();
    if let Err(e) = result {
        for (tmp, _) in &temps {
            let _ = std::fs::remove_file(tmp);
        }
        return Err(e);
    }
    for (tmp, dest) in &temps {
        std::fs::rename(tmp, dest).with_context(|| format!("cannot replace {}", dest.display()))?;
    }
    Ok(())
}
