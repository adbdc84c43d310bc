//! Disk faults: kill -9 while a node stores chunks or while a client writes a download,
//! and a disk that fills up. Nothing partial may become visible, nothing corrupt may be
//! served, and the node keeps serving what it holds.

use std::path::Path;
use std::process::Stdio;
use std::time::{Duration, Instant};

use chord_files::{DiskStore, Store};
use chord_tests::NodeProc;
use futures_lite::future::block_on;

const CHORD: &str = env!("CARGO_BIN_EXE_chord");

fn chord(dir: &Path, args: &[&str]) -> std::process::Output {
    chord_tests::run_in(CHORD, dir, args)
}

fn bytes(len: usize, seed: u64) -> Vec<u8> {
    chord_tests::random_bytes(len, seed)
}

fn files_under(p: &Path) -> usize {
    let mut n = 0;
    let mut stack = vec![p.to_path_buf()];
    while let Some(d) = stack.pop() {
        for e in std::fs::read_dir(&d).into_iter().flatten().flatten() {
            if e.path().is_dir() {
                stack.push(e.path());
            } else {
                n += 1;
            }
        }
    }
    n
}

/// Wait for `cond`, polling every few milliseconds, for at most `limit`.
fn wait_for(limit: Duration, mut cond: impl FnMut() -> bool) -> bool {
    let start = Instant::now();
    while start.elapsed() < limit {
        if cond() {
            return true;
        }
        std::thread::sleep(Duration::from_millis(5));
    }
    false
}

#[test]
fn kill_9_while_a_node_stores_leaves_only_whole_verified_items() {
    let tmp = tempfile::tempdir().expect("tmp");
    let dir = tmp.path();
    let data = dir.join("data");
    let data_arg = data.to_str().expect("utf-8");
    let mut node = NodeProc::start_with(CHORD, None, &["--data", data_arg], Stdio::null());
    std::fs::write(dir.join("big.bin"), bytes(96 << 20, 1)).expect("write");
    let mut put = chord_tests::chord(CHORD)
        .args(["put", "big.bin", "--node", &node.addr.to_string()])
        .current_dir(dir)
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("put");
    // Some chunks in place, more being written: kill the node.
    assert!(wait_for(Duration::from_secs(30), || files_under(
        &data.join("chunks")
    ) >= 8));
    node.child.kill().expect("kill -9");
    node.child.wait().expect("reaped");
    let put_status = put.wait().expect("put exits");
    assert!(!put_status.success(), "the put cannot have completed");

    // What the crash left: whole, verified items only; interrupted writes are dropped.
    let store = DiskStore::open(&data, u64::MAX).expect("open");
    assert_eq!(files_under(&data.join("tmp")), 0, "partial writes left");
    let keys = block_on(store.list()).expect("list");
    assert!(keys.len() >= 8, "{} items", keys.len());
    for k in &keys {
        let d = block_on(store.get(*k)).expect("read");
        assert!(d.is_some(), "{k:?} was stored but does not verify");
    }
    drop(store);

    // The node restarts on the same directory and serves; new uploads work.
    let node = NodeProc::start_with(CHORD, None, &["--data", data_arg], Stdio::null());
    let at = node.addr.to_string();
    std::fs::write(dir.join("small.bin"), bytes(300_000, 2)).expect("write");
    assert!(chord(dir, &["put", "small.bin", "--node", &at])
        .status
        .success());
    std::fs::remove_file(dir.join("small.bin")).expect("rm");
    assert!(chord(dir, &["get", "small.bin", "--node", &at])
        .status
        .success());
    assert_eq!(
        std::fs::read(dir.join("small.bin")).expect("read"),
        bytes(300_000, 2)
    );
    println!(
        "{} whole items survived the kill; the interrupted upload left none partial",
        keys.len()
    );
}

#[test]
fn kill_9_during_a_download_leaves_no_output_and_the_next_get_cleans_up() {
    let tmp = tempfile::tempdir().expect("tmp");
    let dir = tmp.path();
    let node = NodeProc::start(CHORD, None);
    let at = node.addr.to_string();
    let body = bytes(64 << 20, 3);
    std::fs::write(dir.join("src.bin"), &body).expect("write");
    let out = chord(dir, &["put", "src.bin", "--name", "big.bin", "--node", &at]);
    assert!(out.status.success(), "{out:?}");
    let down = dir.join("down");
    std::fs::create_dir(&down).expect("mkdir");

    let parts = |d: &Path| -> Vec<String> {
        std::fs::read_dir(d)
            .expect("dir")
            .flatten()
            .filter_map(|e| e.file_name().to_str().map(str::to_string))
            .filter(|n| n.contains(".chord-part-"))
            .collect()
    };
    let mut get = chord_tests::chord(CHORD)
        .args(["get", "big.bin", "--node", &at])
        .current_dir(&down)
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("get");
    assert!(wait_for(Duration::from_secs(30), || !parts(&down).is_empty()));
    get.kill().expect("kill -9");
    get.wait().expect("reaped");
    assert!(
        !down.join("big.bin").exists(),
        "a partial download became visible"
    );
    assert_eq!(parts(&down).len(), 1, "the dead client's partial file");

    let out = chord(&down, &["get", "big.bin", "--node", &at]);
    assert!(out.status.success(), "{out:?}");
    assert_eq!(std::fs::read(down.join("big.bin")).expect("read"), body);
    assert!(
        parts(&down).is_empty(),
        "stale partial file not cleaned: {:?}",
        parts(&down)
    );
}

#[test]
fn a_full_disk_is_a_clear_error_and_reads_go_on() {
    let tmp = tempfile::tempdir().expect("tmp");
    let dir = tmp.path();
    let mnt = dir.join("small");
    let Some(_disk) = chord_tests::SmallDisk::mount(&mnt, "6m") else {
        eprintln!("skipped: mounting a 6 MiB tmpfs needs root");
        return;
    };
    let data = mnt.join("data");
    let node = NodeProc::start_with(
        CHORD,
        None,
        &["--data", data.to_str().expect("utf-8")],
        Stdio::null(),
    );
    let at = node.addr.to_string();
    std::fs::write(dir.join("small.bin"), bytes(1 << 20, 4)).expect("write");
    assert!(chord(dir, &["put", "small.bin", "--node", &at])
        .status
        .success());

    // 10 MiB does not fit in what is left of 6 MiB.
    std::fs::write(dir.join("big.bin"), bytes(10 << 20, 5)).expect("write");
    let out = chord(dir, &["put", "big.bin", "--node", &at]);
    assert_eq!(out.status.code(), Some(1));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.starts_with("error:"), "{err}");
    // The store keeps 5% of this small disk free (`DiskStore::keep_free`), so it refuses
    // the chunks that would go below that before the disk itself is full; a write that
    // still meets a full disk says so.
    let err_lower = err.to_lowercase();
    assert!(
        err_lower.contains("disk is nearly full") || err_lower.contains("no space left"),
        "the cause should be named: {err}"
    );
    // Writes of other chunks may still be in flight at the node when the client gives
    // up: each removes its temporary file as it fails.
    let start = Instant::now();
    while files_under(&data.join("tmp")) > 0 && start.elapsed() < Duration::from_secs(5) {
        std::thread::sleep(Duration::from_millis(50));
    }
    assert_eq!(files_under(&data.join("tmp")), 0, "partial writes left");

    // Reads go on.
    std::fs::remove_file(dir.join("small.bin")).expect("rm");
    let out = chord(dir, &["get", "small.bin", "--node", &at]);
    assert!(out.status.success(), "{out:?}");
    assert_eq!(
        std::fs::read(dir.join("small.bin")).expect("read"),
        bytes(1 << 20, 4)
    );
    let out = chord(dir, &["ls", "--json", "--node", &at]);
    assert!(out.status.success());
    drop(node);
}
