//! The counters snapshot: every [`EVERY`] and once more at shutdown (after everything received
//! is stored), the collector writes its counters per input and per source and its last clock
//! checks to `counters.json` in the store directory, where `khetnet-retention status` shows
//! them. The file's shape and how it is replaced belong to the store
//! ([`khetnet_retention::counters`]); this side only fills it in.

use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use jiff::Timestamp;
use khetnet_retention::counters::{Counters, InputCounters};
use tokio_util::sync::CancellationToken;

use super::clock::Readings;
use super::sources::{INPUTS, Sources, input_name};
use super::{InputState, InputStatus};

/// How often the snapshot is written while the collector runs.
pub const EVERY: Duration = Duration::from_secs(10);

/// What a snapshot is made of.
pub struct Report {
    pub(super) writer: String,
    pub(super) started_at: Timestamp,
    pub(super) inputs: Vec<InputStatus>,
    pub(super) sources: Arc<Sources>,
    pub(super) clock: Readings,
    pub(super) dir: PathBuf,
}

impl Report {
    /// The counters now; `stopped` for the last snapshot.
    pub fn snapshot(&self, stopped: bool) -> Counters {
        let inputs = INPUTS
            .iter()
            .map(|input| {
                let name = input_name(*input);
                let state = self
                    .inputs
                    .iter()
                    .find(|i| i.name == name)
                    .map_or_else(|| "off".to_owned(), |i| state(&i.state));
                InputCounters {
                    input: name.to_owned(),
                    state,
                    tally: self.sources.tally(*input),
                }
            })
            .collect();
        Counters {
            writer: self.writer.clone(),
            started_at: Some(self.started_at),
            written_at: Some(Timestamp::now()),
            stopped,
            inputs,
            sources: self.sources.source_tallies(),
            refused: self.sources.refused(),
            clock: self.clock.latest().iter().map(|r| r.check()).collect(),
        }
    }

    /// Writes the snapshot (on a blocking thread: it fsyncs). A failure is logged, not fatal:
    /// the file is telemetry, the records are what the law keeps.
    pub async fn write(self: &Arc<Self>, stopped: bool) {
        let counters = self.snapshot(stopped);
        let dir = self.dir.clone();
        match tokio::task::spawn_blocking(move || counters.write(&dir)).await {
            Ok(Ok(())) => {}
            Ok(Err(error)) => {
                tracing::warn!(error = %error, "cannot write the counters snapshot (counters.json)")
            }
            Err(error) => tracing::warn!(error = %error, "the counters snapshot task failed"),
        }
    }
}

fn state(state: &InputState) -> String {
    match state {
        InputState::Listening(addr) => format!("listening on {addr}"),
        InputState::Down(why) => format!("DOWN: {why}"),
        InputState::Off => "off".to_owned(),
    }
}

/// Writes the snapshot every [`EVERY`] until `shutdown`.
pub async fn run_snapshots(report: Arc<Report>, shutdown: CancellationToken) {
    loop {
        report.write(false).await;
        tokio::select! {
            _ = shutdown.cancelled() => break,
            _ = tokio::time::sleep(EVERY) => {}
        }
    }
}
