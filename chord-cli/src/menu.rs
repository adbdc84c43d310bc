//! The interactive node: the original app's numbered menu, with line editing and history.

use std::net::{IpAddr, SocketAddr};
use std::path::PathBuf;

use async_channel::Receiver;
use chord_files::manifest::{hex, output_name};
use chord_files::transfer::{GetOutcome, TransferOptions};
use chord_files::FilesNode;
use futures_lite::future::block_on;
use rustyline::error::ReadlineError;
use rustyline::DefaultEditor;

use crate::cmd::node::{leave_gracefully, NodeSetup};
use crate::cmd::{get, ls, put, status};
use crate::common::{short, Result};
use crate::identity::IdentityArg;

const MENU: &str = "
  1) join a ring          2) leave the ring
  3) upload a file        4) download a file
  5) finger table         6) predecessor and successor
  7) list files           8) status
  0) quit (leaves the ring)";

enum Line {
    Text(String),
    /// Ctrl-C or Ctrl-D: leave and quit.
    Quit,
}

fn read(rl: &mut DefaultEditor, prompt: &str) -> Result<Line> {
    match rl.readline(prompt) {
        Ok(l) => {
            let l = l.trim().to_string();
            if !l.is_empty() {
                let _ = rl.add_history_entry(&l);
            }
            Ok(Line::Text(l))
        }
        Err(ReadlineError::Interrupted | ReadlineError::Eof) => Ok(Line::Quit),
        Err(e) => Err(e.into()),
    }
}

/// Ask with a default: an empty answer takes it.
fn ask(rl: &mut DefaultEditor, what: &str, default: &str) -> Result<Option<String>> {
    let prompt = if default.is_empty() {
        format!("{what}: ")
    } else {
        format!("{what} [{default}]: ")
    };
    Ok(match read(rl, &prompt)? {
        Line::Text(t) if t.is_empty() => Some(default.to_string()),
        Line::Text(t) => Some(t),
        Line::Quit => None,
    })
}

/// Run the menu until the user quits. `signals` fires on SIGINT/SIGTERM outside line
/// editing (e.g. during a transfer).
pub fn run(setup: NodeSetup, files: FilesNode, signals: Receiver<()>) -> Result<()> {
    let mut rl = DefaultEditor::new()?;
    let mut current = Some(files);
    out!("{MENU}");
    loop {
        if signals.try_recv().is_ok() {
            break;
        }
        if let Some(f) = &current {
            if block_on(futures_lite::future::poll_once(f.node().stopped())).is_some() {
                out!("the node stopped (a client asked it to leave)");
                current = None;
            }
        }
        let choice = match read(&mut rl, "chord> ")? {
            Line::Quit => break,
            Line::Text(t) => t,
        };
        let outcome = match choice.as_str() {
            "" => Ok(()),
            "1" => join(&mut rl, &setup, &mut current),
            "2" => match current.take() {
                Some(f) => {
                    out!("handing stored data over and leaving the ring…");
                    leave_gracefully(&f).map(|()| out!("left; 1) joins a ring again"))
                }
                None => {
                    out!("not in a ring");
                    Ok(())
                }
            },
            "3" => with_node(&current, |f| upload(&mut rl, f, &setup.identity)),
            "4" => with_node(&current, |f| download(&mut rl, f, &setup.identity)),
            "5" => with_node(&current, fingers),
            "6" => with_node(&current, neighbours),
            "7" => with_node(&current, list),
            "8" => with_node(&current, status),
            "0" | "q" | "quit" | "exit" => break,
            "?" | "h" | "help" => {
                out!("{MENU}");
                Ok(())
            }
            other => {
                out!("unknown choice {other:?}; the menu:{MENU}");
                Ok(())
            }
        };
        if let Err(e) = outcome {
            for line in crate::common::error_report(&*e) {
                out!("{line}");
            }
        }
    }
    if let Some(f) = current {
        out!("handing stored data over and leaving the ring…");
        leave_gracefully(&f)?;
    }
    out!("stopped");
    Ok(())
}

fn with_node(current: &Option<FilesNode>, f: impl FnOnce(&FilesNode) -> Result<()>) -> Result<()> {
    match current {
        Some(n) => f(n),
        None => Err("not in a ring: 1) joins one".into()),
    }
}

fn join(rl: &mut DefaultEditor, setup: &NodeSetup, current: &mut Option<FilesNode>) -> Result<()> {
    if let Some(f) = current {
        let s = block_on(f.node().status())?;
        if !s.successors.is_empty() {
            return Err("already in a ring with others: 2) leaves it first".into());
        }
    }
    let Some(ip) = ask(rl, "IP of a node in the ring", "127.0.0.1")? else {
        return Ok(());
    };
    let Some(port) = ask(rl, "PORT", "2000")? else {
        return Ok(());
    };
    let ip: IpAddr = ip
        .parse()
        .map_err(|_| format!("{ip:?} is not an IP address"))?;
    let port: u16 = port
        .parse()
        .map_err(|_| format!("{port:?} is not a port"))?;
    let target = SocketAddr::new(ip, port);
    if target == setup.listen {
        return Err("that is this node".into());
    }
    // Alone in a ring of our own: stop it, then come back into the other ring on the same
    // address. What we stored stays in the store and is re-replicated from there.
    if let Some(f) = current.take() {
        f.node().kill();
        block_on(f.node().stopped());
    }
    match setup.start(Some(target)) {
        Ok(f) => {
            out!("joined the ring of {target}");
            *current = Some(f);
            Ok(())
        }
        Err(e) => {
            // Back on our own so that the node keeps serving.
            *current = setup.start(None).ok();
            Err(e)
        }
    }
}

fn opts(f: &FilesNode) -> TransferOptions {
    TransferOptions {
        network_key: f.node().network_key().cloned(),
        ..TransferOptions::default()
    }
}

fn upload(rl: &mut DefaultEditor, f: &FilesNode, identity: &IdentityArg) -> Result<()> {
    let Some(path) = ask(rl, "path of the file to upload", "")? else {
        return Ok(());
    };
    let path = PathBuf::from(path);
    let default_name = path
        .file_name()
        .and_then(|n| n.to_str())
        .unwrap_or("")
        .to_string();
    let Some(name) = ask(rl, "name in the ring", &default_name)? else {
        return Ok(());
    };
    let rep = put::upload(f.node().addr(), &path, &name, || identity.sign(opts(f)))?;
    out!(
        "stored {} ({} bytes, BLAKE3 {}…) on {} nodes",
        rep.manifest.name,
        rep.manifest.size,
        &hex(&rep.manifest.file_hash)[..16],
        rep.min_replicas
    );
    out!("others fetch it as {}", rep.qualified_name());
    Ok(())
}

fn download(rl: &mut DefaultEditor, f: &FilesNode, identity: &IdentityArg) -> Result<()> {
    let Some(name) = ask(rl, "name of the file to download", "")? else {
        return Ok(());
    };
    let default_out = output_name(&name).unwrap_or("").to_string();
    let Some(out) = ask(rl, "save as", &default_out)? else {
        return Ok(());
    };
    if out.is_empty() {
        return Err("give a file name to save as".into());
    }
    let r = get::download(
        f.node().addr(),
        &name,
        &PathBuf::from(&out),
        false,
        &identity.for_name(&name, opts(f))?,
    )?;
    match r {
        GetOutcome::Written(p) => out!("saved {name} to {} (verified)", p.display()),
        GetOutcome::UpToDate(p) => out!("{} is already up to date: no change", p.display()),
    }
    Ok(())
}

fn fingers(f: &FilesNode) -> Result<()> {
    let s = block_on(f.node().status())?;
    out!("finger table of {}", short(&s.me));
    status::print_fingers(&s, "  ");
    if s.fingers.is_empty() {
        out!("  (none: alone in the ring)");
    }
    Ok(())
}

fn neighbours(f: &FilesNode) -> Result<()> {
    let s = block_on(f.node().status())?;
    out!(
        "predecessor  {}",
        s.predecessor.as_ref().map_or("(none yet)".into(), short)
    );
    out!(
        "successor    {}",
        s.successors
            .first()
            .map_or("(alone in the ring)".into(), short)
    );
    Ok(())
}

fn list(f: &FilesNode) -> Result<()> {
    let files = ls::list(f.node().addr(), &opts(f))?;
    if files.is_empty() {
        out!("(no files in the ring)");
    }
    for l in files {
        out!(
            "  {:>12}  x{}  {}  {}",
            l.size,
            l.replicas,
            &hex(&l.owner)[..8],
            crate::printable(&l.name)
        );
    }
    Ok(())
}

fn status(f: &FilesNode) -> Result<()> {
    let s = block_on(f.node().status())?;
    out!("node         {}  {}", s.me.id, s.me.addr);
    for (i, p) in s.successors.iter().enumerate() {
        out!(
            "{:<12} {}",
            if i == 0 { "successors" } else { "" },
            short(p)
        );
    }
    out!("stored here  {} bytes", f.store().used());
    Ok(())
}
