//! The interactive node, driven through a pseudo-terminal as a person would.
//!
//! Each step waits for the prompt before typing, as a person does: line editing discards
//! input typed ahead of its prompt.

use std::time::Duration;

use chord_tests::NodeProc;
use rexpect::session::{spawn_command, PtySession};

const CHORD: &str = env!("CARGO_BIN_EXE_chord");

/// Type `line` at a prompt and return everything printed up to `until`.
fn answer(p: &mut PtySession, line: &str, until: &str) -> String {
    p.send_line(line).expect("send");
    p.exp_string(until)
        .unwrap_or_else(|e| panic!("after {line:?}, waiting for {until:?}: {e}"))
}

/// Choose a menu entry and return its output up to the next menu prompt.
fn choose(p: &mut PtySession, line: &str) -> String {
    answer(p, line, "chord> ")
}

#[test]
fn menu_joins_uploads_lists_and_quits() {
    let dir = tempfile::tempdir().expect("tmp");
    let a = NodeProc::start(CHORD, None);
    let a_id = chord_core::Id::for_addr(a.addr).to_string();
    let mut cmd = chord_tests::chord(CHORD);
    cmd.args(["node", "127.0.0.1", "0"]).current_dir(dir.path());
    let mut p = spawn_command(cmd, Some(20_000)).expect("spawn in a pty");
    p.exp_string("listening on").expect("listening");
    p.exp_string("1) join a ring").expect("menu");
    p.exp_string("chord> ").expect("prompt");

    assert!(choose(&mut p, "6").contains("(alone in the ring)"));

    // 1: join, asking IP and PORT with defaults offered.
    answer(&mut p, "1", "IP of a node in the ring [127.0.0.1]: ");
    answer(&mut p, "", "PORT [2000]: ");
    let out = answer(&mut p, &a.addr.port().to_string(), "chord> ");
    assert!(out.contains("joined the ring of"), "{out}");

    // 6: predecessor and successor, once stabilization has run.
    let mut linked = false;
    for _ in 0..40 {
        let out = choose(&mut p, "6");
        if out.contains(&a_id[..8]) && !out.contains("(none yet)") {
            linked = true;
            break;
        }
        std::thread::sleep(Duration::from_millis(250));
    }
    assert!(linked, "the ring of two never formed");

    // 3: upload; 7: list.
    std::fs::write(dir.path().join("notes.txt"), b"hello ring").expect("write");
    answer(&mut p, "3", "path of the file to upload: ");
    answer(&mut p, "notes.txt", "name in the ring [notes.txt]: ");
    let out = answer(&mut p, "", "chord> ");
    assert!(out.contains("stored notes.txt (10 bytes"), "{out}");
    assert!(choose(&mut p, "7").contains("notes.txt"));

    // 4: download into another name; 5: fingers; a wrong choice is explained.
    answer(&mut p, "4", "name of the file to download: ");
    answer(&mut p, "notes.txt", "save as [notes.txt]: ");
    let out = answer(&mut p, "copy.txt", "chord> ");
    assert!(
        out.contains("saved notes.txt to copy.txt (verified)"),
        "{out}"
    );
    assert_eq!(
        std::fs::read(dir.path().join("copy.txt")).expect("copy"),
        b"hello ring"
    );
    assert!(choose(&mut p, "5").contains("finger table of"));
    assert!(choose(&mut p, "42").contains("unknown choice"));

    // Ctrl-D leaves the ring gracefully and exits.
    p.send_control('d').expect("eof");
    p.exp_string("stopped").expect("stopped");
    p.exp_eof().expect("exit");
}
