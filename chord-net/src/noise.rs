//! The optional network key: every connection authenticated and encrypted with Noise.
//!
//! A ring started with a [`NetworkKey`] runs the Noise pattern `NNpsk0` (X25519,
//! ChaCha20-Poly1305, BLAKE2s, from the `snow` crate) on every connection, peers and
//! clients alike. The key is the pre-shared key: a side without it, or with another one,
//! cannot complete the handshake, so it can neither join, nor read, nor write. Both sides
//! get fresh ephemeral keys per connection (forward secrecy).
//!
//! The plaintext [`Hello`](crate::wire::Hello) goes first, so that a node can answer a
//! client without a key with a clear refusal; it is the Noise prologue, so a tampered hello
//! fails the handshake. The node's `Welcome` travels as the payload of the second handshake
//! message and is checked against the plaintext one. After the handshake the byte stream
//! (frames, unchanged) is cut into Noise transport messages, each sent as a 2-byte
//! big-endian length followed by at most 65,535 bytes of ciphertext. See docs/protocol.md.

use std::io;
use std::path::Path;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{ready, Context, Poll};

use futures_lite::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use snow::{HandshakeState, StatelessTransportState};

use crate::errors::FrameError;

/// The Noise protocol name used on every keyed connection.
pub const NOISE_PARAMS: &str = "Noise_NNpsk0_25519_ChaChaPoly_BLAKE2s";
/// Largest Noise message (the Noise specification's limit).
const MAX_MESSAGE: usize = 65_535;
/// The authentication tag added to every message.
const TAG: usize = 16;
/// Most plaintext in one transport message.
const MAX_PLAIN: usize = MAX_MESSAGE - TAG;
/// A handshake message is never larger than this (an ephemeral key, a tag, a welcome).
const MAX_HANDSHAKE_MESSAGE: usize = 1024;

/// A 256-bit secret shared by every node and client of one ring.
#[derive(Clone, PartialEq, Eq)]
pub struct NetworkKey([u8; 32]);

impl std::fmt::Debug for NetworkKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("NetworkKey(…)")
    }
}

/// Why a key file could not be used.
#[derive(Debug, thiserror::Error)]
pub enum KeyError {
    /// The file could not be read.
    #[error("cannot read the key file {0}")]
    Read(String, #[source] io::Error),
    /// The file does not hold 64 hexadecimal digits.
    #[error("the key file {0} must hold 64 hexadecimal digits")]
    Format(String),
    /// No randomness from the operating system.
    #[error("cannot get random bytes from the operating system")]
    Random,
}

impl NetworkKey {
    /// A key from its 32 bytes.
    pub fn from_bytes(bytes: [u8; 32]) -> NetworkKey {
        NetworkKey(bytes)
    }

    /// A new random key from the operating system's generator.
    pub fn generate() -> Result<NetworkKey, KeyError> {
        random_32().map(NetworkKey).ok_or(KeyError::Random)
    }

    /// The key as 64 lowercase hexadecimal digits (the key file's format).
    pub fn to_hex(&self) -> String {
        hex::encode(self.0)
    }

    /// Parse 64 hexadecimal digits; surrounding white space is ignored.
    pub fn from_hex(text: &str) -> Option<NetworkKey> {
        hex_32(text).map(NetworkKey)
    }

    /// Read a key file: 64 hexadecimal digits, as written by `chord keygen`.
    pub fn from_file(path: &Path) -> Result<NetworkKey, KeyError> {
        let name = path.display().to_string();
        // A key file is tiny; refuse to read anything large.
        let mut text = String::new();
        std::fs::File::open(path)
            .and_then(|f| io::Read::read_to_string(&mut io::Read::take(f, 256), &mut text))
            .map_err(|e| KeyError::Read(name.clone(), e))?;
        NetworkKey::from_hex(&text).ok_or(KeyError::Format(name))
    }

    fn builder<'a>(&'a self, prologue: &'a [u8]) -> Result<snow::Builder<'a>, snow::Error> {
        snow::Builder::new(NOISE_PARAMS.parse()?)
            .psk(0, &self.0)?
            .prologue(prologue)
    }

    /// The initiator's side, bound to the plaintext `hello` frame.
    pub(crate) fn initiator(&self, hello: &[u8]) -> Result<HandshakeState, snow::Error> {
        self.builder(hello)?.build_initiator()
    }

    /// The responder's side, bound to the plaintext `hello` frame.
    pub(crate) fn responder(&self, hello: &[u8]) -> Result<HandshakeState, snow::Error> {
        self.builder(hello)?.build_responder()
    }
}

/// 32 random bytes from the operating system's generator.
pub(crate) fn random_32() -> Option<[u8; 32]> {
    use rand::TryRngCore;
    let mut k = [0u8; 32];
    rand::rngs::OsRng.try_fill_bytes(&mut k).ok()?;
    Some(k)
}

/// 32 bytes from 64 hexadecimal digits; surrounding white space is ignored.
pub(crate) fn hex_32(text: &str) -> Option<[u8; 32]> {
    let mut k = [0u8; 32];
    hex::decode_to_slice(text.trim(), &mut k).ok()?;
    Some(k)
}

pub use crate::errors::NoiseError;

/// Write one handshake message: 2-byte length, then the bytes.
pub(crate) async fn write_message<W: AsyncWrite + Unpin>(
    w: &mut W,
    hs: &mut HandshakeState,
    payload: &[u8],
) -> Result<(), FrameError> {
    let mut buf = vec![0u8; MAX_HANDSHAKE_MESSAGE];
    let n = hs
        .write_message(payload, &mut buf)
        .map_err(NoiseError::Handshake)?;
    let len = u16::try_from(n).map_err(|_| NoiseError::TooLarge(n))?;
    let mut out = Vec::with_capacity(2 + n);
    out.extend_from_slice(&len.to_be_bytes());
    out.extend_from_slice(&buf[..n]);
    w.write_all(&out).await?;
    w.flush().await?;
    Ok(())
}

/// Read one handshake message and return its payload.
pub(crate) async fn read_message<R: AsyncRead + Unpin>(
    r: &mut R,
    hs: &mut HandshakeState,
) -> Result<Vec<u8>, FrameError> {
    let mut len = [0u8; 2];
    r.read_exact(&mut len).await?;
    let len = usize::from(u16::from_be_bytes(len));
    if len > MAX_HANDSHAKE_MESSAGE {
        return Err(NoiseError::TooLarge(len).into());
    }
    let mut msg = vec![0u8; len];
    r.read_exact(&mut msg).await?;
    let mut payload = vec![0u8; MAX_HANDSHAKE_MESSAGE];
    let n = hs
        .read_message(&msg, &mut payload)
        .map_err(NoiseError::Handshake)?;
    payload.truncate(n);
    Ok(payload)
}

/// Finish a handshake: the two directions of the session.
pub(crate) fn split(
    hs: HandshakeState,
) -> Result<(Arc<StatelessTransportState>, Arc<StatelessTransportState>), NoiseError> {
    let t = Arc::new(
        hs.into_stateless_transport_mode()
            .map_err(NoiseError::Handshake)?,
    );
    Ok((t.clone(), t))
}

/// The reading half of an encrypted stream: decrypts transport messages as they arrive.
pub(crate) struct NoiseReader<R> {
    inner: R,
    state: Arc<StatelessTransportState>,
    nonce: u64,
    header: [u8; 2],
    header_got: usize,
    record: Vec<u8>,
    record_got: usize,
    plain: Vec<u8>,
    plain_pos: usize,
}

impl<R> NoiseReader<R> {
    pub(crate) fn new(inner: R, state: Arc<StatelessTransportState>) -> NoiseReader<R> {
        NoiseReader {
            inner,
            state,
            nonce: 0,
            header: [0; 2],
            header_got: 0,
            record: Vec::new(),
            record_got: 0,
            plain: Vec::new(),
            plain_pos: 0,
        }
    }
}

fn bad_data(msg: &'static str) -> io::Error {
    io::Error::new(io::ErrorKind::InvalidData, msg)
}

impl<R: AsyncRead + Unpin> AsyncRead for NoiseReader<R> {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut [u8],
    ) -> Poll<io::Result<usize>> {
        let this = self.get_mut();
        loop {
            if this.plain_pos < this.plain.len() {
                let n = buf.len().min(this.plain.len() - this.plain_pos);
                buf[..n].copy_from_slice(&this.plain[this.plain_pos..this.plain_pos + n]);
                this.plain_pos += n;
                return Poll::Ready(Ok(n));
            }
            if buf.is_empty() {
                return Poll::Ready(Ok(0));
            }
            if this.header_got < 2 {
                let n =
                    ready!(Pin::new(&mut this.inner)
                        .poll_read(cx, &mut this.header[this.header_got..]))?;
                if n == 0 {
                    return Poll::Ready(if this.header_got == 0 {
                        Ok(0) // clean end of stream between messages
                    } else {
                        Err(io::ErrorKind::UnexpectedEof.into())
                    });
                }
                this.header_got += n;
                if this.header_got == 2 {
                    let len = usize::from(u16::from_be_bytes(this.header));
                    if len <= TAG {
                        return Poll::Ready(Err(bad_data("empty encrypted message")));
                    }
                    this.record.resize(len, 0);
                    this.record_got = 0;
                }
                continue;
            }
            if this.record_got < this.record.len() {
                let n =
                    ready!(Pin::new(&mut this.inner)
                        .poll_read(cx, &mut this.record[this.record_got..]))?;
                if n == 0 {
                    return Poll::Ready(Err(io::ErrorKind::UnexpectedEof.into()));
                }
                this.record_got += n;
                continue;
            }
            // A whole message: decrypt it.
            if this.nonce == u64::MAX {
                return Poll::Ready(Err(bad_data("nonces exhausted")));
            }
            this.plain.resize(this.record.len() - TAG, 0);
            let n = this
                .state
                .read_message(this.nonce, &this.record, &mut this.plain)
                .map_err(|_| bad_data("an encrypted message failed authentication"))?;
            this.nonce += 1;
            this.plain.truncate(n);
            this.plain_pos = 0;
            this.header_got = 0;
        }
    }
}

/// The writing half of an encrypted stream: encrypts up to 65,519 bytes per message.
pub(crate) struct NoiseWriter<W> {
    inner: W,
    state: Arc<StatelessTransportState>,
    nonce: u64,
    out: Vec<u8>,
    out_pos: usize,
}

impl<W> NoiseWriter<W> {
    pub(crate) fn new(inner: W, state: Arc<StatelessTransportState>) -> NoiseWriter<W> {
        NoiseWriter {
            inner,
            state,
            nonce: 0,
            out: Vec::new(),
            out_pos: 0,
        }
    }
}

impl<W: AsyncWrite + Unpin> NoiseWriter<W> {
    /// Send what is already encrypted.
    fn poll_drain(&mut self, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        while self.out_pos < self.out.len() {
            let n = ready!(Pin::new(&mut self.inner).poll_write(cx, &self.out[self.out_pos..]))?;
            if n == 0 {
                return Poll::Ready(Err(io::ErrorKind::WriteZero.into()));
            }
            self.out_pos += n;
        }
        self.out.clear();
        self.out_pos = 0;
        Poll::Ready(Ok(()))
    }
}

impl<W: AsyncWrite + Unpin> AsyncWrite for NoiseWriter<W> {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        let this = self.get_mut();
        ready!(this.poll_drain(cx))?;
        if buf.is_empty() {
            return Poll::Ready(Ok(0));
        }
        if this.nonce == u64::MAX {
            return Poll::Ready(Err(io::Error::other("nonces exhausted")));
        }
        let n = buf.len().min(MAX_PLAIN);
        this.out.resize(2 + n + TAG, 0);
        let len = this
            .state
            .write_message(this.nonce, &buf[..n], &mut this.out[2..])
            .map_err(io::Error::other)?;
        this.nonce += 1;
        this.out.truncate(2 + len);
        // len ≤ MAX_MESSAGE, so it fits in two bytes.
        this.out[..2].copy_from_slice(&(len as u16).to_be_bytes());
        this.out_pos = 0;
        // Start sending at once; what is left goes out on the next write or flush.
        let _ = this.poll_drain(cx)?;
        Poll::Ready(Ok(n))
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        let this = self.get_mut();
        ready!(this.poll_drain(cx))?;
        Pin::new(&mut this.inner).poll_flush(cx)
    }

    fn poll_close(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        let this = self.get_mut();
        ready!(this.poll_drain(cx))?;
        Pin::new(&mut this.inner).poll_close(cx)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use futures_lite::future::block_on;

    fn pair(a: &NetworkKey, b: &NetworkKey) -> Result<(HandshakeState, HandshakeState), ()> {
        let hello = b"hello";
        Ok((
            a.initiator(hello).map_err(|_| ())?,
            b.responder(hello).map_err(|_| ())?,
        ))
    }

    /// Run a handshake over an in-memory pipe; the responder's result.
    fn handshake(
        a: &NetworkKey,
        b: &NetworkKey,
    ) -> Result<(HandshakeState, HandshakeState, Vec<u8>), FrameError> {
        let (mut i, mut r) = pair(a, b).map_err(|_| io::Error::other("builder"))?;
        block_on(async {
            let mut wire = Vec::new();
            write_message(&mut wire, &mut i, b"").await?;
            let mut rd = futures_lite::io::Cursor::new(wire);
            read_message(&mut rd, &mut r).await?;
            let mut wire = Vec::new();
            write_message(&mut wire, &mut r, b"welcome").await?;
            let mut rd = futures_lite::io::Cursor::new(wire);
            let payload = read_message(&mut rd, &mut i).await?;
            Ok((i, r, payload))
        })
    }

    #[test]
    fn same_key_round_trips_large_and_small_writes() {
        let k = NetworkKey::generate().expect("key");
        let (i, r, welcome) = handshake(&k, &k).expect("handshake");
        assert_eq!(welcome, b"welcome");
        let (ti, _) = split(i).expect("split");
        let (tr, _) = split(r).expect("split");
        // 200 KB spans several transport messages; the empty write sends nothing.
        let data: Vec<u8> = (0..200_000u32).map(|i| (i % 251) as u8).collect();
        let wire = block_on(async {
            let mut w = NoiseWriter::new(Vec::new(), ti);
            w.write_all(&data).await.expect("write");
            w.write_all(b"").await.expect("write");
            w.write_all(b"tail").await.expect("write");
            w.flush().await.expect("flush");
            w.inner
        });
        assert!(!wire.windows(64).any(|s| data.windows(64).next() == Some(s)));
        let back = block_on(async {
            let mut r = NoiseReader::new(futures_lite::io::Cursor::new(wire.clone()), tr.clone());
            let mut back = Vec::new();
            r.read_to_end(&mut back).await.expect("read");
            back
        });
        assert_eq!(&back[..data.len()], &data[..]);
        assert_eq!(&back[data.len()..], b"tail");
        // One flipped bit anywhere in a message fails authentication.
        let mut bad = wire.clone();
        bad[100] ^= 1;
        let e = block_on(async {
            let mut r = NoiseReader::new(futures_lite::io::Cursor::new(bad), tr);
            let mut back = Vec::new();
            r.read_to_end(&mut back).await
        });
        assert_eq!(e.expect_err("tampered").kind(), io::ErrorKind::InvalidData);
    }

    #[test]
    fn different_keys_fail_the_handshake() {
        let a = NetworkKey::generate().expect("key");
        let b = NetworkKey::generate().expect("key");
        let e = handshake(&a, &b).expect_err("must fail");
        assert!(
            matches!(e, FrameError::Noise(NoiseError::Handshake(_))),
            "{e:?}"
        );
    }

    #[test]
    fn key_files() {
        let k = NetworkKey::generate().expect("key");
        assert_eq!(NetworkKey::from_hex(&format!(" {}\n", k.to_hex())), Some(k));
        assert_eq!(NetworkKey::from_hex("abcd"), None);
        assert_eq!(NetworkKey::from_hex(&"zz".repeat(32)), None);
        assert_eq!(
            format!("{:?}", NetworkKey::from_bytes([7; 32])),
            "NetworkKey(…)"
        );
    }
}
