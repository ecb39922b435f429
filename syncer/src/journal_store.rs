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

async fn save_once(
    client: &kube::Client,
    at: &JournalLocation,
    journal: &Journal,
) -> Result<(), StoreError> {
    let api: Api<ConfigMap> = Api::namespaced(client.clone(), &at.namespace);
    let data = journal.to_data();
    match api.get_opt(&at.name).await? {
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
            api.create(&PostParams::default(), &cm).await?;
        }
        Some(mut cm) => {
            cm.data = Some(data);
            api.replace(&at.name, &PostParams::default(), &cm).await?;
        }
    }
    Ok(())
}
