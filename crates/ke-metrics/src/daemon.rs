//! What every daemon's `main` does around its own work: log set-up, the Tokio runtime, waiting for
//! SIGTERM/SIGINT, and turning the outcome into an exit code.

use std::fmt::Display;
use std::future::Future;
use std::process::ExitCode;

/// Logs to stderr at `RUST_LOG` (default `info`), builds a multi-threaded runtime (with
/// `worker_threads` threads, or one per core when `None`), runs `work` on it and returns the exit
/// code: success when it returns `Ok`, failure (the error, `{:#}`, logged and printed to stderr as
/// `<name>: <error>`) when it fails or the runtime cannot start.
pub fn run<F, E>(name: &str, worker_threads: Option<usize>, work: F) -> ExitCode
where
    F: Future<Output = Result<(), E>>,
    E: Display,
{
    let filter = tracing_subscriber::EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info"));
    tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .init();
    let mut builder = tokio::runtime::Builder::new_multi_thread();
    if let Some(n) = worker_threads {
        builder.worker_threads(n);
    }
    let rt = match builder.enable_all().build() {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("{name}: cannot start the runtime: {e}");
            return ExitCode::FAILURE;
        }
    };
    match rt.block_on(work) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            tracing::error!("{e:#}");
            eprintln!("{name}: {e:#}");
            ExitCode::FAILURE
        }
    }
}

/// Returns on the first SIGTERM or SIGINT (Ctrl-C alone if the handlers cannot be installed).
pub async fn shutdown_signal() {
    use tokio::signal::unix::{SignalKind, signal};
    let (Ok(mut term), Ok(mut int)) = (signal(SignalKind::terminate()), signal(SignalKind::interrupt()))
    else {
        let _ = tokio::signal::ctrl_c().await;
        return;
    };
    tokio::select! {
        _ = term.recv() => {}
        _ = int.recv() => {}
    }
}
