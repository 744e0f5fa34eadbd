//! The retention store: append-only, hash-chained, signed storage of traffic data.

pub mod record;

pub use record::Record;
