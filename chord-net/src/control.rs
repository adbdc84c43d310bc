//! The control token: what lets a node's operator, and nobody else, make it leave.
//!
//! A node started with [`crate::NodeBuilder::control_token`] obeys
//! [`crate::wire::ClientRequest::Control`] only when it carries that token *and* comes
//! from the node's own host (a loopback address, or the IP the node listens on). Without
//! a token, nothing on the ring port can change the node; the application that embeds it
//! holds the [`crate::Node`] handle. `chord node` makes a fresh token at start and keeps
//! it in a file only its user can read (see the CLI's `leave`).

use serde::{Deserialize, Serialize};
use subtle::ConstantTimeEq;

/// A 256-bit secret that authorizes control requests to one node.
#[derive(Clone, Serialize, Deserialize)]
pub struct ControlToken([u8; 32]);

impl std::fmt::Debug for ControlToken {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("ControlToken(…)")
    }
}

impl PartialEq for ControlToken {
    /// In constant time: comparing must not tell a guesser how many bytes were right.
    fn eq(&self, other: &ControlToken) -> bool {
        self.0.ct_eq(&other.0).into()
    }
}

impl Eq for ControlToken {}

impl ControlToken {
    /// A token from its 32 bytes.
    pub fn from_bytes(bytes: [u8; 32]) -> ControlToken {
        ControlToken(bytes)
    }

    /// A new random token from the operating system's generator (`None` if it has none).
    pub fn generate() -> Option<ControlToken> {
        crate::noise::random_32().map(ControlToken)
    }

    /// The token as 64 lowercase hexadecimal digits (the token file's format).
    pub fn to_hex(&self) -> String {
        hex::encode(self.0)
    }

    /// Parse 64 hexadecimal digits; surrounding white space is ignored.
    pub fn from_hex(text: &str) -> Option<ControlToken> {
        crate::noise::hex_32(text).map(ControlToken)
    }
}

/// Is a connection from `remote` one from the host of a node listening on `me`?
pub(crate) fn from_host(remote: Option<std::net::SocketAddr>, me: std::net::SocketAddr) -> bool {
    remote.is_some_and(|r| {
        // An IPv4-mapped IPv6 address (a dual-stack listener) counts as the IPv4 one.
        let ip = r.ip().to_canonical();
        ip.is_loopback() || ip == me.ip()
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tokens_compare_and_parse() {
        let a = ControlToken::generate().expect("random");
        let b = ControlToken::generate().expect("random");
        assert_ne!(a, b);
        assert_eq!(ControlToken::from_hex(&a.to_hex()), Some(a.clone()));
        assert_eq!(ControlToken::from_hex("zz"), None);
        assert!(!format!("{a:?}").contains(&a.to_hex()[..8]));
        let me: std::net::SocketAddr = "192.168.1.5:2000".parse().expect("addr");
        assert!(from_host(Some("127.0.0.9:1".parse().expect("addr")), me));
        assert!(from_host(
            Some("192.168.1.5:40000".parse().expect("addr")),
            me
        ));
        assert!(from_host(Some("[::1]:1".parse().expect("addr")), me));
        assert!(!from_host(Some("192.168.1.6:1".parse().expect("addr")), me));
        assert!(!from_host(None, me));
    }
}
