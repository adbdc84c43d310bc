//! Mutable records: small values owned by an ed25519 key, ordered by the writer's sequence
//! number, and deleted by signed tombstones (the mutable items of BEP 44, on Chord).
//!
//! A record lives at `SHA-1(public key ‖ salt)`: one key owns as many records as it has
//! salts, and nobody else can write under them, because every holder checks the
//! signature and that the record's key and salt hash to the position it is stored at.
//! Versions are compared by [`Record::version`]: the highest sequence wins; at equal
//! sequences a tombstone beats a value, then the larger BLAKE3 of the signature (any deterministic rule will do; every holder
//! applies the same one). Clocks never order anything; they only end a record's life when
//! its writer gave it an expiry.

use std::path::Path;

use chord_core::Id;
use ed25519_dalek::{Signer, SigningKey, Verifier, VerifyingKey};
use serde::{Deserialize, Serialize};
use serde_bytes::ByteArray;

use crate::manifest::Hash;
use crate::FilesError;

/// Longest salt, in bytes: room for a file record's `file:` and the longest name.
pub const MAX_SALT: usize = 5 + crate::manifest::MAX_NAME;
/// Largest value, in bytes. Records are for small values; larger ones belong in blocks
/// (or files) that a record points to.
pub const MAX_VALUE: usize = 64 * 1024;
/// Highest sequence number a record may carry. Holders refuse anything above, so that a
/// buggy or hostile counter never leaves an owner unable to write or delete again.
pub const MAX_SEQ: u64 = 1 << 62;

/// The domain of record signatures, so that they cannot be replayed as anything else.
const DOMAIN: &[u8] = b"chord-record-v1";

/// Where the record of `public_key` and `salt` lives on the ring: SHA-1 of the key
/// followed by the salt (as BEP 44's target).
pub fn record_id(public_key: &[u8; 32], salt: &[u8]) -> Id {
    use sha1::Digest;
    let mut h = sha1::Sha1::new();
    h.update(public_key);
    h.update(salt);
    Id(h.finalize().into())
}

/// A signing identity: the ed25519 key that owns records (and, through them, files).
#[derive(Clone)]
pub struct Identity(SigningKey);

impl std::fmt::Debug for Identity {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "Identity({})", hex32(&self.public_key()))
    }
}

/// 32 bytes from the operating system's random generator.
pub(crate) fn random_bytes() -> Result<[u8; 32], FilesError> {
    use rand::TryRngCore;
    let mut bytes = [0u8; 32];
    rand::rngs::OsRng
        .try_fill_bytes(&mut bytes)
        .map_err(FilesError::Random)?;
    Ok(bytes)
}

impl Identity {
    /// A new identity from the operating system's random generator.
    pub fn generate() -> Result<Identity, FilesError> {
        Ok(Identity::from_seed(random_bytes()?))
    }

    /// The identity whose secret key is `seed`.
    pub fn from_seed(seed: [u8; 32]) -> Identity {
        Identity(SigningKey::from_bytes(&seed))
    }

    /// The public key: what others name this identity's records by.
    pub fn public_key(&self) -> [u8; 32] {
        self.0.verifying_key().to_bytes()
    }

    /// Read an identity file (64 hexadecimal digits of the secret key), or create one,
    /// readable by its owner only, if there is none.
    pub fn load_or_create(path: &Path) -> Result<Identity, FilesError> {
        match std::fs::read_to_string(path) {
            Ok(text) => {
                let mut seed = [0u8; 32];
                let text = text.trim();
                if hex::decode_to_slice(text, &mut seed).is_err() {
                    return Err(FilesError::BadIdentityFile(path.to_path_buf()));
                }
                Ok(Identity::from_seed(seed))
            }
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                let id = Identity::generate()?;
                if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
                    std::fs::create_dir_all(dir).map_err(FilesError::io(dir))?;
                }
                // Written whole under a temporary name, then linked into place: two
                // processes making the identity at once agree on one, and none reads a
                // half-written file.
                let unique = &hex32(&id.public_key())[..16];
                let tmp = path.with_extension(format!("tmp-{}-{unique}", std::process::id()));
                let mut o = std::fs::OpenOptions::new();
                o.write(true).create(true).truncate(true);
                #[cfg(unix)]
                std::os::unix::fs::OpenOptionsExt::mode(&mut o, 0o600);
                let write = || -> std::io::Result<()> {
                    let mut f = o.open(&tmp)?;
                    let text = format!("{}\n", hex32(&id.0.to_bytes()));
                    std::io::Write::write_all(&mut f, text.as_bytes())?;
                    f.sync_all()?;
                    std::fs::hard_link(&tmp, path)
                };
                let r = write();
                let _ = std::fs::remove_file(&tmp);
                match r {
                    Ok(()) => Ok(id),
                    Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => {
                        Identity::load_or_create(path)
                    }
                    Err(e) => Err(FilesError::io(path)(e)),
                }
            }
            Err(e) => Err(FilesError::io(path)(e)),
        }
    }

    /// Sign a record of this identity. `value` `None` makes a tombstone.
    pub fn sign(
        &self,
        salt: &[u8],
        seq: u64,
        value: Option<Vec<u8>>,
        expires_ms: Option<u64>,
    ) -> Result<Record, FilesError> {
        // Said as what it is (it was "malformed record" for a value too large).
        if let Some(v) = value.as_ref().filter(|v| v.len() > MAX_VALUE) {
            return Err(FilesError::TooLarge {
                size: v.len() as u64,
                limit: MAX_VALUE as u64,
            });
        }
        let mut r = Record {
            public_key: self.public_key(),
            salt: salt.to_vec(),
            seq,
            value: value.map(serde_bytes::ByteBuf::from),
            expires_ms,
            signature: ByteArray::new([0; 64]),
        };
        r.check_shape()?;
        r.signature = ByteArray::new(self.0.sign(&r.signed_bytes()?).to_bytes());
        Ok(r)
    }
}

/// Hex of 32 bytes (a public key), for people.
pub fn hex32(b: &[u8; 32]) -> String {
    crate::manifest::hex(b)
}

/// A signed record (or tombstone), as stored and sent.
#[derive(Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Record {
    /// The owner's ed25519 public key.
    pub public_key: [u8; 32],
    /// Chooses among the owner's records (at most [`MAX_SALT`] bytes).
    #[serde(with = "serde_bytes")]
    pub salt: Vec<u8>,
    /// The writer's sequence number (at most [`MAX_SEQ`]).
    pub seq: u64,
    /// The value (at most [`MAX_VALUE`] bytes); `None` in a tombstone.
    pub value: Option<serde_bytes::ByteBuf>,
    /// When holders may forget it, in milliseconds since the Unix epoch.
    pub expires_ms: Option<u64>,
    /// ed25519 signature of everything above, in the record domain.
    pub signature: ByteArray<64>,
}

impl std::fmt::Debug for Record {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Record")
            .field("key", &hex32(&self.public_key))
            .field("salt", &String::from_utf8_lossy(&self.salt))
            .field("seq", &self.seq)
            .field("value", &self.value.as_ref().map(|v| v.len()))
            .field("expires_ms", &self.expires_ms)
            .finish()
    }
}

/// What is signed: the domain, then every field but the signature.
#[derive(Serialize)]
struct Signed<'a> {
    domain: &'a [u8],
    public_key: &'a [u8; 32],
    salt: &'a [u8],
    seq: u64,
    value: Option<&'a [u8]>,
    expires_ms: Option<u64>,
}

/// The order of versions of one item: larger wins everywhere.
#[derive(
    Clone, Copy, Debug, Default, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize,
)]
pub struct Version {
    /// The sequence (records), the upload time (manifests), 0 (chunks).
    pub seq: u64,
    /// 1 for a tombstone: beats a value of the same sequence.
    pub tombstone: u8,
    /// Breaks the remaining ties the same way on every node.
    pub digest: Hash,
}

impl Record {
    /// The record's position on the ring.
    pub fn id(&self) -> Id {
        record_id(&self.public_key, &self.salt)
    }

    /// Is this a tombstone (a signed delete)?
    pub fn is_tombstone(&self) -> bool {
        self.value.is_none()
    }

    /// The value, if not a tombstone.
    pub fn value(&self) -> Option<&[u8]> {
        self.value.as_deref().map(|v| &v[..])
    }

    fn check_shape(&self) -> Result<(), FilesError> {
        if self.salt.len() > MAX_SALT
            || self.seq > MAX_SEQ
            || self.value.as_ref().is_some_and(|v| v.len() > MAX_VALUE)
        {
            return Err(FilesError::BadRecord);
        }
        Ok(())
    }

    fn signed_bytes(&self) -> Result<Vec<u8>, FilesError> {
        crate::encode(&Signed {
            domain: DOMAIN,
            public_key: &self.public_key,
            salt: &self.salt,
            seq: self.seq,
            value: self.value(),
            expires_ms: self.expires_ms,
        })
    }

    /// Is this record well-formed and signed by its key? (Records come from the network
    /// and from disk.) Expiry is not checked here: it depends on the clock.
    pub fn verify(&self) -> Result<(), FilesError> {
        self.check_shape()?;
        let key = VerifyingKey::from_bytes(&self.public_key).map_err(|_| FilesError::BadRecord)?;
        let sig = ed25519_dalek::Signature::from_bytes(&self.signature);
        key.verify(&self.signed_bytes()?, &sig)
            .map_err(|_| FilesError::BadSignature)
    }

    /// Has it expired at `now_ms`?
    pub fn expired(&self, now_ms: u64) -> bool {
        self.expires_ms.is_some_and(|t| t <= now_ms)
    }

    /// Its place in the order of versions.
    pub fn version(&self) -> Version {
        Version {
            seq: self.seq,
            tombstone: u8::from(self.is_tombstone()),
            digest: *blake3::hash(&self.signature[..]).as_bytes(),
        }
    }

    /// Decode a record this node verified when it stored it (its store checks its bytes
    /// are intact): the signature is not checked again, which is most of the cost.
    pub fn decode_stored(bytes: &[u8], id: Id) -> Result<Record, FilesError> {
        let r: Record = crate::decode(bytes).map_err(|_| FilesError::BadRecord)?;
        r.check_shape()?;
        if r.id() != id {
            return Err(FilesError::BadRecord);
        }
        Ok(r)
    }

    /// Decode and verify a stored or received record that should live at `id`.
    pub fn decode_at(bytes: &[u8], id: Id) -> Result<Record, FilesError> {
        let r = Record::decode_stored(bytes, id)?;
        r.verify()?;
        Ok(r)
    }
}

/// Milliseconds since the Unix epoch (expiry only; never used to order versions).
pub fn now_ms() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as u64)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn alice() -> Identity {
        Identity::from_seed([1; 32])
    }

    #[test]
    fn signed_records_verify_and_forgeries_do_not() {
        let r = alice()
            .sign(b"color", 1, Some(b"blue".to_vec()), None)
            .expect("sign");
        assert!(r.verify().is_ok());
        let bytes = crate::encode(&r).expect("enc");
        assert_eq!(Record::decode_at(&bytes, r.id()).expect("decode"), r);
        // Stored at another position: refused.
        assert!(matches!(
            Record::decode_at(&bytes, Id::for_key("color")),
            Err(FilesError::BadRecord)
        ));
        // Any field changed after signing: refused.
        let mut v = r.clone();
        v.value = Some(b"red!".to_vec().into());
        assert!(matches!(v.verify(), Err(FilesError::BadSignature)));
        let mut s = r.clone();
        s.seq = 2;
        assert!(matches!(s.verify(), Err(FilesError::BadSignature)));
        let mut e = r.clone();
        e.expires_ms = Some(1);
        assert!(matches!(e.verify(), Err(FilesError::BadSignature)));
        // Someone else's key over Alice's record id: the id no longer matches.
        let mallory = Identity::from_seed([2; 32]);
        let forged = mallory.sign(b"color", 9, None, None).expect("sign");
        let fb = crate::encode(&forged).expect("enc");
        assert!(matches!(
            Record::decode_at(&fb, r.id()),
            Err(FilesError::BadRecord)
        ));
        // Alice's key and salt, Mallory's signature: refused.
        let mut stolen = forged.clone();
        stolen.public_key = alice().public_key();
        assert!(matches!(stolen.verify(), Err(FilesError::BadSignature)));
    }

    #[test]
    fn limits_are_refused_when_signing_and_when_received() {
        let a = alice();
        assert!(a.sign(&[0; MAX_SALT + 1], 1, None, None).is_err());
        assert!(a.sign(b"k", MAX_SEQ + 1, None, None).is_err());
        let big = a.sign(b"k", 1, Some(vec![0; MAX_VALUE + 1]), None);
        assert!(
            matches!(big, Err(FilesError::TooLarge { size, limit })
                if size == MAX_VALUE as u64 + 1 && limit == MAX_VALUE as u64),
            "{big:?}"
        );
        assert!(a
            .sign(b"k", MAX_SEQ, Some(vec![0; MAX_VALUE]), None)
            .is_ok());
        // A huge sequence, signed by the owner with a patched client: holders refuse it.
        let mut r = a.sign(b"k", 1, None, None).expect("sign");
        r.seq = u64::MAX;
        let sig = a.0.sign(&r.signed_bytes().expect("bytes")).to_bytes();
        r.signature = ByteArray::new(sig);
        assert!(matches!(r.verify(), Err(FilesError::BadRecord)));
    }

    #[test]
    fn versions_order_by_sequence_then_tombstone() {
        let a = alice();
        let v1 = a.sign(b"k", 1, Some(b"one".to_vec()), None).expect("s");
        let v2 = a.sign(b"k", 2, Some(b"two".to_vec()), None).expect("s");
        let d2 = a.sign(b"k", 2, None, None).expect("s");
        let v2b = a.sign(b"k", 2, Some(b"deux".to_vec()), None).expect("s");
        assert!(v2.version() > v1.version());
        assert!(d2.version() > v2.version());
        assert!(d2.version() > v2b.version());
        // Two values of one sequence: a fixed order, whichever is seen first.
        assert_ne!(v2.version().cmp(&v2b.version()), std::cmp::Ordering::Equal);
        assert!(!v1.expired(u64::MAX));
        let e = a.sign(b"k", 1, None, Some(1000)).expect("s");
        assert!(e.expired(1000) && !e.expired(999));
    }

    #[test]
    fn identity_files() {
        let dir = tempfile::tempdir().expect("tmp");
        let p = dir.path().join("sub").join("identity");
        let a = Identity::load_or_create(&p).expect("create");
        let b = Identity::load_or_create(&p).expect("load");
        assert_eq!(a.public_key(), b.public_key());
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt;
            let mode = std::fs::metadata(&p).expect("meta").permissions().mode();
            assert_eq!(mode & 0o777, 0o600);
        }
        std::fs::write(&p, "not hex").expect("write");
        assert!(Identity::load_or_create(&p).is_err());
        // Made by several processes at once: one identity for all.
        let q = dir.path().join("race");
        let keys: Vec<[u8; 32]> = std::thread::scope(|s| {
            let hs: Vec<_> = (0..8)
                .map(|_| s.spawn(|| Identity::load_or_create(&q).expect("made").public_key()))
                .collect();
            hs.into_iter().map(|h| h.join().expect("thread")).collect()
        });
        assert!(keys.iter().all(|k| *k == keys[0]));
    }
}
