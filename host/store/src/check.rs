//! The rules every write must pass, written once and used both by write transactions (so a
//! proposer learns of a problem before proposing) and by `apply` (which decides, identically on
//! every manager).

use swarm_types::{Config, DataKind, Secret, Service, Timestamp};

use crate::error::StoreError;
use crate::object::ObjectKind;
use crate::table::Stored;

/// What the rules need to know about an object that exists in the state being written.
pub(crate) struct Existing {
    /// The version an update of this object must carry: the version it was read at, or, if this
    /// same transaction already wrote the object, the version that earlier write carried.
    pub(crate) version: u64,
    pub(crate) created_at: Timestamp,
}

/// The state a transaction writes to, as the rules see it: including the transaction's own writes.
pub(crate) trait CheckView {
    fn existing<T: Stored>(&self, id: &str) -> Option<Existing>;
    /// The id of the object of kind `T` that holds `name` (compared ignoring ASCII case).
    fn name_owner<T: Stored>(&self, name: &str) -> Option<&str>;
    /// The name of a service whose spec references the secret or config `kind`/`id`.
    fn service_referencing(&self, kind: ObjectKind, id: &str) -> Option<String>;
}

/// Whether `service` references the secret or config `kind`/`id`.
pub(crate) fn references(service: &Service, kind: ObjectKind, id: &str) -> bool {
    let kind = match kind {
        ObjectKind::Secret => DataKind::Secret,
        ObjectKind::Config => DataKind::Config,
        _ => return false,
    };
    service.spec.task.refs(kind).iter().any(|r| r.id == id)
}

/// Every secret and config a service references must exist.
fn check_references(view: &impl CheckView, service: &Service) -> Result<(), StoreError> {
    for (kind, object) in [
        (DataKind::Secret, ObjectKind::Secret),
        (DataKind::Config, ObjectKind::Config),
    ] {
        for r in service.spec.task.refs(kind) {
            let exists = match kind {
                DataKind::Secret => view.existing::<Secret>(&r.id).is_some(),
                DataKind::Config => view.existing::<Config>(&r.id).is_some(),
            };
            if !exists {
                return Err(StoreError::MissingReference {
                    service: service.spec.annotations.name.clone(),
                    kind: object,
                    id: r.id.clone(),
                });
            }
        }
    }
    Ok(())
}

fn check_name_free<T: Stored>(view: &impl CheckView, object: &T) -> Result<(), StoreError> {
    if let Some(name) = object.unique_name()
        && let Some(owner) = view.name_owner::<T>(name)
        && owner != object.id()
    {
        return Err(StoreError::NameConflict {
            kind: T::KIND,
            name: name.to_string(),
            existing_id: owner.to_string(),
        });
    }
    Ok(())
}

/// The id must be new and not empty; a unique name must be free.
pub(crate) fn check_create<T: Stored>(view: &impl CheckView, object: &T) -> Result<(), StoreError> {
    if object.id().is_empty() {
        return Err(StoreError::EmptyId { kind: T::KIND });
    }
    if view.existing::<T>(object.id()).is_some() {
        return Err(StoreError::AlreadyExists {
            kind: T::KIND,
            id: object.id().to_string(),
        });
    }
    check_name_free(view, object)?;
    if let Some(service) = object.as_service() {
        check_references(view, service)?;
    }
    Ok(())
}

/// The object must exist, the update must carry its current version, and a new name must be
/// free. Returns the `created_at` to keep.
pub(crate) fn check_update<T: Stored>(
    view: &impl CheckView,
    object: &T,
) -> Result<Timestamp, StoreError> {
    let Some(current) = view.existing::<T>(object.id()) else {
        return Err(StoreError::NotFound {
            kind: T::KIND,
            id: object.id().to_string(),
        });
    };
    if current.version != object.meta().version {
        return Err(StoreError::VersionConflict {
            kind: T::KIND,
            id: object.id().to_string(),
            expected: current.version,
            got: object.meta().version,
        });
    }
    check_name_free(view, object)?;
    if let Some(service) = object.as_service() {
        check_references(view, service)?;
    }
    Ok(current.created_at)
}

/// The object must exist; a secret or config no service may reference it.
pub(crate) fn check_delete<T: Stored>(view: &impl CheckView, id: &str) -> Result<(), StoreError> {
    if view.existing::<T>(id).is_none() {
        return Err(StoreError::NotFound {
            kind: T::KIND,
            id: id.to_string(),
        });
    }
    if matches!(T::KIND, ObjectKind::Secret | ObjectKind::Config)
        && let Some(service) = view.service_referencing(T::KIND, id)
    {
        return Err(StoreError::InUse {
            kind: T::KIND,
            id: id.to_string(),
            service,
        });
    }
    Ok(())
}
