//! Generated protobuf messages and gRPC stubs of DVK Ledger (`proto/dvk/**`), and the
//! encoded file descriptor set that servers hand to gRPC reflection.

#![allow(clippy::all, missing_debug_implementations, rust_2018_idioms)]

/// The encoded `FileDescriptorSet` of every DVK proto file (for tonic-reflection).
pub const FILE_DESCRIPTOR_SET: &[u8] = include_bytes!(concat!(env!("OUT_DIR"), "/dvk_descriptor.bin"));

pub mod common {
    pub mod v1 {
        include!(concat!(env!("OUT_DIR"), "/dvk.common.v1.rs"));
    }
}

pub mod events {
    pub mod v1 {
        include!(concat!(env!("OUT_DIR"), "/dvk.events.v1.rs"));
    }
}

pub mod registration {
    pub mod v1 {
        include!(concat!(env!("OUT_DIR"), "/dvk.registration.v1.rs"));
    }
}

pub mod reporting {
    pub mod v1 {
        include!(concat!(env!("OUT_DIR"), "/dvk.reporting.v1.rs"));
    }
}

pub mod aggregation {
    pub mod v1 {
        include!(concat!(env!("OUT_DIR"), "/dvk.aggregation.v1.rs"));
    }
}

pub use prost;
pub use prost_types;
