//! The errors of a connection's bytes: framing ([`FrameError`]) and the Noise layer
//! ([`NoiseError`]). Here, apart from both, so that neither module imports the other;
//! `chord_net::frame::FrameError` and `chord_net::noise::NoiseError` are their public
//! names.

/// What can go wrong with one frame.
#[derive(Debug, thiserror::Error)]
pub enum FrameError {
    /// The connection failed.
    #[error("connection error")]
    Io(#[from] std::io::Error),
    /// The peer closed the connection between frames.
    #[error("connection closed by peer")]
    Closed,
    /// The length prefix is above the cap; nothing was allocated.
    #[error("frame of {len} bytes exceeds the limit of {max} bytes")]
    TooLarge {
        /// Announced length.
        len: u32,
        /// The cap.
        max: u32,
    },
    /// The frame did not arrive in time.
    #[error("timed out waiting for a frame")]
    Timeout,
    /// The body is not a valid message.
    #[error("malformed frame")]
    Decode(#[from] postcard::Error),
    /// The body holds a valid message followed by extra bytes.
    #[error("malformed frame: {0} trailing bytes after the message")]
    TrailingBytes(usize),
    /// The encrypted handshake failed (only with a network key).
    #[error("encrypted channel")]
    Noise(#[from] NoiseError),
}

/// What can fail in the Noise layer.
#[derive(Debug, thiserror::Error)]
pub enum NoiseError {
    /// The handshake failed: the other side holds a different key, or the bytes were
    /// tampered with.
    #[error("the encrypted handshake failed (different network key?)")]
    Handshake(#[source] snow::Error),
    /// A handshake message was larger than any valid one.
    #[error("handshake message of {0} bytes is too large")]
    TooLarge(usize),
    /// The node's encrypted welcome differs from the plaintext one.
    #[error("the node's welcome does not match its encrypted copy")]
    WelcomeMismatch,
}
