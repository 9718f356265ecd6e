//! Integration tests of the agent: real gRPC over loopback sockets against a test dispatcher,
//! with real processes run by the real default executor plugin.

mod common;
mod dispatcher;
mod failover;
mod session;
mod tasks;
