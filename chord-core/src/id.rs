//! 160-bit ring identifiers and the interval arithmetic Chord is written in.
//!
//! Identifiers live on a circle of size 2^160. Node ids are SHA-1 of `ip:port`, key ids are
//! SHA-1 of the key's name, exactly as in the Chord paper. Nothing is ever truncated: the
//! original Python app reduced ids modulo 1024, which collides after about 40 nodes.

use std::fmt;
use std::net::SocketAddr;
use std::str::FromStr;

use serde::{Deserialize, Serialize};
use sha1::{Digest, Sha1};

/// Number of bits in an identifier (`m` in the Chord paper).
pub const ID_BITS: usize = 160;
/// Number of bytes in an identifier.
pub const ID_BYTES: usize = ID_BITS / 8;

/// A point on the 2^160 identifier circle, stored big-endian.
///
/// Ordering (`Ord`) is the plain numeric order of the 160-bit value; ring order relative to
/// a starting point is expressed with [`Id::distance_to`], [`Id::in_open`] and
/// [`Id::in_half_open`].
///
/// ```
/// use chord_core::Id;
/// let a = Id::for_key("hello.txt");
/// assert_eq!(a.to_string().len(), 40);
/// assert_eq!(a.to_string().parse::<Id>().unwrap(), a);
/// // (a, a] is the whole ring: a one-node ring owns every key.
/// assert!(Id::for_key("x").in_half_open(a, a));
/// ```
#[derive(Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct Id(pub [u8; ID_BYTES]);

impl Ord for Id {
    #[inline]
    fn cmp(&self, other: &Id) -> std::cmp::Ordering {
        // Same order as comparing the big-endian bytes, without a call to memcmp.
        self.parts().cmp(&other.parts())
    }
}

impl PartialOrd for Id {
    #[inline]
    fn partial_cmp(&self, other: &Id) -> Option<std::cmp::Ordering> {
        Some(self.cmp(other))
    }
}

impl Id {
    /// The identifier 0.
    pub const ZERO: Id = Id([0; ID_BYTES]);
    /// The identifier 2^160 - 1.
    pub const MAX: Id = Id([0xff; ID_BYTES]);

    /// SHA-1 of arbitrary bytes.
    pub fn hash(bytes: &[u8]) -> Id {
        Id(Sha1::digest(bytes).into())
    }

    /// The id of a key: SHA-1 of its name.
    pub fn for_key(name: &str) -> Id {
        Id::hash(name.as_bytes())
    }

    /// The id of the node listening on `addr`: SHA-1 of `ip:port` (IPv6 as `[ip]:port`).
    pub fn for_addr(addr: SocketAddr) -> Id {
        Id::hash(addr.to_string().as_bytes())
    }

    /// The id of virtual node `vnode` hosted at `addr`. Virtual node 0 is the host's own id
    /// ([`Id::for_addr`]); the others are SHA-1 of `ip:port#v`, so every id stays bound to
    /// the address that hosts it and can be checked by anyone.
    pub fn for_vnode(addr: SocketAddr, vnode: u16) -> Id {
        if vnode == 0 {
            Id::for_addr(addr)
        } else {
            Id::hash(format!("{addr}#{vnode}").as_bytes())
        }
    }

    /// `2^bit` as an id. `bit` must be below 160.
    pub fn pow2(bit: usize) -> Id {
        assert!(bit < ID_BITS, "2^{bit} does not fit in {ID_BITS} bits");
        let mut b = [0u8; ID_BYTES];
        b[ID_BYTES - 1 - bit / 8] = 1 << (bit % 8);
        Id(b)
    }

    /// The id as (high 128 bits, low 32 bits), for fast arithmetic and comparison.
    #[inline]
    fn parts(self) -> (u128, u32) {
        let mut hi = [0u8; 16];
        let mut lo = [0u8; 4];
        hi.copy_from_slice(&self.0[..16]);
        lo.copy_from_slice(&self.0[16..]);
        (u128::from_be_bytes(hi), u32::from_be_bytes(lo))
    }

    /// The high 64 bits: ids in this order are in the order of their prefixes (equal
    /// prefixes aside).
    #[inline]
    pub(crate) fn prefix(self) -> u64 {
        let mut hi = [0u8; 8];
        hi.copy_from_slice(&self.0[..8]);
        u64::from_be_bytes(hi)
    }

    #[inline]
    fn from_parts(hi: u128, lo: u32) -> Id {
        let mut b = [0u8; ID_BYTES];
        b[..16].copy_from_slice(&hi.to_be_bytes());
        b[16..].copy_from_slice(&lo.to_be_bytes());
        Id(b)
    }

    /// `self + other` modulo 2^160.
    #[inline]
    pub fn wrapping_add(self, other: Id) -> Id {
        let (ah, al) = self.parts();
        let (bh, bl) = other.parts();
        let (lo, carry) = al.overflowing_add(bl);
        Id::from_parts(ah.wrapping_add(bh).wrapping_add(carry as u128), lo)
    }

    /// `self - other` modulo 2^160.
    #[inline]
    pub fn wrapping_sub(self, other: Id) -> Id {
        let (ah, al) = self.parts();
        let (bh, bl) = other.parts();
        let (lo, borrow) = al.overflowing_sub(bl);
        Id::from_parts(ah.wrapping_sub(bh).wrapping_sub(borrow as u128), lo)
    }

    /// Clockwise distance from `self` to `other`: `other - self` modulo 2^160.
    #[inline]
    pub fn distance_to(self, other: Id) -> Id {
        other.wrapping_sub(self)
    }

    /// Is `self` in the open ring interval `(a, b)`?
    ///
    /// When `a == b` the interval is the whole ring except `a` (the usual Chord convention:
    /// in a one-node ring every other id lies between the node and itself).
    #[inline]
    pub fn in_open(self, a: Id, b: Id) -> bool {
        if a == b {
            return self != a;
        }
        let d = a.distance_to(self);
        d != Id::ZERO && d < a.distance_to(b)
    }

    /// Is `self` in the half-open ring interval `(a, b]`? When `a == b` this is the whole ring.
    #[inline]
    pub fn in_half_open(self, a: Id, b: Id) -> bool {
        if a == b {
            return true;
        }
        let d = a.distance_to(self);
        d != Id::ZERO && d <= a.distance_to(b)
    }

    /// The id as an approximate fraction of the ring in `[0, 1)`, for statistics and drawing.
    pub fn as_fraction(self) -> f64 {
        self.prefix() as f64 / 18_446_744_073_709_551_616.0
    }

    /// Index of the highest set bit (`floor(log2(self))`), or `None` for zero.
    pub fn log2(self) -> Option<usize> {
        let (i, b) = self.0.iter().enumerate().find(|(_, b)| **b != 0)?;
        Some((ID_BYTES - 1 - i) * 8 + 7 - b.leading_zeros() as usize)
    }
}

impl fmt::Display for Id {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&hex::encode(self.0))
    }
}

impl fmt::Debug for Id {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        // Short form keeps logs and test failures readable; Display has all 40 digits.
        write!(f, "Id({}…)", &hex::encode(&self.0[..4]))
    }
}

/// Why a string is not an [`Id`].
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("an id is 40 hexadecimal digits, got {got:?}")]
pub struct ParseIdError {
    got: String,
}

impl FromStr for Id {
    type Err = ParseIdError;
    fn from_str(s: &str) -> Result<Id, ParseIdError> {
        let err = || ParseIdError {
            got: s.chars().take(64).collect(),
        };
        let mut out = [0u8; ID_BYTES];
        hex::decode_to_slice(s, &mut out).map_err(|_| err())?;
        Ok(Id(out))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn id_from_u64(x: u64) -> Id {
        let mut b = [0u8; ID_BYTES];
        b[ID_BYTES - 8..].copy_from_slice(&x.to_be_bytes());
        Id(b)
    }

    fn any_id() -> impl Strategy<Value = Id> {
        prop::array::uniform20(any::<u8>()).prop_map(Id)
    }

    /// A reference model on a small ring (u64 arithmetic modulo 2^64 embedded in the low
    /// bits is not the same ring, so compare on ids whose high bytes are all zero or all ones).
    #[test]
    fn known_values() {
        let a = id_from_u64(10);
        let b = id_from_u64(20);
        assert!(id_from_u64(15).in_open(a, b));
        assert!(!a.in_open(a, b));
        assert!(!b.in_open(a, b));
        assert!(b.in_half_open(a, b));
        assert!(!a.in_half_open(a, b));
        // Wrap-around: (20, 10) contains 0 and MAX but not 15.
        assert!(Id::ZERO.in_open(b, a));
        assert!(Id::MAX.in_open(b, a));
        assert!(!id_from_u64(15).in_open(b, a));
        assert_eq!(Id::MAX.wrapping_add(id_from_u64(1)), Id::ZERO);
        assert_eq!(Id::ZERO.wrapping_sub(id_from_u64(1)), Id::MAX);
        assert_eq!(Id::pow2(0), id_from_u64(1));
        assert_eq!(Id::pow2(159).0[0], 0x80);
        assert_eq!(Id::pow2(63).log2(), Some(63));
        assert_eq!(Id::ZERO.log2(), None);
    }

    #[test]
    fn sha1_of_address_and_key() {
        let addr: SocketAddr = "127.0.0.2:5000".parse().expect("valid address");
        assert_eq!(Id::for_addr(addr), Id::hash(b"127.0.0.2:5000"));
        assert_eq!(Id::for_vnode(addr, 0), Id::for_addr(addr));
        assert_eq!(Id::for_vnode(addr, 3), Id::hash(b"127.0.0.2:5000#3"));
        // SHA-1("abc"), FIPS 180 test vector.
        assert_eq!(
            Id::for_key("abc").to_string(),
            "a9993e364706816aba3e25717850c26c9cd0d89d"
        );
    }

    #[test]
    fn parse_rejects_bad_input() {
        assert!("".parse::<Id>().is_err());
        assert!("zz".repeat(20).parse::<Id>().is_err());
        assert!("00".repeat(21).parse::<Id>().is_err());
        assert_eq!("00".repeat(20).parse::<Id>(), Ok(Id::ZERO));
    }

    proptest! {
        #[test]
        fn display_parse_round_trip(a in any_id()) {
            prop_assert_eq!(a.to_string().parse::<Id>().unwrap(), a);
        }

        #[test]
        fn order_is_byte_order(a in any_id(), b in any_id()) {
            prop_assert_eq!(a.cmp(&b), a.0.cmp(&b.0));
        }

        #[test]
        fn add_sub_inverse(a in any_id(), b in any_id()) {
            prop_assert_eq!(a.wrapping_add(b).wrapping_sub(b), a);
            prop_assert_eq!(a.distance_to(b).wrapping_add(b.distance_to(a)), Id::ZERO);
        }

        /// The ring with 64-bit ids behaves like u64 wrapping arithmetic: embed x as
        /// x << 96 so the top bits carry the value and wrap-around is exercised.
        #[test]
        fn intervals_match_u64_model(x in any::<u64>(), a in any::<u64>(), b in any::<u64>()) {
            let emb = |v: u64| {
                let mut bytes = [0u8; ID_BYTES];
                bytes[..8].copy_from_slice(&v.to_be_bytes());
                Id(bytes)
            };
            let (ix, ia, ib) = (emb(x), emb(a), emb(b));
            let d = |from: u64, to: u64| to.wrapping_sub(from);
            let open = if a == b { x != a } else { d(a, x) != 0 && d(a, x) < d(a, b) };
            let half = if a == b { true } else { d(a, x) != 0 && d(a, x) <= d(a, b) };
            prop_assert_eq!(ix.in_open(ia, ib), open);
            prop_assert_eq!(ix.in_half_open(ia, ib), half);
        }

        /// Every id is in exactly one of (a, b] and (b, a] when a != b: the two arcs
        /// partition the ring. For a == b, (a, a] is the whole ring (one-node ring).
        #[test]
        fn arcs_partition_ring(x in any_id(), a in any_id(), b in any_id()) {
            if a == b {
                prop_assert!(x.in_half_open(a, b));
                prop_assert_eq!(x.in_open(a, b), x != a);
            } else {
                prop_assert!(x.in_half_open(a, b) ^ x.in_half_open(b, a));
                // (a, b) is (a, b] without b.
                prop_assert_eq!(x.in_open(a, b), x.in_half_open(a, b) && x != b);
            }
        }

        #[test]
        fn log2_matches_pow2(bit in 0usize..ID_BITS) {
            prop_assert_eq!(Id::pow2(bit).log2(), Some(bit));
        }
    }
}
