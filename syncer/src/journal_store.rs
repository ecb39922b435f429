//! The journal kept in a ConfigMap (`plimsoll-journal-STACK` in the
//! journal namespace): read at the start of a sync, written after every
//! step. The model and its data form are the planner's
//! ([`plimsoll_planner::journal`]).

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use k8s_openapi::api::core::v1::ConfigMap;
use kube::api::{Api, ObjectMeta, PostParams};
use plimsoll_planner::journal::{Journal, JournalError};

#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    #[error("journal: {0}")]
    Journal(#[from] JournalError),
    #[error("kubernetes: {0}")]
    Kube(#[from] kube::Error),
}

/// Where the journal lives.
#[derive(Clone, Debug)]
pub struct JournalLocation {
    pub namespace: String,
    pub name: String,
}

impl JournalLocation {
    pub fn for_stack(namespace: &str, stack: &str) -> JournalLocation {
        JournalLocation {
            namespace: namespace.to_string(),
            name: format!("plimsoll-journal-{stack}"),
        }
    }
}

/// Reads the stack's journal; `None` when no sync ran yet.
pub async fn load(
    client: &kube::Client,
    at: &JournalLocation,
) -> Result<Option<Journal>, StoreError> {
    let api: Api<ConfigMap> = Api::namespaced(client.clone(), &at.namespace);
    match api.get_opt(&at.name).await? {
        None => Ok(None),
        Some(cm) => Ok(Some(Journal::from_data(&cm.data.unwrap_or_default())?)),
    }
}

/// Whether an error may go away on its own (the API server restarting,
/// overloaded, or a conflicting write).
pub fn transient(e: &kube::Error) -> bool {
    match e {
        kube::Error::Api(s) => s.code >= 500 || s.code == 429 || s.code == 409,
        _ => true,
    }
}

/// Writes the journal (create or replace), retrying for up to a minute
/// while the API server is unavailable: a step that is done must not be
/// forgotten because of a restart.
pub async fn save(
    client: &kube::Client,
    at: &JournalLocation,
    journal: &Journal,
) -> Result<(), StoreError> {
    let start = Instant::now();
    loop {
        match save_once(client, at, journal).await {
            Err(StoreError::Kube(e))
                if transient(&e) && start.elapsed() < Duration::from_secs(60) =>
            {
                tracing::warn!("journal not saved yet ({e}); retrying");
                tokio::time::sleep(Duration::from_secs(1)).await;
            }
            other => return other,
        }
    }
}

/// The journal as this process last wrote it (metadata, resourceVersion
/// included), by (namespace, name): the next save replaces it without
/// reading it first — a sync saves after every step, and reading back a
/// large journal each time doubled its traffic. Anyone else's write in
/// between makes the replace conflict; then it is read first, as before.
fn last_written() -> &'static std::sync::Mutex<BTreeMap<(String, String), ObjectMeta>> {
    static LAST: std::sync::OnceLock<std::sync::Mutex<BTreeMap<(String, String), ObjectMeta>>> =
        std::sync::OnceLock::new();
    LAST.get_or_init(Default::default)
}

async fn save_once(
    client: &kube::Client,
    at: &JournalLocation,
    journal: &Journal,
) -> Result<(), StoreError> {
    let api: Api<ConfigMap> = Api::namespaced(client.clone(), &at.namespace);
    let data = journal.to_data();
    let key = (at.namespace.clone(), at.name.clone());
    let remember = |cm: &ConfigMap| {
        if let Ok(mut last) = last_written().lock() {
            last.insert(key.clone(), cm.metadata.clone());
        }
    };
    let known = last_written()
        .lock()
        .ok()
        .and_then(|last| last.get(&key).cloned());
    if let Some(metadata) = known {
        let cm = ConfigMap {
            metadata,
            data: Some(data.clone()),
            ..Default::default()
        };
        match api.replace(&at.name, &PostParams::default(), &cm).await {
            Ok(written) => {
                remember(&written);
                return Ok(());
            }
            // Written or deleted by someone else since: read it first.
            Err(kube::Error::Api(e)) if e.code == 409 || e.code == 404 => {}
            Err(e) => return Err(e.into()),
        }
    }
    let written = match api.get_opt(&at.name).await? {
        None => {
            let cm = ConfigMap {
                metadata: ObjectMeta {
                    name: Some(at.name.clone()),
                    labels: Some(BTreeMap::from([(
                        "app.kubernetes.io/managed-by".to_string(),
                        "plimsoll".to_string(),
                    )])),
                    ..Default::default()
                },
                data: Some(data),
                ..Default::default()
            };
            api.create(&PostParams::default(), &cm).await?
        }
        Some(mut cm) => {
            cm.data = Some(data);
            api.replace(&at.name, &PostParams::default(), &cm).await?
        }
    };
    remember(&written);
    Ok(())
}
