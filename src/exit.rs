//! Exit codes: how a run ended, for scripts, cron and schedulers. Documented in the README
//! and in `--help`; a test runs the binary into each of them. The code of a failure comes
//! from the type of its error ([`code_of`]), never from its message.

use std::process::ExitCode;

/// The documented exit codes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Exit {
    /// Everything in the window was exported and published.
    Success = 0,
    /// A runtime failure (Graph unreachable or refusing, disk full, ...); nothing was published.
    Failure = 1,
    /// A usage or configuration error, found before any request was made.
    Usage = 2,
    /// The run finished and published, but some records were rejected (listed in the summary).
    Rejected = 3,
    /// Another run holds the output's lock, or another writer committed to a Delta table
    /// first.
    Locked = 4,
    /// Stopped by SIGINT (Ctrl-C); nothing partial was published.
    Interrupted = 130,
    /// Stopped by SIGTERM; nothing partial was published.
    Terminated = 143,
}

impl From<Exit> for ExitCode {
    fn from(exit: Exit) -> Self {
        ExitCode::from(exit as u8)
    }
}

/// The exit codes as printed at the end of `--help`.
pub const HELP: &str = "\
Exit codes:
  0    success: the whole window was exported and published
  1    runtime failure (Graph, network, disk); nothing was published
  2    usage or configuration error, found before any request
  3    finished, but some records were rejected (see the summary and _rejected/)
  4    another run holds the output lock, or another writer committed to a Delta table first
  130  interrupted (SIGINT); 143 terminated (SIGTERM); nothing partial was published";

/// An error that ends the program with a specific exit code (everything else exits 1).
#[derive(Debug, thiserror::Error)]
#[error("{message}")]
pub struct Failure {
    pub exit: Exit,
    pub message: String,
}

impl Failure {
    pub fn usage(message: impl Into<String>) -> Self {
        Failure {
            exit: Exit::Usage,
            message: message.into(),
        }
    }
}

/// The exit code an error stands for: usage and config errors are 2, a held lock 4, the
/// rest 1.
pub fn code_of(error: &anyhow::Error) -> Exit {
    // A `Failure` attached as context is only found by downcasting the error itself.
    if let Some(failure) = error.downcast_ref::<Failure>() {
        return failure.exit;
    }
    error
        .chain()
        .find_map(code_of_cause)
        .unwrap_or(Exit::Failure)
}

/// The exit code one error in a chain decides, if any.
fn code_of_cause(cause: &(dyn std::error::Error + 'static)) -> Option<Exit> {
    use crate::commit::CommitError;
    use crate::state::StateError;
    use crate::store::StoreError;
    if let Some(failure) = cause.downcast_ref::<Failure>() {
        return Some(failure.exit);
    }
    if cause.is::<crate::config::ConfigError>()
        || cause.is::<crate::config::UsageError>()
        || cause.is::<crate::window::WindowError>()
        || cause.is::<crate::quality::SitesError>()
        || cause.is::<crate::ddl::LocationError>()
    {
        return Some(Exit::Usage);
    }
    match cause.downcast_ref::<StoreError>() {
        Some(StoreError::Locked { .. }) => return Some(Exit::Locked),
        // Found before any request; the message says what to do.
        Some(StoreError::DamagedLock { .. }) => return Some(Exit::Usage),
        _ => {}
    }
    if let Some(StateError::Damaged { .. }) = cause.downcast_ref::<StateError>() {
        return Some(Exit::Usage);
    }
    match cause.downcast_ref::<crate::delta::DeltaError>() {
        Some(crate::delta::DeltaError::Conflict { .. }) => return Some(Exit::Locked),
        Some(
            crate::delta::DeltaError::IsDelta { .. } | crate::delta::DeltaError::IsParquet { .. },
        ) => {
            return Some(Exit::Usage);
        }
        _ => {}
    }
    match cause.downcast_ref::<CommitError>() {
        Some(CommitError::Damaged { .. } | CommitError::UnknownZone { .. }) => Some(Exit::Usage),
        Some(CommitError::Delta(crate::delta::DeltaError::Conflict { .. })) => Some(Exit::Locked),
        Some(CommitError::Delta(
            crate::delta::DeltaError::IsDelta { .. } | crate::delta::DeltaError::IsParquet { .. },
        )) => Some(Exit::Usage),
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_code_comes_from_the_error_type_anywhere_in_the_chain() {
        let usage = anyhow::Error::new(crate::config::UsageError::NoStreams).context("resolving");
        assert_eq!(code_of(&usage), Exit::Usage);
        let failure = anyhow::anyhow!("disk full").context(Failure {
            exit: Exit::Interrupted,
            message: "stopped by a signal".into(),
        });
        assert_eq!(code_of(&failure), Exit::Interrupted);
        assert_eq!(code_of(&anyhow::anyhow!("loopback only")), Exit::Failure);
    }
}
