//! End-to-end scenarios: each module starts real processes or services on real
//! ports and real disks.

mod aggregation;
mod authorization;
mod backpressure;
mod chaos;
mod corruption;
mod crash;
mod interop;
mod limits;
mod outage;
mod processes;
mod registration;
mod reporting;
mod tls;
mod trees;
