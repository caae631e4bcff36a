//! Exit codes: how a run ended, for scripts, cron and schedulers. Documented in the README
//! and in `--help`; a test runs the binary into each of them.

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
    /// Another run holds the output's lock.
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
  4    another run holds the output lock
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
