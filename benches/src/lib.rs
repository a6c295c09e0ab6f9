//! Shared helpers for the benches and load clients.
