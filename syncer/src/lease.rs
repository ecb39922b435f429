//! One syncer per stack: a `coordination.k8s.io/v1` Lease, held while a
//! sync acts and renewed in the background. A holder that dies stops
//! renewing; its lease expires and the next syncer takes it over.

use std::path::Path;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

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
    #[error("the lease request did not complete within {0:?}")]
    Timeout(Duration),
}

/// What a holder knows about its lease, judged by this process's own
/// monotonic clock (as client-go's leader election does): confirmed while
/// the last successful renewal is younger than the renew deadline (two
/// thirds of the lease's duration, so that the holder stops acting before
/// another syncer, which waits a full duration after the last change it
/// saw, may take over); lost once a renewal found another holder.
#[derive(Clone, Debug)]
pub struct LeaseCheck {
    inner: Arc<LeaseShared>,
}

#[derive(Debug)]
struct LeaseShared {
    lost: AtomicBool,
    renewed_at: std::sync::Mutex<Instant>,
    renew_deadline: Duration,
}

impl LeaseCheck {
    /// Confirmed now, for `renew_deadline` unless renewed.
    pub fn new(renew_deadline: Duration) -> LeaseCheck {
        LeaseCheck {
            inner: Arc::new(LeaseShared {
                lost: AtomicBool::new(false),
                renewed_at: std::sync::Mutex::new(Instant::now()),
                renew_deadline,
            }),
        }
    }

    /// No lease (a dry run): always confirmed.
    pub fn unleased() -> LeaseCheck {
        LeaseCheck::new(Duration::MAX)
    }

    pub fn is_lost(&self) -> bool {
        self.inner.lost.load(Ordering::SeqCst)
    }

    /// Whether this process may act now: not lost, and renewed within the
    /// renew deadline. A process that was stopped (SIGSTOP, a long pause)
    /// is unconfirmed the moment it continues.
    pub fn is_confirmed(&self) -> bool {
        !self.is_lost()
            && self
                .inner
                .renewed_at
                .lock()
                .map(|t| t.elapsed() < self.inner.renew_deadline)
                .unwrap_or(false)
    }

    /// A renewal succeeded now.
    pub fn renewed(&self) {
        if let Ok(mut t) = self.inner.renewed_at.lock() {
            *t = Instant::now();
        }
    }

    /// Someone else holds the lease now: for good.
    pub fn lose(&self) {
        self.inner.lost.store(true, Ordering::SeqCst);
    }
}

/// A held lease; renewing stops and the lease is released on [`LeaseGuard::release`].
pub struct LeaseGuard {
    api: Api<Lease>,
    name: String,
    holder: String,
    check: LeaseCheck,
    renew: tokio::task::JoinHandle<()>,
}

impl LeaseGuard {
    /// True once another holder took the lease; the holder must stop
    /// acting.
    pub fn is_lost(&self) -> bool {
        self.check.is_lost()
    }

    /// The holder's view of the lease, for an executor to consult before
    /// every write.
    pub fn check(&self) -> LeaseCheck {
        self.check.clone()
    }

    /// Gives the lease up so that the next syncer need not wait for it to
    /// expire (not when it was lost: the record is another's).
    pub async fn release(self) {
        self.renew.abort();
        if self.check.is_lost() {
            return;
        }
        let api = self.api.clone();
        let give_up = async {
            if let Ok(Some(mut l)) = api.get_opt(&self.name).await {
                let spec = l.spec.get_or_insert_with(Default::default);
                if spec.holder_identity.as_deref() == Some(self.holder.as_str()) {
                    spec.holder_identity = None;
                    // resourceVersion kept: a taker's write wins.
                    let _ = api.replace(&self.name, &PostParams::default(), &l).await;
                }
            }
        };
        let _ = tokio::time::timeout(REQUEST_TIMEOUT, give_up).await;
    }
}

impl Drop for LeaseGuard {
    fn drop(&mut self) {
        self.renew.abort();
    }
}

/// Every lease request gives up after this long: a hanging request must
/// not keep a holder believing it holds the lease.
const REQUEST_TIMEOUT: Duration = Duration::from_secs(5);

async fn bounded<T>(
    limit: Duration,
    request: impl std::future::Future<Output = Result<T, kube::Error>>,
) -> Result<T, LeaseError> {
    match tokio::time::timeout(limit, request).await {
        Ok(r) => r.map_err(LeaseError::Kube),
        Err(_) => Err(LeaseError::Timeout(limit)),
    }
}

/// A hint only: whether the record's own clock says it expired (the
/// holder's clock, not ours). It decides whether a syncer without
/// `--wait-for-lease` watches the record for a lease duration before it
/// takes it; the taking itself is judged by the local monotonic clock.
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
pub fn dead_here(other: &str, me: &str) -> bool {
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

/// The record as last seen, and since when (monotonic) it is unchanged.
struct Observed {
    version: Option<String>,
    since: Instant,
}

/// Takes the stack's lease, or fails with who holds it. A lease held by
/// another is taken only after this process saw its record unchanged for
/// the record's own duration (its holder stopped renewing); that watch
/// happens when `wait` allows it or when the record looks expired.
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
    let started = Instant::now();
    let mut observed: Option<Observed> = None;
    loop {
        let now = Timestamp::now();
        let spec = LeaseSpec {
            holder_identity: Some(holder.to_string()),
            lease_duration_seconds: Some(seconds),
            acquire_time: Some(MicroTime(now)),
            renew_time: Some(MicroTime(now)),
            ..Default::default()
        };
        let attempt = match bounded(REQUEST_TIMEOUT, api.get_opt(&name)).await? {
            None => {
                let lease = Lease {
                    metadata: ObjectMeta {
                        name: Some(name.clone()),
                        ..Default::default()
                    },
                    spec: Some(spec),
                };
                bounded(REQUEST_TIMEOUT, api.create(&PostParams::default(), &lease))
                    .await
                    .map(|_| ())
            }
            Some(mut current) => {
                let cur = current.spec.clone().unwrap_or_default();
                let version = current.metadata.resource_version.clone();
                let other = cur
                    .holder_identity
                    .as_deref()
                    .filter(|h| !h.is_empty() && *h != holder);
                let free = match other {
                    None => true,
                    Some(h) if dead_here(h, holder) => true,
                    Some(_) => {
                        // Unchanged since when, by our clock.
                        let seen = match &mut observed {
                            Some(o) if o.version == version => o.since,
                            _ => {
                                observed = Some(Observed {
                                    version: version.clone(),
                                    since: Instant::now(),
                                });
                                Instant::now()
                            }
                        };
                        let record_duration = Duration::from_secs(
                            cur.lease_duration_seconds.unwrap_or(seconds).max(1) as u64,
                        );
                        seen.elapsed() > record_duration
                    }
                };
                if !free {
                    let watching = wait.is_some_and(|w| started.elapsed() < w)
                        || (wait.is_none()
                            && expired(&cur, now)
                            && started.elapsed()
                                < 3 * duration.max(Duration::from_secs(
                                    cur.lease_duration_seconds.unwrap_or(seconds).max(1) as u64,
                                )));
                    if watching {
                        tokio::time::sleep(Duration::from_millis(500)).await;
                        continue;
                    }
                    return Err(LeaseError::Held {
                        stack: stack.to_string(),
                        holder: cur.holder_identity.unwrap_or_default(),
                        namespace: namespace.to_string(),
                        lease: name,
                        renewed: cur.renew_time.map(|t| t.0.to_string()).unwrap_or_default(),
                    });
                }
                let transitions = cur.lease_transitions.unwrap_or(0)
                    + i32::from(cur.holder_identity.as_deref() != Some(holder));
                current.spec = Some(LeaseSpec {
                    lease_transitions: Some(transitions),
                    ..spec
                });
                // resourceVersion is kept: a concurrent taker gets a conflict.
                bounded(
                    REQUEST_TIMEOUT,
                    api.replace(&name, &PostParams::default(), &current),
                )
                .await
                .map(|_| ())
            }
        };
        match attempt {
            Ok(()) => break,
            // Someone else created or took it first; look again.
            Err(LeaseError::Kube(kube::Error::Api(s))) if s.code == 409 => continue,
            Err(e) => return Err(e),
        }
    }

    let check = LeaseCheck::new(duration * 2 / 3);
    let renew = {
        let (api, name, holder) = (api.clone(), name.clone(), holder.to_string());
        let check = check.clone();
        // Each renewal must finish well within the renew deadline.
        let limit = (duration / 3).clamp(Duration::from_millis(500), REQUEST_TIMEOUT);
        tokio::spawn(async move {
            loop {
                let pause = if check.is_confirmed() {
                    duration / 3
                } else {
                    Duration::from_millis(500)
                };
                tokio::time::sleep(pause).await;
                match bounded(limit, renew_once(&api, &name, &holder)).await {
                    Ok(true) => check.renewed(),
                    // Someone else holds it now: stop for good.
                    Ok(false) => {
                        check.lose();
                        return;
                    }
                    // The API server may be restarting or the request hung:
                    // keep trying; past the renew deadline the holder is
                    // unconfirmed and does not act.
                    Err(_) => {}
                }
            }
        })
    };
    Ok(LeaseGuard {
        api,
        name,
        holder: holder.to_string(),
        check,
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
    fn a_holder_is_unconfirmed_past_the_renew_deadline_and_when_lost() {
        let c = LeaseCheck::new(Duration::from_millis(50));
        assert!(c.is_confirmed());
        std::thread::sleep(Duration::from_millis(80));
        assert!(!c.is_confirmed(), "no renewal for longer than the deadline");
        c.renewed();
        assert!(c.is_confirmed());
        c.lose();
        assert!(!c.is_confirmed() && c.is_lost());
        assert!(LeaseCheck::unleased().is_confirmed());
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
