//! One syncer per stack: a `coordination.k8s.io/v1` Lease, held while a
//! sync acts and renewed in the background. A holder that dies stops
//! renewing; its lease expires and the next syncer takes it over.

use std::path::Path;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;

use k8s_openapi::api::coordination::v1::{Lease, LeaseSpec};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::MicroTime;
use k8s_openapi::jiff::Timestamp;
use kube::api::{Api, ObjectMeta, PostParams};

#[derive(Debug, thiserror::Error)]
pub enum LeaseError {
    #[error(
        "stack {stack} is being synced by {holder} (lease {namespace}/{lease}, renewed {renewed}); \
         try again when it is done, or pass --wait-for-lease"
    )]
    Held {
        stack: String,
        holder: String,
        namespace: String,
        lease: String,
        renewed: String,
    },
    #[error("kubernetes: {0}")]
    Kube(#[from] kube::Error),
}

/// A held lease; renewing stops and the lease is released on [`LeaseGuard::release`].
pub struct LeaseGuard {
    api: Api<Lease>,
    name: String,
    holder: String,
    lost: Arc<AtomicBool>,
    stale: Arc<AtomicBool>,
    renew: tokio::task::JoinHandle<()>,
}

impl LeaseGuard {
    /// True once another holder took the lease (renewal failed for longer
    /// than its duration); the holder must stop acting.
    pub fn is_lost(&self) -> bool {
        self.lost.load(Ordering::SeqCst)
    }

    /// The flag [`LeaseGuard::is_lost`] reads, for an executor to watch.
    pub fn lost_flag(&self) -> Arc<AtomicBool> {
        self.lost.clone()
    }

    /// Set while the lease could not be renewed for longer than its
    /// duration (the API server unreachable): the holder must not act until
    /// a renewal shows the lease still its own, or [`LeaseGuard::is_lost`].
    pub fn stale_flag(&self) -> Arc<AtomicBool> {
        self.stale.clone()
    }

    /// Gives the lease up so that the next syncer need not wait for it to
    /// expire.
    pub async fn release(self) {
        self.renew.abort();
        if let Ok(Some(mut l)) = self.api.get_opt(&self.name).await {
            let spec = l.spec.get_or_insert_with(Default::default);
            if spec.holder_identity.as_deref() == Some(self.holder.as_str()) {
                spec.holder_identity = None;
                let _ = self
                    .api
                    .replace(&self.name, &PostParams::default(), &l)
                    .await;
            }
        }
    }
}

impl Drop for LeaseGuard {
    fn drop(&mut self) {
        self.renew.abort();
    }
}

fn expired(spec: &LeaseSpec, now: Timestamp) -> bool {
    let Some(renewed) = spec.renew_time.as_ref().or(spec.acquire_time.as_ref()) else {
        return true;
    };
    let duration = i64::from(spec.lease_duration_seconds.unwrap_or(0));
    renewed.0.as_second() + duration < now.as_second()
}

/// Whether `other` (`HOST-PID`) is a process of this host (same `HOST` as
/// `me`) that no longer runs: a killed `plimsoll sync` on an operator's
/// machine need not make the next one wait for the lease to expire.
fn dead_here(other: &str, me: &str) -> bool {
    let (Some((host, pid)), Some((my_host, _))) = (other.rsplit_once('-'), me.rsplit_once('-'))
    else {
        return false;
    };
    host == my_host && pid.parse::<u32>().is_ok() && !Path::new(&format!("/proc/{pid}")).exists()
}

/// The lease name of a stack.
pub fn lease_name(stack: &str) -> String {
    format!("plimsoll-sync-{stack}")
}

/// Takes the stack's lease, or fails with who holds it. With `wait`, keeps
/// trying until the holder releases it or lets it expire.
pub async fn acquire(
    client: &kube::Client,
    namespace: &str,
    stack: &str,
    holder: &str,
    duration: Duration,
    wait: Option<Duration>,
) -> Result<LeaseGuard, LeaseError> {
    let api: Api<Lease> = Api::namespaced(client.clone(), namespace);
    let name = lease_name(stack);
    let seconds = duration.as_secs().clamp(1, i32::MAX as u64) as i32;
    let deadline = wait.map(|w| std::time::Instant::now() + w);
    loop {
        let now = Timestamp::now();
        let spec = LeaseSpec {
            holder_identity: Some(holder.to_string()),
            lease_duration_seconds: Some(seconds),
            acquire_time: Some(MicroTime(now)),
            renew_time: Some(MicroTime(now)),
            ..Default::default()
        };
        let attempt = match api.get_opt(&name).await? {
            None => {
                let lease = Lease {
                    metadata: ObjectMeta {
                        name: Some(name.clone()),
                        ..Default::default()
                    },
                    spec: Some(spec),
                };
                api.create(&PostParams::default(), &lease).await.map(|_| ())
            }
            Some(mut current) => {
                let cur = current.spec.clone().unwrap_or_default();
                let free = cur.holder_identity.as_deref().is_none_or(str::is_empty)
                    || cur.holder_identity.as_deref() == Some(holder)
                    || expired(&cur, now)
                    || cur
                        .holder_identity
                        .as_deref()
                        .is_some_and(|h| dead_here(h, holder));
                if !free {
                    match deadline {
                        Some(d) if std::time::Instant::now() < d => {
                            tokio::time::sleep(Duration::from_millis(500)).await;
                            continue;
                        }
                        _ => {
                            return Err(LeaseError::Held {
                                stack: stack.to_string(),
                                holder: cur.holder_identity.unwrap_or_default(),
                                namespace: namespace.to_string(),
                                lease: name,
                                renewed: cur
                                    .renew_time
                                    .map(|t| t.0.to_string())
                                    .unwrap_or_default(),
                            })
                        }
                    }
                }
                let transitions = cur.lease_transitions.unwrap_or(0)
                    + i32::from(cur.holder_identity.as_deref() != Some(holder));
                current.spec = Some(LeaseSpec {
                    lease_transitions: Some(transitions),
                    ..spec
                });
                // resourceVersion is kept: a concurrent taker gets a conflict.
                api.replace(&name, &PostParams::default(), &current)
                    .await
                    .map(|_| ())
            }
        };
        match attempt {
            Ok(()) => break,
            // Someone else created or took it first; look again.
            Err(kube::Error::Api(s)) if s.code == 409 => continue,
            Err(e) => return Err(e.into()),
        }
    }

    let lost = Arc::new(AtomicBool::new(false));
    let stale = Arc::new(AtomicBool::new(false));
    let renew = {
        let (api, name, holder) = (api.clone(), name.clone(), holder.to_string());
        let (lost, stale) = (lost.clone(), stale.clone());
        tokio::spawn(async move {
            let mut last_ok = std::time::Instant::now();
            loop {
                let pause = if stale.load(Ordering::SeqCst) {
                    Duration::from_millis(500)
                } else {
                    duration / 3
                };
                tokio::time::sleep(pause).await;
                match renew_once(&api, &name, &holder).await {
                    Ok(true) => {
                        last_ok = std::time::Instant::now();
                        stale.store(false, Ordering::SeqCst);
                    }
                    // Someone else holds it now: stop for good.
                    Ok(false) => {
                        lost.store(true, Ordering::SeqCst);
                        return;
                    }
                    // The API server may be restarting: keep trying, but
                    // past the lease's duration another syncer may take it,
                    // so the holder pauses until a renewal succeeds.
                    Err(_) => {
                        if last_ok.elapsed() > duration {
                            stale.store(true, Ordering::SeqCst);
                        }
                    }
                }
            }
        })
    };
    Ok(LeaseGuard {
        api,
        name,
        holder: holder.to_string(),
        lost,
        stale,
        renew,
    })
}

/// Renews the lease; `Ok(false)` when someone else holds it now.
async fn renew_once(api: &Api<Lease>, name: &str, holder: &str) -> Result<bool, kube::Error> {
    let mut l = api.get(name).await?;
    let spec = l.spec.get_or_insert_with(Default::default);
    if spec.holder_identity.as_deref() != Some(holder) {
        return Ok(false);
    }
    spec.renew_time = Some(MicroTime(Timestamp::now()));
    api.replace(name, &PostParams::default(), &l).await?;
    Ok(true)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_lease_expires_after_its_duration_from_the_last_renewal() {
        let t = |s: i64| Timestamp::from_second(s).unwrap();
        let spec = LeaseSpec {
            holder_identity: Some("a".into()),
            lease_duration_seconds: Some(30),
            renew_time: Some(MicroTime(t(1_000))),
            ..Default::default()
        };
        assert!(!expired(&spec, t(1_020)));
        assert!(!expired(&spec, t(1_030)));
        assert!(expired(&spec, t(1_031)));
        assert!(expired(&LeaseSpec::default(), t(0)), "never renewed");
    }

    #[test]
    fn a_dead_holder_on_this_host_is_recognised() {
        let me = format!("host-a-{}", std::process::id());
        assert!(!dead_here(&me, &me), "this process is alive");
        assert!(dead_here("host-a-4294967295", &me), "no such pid");
        assert!(
            !dead_here("host-b-4294967295", &me),
            "another host: wait for expiry"
        );
        assert!(!dead_here("nonsense", &me));
    }
}
