//! The retention store: append-only, hash-chained, signed storage of traffic data, and the
//! compliance officer's operations over it (verify, search, attribute, holds, purge, export).
//!
//! The collector opens a [`Store`] as its writer and calls [`Store::append`] from a blocking
//! thread; the CLI opens it with [`Store::open_shared`] beside the running collector.

pub mod batch;
pub mod cli;
pub mod error;
pub mod export;
mod fsutil;
pub mod holds;
pub mod query;
pub mod record;
pub mod segment;
pub mod signing;
pub mod status;
pub mod store;
#[doc(hidden)]
pub mod testing;
pub mod verify;

pub use error::{Error, Result};
pub use record::Record;
pub use store::{Clock, Options, Receipt, Recovery, Store};
