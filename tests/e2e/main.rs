//! End-to-end scenarios: each module starts real processes on real disks.

mod crash;
