//! The gRPC API of the cluster, generated from `proto/swarm/v1/*.proto`, and conversions between
//! its messages and the domain types of `swarm-types`.
//!
//! *API boundary*: this crate owns the wire format. Only it sees prost types; other crates convert
//! with `From`/`TryFrom` here and then work with `swarm_types`. A message missing a required field
//! converts to a [`ConversionError`] naming that field.

mod convert;
mod redact;

#[allow(clippy::all, reason = "generated code")]
mod generated {
    tonic::include_proto!("swarm.v1");
}

/// The generated messages, clients (`control_client`, `dispatcher_client`) and servers.
pub mod pb {
    pub use crate::generated::*;
}

pub use convert::{
    ConversionError, duration_from_pb, duration_to_pb, plugin_kind_from_pb, timestamp_from_pb,
    timestamp_to_pb,
};
