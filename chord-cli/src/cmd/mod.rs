//! One module per command, each with its clap `Args` and a `run` (the menu of `chord node`
//! calls the same operations: `put::upload`, `get::download`, `ls::list`,
//! `status::print_fingers`, `node::leave_gracefully`).

pub mod completions;
pub mod demo;
pub mod get;
pub mod id;
pub mod keygen;
pub mod kv;
pub mod leave;
pub mod lookup;
pub mod ls;
pub mod node;
pub mod paths;
pub mod put;
pub mod ring;
pub mod rm;
pub mod sim;
pub mod status;
