//! End-to-end tests of DVK Ledger live in `e2e/`, one module per scenario; this
//! library is empty so that the crate builds as a workspace member.
