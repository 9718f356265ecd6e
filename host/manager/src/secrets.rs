//! Secrets and configs in the control API and in service specs: create, read, list and remove
//! them (written once for both kinds through [`StoredData`]), resolve a spec's references to
//! ids, and refuse to remove one a service still uses.
//!
//! A secret's data never leaves the manager through the control API: answers carry its size
//! only. The dispatcher sends the data to the nodes whose tasks reference it.

use std::collections::HashSet;
use std::sync::Arc;

use swarm_proto::pb;
use swarm_store::{MemoryStore, Object, ObjectKind, StoreRead, WriteTx};
use swarm_types::{Blob, Config, DataObject, DataSpec, Meta, Secret, TaskSpec, Timestamp, new_id};
use tracing::info;

use crate::commit::{Committer, commit_with};
use crate::error::{ManagerError, Result};

/// A secret or config as the store keeps it.
pub(crate) trait StoredData: DataObject + Into<Object> + 'static {
    const OBJECT: ObjectKind;
    /// How the dispatcher sends it.
    type Message: From<Self>;
    fn get<'a>(tx: &'a impl StoreRead, id: &str) -> Option<&'a Arc<Self>>;
    fn by_name<'a>(tx: &'a impl StoreRead, name: &str) -> Option<&'a Arc<Self>>;
    fn all(tx: &impl StoreRead) -> impl Iterator<Item = &Arc<Self>>;
}

impl StoredData for Secret {
    const OBJECT: ObjectKind = ObjectKind::Secret;
    type Message = pb::Secret;
    fn get<'a>(tx: &'a impl StoreRead, id: &str) -> Option<&'a Arc<Self>> {
        tx.secret(id)
    }
    fn by_name<'a>(tx: &'a impl StoreRead, name: &str) -> Option<&'a Arc<Self>> {
        tx.secret_by_name(name)
    }
    fn all(tx: &impl StoreRead) -> impl Iterator<Item = &Arc<Self>> {
        tx.secrets()
    }
}

impl StoredData for Config {
    const OBJECT: ObjectKind = ObjectKind::Config;
    type Message = pb::Config;
    fn get<'a>(tx: &'a impl StoreRead, id: &str) -> Option<&'a Arc<Self>> {
        tx.config(id)
    }
    fn by_name<'a>(tx: &'a impl StoreRead, name: &str) -> Option<&'a Arc<Self>> {
        tx.config_by_name(name)
    }
    fn all(tx: &impl StoreRead) -> impl Iterator<Item = &Arc<Self>> {
        tx.configs()
    }
}

/// Sets the id of every secret and config reference of `task` from its name (ids a client
/// sent are not trusted); an unknown name is an error naming the field.
pub(crate) fn resolve_refs(tx: &impl StoreRead, task: &mut TaskSpec) -> Result<()> {
    resolve::<Secret>(tx, task)?;
    resolve::<Config>(tx, task)
}

fn resolve<T: StoredData>(tx: &impl StoreRead, task: &mut TaskSpec) -> Result<()> {
    let kind = T::KIND;
    for (i, r) in task.refs_mut(kind).iter_mut().enumerate() {
        let Some(found) = T::by_name(tx, &r.name) else {
            return Err(ManagerError::InvalidArgument(format!(
                "spec.task.{kind}s[{i}].name: {kind} {:?} not found; create it first \
                 (swarmctl {kind} create)",
                r.name
            )));
        };
        // The name stays as written (it may differ in case): with no target it is the file
        // name, which validation has checked.
        r.id = found.id().to_string();
    }
    Ok(())
}

/// The services whose spec references the secret or config `id`, by name.
fn users<T: StoredData>(tx: &impl StoreRead, id: &str) -> Vec<String> {
    tx.services()
        .filter(|s| s.spec.task.refs(T::KIND).iter().any(|r| r.id == id))
        .map(|s| s.name().to_string())
        .collect()
}

/// The control API's side of secrets and configs.
pub(crate) struct DataStore<'a> {
    pub(crate) store: &'a MemoryStore,
    pub(crate) committer: &'a dyn Committer,
}

impl DataStore<'_> {
    pub(crate) async fn create<T: StoredData>(&self, spec: DataSpec) -> Result<T> {
        let kind = T::KIND;
        spec.validate(kind)?;
        let now = Timestamp::now();
        let object = T::new(
            new_id(),
            Meta {
                version: 0,
                created_at: now,
                updated_at: now,
            },
            spec,
        );
        let id = object.id().to_string();
        let name = object.name().to_string();
        commit_with(self.store, self.committer, |tx: &mut WriteTx<'_>| {
            if let Some(existing) = T::by_name(tx, &name) {
                return Err(ManagerError::AlreadyExists(format!(
                    "{kind} name {name:?} is already used by {kind} {}; {kind}s cannot be \
                     changed: create one under a new name and update the services",
                    existing.id()
                )));
            }
            Ok(tx.create(object)?)
        })
        .await?;
        // The name only: the data never reaches a log.
        info!(%kind, id = %id, name = %name, "{kind} created");
        self.get::<T>(&id)
    }

    pub(crate) fn get<T: StoredData>(&self, id: &str) -> Result<T> {
        let kind = T::KIND;
        if id.is_empty() {
            return Err(ManagerError::InvalidArgument(format!(
                "{kind}_id: must not be empty"
            )));
        }
        self.store
            .view(|tx| T::get(tx, id).map(|o| (**o).clone()))
            .ok_or_else(|| ManagerError::NotFound(format!("{kind} {id} not found")))
    }

    pub(crate) fn list<T: StoredData>(&self, names: &[String], id_prefixes: &[String]) -> Vec<T> {
        self.store.view(|tx| {
            T::all(tx)
                .filter(|o| crate::control::matches_prefixes(o.id(), id_prefixes))
                .filter(|o| crate::control::matches_names(o.name(), names))
                .map(|o| (**o).clone())
                .collect()
        })
    }

    pub(crate) async fn remove<T: StoredData>(&self, id: &str) -> Result<()> {
        let kind = T::KIND;
        if id.is_empty() {
            return Err(ManagerError::InvalidArgument(format!(
                "{kind}_id: must not be empty"
            )));
        }
        let name = commit_with(self.store, self.committer, |tx| {
            let Some(object) = T::get(tx, id) else {
                return Err(ManagerError::NotFound(format!("{kind} {id} not found")));
            };
            let name = object.name().to_string();
            let users = users::<T>(tx, id);
            if !users.is_empty() {
                return Err(ManagerError::FailedPrecondition(format!(
                    "{kind} {name:?} is in use by service {}; remove it from their specs first",
                    users.join(", ")
                )));
            }
            tx.delete(T::OBJECT, id)?;
            Ok(name)
        })
        .await?
        .0;
        info!(%kind, id = %id, name = %name, "{kind} removed");
        Ok(())
    }
}

/// A secret as the control API shows it: everything but the data.
pub(crate) fn shown_secret(secret: Secret) -> pb::Secret {
    let mut shown: pb::Secret = secret.into();
    if let Some(spec) = &mut shown.spec {
        spec.data = Vec::new();
    }
    shown
}

/// A config as the control API shows it; `with_data` for `GetConfig`.
pub(crate) fn shown_config(mut config: Config, with_data: bool) -> pb::Config {
    let size = config.spec.data.len();
    if !with_data {
        config.spec.data = Blob::default();
    }
    let mut shown: pb::Config = config.into();
    shown.data_size = size as u64;
    shown
}

/// The secrets and configs an assignment stream has sent its node, by id: each is sent once
/// per stream, with the first task that references it.
#[derive(Debug, Default)]
pub(crate) struct SentData {
    secrets: HashSet<String>,
    configs: HashSet<String>,
}

impl SentData {
    /// The secrets and configs `tasks` reference that were not sent yet (they now count as
    /// sent). A reference to one that no longer exists is skipped: the agent then rejects the
    /// task, naming what is missing.
    pub(crate) fn take_new<'t>(
        &mut self,
        tx: &impl StoreRead,
        tasks: impl IntoIterator<Item = &'t swarm_types::Task> + Clone,
    ) -> (Vec<pb::Secret>, Vec<pb::Config>) {
        (
            take::<Secret>(&mut self.secrets, tx, tasks.clone()),
            take::<Config>(&mut self.configs, tx, tasks),
        )
    }
}

fn take<'t, T: StoredData>(
    sent: &mut HashSet<String>,
    tx: &impl StoreRead,
    tasks: impl IntoIterator<Item = &'t swarm_types::Task>,
) -> Vec<T::Message> {
    let mut out = Vec::new();
    for task in tasks {
        for r in task.spec.refs(T::KIND) {
            if !sent.contains(&r.id)
                && let Some(found) = T::get(tx, &r.id)
            {
                sent.insert(r.id.clone());
                out.push(T::Message::from((**found).clone()));
            }
        }
    }
    out
}
