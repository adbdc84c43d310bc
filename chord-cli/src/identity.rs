//! The user's identity: an ed25519 signing key kept in a file (mode 0600), made on
//! first use. Records and files belong to it.

use std::path::PathBuf;

use chord_files::record::Identity;
use chord_files::transfer::TransferOptions;

use crate::common::Result;

/// The identity file: `--identity FILE` or `CHORD_IDENTITY`, else one in the user's
/// configuration directory.
#[derive(clap::Args, Debug, Clone)]
pub struct IdentityArg {
    /// The file holding your signing key (made on first use, mode 0600). Default:
    /// $XDG_CONFIG_HOME/chord/identity, or ~/.config/chord/identity.
    #[arg(long = "identity", env = "CHORD_IDENTITY", value_name = "FILE")]
    pub file: Option<PathBuf>,
}

impl IdentityArg {
    pub fn path(&self) -> Result<PathBuf> {
        if let Some(f) = &self.file {
            return Ok(f.clone());
        }
        let base = std::env::var_os("XDG_CONFIG_HOME")
            .filter(|v| !v.is_empty())
            .map(PathBuf::from)
            .or_else(|| {
                std::env::var_os("HOME")
                    .filter(|v| !v.is_empty())
                    .map(|h| PathBuf::from(h).join(".config"))
            })
            .ok_or("no HOME or XDG_CONFIG_HOME to keep an identity in; give --identity FILE")?;
        Ok(base.join("chord").join("identity"))
    }

    /// `opts` signed by this identity (made if needed): for writing and removing.
    pub fn sign(&self, opts: TransferOptions) -> Result<TransferOptions> {
        Ok(TransferOptions {
            identity: Some(self.load()?),
            ..opts
        })
    }

    /// `opts` for reading the file `name`: someone's `OWNER/NAME` needs no identity; a
    /// plain name is one of this identity's files.
    pub fn for_name(&self, name: &str, opts: TransferOptions) -> Result<TransferOptions> {
        match chord_files::manifest::split_owner(name) {
            Some(_) => Ok(opts),
            None => self.sign(opts),
        }
    }

    /// Load the identity for reading your own records: never made here (a new identity
    /// owns nothing to read).
    pub fn load_existing(&self) -> Result<Identity> {
        let path = self.path()?;
        if !path.exists() {
            return Err(format!(
                "no identity at {} yet (your first `chord kv put`, `chord put` or `chord id` makes one); to read another user's record give --owner",
                path.display()
            )
            .into());
        }
        Ok(Identity::load_or_create(&path)?)
    }

    /// Load the identity, creating it (and saying so) if it does not exist yet.
    pub fn load(&self) -> Result<Identity> {
        let path = self.path()?;
        let existed = path.exists();
        let id = Identity::load_or_create(&path)?;
        if !existed {
            eprintln!("made a new identity in {}", path.display());
        }
        Ok(id)
    }
}
