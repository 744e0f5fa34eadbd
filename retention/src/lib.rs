//! The retention store: append-only, hash-chained, signed storage of traffic data, and the
//! compliance officer's operations over it (verify, search, attribute, holds, purge, export).
//!
//! The collector opens a [`Store`] as its writer and calls [`Store::append`] from a blocking
//! thread; the CLI opens it with [`Store::open_shared`] beside the running collector.
//!
//! ```no_run
//! use std::sync::Arc;
//! use khetnet_retention::{Options, Store};
//!
//! # fn main() -> khetnet_retention::Result<()> {
//! let store = Arc::new(Store::open_or_init("/var/lib/khetnet/store", &Options::default())?);
//! if let Some(cut) = store.recovery() {
//!     eprintln!("{cut}");
//! }
//! // From a blocking thread: returns once the batch is fsynced and chained; only then
//! // acknowledge the sender. On Err (a full disk), do not acknowledge: retry later.
//! let receipt = store.append(vec![/* records */])?;
//! # let _ = receipt;
//! // Every few seconds: chain the CLI's inbox entries, sign the head when due, seal when due.
//! store.tick()?;
//! // On shutdown: sign what was appended since the last signature.
//! store.sign_now()?;
//! # Ok(())
//! # }
//! ```
//!
//! The on-disk format and its invariants are in `docs/STORE-FORMAT.md`; the records in
//! `docs/RECORDS.md`.

pub mod batch;
pub mod cli;
mod columns;
pub mod counters;
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
pub use store::{Clock, Options, Prepared, Receipt, Recovery, Store};
