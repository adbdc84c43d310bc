//! What is stored: content-addressed chunks and the manifest that names them.

use chord_core::Id;
use serde::{Deserialize, Serialize};

use crate::FilesError;

/// A BLAKE3 hash: the name of a chunk, and the check of a whole file.
pub type Hash = [u8; 32];

/// Longest file name, in bytes of UTF-8.
pub const MAX_NAME: usize = 255;
/// Largest chunk size a manifest may declare (it must fit in one frame with room).
pub const MAX_CHUNK: u32 = 4 << 20;
/// Default chunk size: 1 MiB.
pub const DEFAULT_CHUNK: u32 = 1 << 20;

/// Where a chunk lives on the ring: the first 160 bits of its BLAKE3 hash.
pub fn chunk_id(hash: &Hash) -> Id {
    let mut b = [0u8; 20];
    b.copy_from_slice(&hash[..20]);
    Id(b)
}

/// The hash of a chunk's bytes.
pub fn hash(bytes: &[u8]) -> Hash {
    *blake3::hash(bytes).as_bytes()
}

/// Hex of a hash, for people.
pub fn hex(h: &Hash) -> String {
    h.iter().map(|b| format!("{b:02x}")).collect()
}

/// A stored item's address.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
pub enum ItemKey {
    /// A chunk, by its content hash.
    Chunk(Hash),
    /// Retired: an unsigned manifest, by SHA-1 of the file's name (refused by holders
    /// since files became signed records; kept so the encoding of the others stays).
    Manifest(Id),
    /// A signed record (or tombstone), by SHA-1 of its public key and salt.
    Record(Id),
}

impl ItemKey {
    /// The item's position on the ring.
    pub fn ring_id(&self) -> Id {
        match self {
            ItemKey::Chunk(h) => chunk_id(h),
            ItemKey::Manifest(id) | ItemKey::Record(id) => *id,
        }
    }
}

/// Check a file name: any UTF-8 of 1 to 255 bytes without NUL. Names are data: they are
/// never used as paths on a storing node.
pub fn check_name(name: &str) -> Result<(), FilesError> {
    if name.is_empty() || name.len() > MAX_NAME || name.contains('\0') {
        return Err(FilesError::BadName);
    }
    Ok(())
}

/// The file name to write a download to by default: the name's last `/`-separated
/// component, if it is a plain file name (not empty, `.` or `..`, no `\`). Anything else
/// must be given an explicit output path.
pub fn output_name(name: &str) -> Option<&str> {
    let last = name.rsplit('/').next()?;
    if last.is_empty() || last == "." || last == ".." || last.contains('\\') || last.contains('\0')
    {
        return None;
    }
    Some(last)
}

/// The salt of the record that names a file: `file:` then the name (see [`FileRef`]).
pub fn file_salt(name: &str) -> Vec<u8> {
    let mut s = FILE_PREFIX.to_vec();
    s.extend_from_slice(name.as_bytes());
    s
}

/// What every file record's salt starts with.
pub const FILE_PREFIX: &[u8] = b"file:";

/// A file name as a reader gives it: `OWNER/NAME`, where OWNER is the 64 hexadecimal
/// digits of the owner's public key (what `put` prints), or a plain NAME of `own`'s.
/// Returns the owner and the plain name.
pub fn parse_name<'a>(
    name: &'a str,
    own: Option<&crate::Identity>,
) -> Result<([u8; 32], &'a str), FilesError> {
    if let Some((pk, rest)) = split_owner(name) {
        check_name(rest)?;
        return Ok((pk, rest));
    }
    check_name(name)?;
    let own = own.ok_or(FilesError::NoIdentity)?;
    Ok((own.public_key(), name))
}

/// The owner and plain name of a qualified name `OWNER/NAME`; `None` for a plain name.
pub fn split_owner(name: &str) -> Option<([u8; 32], &str)> {
    let (owner, rest) = (name.get(..64)?, name.get(65..)?);
    let mut pk = [0u8; 32];
    (name.as_bytes()[64] == b'/' && hex::decode_to_slice(owner, &mut pk).is_ok())
        .then_some((pk, rest))
}

/// The value of a file's record: where its manifest is (a block) and what the file is,
/// so that a listing needs no manifest. The record is signed by the file's owner and
/// lives at `SHA-1(owner ‖ "file:" ‖ name)`: only the owner can replace or remove it.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct FileRef {
    /// The BLAKE3 hash of the encoded [`Manifest`], stored as a block.
    pub manifest: Hash,
    /// The file's size in bytes.
    pub size: u64,
    /// BLAKE3 of the whole file.
    pub file_hash: Hash,
}

/// A file: its name, size and the chunks that make it up.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Manifest {
    /// The file's name in the ring.
    pub name: String,
    /// Size in bytes.
    pub size: u64,
    /// Size of every chunk but the last.
    pub chunk_size: u32,
    /// The chunks' hashes, in order.
    pub chunks: Vec<Hash>,
    /// BLAKE3 of the whole file.
    pub file_hash: Hash,
    /// Upload time, milliseconds since the Unix epoch. Shown to people only: versions of a
    /// file are ordered by its record's sequence, never by clocks.
    pub uploaded_ms: u64,
}

impl Manifest {
    /// Is this manifest well-formed? (Manifests come from the network and from disk.)
    pub fn validate(&self) -> Result<(), FilesError> {
        check_name(&self.name)?;
        if self.chunk_size == 0 || self.chunk_size > MAX_CHUNK {
            return Err(FilesError::BadManifest);
        }
        let want = self.size.div_ceil(u64::from(self.chunk_size));
        if self.chunks.len() as u64 != want {
            return Err(FilesError::BadManifest);
        }
        Ok(())
    }

    /// Length of chunk `i`.
    pub fn chunk_len(&self, i: usize) -> usize {
        let start = i as u64 * u64::from(self.chunk_size);
        (self.size - start).min(u64::from(self.chunk_size)) as usize
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names() {
        assert!(check_name("song.mp3").is_ok());
        assert!(check_name("dir/../../etc/passwd").is_ok()); // data, fine to store
        assert!(check_name("").is_err());
        assert!(check_name("a\0b").is_err());
        assert!(check_name(&"x".repeat(256)).is_err());
        assert!(check_name(&"é".repeat(127)).is_ok());
        assert_eq!(output_name("song.mp3"), Some("song.mp3"));
        assert_eq!(output_name("music/song.mp3"), Some("song.mp3"));
        assert_eq!(output_name("/etc/passwd"), Some("passwd"));
        assert_eq!(output_name("a/../../b"), Some("b"));
        assert_eq!(output_name("../x"), Some("x"));
        assert_eq!(output_name(".."), None);
        assert_eq!(output_name("a/.."), None);
        assert_eq!(output_name("dir/"), None);
        assert_eq!(output_name(""), None);
        assert_eq!(output_name("a\\..\\b"), None);
    }

    #[test]
    fn qualified_names() {
        let me = crate::Identity::from_seed([3; 32]);
        let pk = me.public_key();
        let q = format!("{}/docs/a.txt", hex(&pk));
        let bob = crate::Identity::from_seed([4; 32]);
        assert_eq!(parse_name(&q, Some(&bob)).ok(), Some((pk, "docs/a.txt")));
        assert_eq!(parse_name(&q, None).ok(), Some((pk, "docs/a.txt")));
        assert_eq!(parse_name("a.txt", Some(&me)).ok(), Some((pk, "a.txt")));
        assert!(matches!(
            parse_name("a.txt", None),
            Err(FilesError::NoIdentity)
        ));
        // Not 64 hex digits then a slash: a plain name.
        assert_eq!(split_owner(&q[1..]), None);
        assert_eq!(split_owner(&format!("{}x", &q[..64])), None);
        assert!(matches!(
            parse_name(&format!("{}/", &q[..64]), None),
            Err(FilesError::BadName)
        ));
        assert_eq!(file_salt("x"), b"file:x".to_vec());
    }

    #[test]
    fn manifest_validation() {
        let m = Manifest {
            name: "f".into(),
            size: 2 * 1024 + 1,
            chunk_size: 1024,
            chunks: vec![[0; 32]; 3],
            file_hash: [0; 32],
            uploaded_ms: 1,
        };
        assert!(m.validate().is_ok());
        assert_eq!(m.chunk_len(0), 1024);
        assert_eq!(m.chunk_len(2), 1);
        let mut bad = m.clone();
        bad.chunks.pop();
        assert!(bad.validate().is_err());
        let mut bad = m.clone();
        bad.chunk_size = 0;
        assert!(bad.validate().is_err());
        let empty = Manifest {
            size: 0,
            chunks: vec![],
            ..m.clone()
        };
        assert!(empty.validate().is_ok());
    }
}
