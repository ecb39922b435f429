//! Triggers besides the webhook: ref changes under a local repository's
//! `.git` (notify), and the jittered interval.

use std::path::Path;
use std::time::Duration;

use anyhow::Context;
use tokio::sync::mpsc;

use crate::Trigger;

/// Watches a local repository's `.git` for ref changes (loose refs,
/// packed refs, HEAD; not objects).
pub fn watch_local(
    repo: &Path,
    trigger: mpsc::Sender<Trigger>,
) -> anyhow::Result<notify::RecommendedWatcher> {
    use notify::event::{AccessKind, AccessMode, EventKind, ModifyKind};
    use notify::Watcher;
    let git_dir = git2::Repository::open(repo)
        .with_context(|| format!("{} is not a git repository", repo.display()))?
        .path()
        .to_path_buf();
    let mut watcher = notify::recommended_watcher(move |event: notify::Result<notify::Event>| {
        if let Ok(e) = event {
            // Writes only: the daemon's own reads of HEAD and refs (opening
            // and closing them) must not wake it, or it loops on itself.
            let write = match e.kind {
                EventKind::Create(_) | EventKind::Remove(_) => true,
                EventKind::Modify(ModifyKind::Metadata(_)) => false,
                EventKind::Modify(_) => true,
                EventKind::Access(AccessKind::Close(AccessMode::Write)) => true,
                _ => false,
            };
            let relevant = write
                && e.paths.iter().any(|p| {
                    let s = p.to_string_lossy();
                    s.contains("/refs/") || s.ends_with("packed-refs") || s.ends_with("HEAD")
                });
            if relevant {
                let _ = trigger.try_send(Trigger::Notify);
            }
        }
    })?;
    watcher.watch(&git_dir, notify::RecursiveMode::Recursive)?;
    Ok(watcher)
}

/// The interval ±10 %, so that many daemons do not fetch in step.
pub fn jittered(interval: Duration) -> Duration {
    // The clock's nanoseconds are random enough for spreading fetches.
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.subsec_nanos())
        .unwrap_or(0);
    let f = 0.9 + f64::from(nanos % 1000) / 1000.0 * 0.2;
    interval.mul_f64(f)
}
