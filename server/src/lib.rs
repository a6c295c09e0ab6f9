//! certstream server.
