//! The node runtime: a builder (`node/builder.rs`), a handle (`node/handle.rs`), and the
//! driver task that runs chord-core (`node/driver.rs`).
//!
//! The driver owns the `chord_core::Node`s (one per virtual node) and everything mutable;
//! connection tasks and the handle talk to it over one bounded channel. It runs on a thread
//! of its own with an `async-executor`, so the handle works from any async runtime (or
//! none): its methods only send on and receive from `async-channel`s.

use std::collections::HashMap;
use std::future::Future;
use std::net::SocketAddr;
use std::panic::AssertUnwindSafe;
use std::pin::Pin;
use std::sync::Arc;
use std::time::{Duration, Instant};

use async_channel::{Receiver, Sender};
use async_net::TcpListener;
use chord_core::{Config, Event, Id, LookupError, LookupId, LookupOutcome, Message, Peer, Time};
use futures_lite::FutureExt as _;
use tracing::{debug, info, warn};

use crate::admission::Admission;
use crate::budget::Budget;
use crate::conn::{is_maintenance_msg, serve_inbound, serve_outbound, Listening, Shared};
use crate::frame::encode;
use crate::input::{CallReply, Command, Input};
use crate::outbox::{Outbox, Reply};
use crate::rate::PerAddress;
use crate::wire::{
    ClientRequest, ClientResponse, Finger, Frame, Refusal, RemoteError, ServiceError, Status,
};
use crate::{ControlToken, Error, Limits, NetworkKey};

mod builder;
mod calls;
mod driver;
mod handle;
mod pool;

pub use builder::NodeBuilder;
use calls::Calls;
use driver::Driver;
pub use handle::Node;
use handle::Owner;
use pool::Pool;

/// An application service running on a node: it receives its own requests (from peers
/// through [`Node::call`], or from clients through [`crate::Client::call`]) and answers
/// each with bytes in its own encoding. chord-files is such a service; others can be
/// written the same way, without touching this crate.
pub trait Service: Send + Sync + 'static {
    /// Answer one request. `node` is the node the service runs on (to call other nodes);
    /// `from` is the sending peer's listening address, or `None` for a client.
    fn handle(
        &self,
        node: Node,
        from: Option<SocketAddr>,
        request: Vec<u8>,
    ) -> Pin<Box<dyn Future<Output = Vec<u8>> + Send>>;
}

/// Inputs waiting for the driver, per queue (a bounded channel allocates its capacity up
/// front: 2 x 1024 x ~300 bytes). A full queue makes connection readers wait.
const DRIVER_QUEUE: usize = 1024;
