//! `chord id`: your identity's public key (made on first use).

use chord_files::record::hex32;
use serde_json::json;

use crate::common::Result;
use crate::identity::IdentityArg;

/// Options of `chord id`.
#[derive(clap::Args, Debug)]
pub struct Args {
    #[command(flatten)]
    identity: IdentityArg,
    /// Print JSON.
    #[arg(long)]
    json: bool,
}

/// Print the public key of the identity (made if there is none).
pub fn run(a: &Args) -> Result<()> {
    let (identity, json) = (&a.identity, a.json);
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
