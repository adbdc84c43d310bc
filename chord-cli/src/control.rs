//! The node's control token on disk: `chord node` writes it where only its user can read
//! it, `chord leave` reads it. Nobody else (another user, another host) can make the node
//! leave: the node obeys a leave request only with this token and only from its own host.
//!
//! The file is `control-IP-PORT.token` in the runtime directory: `$CHORD_RUNTIME_DIR`, else
//! `$XDG_RUNTIME_DIR/chord`, else `$HOME/.local/state/chord` (made with mode 0700; the
//! file has mode 0600 and is removed when the node stops).

use std::net::SocketAddr;
use std::path::{Path, PathBuf};

use chord_net::ControlToken;

use crate::common::Result;

/// Where token files live (not created).
pub fn runtime_dir() -> Result<PathBuf> {
    let var = |name: &str| std::env::var_os(name).filter(|v| !v.is_empty());
    if let Some(d) = var("CHORD_RUNTIME_DIR") {
        return Ok(PathBuf::from(d));
    }
    if let Some(d) = var("XDG_RUNTIME_DIR") {
        return Ok(PathBuf::from(d).join("chord"));
    }
    if let Some(h) = var("HOME") {
        return Ok(PathBuf::from(h).join(".local/state/chord"));
    }
    Err("no place for the node's control token: set CHORD_RUNTIME_DIR or HOME".into())
}

/// The token file of the node listening on `addr`, in `dir`.
fn token_path(dir: &Path, addr: SocketAddr) -> PathBuf {
    let ip = addr.ip().to_string().replace(':', "_");
    dir.join(format!("control-{ip}-{}.token", addr.port()))
}

/// A token file, removed when dropped (when the node stops).
#[derive(Debug)]
pub struct TokenFile(PathBuf);

impl Drop for TokenFile {
    fn drop(&mut self) {
        let _ = std::fs::remove_file(&self.0);
    }
}

/// Write `token` for the node at `addr`, readable by this user only.
pub fn write_token(addr: SocketAddr, token: &ControlToken) -> Result<TokenFile> {
    write_token_in(&runtime_dir()?, addr, token)
}

fn write_token_in(dir: &Path, addr: SocketAddr, token: &ControlToken) -> Result<TokenFile> {
    let path = token_path(dir, addr);
    let mut b = std::fs::DirBuilder::new();
    b.recursive(true);
    #[cfg(unix)]
    std::os::unix::fs::DirBuilderExt::mode(&mut b, 0o700);
    b.create(dir)
        .map_err(|e| format!("cannot create {}: {e}", dir.display()))?;
    let tmp = dir.join(format!(".{}.tmp", std::process::id()));
    let _ = std::fs::remove_file(&tmp); // ours, from an earlier process with our pid
    let mut o = std::fs::OpenOptions::new();
    // A new file: never one someone else made there to read what we write.
    o.write(true).create_new(true);
    #[cfg(unix)]
    std::os::unix::fs::OpenOptionsExt::mode(&mut o, 0o600);
    let written = o
        .open(&tmp)
        .and_then(|mut f| {
            check_private(dir, &f)?;
            std::io::Write::write_all(&mut f, token.to_hex().as_bytes())
        })
        .and_then(|()| std::fs::rename(&tmp, &path));
    if let Err(e) = written {
        let _ = std::fs::remove_file(&tmp);
        return Err(format!("cannot write the control token {}: {e}", path.display()).into());
    }
    Ok(TokenFile(path))
}

/// The directory must belong to whoever owns the file we just made in it and not be
/// writable by others (a shared directory such as /tmp would let another user replace
/// the token file).
#[cfg(unix)]
fn check_private(dir: &Path, ours: &std::fs::File) -> std::io::Result<()> {
    use std::os::unix::fs::MetadataExt;
    let d = std::fs::metadata(dir)?;
    if d.uid() != ours.metadata()?.uid() || d.mode() & 0o022 != 0 {
        return Err(std::io::Error::new(
            std::io::ErrorKind::PermissionDenied,
            format!(
                "{} belongs to another user or others can write to it; choose a private \
                 directory with CHORD_RUNTIME_DIR",
                dir.display()
            ),
        ));
    }
    Ok(())
}

#[cfg(not(unix))]
fn check_private(_: &Path, _: &std::fs::File) -> std::io::Result<()> {
    Ok(())
}

/// Read the token of the node at `addr`, with a clear error when there is none.
pub fn read_token(addr: SocketAddr) -> Result<ControlToken> {
    read_token_in(&runtime_dir()?, addr)
}

fn read_token_in(dir: &Path, addr: SocketAddr) -> Result<ControlToken> {
    let path = token_path(dir, addr);
    let mut text = String::new();
    std::fs::File::open(&path)
        .and_then(|f| std::io::Read::read_to_string(&mut std::io::Read::take(f, 256), &mut text))
        .map_err(|e| {
            format!(
                "no control token for {addr} ({}: {e}); only the user who started that node, \
                 on its host, can make it leave",
                path.display()
            )
        })?;
    ControlToken::from_hex(&text)
        .ok_or_else(|| format!("{} does not hold a control token", path.display()).into())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tokens_round_trip_through_a_private_file() {
        let tmp = tempfile::tempdir().expect("tmp");
        let dir = tmp.path().join("run");
        let addr: SocketAddr = "[::1]:2000".parse().expect("addr");
        let t = ControlToken::generate().expect("random");
        let file = write_token_in(&dir, addr, &t).expect("write");
        assert_eq!(read_token_in(&dir, addr).expect("read"), t);
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt;
            let mode = |p: &std::path::Path| {
                std::fs::metadata(p).expect("meta").permissions().mode() & 0o777
            };
            assert_eq!(mode(&token_path(&dir, addr)), 0o600);
            assert_eq!(mode(&dir), 0o700);
        }
        drop(file);
        let e = read_token_in(&dir, addr).expect_err("removed");
        assert!(e.to_string().contains("only the user who started"), "{e}");
        // A directory others can write to is refused.
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt;
            std::fs::set_permissions(&dir, std::fs::Permissions::from_mode(0o777)).expect("chmod");
            let e = write_token_in(&dir, addr, &t).expect_err("shared directory");
            assert!(e.to_string().contains("others can write"), "{e}");
        }
    }
}
