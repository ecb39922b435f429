//! Following one repository's branch: fetch (or read a local branch), and
//! on each new commit find the stack files in it. The result is published
//! on a `watch` channel that the shard loop and the stacks' workers read:
//! one fetch per repository, however many stacks it holds.
//!
//! Triggers: the jittered interval, writes of refs under a local
//! repository's `.git` (notify), and `POST /hook`, which also wakes the
//! repository's stacks when the branch did not move (they check drift).

use std::sync::Arc;
use std::time::Duration;

use tokio::sync::{mpsc, watch};

use crate::config::Repository;
use crate::discover::{self, Discovered, StackLocation};
use crate::status::Board;
use crate::Trigger;

/// A branch's commit and the stack files it holds.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Head {
    pub commit: String,
    pub stacks: Vec<Discovered>,
}

impl Head {
    /// The stack file `file` at this commit, if it is there.
    pub fn stack(&self, file: &str) -> Option<&Discovered> {
        self.stacks.iter().find(|d| d.file == file)
    }
}

/// What a follower publishes: the newest head it read (None until the
/// first read succeeds).
pub type HeadWatch = watch::Receiver<Option<Arc<Head>>>;

/// The first retry after a failure; each further one waits twice as long,
/// up to the interval.
pub const FIRST_RETRY: Duration = Duration::from_secs(5);

/// How long to wait after `failures` failures in a row.
pub fn retry_after(failures: u32, interval: Duration) -> Duration {
    FIRST_RETRY
        .saturating_mul(1 << failures.saturating_sub(1).min(16))
        .min(interval)
}

/// The branch's commit (fetched for a remote).
pub fn head_of(repo: &Repository) -> anyhow::Result<String> {
    Ok(match &repo.upstream {
        crate::config::Upstream::Local(path) => {
            plimsoll_syncer::git::branch_head(path, &repo.branch)?
        }
        crate::config::Upstream::Remote { url, mirror } => {
            plimsoll_syncer::git::fetch_branch(url, mirror, &repo.branch)?
        }
    })
}

/// The stack locations of a head, for this repository.
pub fn locations(repo: &Repository, head: &Head) -> Vec<(StackLocation, Result<String, String>)> {
    let repository = repo.upstream.display();
    head.stacks
        .iter()
        .map(|d| {
            (
                StackLocation {
                    repository: repository.clone(),
                    branch: repo.branch.clone(),
                    file: d.file.clone(),
                },
                d.name.clone(),
            )
        })
        .collect()
}

/// Every followed repository with its newest head: what a stack's name is
/// checked against (two files declaring one name are refused).
#[derive(Clone)]
pub struct Heads {
    pub repositories: Arc<Vec<Repository>>,
    pub heads: Vec<HeadWatch>,
}

impl Heads {
    /// Every stack of every repository at its newest head.
    pub fn locations(&self) -> Vec<(StackLocation, Result<String, String>)> {
        let mut all = Vec::new();
        for (repo, head) in self.repositories.iter().zip(&self.heads) {
            if let Some(h) = head.borrow().clone() {
                all.extend(locations(repo, &h));
            }
        }
        all
    }

    /// Why `location` is refused for its name, if another file declares
    /// the same stack name.
    pub fn duplicate(&self, location: &StackLocation) -> Option<String> {
        discover::duplicate_names(&self.locations()).remove(location)
    }
}

/// Follows `repo` until `stop`; publishes every new head on `tx`.
pub async fn follow(
    index: usize,
    repo: Repository,
    interval: Duration,
    tx: watch::Sender<Option<Arc<Head>>>,
    mut triggers: mpsc::Receiver<Trigger>,
    board: Arc<Board>,
    stop: plimsoll_syncer::sync::Stop,
) {
    let mut why = Trigger::Start;
    let mut failures = 0u32;
    loop {
        let read = {
            let repo = repo.clone();
            let current = tx.borrow().as_ref().map(|h| h.commit.clone());
            tokio::task::spawn_blocking(move || -> anyhow::Result<Option<Head>> {
                let commit = head_of(&repo)?;
                if current.as_deref() == Some(commit.as_str()) {
                    return Ok(None);
                }
                let stacks = discover::discover(repo.upstream.local_path(), &commit, &repo.stacks)?;
                Ok(Some(Head { commit, stacks }))
            })
            .await
            .map_err(anyhow::Error::from)
            .and_then(|r| r)
        };
        let failed = match read {
            Ok(Some(head)) => {
                tracing::info!(
                    revision = %head.commit,
                    trigger = why.as_str(),
                    repository = %repo.upstream.display(),
                    stacks = head.stacks.len(),
                    "new commit on {}",
                    repo.branch
                );
                board.repository_read(index, Some(&head.commit), None);
                let _ = tx.send(Some(Arc::new(head)));
                false
            }
            Ok(None) => {
                board.repository_read(index, None, None);
                // A webhook asks to look now: the stacks' workers check
                // drift at once, as on a new commit.
                if why == Trigger::Webhook {
                    tx.send_modify(|_| {});
                }
                false
            }
            Err(e) => {
                let why = plimsoll_planner::redact::redact_text(&format!("{e:#}")).into_owned();
                tracing::error!(repository = %repo.upstream.display(), "cannot read branch {}: {why}", repo.branch);
                board.repository_read(index, None, Some(why));
                true
            }
        };
        failures = if failed { failures + 1 } else { 0 };
        let wait = if failed {
            let wait = retry_after(failures, interval);
            tracing::info!(
                "retrying in {}s (failure {failures} in a row)",
                wait.as_secs()
            );
            wait
        } else {
            crate::watch::jittered(interval)
        };
        tokio::select! {
            t = triggers.recv() => {
                why = t.unwrap_or(Trigger::Timer);
                // Coalesce a burst of notifications into one read.
                tokio::time::sleep(Duration::from_millis(50)).await;
                while triggers.try_recv().is_ok() {}
            }
            _ = tokio::time::sleep(wait) => { why = Trigger::Timer; }
            _ = stop.requested() => return,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn retries_back_off_exponentially_up_to_the_interval() {
        let interval = Duration::from_secs(60);
        let waits: Vec<u64> = (1..=6)
            .map(|n| retry_after(n, interval).as_secs())
            .collect();
        assert_eq!(waits, [5, 10, 20, 40, 60, 60]);
        assert_eq!(retry_after(1000, interval), interval);
        assert_eq!(
            retry_after(1, Duration::from_secs(2)),
            Duration::from_secs(2)
        );
    }
}
