//! Why the service could not start or serve.

use crate::tokens;

#[derive(Debug, thiserror::Error)]
pub enum ServiceError {
    #[error("{0}")]
    Tokens(#[from] tokens::TokenError),
    #[error("{0}")]
    RecorderKey(#[from] crate::recorder_key::KeyFileError),
    #[error("{0}")]
    Replay(#[from] tracevault_replay::ReplayError),
    #[error("listening on {addr}: {source}")]
    Listen { addr: String, source: std::io::Error },
    #[error("{0}")]
    Tls(String),
    #[error("serving: {0}")]
    Serve(std::io::Error),
    #[error("the server's runtime: {0}")]
    Runtime(std::io::Error),
    #[error("the server thread panicked")]
    Panicked,
}
