//! `chord id` and `chord kv put|get|rm`: signed records through a running node.
//!
//! A record belongs to the user's identity (an ed25519 key kept in a file, made on first
//! use) and a key (the record's salt); only that identity can change or delete it, and
//! anyone can read it given the owner's public key (`chord id` prints it).

use std::io::{IsTerminal, Read, Write};
use std::path::PathBuf;

use chord_files::dht::{RemoteDht, WriteOptions};
use chord_files::manifest::{FILE_PREFIX, MAX_NAME};
use chord_files::record::{hex32, now_ms, Identity, MAX_VALUE};
use chord_files::transfer::TransferOptions;
use futures_lite::future::block_on;
use serde_json::json;

use crate::files::{hinted, opts};
use crate::net::NodeAddr;
use crate::printable;

type Result<T> = std::result::Result<T, Box<dyn std::error::Error>>;

pub const EXAMPLES: &str = "Examples:
  chord kv put color blue
  echo -n 'from a pipe' | chord kv put note -
  chord kv put color green --expect SEQ    # only if nobody wrote since SEQ (kv get --json)
  chord kv get color
  chord kv get color --owner 3b6a27bc…     # someone else's record (see `chord id`)
  chord kv rm color
  chord id";

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
    fn path(&self) -> Result<PathBuf> {
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

#[derive(clap::Subcommand, Debug)]
pub enum KvCommand {
    /// Write a record: KEY's next version, signed by your identity.
    Put {
        /// The record's key (1 to 255 bytes; keys starting `file:` are your files').
        key: String,
        /// The value, or - to read it from standard input (at most 64 KiB).
        value: String,
        /// Only if the record is at this sequence now (compare-and-swap); 0: only if
        /// there is no record.
        #[arg(long, value_name = "SEQ")]
        expect: Option<u64>,
        /// Holders may forget the value after this many seconds.
        #[arg(long, value_name = "SECONDS")]
        ttl: Option<u64>,
        #[command(flatten)]
        common: Common,
    },
    /// Read a record's value (written to standard output as it is).
    Get {
        /// The record's key.
        key: String,
        /// The owner's public key (64 hex digits, from `chord id`); default: yours.
        #[arg(long, value_name = "PUBLIC_KEY")]
        owner: Option<String>,
        #[command(flatten)]
        common: Common,
    },
    /// Delete a record (a signed tombstone: it does not come back).
    Rm {
        /// The record's key.
        key: String,
        #[command(flatten)]
        common: Common,
    },
}

/// What every `kv` command takes.
#[derive(clap::Args, Debug)]
pub struct Common {
    #[command(flatten)]
    identity: IdentityArg,
    /// Holders of every record.
    #[arg(long, default_value_t = chord_files::DEFAULT_REPLICAS, value_parser = clap::value_parser!(u8).range(1..=16))]
    replicas: u8,
    #[command(flatten)]
    at: NodeAddr,
}

fn salt(key: &str) -> Result<&[u8]> {
    if key.is_empty() || key.len() > MAX_NAME {
        return Err(format!("a record key is 1 to {MAX_NAME} bytes").into());
    }
    if key.as_bytes().starts_with(FILE_PREFIX) {
        return Err("keys starting `file:` name your files (chord put, chord rm)".into());
    }
    Ok(key.as_bytes())
}

fn parse_owner(text: &str) -> Result<[u8; 32]> {
    let mut pk = [0u8; 32];
    hex::decode_to_slice(text.trim(), &mut pk)
        .map_err(|_| "a public key is 64 hexadecimal digits (as `chord id` prints)")?;
    Ok(pk)
}

/// `chord id`: print the public key of the identity (made if there is none).
pub fn id(identity: &IdentityArg, json: bool) -> Result<()> {
    let me = identity.load()?;
    let pk = hex32(&me.public_key());
    if json {
        out!(
            "{}",
            json!({"public_key": pk, "file": identity.path()?.display().to_string()})
        );
    } else {
        out!("{pk}");
    }
    Ok(())
}

pub fn kv(command: &KvCommand) -> Result<()> {
    let (KvCommand::Put { common: a, .. }
    | KvCommand::Get { common: a, .. }
    | KvCommand::Rm { common: a, .. }) = command;
    let at = &a.at;
    let mut dht = RemoteDht::new(at.addr, &opts(at, a.replicas)?);
    match command {
        KvCommand::Put {
            key,
            value,
            expect,
            ttl,
            ..
        } => {
            let salt = salt(key)?;
            let value = if value == "-" {
                let mut v = Vec::new();
                std::io::stdin()
                    .take(MAX_VALUE as u64 + 1)
                    .read_to_end(&mut v)
                    .map_err(|e| format!("cannot read standard input: {e}"))?;
                v
            } else {
                value.clone().into_bytes()
            };
            if value.len() > MAX_VALUE {
                return Err(format!("a record's value is at most {MAX_VALUE} bytes").into());
            }
            let me = a.identity.load()?;
            let w = block_on(dht.put_record(
                &me,
                salt,
                value,
                WriteOptions {
                    expect: expect.map(|s| (s != 0).then_some(s)),
                    expires_ms: ttl.map(|t| now_ms().saturating_add(t.saturating_mul(1000))),
                },
            ))
            .map_err(|e| hinted(at, e))?;
            if at.json {
                out!(
                    "{}",
                    json!({"key": key, "seq": w.seq, "replicas": w.replicas})
                );
            } else {
                out!("stored   {} (sequence {})", printable(key), w.seq);
                out!("replicas {}", w.replicas);
            }
            if w.replicas < a.replicas {
                eprintln!(
                    "warning: {} of {} holders took it (fewer nodes than replicas?)",
                    w.replicas, a.replicas
                );
            }
        }
        KvCommand::Get { key, owner, .. } => {
            let pk = match owner {
                Some(o) => parse_owner(o)?,
                None => a.identity.load_existing()?.public_key(),
            };
            let got = block_on(dht.get_record(&pk, salt(key)?)).map_err(|e| hinted(at, e))?;
            let Some(v) = got else {
                return Err(format!("no record {:?} of {}", printable(key), hex32(&pk)).into());
            };
            if at.json {
                let text = String::from_utf8(v.value.clone()).ok();
                out!(
                    "{}",
                    json!({"key": key, "owner": hex32(&pk), "seq": v.seq, "value": text, "value_hex": hex::encode(&v.value)})
                );
            } else {
                let mut o = std::io::stdout().lock();
                // A value is data from the network: raw into a pipe or file, escaped on a
                // terminal (it could carry escape sequences).
                let r = if o.is_terminal() {
                    let text = printable(&String::from_utf8_lossy(&v.value));
                    writeln!(o, "{text}")
                } else {
                    o.write_all(&v.value)
                };
                if let Err(e) = r.and_then(|()| o.flush()) {
                    if e.kind() == std::io::ErrorKind::BrokenPipe {
                        std::process::exit(141);
                    }
                    return Err(format!("cannot write the output: {e}").into());
                }
            }
        }
        KvCommand::Rm { key, .. } => {
            let me = a.identity.load()?;
            let w = block_on(dht.delete_record(&me, salt(key)?)).map_err(|e| hinted(at, e))?;
            let Some(w) = w else {
                return Err(format!(
                    "you have no record {:?} to delete (a record belongs to the identity that wrote it)",
                    printable(key)
                )
                .into());
            };
            if at.json {
                out!(
                    "{}",
                    json!({"key": key, "seq": w.seq, "replicas": w.replicas})
                );
            } else {
                out!(
                    "deleted  {} (tombstone, sequence {})",
                    printable(key),
                    w.seq
                );
                out!("replicas {}", w.replicas);
            }
        }
    }
    Ok(())
}
