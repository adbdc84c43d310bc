//! The live view (`chord node --http`) in a real browser: headless Chromium, driven over
//! the DevTools protocol (headless_chrome), opens the page on a 5-node ring, sees 5
//! nodes, traces a lookup, sees a node killed with SIGKILL go and the ring close to 4
//! nodes, all without reloading the page. Screenshots are kept in
//! `target/tmp/live-view/` (or `$CHORD_ARTIFACTS`).
//!
//! Skipped, saying so, where no Chromium is installed (`apt-get install chromium`, or set
//! `CHROME` to a Chrome or Chromium binary).

use std::ffi::OsStr;
use std::io::{BufRead, BufReader};
use std::path::PathBuf;
use std::process::Stdio;
use std::time::{Duration, Instant};

use chord_core::Id;
use chord_tests::NodeProc;
use headless_chrome::protocol::cdp::Page::CaptureScreenshotFormatOption;
use headless_chrome::{Browser, LaunchOptions, Tab};

const CHORD: &str = env!("CARGO_BIN_EXE_chord");

fn chromium() -> Option<PathBuf> {
    if let Some(p) = std::env::var_os("CHROME") {
        return Some(PathBuf::from(p));
    }
    [
        "/usr/bin/chromium",
        "/usr/bin/chromium-browser",
        "/usr/bin/google-chrome",
    ]
    .iter()
    .map(PathBuf::from)
    .find(|p| p.exists())
}

fn artifacts() -> PathBuf {
    let dir = std::env::var_os("CHORD_ARTIFACTS")
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from(env!("CARGO_TARGET_TMPDIR")).join("live-view"));
    std::fs::create_dir_all(&dir).expect("artifacts directory");
    dir
}

/// The value of a JavaScript expression on the page, as a string.
fn js(tab: &Tab, expr: &str) -> String {
    let v = tab.evaluate(expr, false).expect("evaluate").value;
    match v {
        Some(serde_json::Value::String(s)) => s,
        Some(v) => v.to_string(),
        None => String::new(),
    }
}

/// Wait until `expr` is true on the page, up to `limit`.
fn wait_true(tab: &Tab, expr: &str, limit: Duration) -> bool {
    let start = Instant::now();
    while start.elapsed() < limit {
        if js(tab, expr) == "true" {
            return true;
        }
        std::thread::sleep(Duration::from_millis(100));
    }
    false
}

fn screenshot(tab: &Tab, name: &str) {
    let png = tab
        .capture_screenshot(CaptureScreenshotFormatOption::Png, None, None, true)
        .expect("screenshot");
    let path = artifacts().join(name);
    std::fs::write(&path, png).expect("write screenshot");
    eprintln!("screenshot: {}", path.display());
}

const DRAWN: &str = "document.querySelector('#ring').dataset";

/// A headless `chord node` (a new ring) with these options and `--http` on a free
/// port, and the address of its live view as it prints it.
fn node_with_view(extra: &[&str]) -> (NodeProc, String) {
    let args: Vec<&str> = extra
        .iter()
        .copied()
        .chain(["--http", "127.0.0.1:0"])
        .collect();
    let mut node = NodeProc::start_with(CHORD, None, &args, Stdio::piped());
    let err = node.child.stderr.take().expect("stderr");
    let mut lines = BufReader::new(err).lines();
    let url = lines
        .by_ref()
        .map_while(Result::ok)
        .find_map(|l| l.strip_prefix("live view: ").map(str::to_string))
        .expect("the node says where its live view is");
    // Keep reading, so that the node never blocks on a full pipe.
    std::thread::spawn(move || lines.for_each(drop));
    (node, url)
}

#[test]
fn the_live_view_draws_the_ring_and_follows_a_crash_without_reloading() {
    let Some(chrome) = chromium() else {
        eprintln!(
            "SKIPPED: no Chromium here (apt-get install chromium, or set CHROME=/path/to/chrome)"
        );
        return;
    };
    let (first, url) = node_with_view(&[]);
    let mut others: Vec<NodeProc> = (0..4)
        .map(|_| NodeProc::start(CHORD, Some(first.addr)))
        .collect();

    let browser = Browser::new(
        LaunchOptions::default_builder()
            .path(Some(chrome))
            .headless(true)
            .sandbox(false)
            .window_size(Some((1400, 950)))
            .args(
                [
                    "--disable-gpu",
                    "--disable-quic",
                    "--disable-component-update",
                ]
                .map(OsStr::new)
                .to_vec(),
            )
            .idle_browser_timeout(Duration::from_secs(120))
            .build()
            .expect("launch options"),
    )
    .expect("start Chromium");
    let tab = browser.new_tab().expect("tab");
    tab.navigate_to(&url).expect("navigate");
    tab.wait_until_navigated().expect("page loads");

    let five = format!("{DRAWN}.nodes === '5' && {DRAWN}.consistent === 'true'");
    assert!(
        wait_true(&tab, &five, Duration::from_secs(30)),
        "the page never drew a consistent ring of 5 (it shows {} nodes)",
        js(&tab, &format!("{DRAWN}.nodes"))
    );
    assert_eq!(
        js(
            &tab,
            "document.querySelectorAll('#ring circle.node').length"
        ),
        "5"
    );
    assert_eq!(
        js(&tab, "document.querySelectorAll('#nodes tbody tr').length"),
        "5"
    );
    screenshot(&tab, "1-ring-of-5.png");

    // A lookup traced hop by hop ends at the key's owner: the first node clockwise from
    // the key's id.
    let mut ids: Vec<(Id, String)> = std::iter::once(&first)
        .chain(&others)
        .map(|n| (Id::for_addr(n.addr), n.addr.to_string()))
        .collect();
    ids.sort();
    let key = Id::for_key("song.mp3");
    let owner = ids
        .iter()
        .find(|(id, _)| *id >= key)
        .unwrap_or(&ids[0])
        .1
        .clone();
    js(
        &tab,
        "document.getElementById('key').value = 'song.mp3'; \
         document.querySelector('#lookup button').click(); true",
    );
    assert!(
        wait_true(
            &tab,
            "document.getElementById('lookup-result').textContent.includes('owner ')",
            Duration::from_secs(20)
        ),
        "no lookup result: {}",
        js(&tab, "document.getElementById('lookup-result').textContent")
    );
    let result = js(&tab, "document.getElementById('lookup-result').textContent");
    assert!(
        result.contains(&format!("owner {owner}")),
        "owner {owner} expected: {result}"
    );
    assert!(result.contains("(same owner)"), "{result}");
    // A click on a node shows its fingers: lines on the ring and its table beside it.
    js(
        &tab,
        "document.querySelector('#ring circle.node').dispatchEvent(new MouseEvent('click')); true",
    );
    assert!(
        js(&tab, "document.getElementById('focus').textContent").contains("fingers: 0→"),
        "{}",
        js(&tab, "document.getElementById('focus').textContent")
    );
    assert_ne!(
        js(
            &tab,
            "document.querySelectorAll('#ring line.finger').length"
        ),
        "0"
    );
    screenshot(&tab, "2-lookup-and-fingers.png");

    // Kill one node: the page (not reloaded: the marker stays) shows 4 nodes once
    // stabilization has closed the gap, and says what happened to the victim.
    js(&tab, "window.notReloaded = true; true");
    let victim = others.remove(1);
    let victim_addr = victim.addr.to_string();
    drop(victim); // SIGKILL
    let four =
        format!("{DRAWN}.nodes === '4' && {DRAWN}.silent === '0' && {DRAWN}.consistent === 'true'");
    assert!(
        wait_true(&tab, &four, Duration::from_secs(30)),
        "the page never drew the ring of 4 after the crash (nodes {}, not answering {})",
        js(&tab, &format!("{DRAWN}.nodes")),
        js(&tab, &format!("{DRAWN}.silent"))
    );
    assert_eq!(
        js(
            &tab,
            "document.querySelectorAll('#ring circle.node').length"
        ),
        "4"
    );
    assert_eq!(js(&tab, "window.notReloaded === true"), "true");
    let log = js(&tab, "document.getElementById('log').textContent");
    assert!(
        log.contains(&victim_addr),
        "the log says nothing of {victim_addr}: {log}"
    );
    screenshot(&tab, "3-after-crash.png");
}

/// `GET path` with this `Host` header: the status and the body.
fn http_get(addr: &str, path: &str, host: &str, method: &str) -> (u16, String) {
    http_get_with(addr, path, host, method, "")
}

/// [`http_get`] with more header lines (each ending in `\r\n`).
fn http_get_with(addr: &str, path: &str, host: &str, method: &str, more: &str) -> (u16, String) {
    use std::io::{Read, Write};
    let mut s = std::net::TcpStream::connect(addr).expect("connect to the view");
    s.set_read_timeout(Some(Duration::from_secs(20)))
        .expect("timeout");
    write!(
        s,
        "{method} {path} HTTP/1.1\r\nHost: {host}\r\n{more}Connection: close\r\nContent-Length: 0\r\n\r\n"
    )
    .expect("send");
    let mut answer = String::new();
    s.read_to_string(&mut answer).expect("read");
    let status = answer
        .split_whitespace()
        .nth(1)
        .and_then(|c| c.parse().ok())
        .unwrap_or(0);
    let body = answer
        .split_once("\r\n\r\n")
        .map_or(String::new(), |(_, b)| b.to_string());
    (status, body)
}

fn keys_of(v: &serde_json::Value) -> Vec<String> {
    let mut k: Vec<String> = v
        .as_object()
        .map(|o| o.keys().cloned().collect())
        .unwrap_or_default();
    k.sort();
    k
}

/// Without a browser: `/api/ring` is `chord ring --json` (same fields, same nodes) on a
/// ring with a network key (the view sees what its node sees), `/api/lookup` finds the
/// owner `chord lookup` finds, and what the view refuses it refuses.
#[test]
fn the_view_api_is_chord_ring_json_and_refuses_what_it_should() {
    let dir = tempfile::tempdir().expect("tempdir");
    let key = dir.path().join("ring.key");
    let key_s = key.to_str().expect("utf-8");
    let made = chord_tests::chord(CHORD)
        .args(["keygen", key_s])
        .output()
        .expect("keygen");
    assert!(made.status.success());
    let keyed = ["--network-key", key_s];
    let (first, url) = node_with_view(&keyed);
    let view = url
        .trim_start_matches("http://")
        .trim_end_matches('/')
        .to_string();
    let _others: Vec<NodeProc> = (0..2)
        .map(|_| NodeProc::start_with(CHORD, Some(first.addr), &keyed, Stdio::null()))
        .collect();

    let node = first.addr.to_string();
    let cli = |args: &[&str]| -> serde_json::Value {
        let out = chord_tests::chord(CHORD)
            .args(args)
            .args(["--node", &node, "--json", "--network-key", key_s])
            .output()
            .expect("chord");
        serde_json::from_slice(&out.stdout).unwrap_or(serde_json::Value::Null)
    };
    let start = Instant::now();
    let (api, ring) = loop {
        let (status, body) = http_get(&view, "/api/ring", "127.0.0.1", "GET");
        let api: serde_json::Value = serde_json::from_str(&body).unwrap_or_default();
        let ring = cli(&["ring"]);
        let three = |v: &serde_json::Value| {
            v["consistent"] == true && v["nodes"].as_array().map(Vec::len) == Some(3)
        };
        if status == 200 && three(&api) && three(&ring) {
            break (api, ring);
        }
        assert!(
            start.elapsed() < Duration::from_secs(30),
            "no consistent ring of 3 in the view ({status} {body}) and chord ring ({ring})"
        );
        std::thread::sleep(Duration::from_millis(200));
    };
    assert_eq!(keys_of(&api), keys_of(&ring), "same fields at the top");
    assert_eq!(
        keys_of(&api["nodes"][0]),
        keys_of(&ring["nodes"][0]),
        "same fields per node"
    );
    let ids = |v: &serde_json::Value| -> Vec<String> {
        let mut ids: Vec<String> = v["nodes"]
            .as_array()
            .into_iter()
            .flatten()
            .map(|n| n["id"].as_str().unwrap_or("").to_string())
            .collect();
        ids.sort();
        ids
    };
    assert_eq!(ids(&api), ids(&ring));
    assert!(api["nodes"][0]["items"].is_u64(), "items held: {api}");

    let (status, body) = http_get(&view, "/api/lookup?key=song%2Emp3", "localhost", "GET");
    assert_eq!(status, 200, "{body}");
    let traced: serde_json::Value = serde_json::from_str(&body).expect("json");
    let looked_up = cli(&["lookup", "song.mp3"]);
    assert_eq!(traced["name"], "song.mp3");
    assert_eq!(traced["owner"]["id"], looked_up["node"]["id"], "{traced}");
    assert_eq!(traced["path"][0]["addr"], node.as_str());

    let long = format!("/api/lookup?key={}", "a".repeat(2000));
    assert_eq!(http_get(&view, &long, "127.0.0.1", "GET").0, 400);
    assert_eq!(http_get(&view, "/api/lookup", "127.0.0.1", "GET").0, 400);
    assert_eq!(http_get(&view, "/nothing", "127.0.0.1", "GET").0, 404);
    assert_eq!(http_get(&view, "/api/ring", "127.0.0.1", "POST").0, 405);
    // A name rebound to 127.0.0.1 by a web site's DNS: refused.
    let (status, _) = http_get(&view, "/api/ring", "evil.example:8080", "GET");
    assert_eq!(status, 403);
    // Another site's page, in a visitor's browser: no data, no lookups, no events.
    for more in [
        "Sec-Fetch-Site: cross-site\r\n",
        "Sec-Fetch-Site: same-site\r\n",
        "Origin: http://evil.example\r\n",
    ] {
        for path in ["/api/ring", "/api/lookup?key=x", "/events"] {
            let (status, _) = http_get_with(&view, path, "127.0.0.1", "GET", more);
            assert_eq!(status, 403, "{path} with {more:?}");
        }
    }
    // The view's own page is let in.
    let own = format!("Sec-Fetch-Site: same-origin\r\nOrigin: http://{view}\r\n");
    assert_eq!(
        http_get_with(&view, "/api/ring", "127.0.0.1", "GET", &own).0,
        200
    );
    let (status, page) = http_get(&view, "/", "localhost", "GET");
    assert_eq!(status, 200);
    assert!(page.contains("<svg id=\"ring\""), "{page}");
}

/// Kills the process when dropped (also when the test fails half-way).
struct Killed(std::process::Child);

impl Drop for Killed {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// From the first crash (or leave) event on, if a consistent ring of 3 follows it.
fn after_crash(events: &str) -> Option<&str> {
    let at = events
        .find("\"kind\":\"crash\"")
        .or_else(|| events.find("\"kind\":\"leave\""))?;
    let rest = &events[at..];
    rest.contains("ring consistent (3 nodes)").then_some(rest)
}

/// `chord demo --http`: the demo's story reaches the page as it happens (the crash of the
/// node the demo kills, then a ring of the survivors again), and the ring stays up for
/// the page until Ctrl-C.
#[test]
fn the_demo_plays_in_the_live_view() {
    let mut child = Killed(
        chord_tests::chord(CHORD)
            .args([
                "demo",
                "--nodes",
                "4",
                "--size",
                "1M",
                "--http",
                "127.0.0.1:0",
            ])
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .spawn()
            .expect("spawn"),
    );
    let mut lines = BufReader::new(child.0.stdout.take().expect("stdout")).lines();
    let mut text = Vec::new();
    let mut view = None;
    for line in lines.by_ref().map_while(Result::ok) {
        if let Some(rest) = line.trim().strip_prefix("watch it live: http://") {
            view = rest.split('/').next().map(str::to_string);
            break;
        }
        text.push(line);
    }
    let view = view.unwrap_or_else(|| panic!("no live view address: {text:?}"));
    // Follow the events as the page does, in a thread, while the demo goes on.
    let events = std::thread::spawn(move || {
        use std::io::{Read, Write};
        let mut s = std::net::TcpStream::connect(&view).expect("connect to the view");
        s.set_read_timeout(Some(Duration::from_secs(5)))
            .expect("timeout");
        write!(s, "GET /events HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n").expect("send");
        let start = Instant::now();
        let mut seen = String::new();
        let mut buf = [0u8; 4096];
        while start.elapsed() < Duration::from_secs(90) && after_crash(&seen).is_none() {
            match s.read(&mut buf) {
                Ok(0) => break,
                Ok(n) => seen.push_str(&String::from_utf8_lossy(&buf[..n])),
                Err(_) => {}
            }
        }
        seen
    });
    for line in lines.by_ref().map_while(Result::ok) {
        let ready = line.contains("Ctrl-C stops the demo");
        text.push(line);
        if ready {
            break;
        }
    }
    let text = text.join("\n");
    let killed = text
        .lines()
        .find_map(|l| l.trim().strip_prefix("killed "))
        .and_then(|l| l.split_whitespace().next())
        .unwrap_or_else(|| panic!("no crash in the story: {text}"))
        .trim_end_matches(',')
        .to_string();
    let seen = events.join().expect("events thread");
    let crash = after_crash(&seen)
        .unwrap_or_else(|| panic!("no crash then a ring of 3 on the page: {seen}"));
    assert!(
        crash.contains(&format!("\"text\":\"{killed} (")),
        "the crash the page was told of is not of {killed}: {crash}"
    );
    assert!(
        text.contains("or watch the ring and look up keys at http://"),
        "{text}"
    );
    // Still up for the page; Ctrl-C ends it.
    assert!(child.0.try_wait().expect("try_wait").is_none());
    let ok = std::process::Command::new("kill")
        .args(["-INT", &child.0.id().to_string()])
        .status()
        .expect("kill");
    assert!(ok.success());
    let rest: Vec<String> = lines.map_while(Result::ok).collect();
    assert!(child.0.wait().expect("wait").success(), "{rest:?}");
}

/// Found in review: with the view's port taken, the node joined the ring, printed that it
/// listens, then exited (a crash, to the ring). The port is now bound first.
#[test]
fn a_taken_view_port_stops_the_node_before_it_starts() {
    let taken = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
    let port = taken.local_addr().expect("addr").to_string();
    let out = chord_tests::chord(CHORD)
        .args(["node", "127.0.0.1", "0", "--headless", "--http", &port])
        .stdin(Stdio::null())
        .output()
        .expect("run chord node");
    let (stdout, stderr) = (
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr),
    );
    assert!(!out.status.success());
    assert!(stderr.contains("cannot serve the live view"), "{stderr}");
    assert!(!stdout.contains("listening on"), "{stdout}");
}
