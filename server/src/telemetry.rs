//! khetnet's own logs (tracing, to stdout as text or JSON, to journald or to syslog) and the
//! metrics recorder behind `/metrics`.

use std::io::Write;
use std::os::unix::net::UnixDatagram;
use std::sync::OnceLock;

use khetnet_config::{LogFormat, LogTarget, LoggingConfig};
use metrics_exporter_prometheus::{PrometheusBuilder, PrometheusHandle};
use tracing_subscriber::EnvFilter;
use tracing_subscriber::layer::SubscriberExt;
use tracing_subscriber::util::SubscriberInitExt;

use crate::error::{Error, Result};

/// Sets up the process's logging once, as configured. `RUST_LOG`, when set, wins over
/// `logging.level`.
pub fn init_logging(config: &LoggingConfig) -> Result<()> {
    let filter = EnvFilter::try_from_default_env()
        .or_else(|_| EnvFilter::try_new(&config.level))
        .map_err(|e| {
            Error::invalid(
                "logging.level",
                format!("{:?} is not a tracing filter: {e}", config.level),
            )
        })?;
    let registry = tracing_subscriber::registry().with(filter);
    let result = match (config.target, config.format) {
        (LogTarget::Stdout, LogFormat::Human) => {
            registry.with(tracing_subscriber::fmt::layer()).try_init()
        }
        (LogTarget::Stdout, LogFormat::Json) => registry
            .with(tracing_subscriber::fmt::layer().json())
            .try_init(),
        (LogTarget::Journald, _) => {
            let layer = tracing_journald::layer().map_err(Error::io(
                "connecting to journald (is systemd-journald running? set logging.target = \"stdout\" otherwise)",
            ))?;
            registry.with(layer).try_init()
        }
        (LogTarget::Syslog, format) => {
            let writer = SyslogWriter::connect()?;
            let layer = tracing_subscriber::fmt::layer()
                .with_ansi(false)
                .without_time()
                .with_writer(move || writer.clone());
            match format {
                LogFormat::Human => registry.with(layer).try_init(),
                LogFormat::Json => registry.with(layer.json()).try_init(),
            }
        }
    };
    // Already initialised (tests start several servers in one process): keep the first.
    let _ = result;
    Ok(())
}

/// Sends each formatted event to the local syslog daemon (`/dev/log`) as one RFC 3164
/// message, facility daemon.
#[derive(Clone)]
struct SyslogWriter {
    socket: std::sync::Arc<UnixDatagram>,
    buffer: Vec<u8>,
}

impl SyslogWriter {
    fn connect() -> Result<SyslogWriter> {
        let socket = UnixDatagram::unbound().map_err(Error::io("creating a syslog socket"))?;
        socket.connect("/dev/log").map_err(Error::io(
            "connecting to /dev/log (is a syslog daemon running? set logging.target = \"stdout\" otherwise)",
        ))?;
        Ok(SyslogWriter {
            socket: std::sync::Arc::new(socket),
            buffer: Vec::new(),
        })
    }
}

impl Write for SyslogWriter {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        self.buffer.extend_from_slice(buf);
        Ok(buf.len())
    }

    fn flush(&mut self) -> std::io::Result<()> {
        if self.buffer.is_empty() {
            return Ok(());
        }
        let text = String::from_utf8_lossy(&self.buffer);
        let level = if text.contains("ERROR") {
            3
        } else if text.contains("WARN") {
            4
        } else {
            6
        };
        let message = format!(
            "<{}>khetnet[{}]: {}",
            3 * 8 + level,
            std::process::id(),
            text.trim_end()
        );
        self.buffer.clear();
        // A full or absent syslog must not stop the server: the event is lost, not the request.
        let _ = self.socket.send(message.as_bytes());
        Ok(())
    }
}

impl Drop for SyslogWriter {
    fn drop(&mut self) {
        let _ = self.flush();
    }
}

/// The process-wide metrics recorder; its handle renders `/metrics`.
pub fn metrics_handle() -> PrometheusHandle {
    static HANDLE: OnceLock<PrometheusHandle> = OnceLock::new();
    HANDLE
        .get_or_init(|| {
            let recorder = PrometheusBuilder::new().build_recorder();
            let handle = recorder.handle();
            let _ = metrics::set_global_recorder(recorder);
            handle
        })
        .clone()
}
