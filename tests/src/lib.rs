//! Shared helpers for the cross-crate suites: a MongoDB database per test, and a fully wired
//! server on either store.

pub mod http;
pub mod interleave;
pub mod mongo;
