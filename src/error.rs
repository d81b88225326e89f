//! natra's one error type. Every failure carries a kind; the CNI code it maps
//! to is decided in `main` alone.
use std::fmt;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ErrorKind {
    /// The config's cniVersion is not one natra speaks.
    IncompatibleVersion,
    /// A CNI_* environment variable is missing or malformed.
    InvalidEnvironment,
    /// stdin could not be decoded as a network configuration.
    Decode,
    /// The Pod's netns (CNI_NETNS) does not exist.
    ContainerUnknown,
    /// The configuration decoded but asks for something invalid.
    InvalidConfig,
    /// A file, netns or netlink operation failed.
    Io,
    /// Loading, attaching or pinning BPF failed.
    Dataplane,
    /// CHECK found the kernel state differing from the configuration.
    CheckMismatch,
    /// STATUS: the plugin cannot serve ADD on this node now.
    NotReady,
    /// A transient condition (the node lock is held): the runtime retries.
    TryAgainLater,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Error {
    pub kind: ErrorKind,
    pub msg: String,
    pub details: String,
}

pub type Result<T> = std::result::Result<T, Error>;

impl Error {
    pub fn new(kind: ErrorKind, msg: impl Into<String>) -> Self {
        Error {
            kind,
            msg: msg.into(),
            details: String::new(),
        }
    }

    pub fn with_details(mut self, details: impl fmt::Display) -> Self {
        self.details = details.to_string();
        self
    }
}

impl fmt::Display for Error {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.details.is_empty() {
            write!(f, "{}", self.msg)
        } else {
            write!(f, "{}: {}", self.msg, self.details)
        }
    }
}

impl std::error::Error for Error {}

/// Shorthand for mapping a foreign error into natra's with a message.
pub trait Context<T> {
    fn context(self, kind: ErrorKind, msg: impl Into<String>) -> Result<T>;
}

impl<T, E: fmt::Display> Context<T> for std::result::Result<T, E> {
    fn context(self, kind: ErrorKind, msg: impl Into<String>) -> Result<T> {
        self.map_err(|e| Error::new(kind, msg).with_details(e))
    }
}
