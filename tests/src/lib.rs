//! Helpers for the multi-node tests in `tests/tests/`: start small rings of real nodes on
//! loopback and wait for them to agree.

use std::io::{BufRead, BufReader};
use std::net::SocketAddr;
use std::process::{Child, Command, ExitStatus, Stdio};
use std::time::{Duration, Instant};

use chord_core::{Config, Id};
use chord_net::{Client, Limits, NetworkKey, Node};

/// A service that answers `answer` after `after`: a slow application service.
pub struct Delayed {
    /// How long each request takes.
    pub after: Duration,
    /// What each request is answered with.
    pub answer: &'static [u8],
}

impl chord_net::Service for Delayed {
    fn handle(
        &self,
        _node: Node,
        _from: Option<SocketAddr>,
        _request: Vec<u8>,
    ) -> std::pin::Pin<Box<dyn std::future::Future<Output = Vec<u8>> + Send>> {
        let (after, answer) = (self.after, self.answer);
        Box::pin(async move {
            async_io::Timer::after(after).await;
            answer.to_vec()
        })
    }
}

/// Protocol settings fast enough for tests: a ring settles in a second or two.
pub fn fast_config() -> Config {
    Config {
        stabilize_interval: Duration::from_millis(100),
        fix_fingers_interval: Duration::from_millis(100),
        request_timeout: Duration::from_millis(300),
        lookup_timeout: Duration::from_secs(5),
        ..Config::default()
    }
}

/// A loopback address with a free port chosen by the system.
pub fn any_port() -> SocketAddr {
    SocketAddr::from(([127, 0, 0, 1], 0))
}

/// Start `n` nodes on loopback, each joining through the previous one.
pub async fn start_ring(n: usize) -> Vec<Node> {
    let mut nodes: Vec<Node> = Vec::new();
    for i in 0..n {
        let mut b = Node::builder().listen(any_port()).config(fast_config());
        if i > 0 {
            b = b.join(nodes[i - 1].addr());
        }
        nodes.push(b.start().await.expect("node starts"));
    }
    nodes
}

/// Start `n` nodes on loopback (with [`fast_config`]), each joining through the first,
/// each builder shaped by `shape` first (virtual nodes, limits, ...).
pub async fn start_ring_shaped(
    n: usize,
    shape: impl Fn(chord_net::NodeBuilder) -> chord_net::NodeBuilder,
) -> Vec<Node> {
    let mut nodes: Vec<Node> = Vec::new();
    for i in 0..n {
        let mut b = shape(Node::builder().listen(any_port()).config(fast_config()));
        if i > 0 {
            b = b.join(nodes[0].addr());
        }
        nodes.push(b.start().await.expect("node starts"));
    }
    nodes
}

/// Is the ring of the (single-position) nodes at `addrs` exactly right: each node's
/// successor and predecessor are its neighbours in id order?
pub async fn ring_is_consistent(addrs: &[SocketAddr]) -> bool {
    ring_is_consistent_with(addrs, None).await
}

/// [`ring_is_consistent`] for a ring that uses a network key: a walk from the first
/// node ([`chord_net::ring`]) is consistent and meets exactly the nodes at `addrs`.
pub async fn ring_is_consistent_with(addrs: &[SocketAddr], key: Option<&NetworkKey>) -> bool {
    let Some(first) = addrs.first() else {
        return false;
    };
    let Ok(walk) = chord_net::ring::walk(*first, key, addrs.len() + 1).await else {
        return false;
    };
    let mut met: Vec<SocketAddr> = walk.iter().map(|s| s.me.addr).collect();
    let mut want = addrs.to_vec();
    met.sort();
    want.sort();
    met == want && chord_net::ring::is_consistent(&walk)
}

/// Wait up to `limit` for the ring of `addrs` to be consistent; returns how long it took.
pub async fn wait_consistent_at(addrs: &[SocketAddr], limit: Duration) -> Option<Duration> {
    wait_consistent_with(addrs, None, limit).await
}

/// [`wait_consistent_at`] for a ring that uses a network key.
pub async fn wait_consistent_with(
    addrs: &[SocketAddr],
    key: Option<&NetworkKey>,
    limit: Duration,
) -> Option<Duration> {
    let start = Instant::now();
    while start.elapsed() < limit {
        if ring_is_consistent_with(addrs, key).await {
            return Some(start.elapsed());
        }
        async_io::Timer::after(Duration::from_millis(100)).await;
    }
    None
}

/// Wait up to `limit` until every node's successor list is full: `min(r, n - 1)` entries,
/// with r the default list length. Replica placement needs the whole list, not only the
/// first successor that [`wait_consistent_at`] checks.
pub async fn wait_full_lists(addrs: &[SocketAddr], limit: Duration) -> bool {
    wait_full_lists_with(addrs, None, limit).await
}

/// [`wait_full_lists`] for a ring that uses a network key.
pub async fn wait_full_lists_with(
    addrs: &[SocketAddr],
    key: Option<&NetworkKey>,
    limit: Duration,
) -> bool {
    let want = Config::default()
        .successor_list_len
        .min(addrs.len().saturating_sub(1));
    let start = Instant::now();
    while start.elapsed() < limit {
        let mut full = true;
        for a in addrs {
            let len = match Client::connect_with_key(*a, Limits::default(), key).await {
                Ok(mut c) => c.status().await.map(|s| s.successors.len()).unwrap_or(0),
                Err(_) => 0,
            };
            full &= len >= want;
        }
        if full {
            return true;
        }
        async_io::Timer::after(Duration::from_millis(100)).await;
    }
    false
}

/// [`wait_consistent_at`] for in-process nodes (with their network key, if any).
pub async fn wait_consistent(nodes: &[Node], limit: Duration) -> Option<Duration> {
    let addrs: Vec<SocketAddr> = nodes.iter().map(|n| n.addr()).collect();
    let key = nodes.first().and_then(|n| n.network_key());
    wait_consistent_with(&addrs, key, limit).await
}

/// Pseudo-random bytes (xorshift), so that no two chunks of a test file are alike (content
/// addressing stores identical chunks once, which would hide what a test means to check).
pub fn random_bytes(len: usize, seed: u64) -> Vec<u8> {
    let mut x = 0x9e37_79b9_7f4a_7c15u64 ^ seed;
    (0..len)
        .map(|_| {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            x as u8
        })
        .collect()
}

/// A raw TCP connection from `ip` (any port) to the node at `to` that has sent `hello`
/// and read the node's answer: a stranger's view of the handshake, for tests that then
/// send frames by hand. The connection has 5 s read and write timeouts.
pub fn raw_handshake(
    ip: std::net::IpAddr,
    to: SocketAddr,
    hello: &chord_net::wire::Hello,
) -> std::io::Result<(std::net::TcpStream, chord_net::wire::HelloReply)> {
    use std::io::{Read, Write};
    let bad = |e: chord_net::frame::FrameError| std::io::Error::other(e.to_string());
    let s = socket2::Socket::new(
        socket2::Domain::for_address(to),
        socket2::Type::STREAM,
        None,
    )?;
    s.bind(&SocketAddr::new(ip, 0).into())?;
    s.connect_timeout(&to.into(), Duration::from_secs(5))?;
    let mut s: std::net::TcpStream = s.into();
    s.set_read_timeout(Some(Duration::from_secs(5)))?;
    s.set_write_timeout(Some(Duration::from_secs(5)))?;
    s.write_all(&chord_net::frame::encode(hello).map_err(bad)?)?;
    let mut header = [0u8; 4];
    s.read_exact(&mut header)?;
    let mut body = vec![0u8; u32::from_be_bytes(header).min(1024) as usize];
    s.read_exact(&mut body)?;
    let reply = chord_net::frame::decode(&body).map_err(bad)?;
    Ok((s, reply))
}

/// Where the `chord` processes of the tests keep their control tokens
/// (`CHORD_RUNTIME_DIR`), so that nodes killed by tests leave nothing in the user's own
/// runtime directory.
pub fn runtime_dir() -> std::path::PathBuf {
    std::env::temp_dir().join("chord-tests-run")
}

/// The `chord` binary at `bin`, as the tests run it: control tokens in [`runtime_dir`]
/// and one identity for all of them there (`CHORD_IDENTITY`), never the user's own.
pub fn chord(bin: &str) -> Command {
    let mut c = Command::new(bin);
    c.env("CHORD_RUNTIME_DIR", runtime_dir())
        .env("CHORD_IDENTITY", runtime_dir().join("identity"));
    c
}

/// Run the `chord` binary at `bin` in `dir` with `args` (stdin closed) to completion.
pub fn run_in(bin: &str, dir: &std::path::Path, args: &[&str]) -> std::process::Output {
    chord(bin)
        .args(args)
        .current_dir(dir)
        .stdin(Stdio::null())
        .output()
        .expect("run chord")
}

/// A `chord node` process on a free loopback port, killed when dropped (also when a test
/// fails half-way).
pub struct NodeProc {
    /// The process.
    pub child: Child,
    /// Where it listens.
    pub addr: SocketAddr,
}

impl NodeProc {
    /// Start the `chord` binary at `bin` as a headless node, joining `join` if given.
    pub fn start(bin: &str, join: Option<SocketAddr>) -> NodeProc {
        NodeProc::start_with(bin, join, &[], Stdio::null())
    }

    /// [`NodeProc::start`] with more arguments for `chord node` and a place for its stderr.
    pub fn start_with(
        bin: &str,
        join: Option<SocketAddr>,
        extra: &[&str],
        stderr: Stdio,
    ) -> NodeProc {
        NodeProc::start_on(bin, "127.0.0.1", join, extra, stderr)
    }

    /// [`NodeProc::start_with`] listening on `ip` (a loopback address).
    pub fn start_on(
        bin: &str,
        ip: &str,
        join: Option<SocketAddr>,
        extra: &[&str],
        stderr: Stdio,
    ) -> NodeProc {
        let mut cmd = chord(bin);
        cmd.args(["node", ip, "0", "--headless"]);
        if let Some(j) = join {
            cmd.args(["--join", &j.to_string()]);
        }
        cmd.args(extra);
        let mut child = cmd
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(stderr)
            .spawn()
            .expect("spawn chord node");
        let mut line = String::new();
        if let Some(out) = child.stdout.take() {
            let _ = BufReader::new(out).read_line(&mut line);
        }
        // "listening on ADDR id ID"
        let addr = line.split_whitespace().nth(2).and_then(|a| a.parse().ok());
        let Some(addr) = addr else {
            let _ = child.kill();
            let _ = child.wait();
            panic!("chord node did not start: first line {line:?}");
        };
        NodeProc { child, addr }
    }

    /// Send a signal (`-TERM`, `-INT`) with kill(1).
    pub fn signal(&self, sig: &str) {
        let ok = Command::new("kill")
            .args([sig, &self.child.id().to_string()])
            .status()
            .expect("kill");
        assert!(ok.success());
    }

    /// Wait up to `limit` for the process to exit.
    pub fn wait_exit(&mut self, limit: Duration) -> Option<ExitStatus> {
        let start = Instant::now();
        while start.elapsed() < limit {
            if let Ok(Some(s)) = self.child.try_wait() {
                return Some(s);
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        None
    }

    /// Resident memory of the process in KiB (0 if unknown).
    pub fn rss_kib(&self) -> u64 {
        proc_status_kib(self.child.id(), "VmRSS:")
    }

    /// Its private part (heap, stacks: `RssAnon`), in KiB: what the node itself holds,
    /// apart from the pages of the binary, which every node on a host shares.
    pub fn anon_rss_kib(&self) -> u64 {
        proc_status_kib(self.child.id(), "RssAnon:")
    }

    /// Peak resident memory of the process so far, in KiB (0 if unknown).
    pub fn peak_rss_kib(&self) -> u64 {
        proc_status_kib(self.child.id(), "VmHWM:")
    }
}

/// A `kB` field of /proc/PID/status (VmRSS:, VmHWM:), 0 if unknown.
pub fn proc_status_kib(pid: u32, field: &str) -> u64 {
    std::fs::read_to_string(format!("/proc/{pid}/status"))
        .unwrap_or_default()
        .lines()
        .find(|l| l.starts_with(field))
        .and_then(|l| l.split_whitespace().nth(1))
        .and_then(|v| v.parse().ok())
        .unwrap_or(0)
}

impl Drop for NodeProc {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
        // A killed node cannot remove its control token file.
        let _ = std::fs::remove_file(runtime_dir().join(format!(
            "control-{}-{}.token",
            self.addr.ip(),
            self.addr.port()
        )));
    }
}

/// The node of `nodes` responsible for `key`.
pub fn owner_of(nodes: &[Node], key: Id) -> Id {
    let mut ids: Vec<Id> = nodes.iter().map(|n| n.id()).collect();
    ids.sort();
    *ids.iter().find(|id| **id >= key).unwrap_or(&ids[0])
}

/// A small tmpfs mounted for a test (a disk that fills up); unmounted on drop.
pub struct SmallDisk(std::path::PathBuf);

impl SmallDisk {
    /// Mount a tmpfs of `size` (as mount(8) takes it: "6m") on `dir`, made if needed;
    /// `None` where mounting is not allowed (not root).
    pub fn mount(dir: &std::path::Path, size: &str) -> Option<SmallDisk> {
        std::fs::create_dir_all(dir).ok()?;
        Command::new("mount")
            .args(["-t", "tmpfs", "-o", &format!("size={size}"), "tmpfs"])
            .arg(dir)
            .stderr(Stdio::null())
            .status()
            .is_ok_and(|s| s.success())
            .then(|| SmallDisk(dir.to_path_buf()))
    }
}

impl Drop for SmallDisk {
    fn drop(&mut self) {
        let _ = Command::new("umount").arg(&self.0).status();
    }
}
