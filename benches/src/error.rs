//! What can stop a measurement.

use std::fmt;
use syscalls::Errno;

/// Why a probe could not be measured.
#[derive(Debug)]
pub enum BenchError {
    /// A system call the rig needs failed.
    Os {
        /// What was being done.
        op: &'static str,
        /// The kernel's answer.
        errno: Errno,
    },
    /// The engine refused to install or arm.
    Engine(sud_engine::Error),
    /// The rig's one-time setup (code cache, engine install) failed.
    Setup(String),
    /// sud-codegen could not make the code cache or a direct stub.
    Codegen(sud_codegen::Error),
    /// A measuring child process did not deliver its samples.
    Child {
        /// Which probe ran in the child.
        probe: &'static str,
        /// What went wrong.
        problem: String,
    },
    /// Writing the report failed.
    Io(std::io::Error),
    /// Drawing the chart failed.
    Chart(String),
}

/// The benches' result type.
pub type Result<T> = std::result::Result<T, BenchError>;

impl fmt::Display for BenchError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            BenchError::Os { op, errno } => write!(f, "{op} failed: {errno}"),
            BenchError::Engine(e) => write!(f, "sud-engine: {e}"),
            BenchError::Setup(e) => write!(f, "{e}"),
            BenchError::Codegen(e) => write!(f, "sud-codegen: {e}"),
            BenchError::Child { probe, problem } => {
                write!(f, "measuring child for {probe}: {problem}")
            }
            BenchError::Io(e) => write!(f, "i/o: {e}"),
            BenchError::Chart(e) => write!(f, "chart: {e}"),
        }
    }
}

impl std::error::Error for BenchError {}

impl From<sud_engine::Error> for BenchError {
    fn from(e: sud_engine::Error) -> Self {
        BenchError::Engine(e)
    }
}

impl From<sud_codegen::Error> for BenchError {
    fn from(e: sud_codegen::Error) -> Self {
        BenchError::Codegen(e)
    }
}

impl From<std::io::Error> for BenchError {
    fn from(e: std::io::Error) -> Self {
        BenchError::Io(e)
    }
}
