//! `chord kv put|get|rm`: signed records through a running node.
//!
//! A record belongs to the user's identity (an ed25519 key kept in a file, made on first
//! use) and a key (the record's salt); only that identity can change or delete it, and
//! anyone can read it given the owner's public key (`chord id` prints it).

use std::io::{IsTerminal, Read, Write};

use chord_files::dht::{RemoteDht, WriteOptions};
use chord_files::manifest::{FILE_PREFIX, MAX_NAME};
use chord_files::record::{hex32, now_ms, MAX_VALUE};
use futures_lite::future::block_on;
use serde_json::json;

use crate::common::{hinted, opts, printable, ItemArgs, Result};

pub const EXAMPLES: &str = "Examples:
  chord kv put color blue
  echo -n 'from a pipe' | chord kv put note -
  chord kv put color green --expect SEQ    # only if nobody wrote since SEQ (kv get --json)
  chord kv get color
  chord kv get color --owner 3b6a27bc…     # someone else's record (see `chord id`)
  chord kv rm color
  chord id";

/// Options of `chord kv`.
#[derive(clap::Args, Debug)]
pub struct Args {
    #[command(subcommand)]
    command: KvCommand,
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
        common: ItemArgs,
    },
    /// Read a record's value (written to standard output as it is).
    Get {
        /// The record's key.
        key: String,
        /// The owner's public key (64 hex digits, from `chord id`); default: yours.
        #[arg(long, value_name = "PUBLIC_KEY")]
        owner: Option<String>,
        #[command(flatten)]
        common: ItemArgs,
    },
    /// Delete a record (a signed tombstone: it does not come back).
    Rm {
        /// The record's key.
        key: String,
        #[command(flatten)]
        common: ItemArgs,
    },
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

pub fn run(args: &Args) -> Result<()> {
    let (KvCommand::Put { common: a, .. }
    | KvCommand::Get { common: a, .. }
    | KvCommand::Rm { common: a, .. }) = &args.command;
    let mut dht = RemoteDht::new(a.at.addr, &opts(&a.at, a.replicas)?);
    match &args.command {
        KvCommand::Put {
            key,
            value,
            expect,
            ttl,
            ..
        } => put(&mut dht, a, key, value, *expect, *ttl),
        KvCommand::Get { key, owner, .. } => get(&mut dht, a, key, owner.as_deref()),
        KvCommand::Rm { key, .. } => rm(&mut dht, a, key),
    }
}

/// `chord kv put`: the key's next version, signed by the identity.
fn put(
    dht: &mut RemoteDht,
    a: &ItemArgs,
    key: &str,
    value: &str,
    expect: Option<u64>,
    ttl: Option<u64>,
) -> Result<()> {
    let at = &a.at;
    let salt = salt(key)?;
    let value = if value == "-" {
        let mut v = Vec::new();
        std::io::stdin()
            .take(MAX_VALUE as u64 + 1)
            .read_to_end(&mut v)
            .map_err(|e| format!("cannot read standard input: {e}"))?;
        v
    } else {
        value.as_bytes().to_vec()
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
    .map_err(|e| hinted(at.addr, e))?;
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
            "warning: {} of {} holders took it (a node refused or could not be reached, or the ring has fewer nodes than that)",
            w.replicas, a.replicas
        );
    }
    Ok(())
}

/// `chord kv get`: the value, raw into a pipe or file, escaped on a terminal.
fn get(dht: &mut RemoteDht, a: &ItemArgs, key: &str, owner: Option<&str>) -> Result<()> {
    let at = &a.at;
    let pk = match owner {
        Some(o) => parse_owner(o)?,
        None => a.identity.load_existing()?.public_key(),
    };
    let got = block_on(dht.get_record(&pk, salt(key)?)).map_err(|e| hinted(at.addr, e))?;
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
    Ok(())
}

/// `chord kv rm`: a signed tombstone.
fn rm(dht: &mut RemoteDht, a: &ItemArgs, key: &str) -> Result<()> {
    let at = &a.at;
    let me = a.identity.load()?;
    let w = block_on(dht.delete_record(&me, salt(key)?)).map_err(|e| hinted(at.addr, e))?;
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
            json!({"key": key, "deleted": true, "seq": w.seq, "replicas": w.replicas})
        );
    } else {
        out!(
            "deleted  {} (tombstone, sequence {})",
            printable(key),
            w.seq
        );
        out!("replicas {}", w.replicas);
    }
    Ok(())
}
