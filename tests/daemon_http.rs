//! The daemon's HTTP endpoint under hostile clients, without a cluster (the
//! daemon's passes fail against an unreachable API server; its endpoint
//! keeps serving): slow clients that never finish their headers, more of
//! them than the process may open files, and oversized webhook bodies.

use std::io::{Read, Write};
use std::net::TcpStream;
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

mod support;
use support::commit_all;

/// A kubeconfig for an API server that is not there.
fn unreachable_kubeconfig(dir: &Path) -> String {
    let path = dir.join("kubeconfig");
    std::fs::write(
        &path,
        "apiVersion: v1\nkind: Config\nclusters:\n- name: none\n  cluster: {server: 'https://127.0.0.1:1'}\n\
         users:\n- name: none\n  user: {token: x}\ncontexts:\n- name: none\n  context: {cluster: none, user: none}\n\
         current-context: none\n",
    )
    .unwrap();
    path.display().to_string()
}

struct Daemon {
    child: Child,
    addr: String,
    log: std::path::PathBuf,
}

impl Drop for Daemon {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Starts `plimsoll daemon` on a free port with at most `files` open files.
fn start(repo: &Path, files: u32, extra: &str) -> Daemon {
    let addr = support::free_addr();
    // Outside .git: the daemon watches .git, and must not see its own log.
    let log = repo.join("daemon.log");
    let command = format!(
        "ulimit -n {files} && exec {} daemon --branch main --interval 300 --listen {addr} --status-listen 127.0.0.1:0 --kubeconfig {} {extra}",
        env!("CARGO_BIN_EXE_plimsoll"),
        unreachable_kubeconfig(repo),
    );
    let child = Command::new("sh")
        .args(["-c", &command])
        .current_dir(repo)
        .stdout(Stdio::null())
        .stderr(std::fs::File::create(&log).unwrap())
        .spawn()
        .unwrap();
    let d = Daemon { child, addr, log };
    for _ in 0..100 {
        if TcpStream::connect(&d.addr).is_ok() {
            return d;
        }
        std::thread::sleep(Duration::from_millis(100));
    }
    panic!(
        "the daemon did not listen: {}",
        std::fs::read_to_string(&d.log).unwrap_or_default()
    );
}

fn request(addr: &str, raw: &[u8], wait: Duration) -> Option<(u16, String)> {
    let mut s = TcpStream::connect(addr).ok()?;
    s.set_read_timeout(Some(wait)).ok()?;
    s.write_all(raw).ok()?;
    let mut out = Vec::new();
    let _ = s.read_to_end(&mut out);
    let out = String::from_utf8_lossy(&out).into_owned();
    let code = out.split_whitespace().nth(1)?.parse().ok()?;
    Some((code, out))
}

fn get(addr: &str, path: &str) -> Option<(u16, String)> {
    request(
        addr,
        format!("GET {path} HTTP/1.1\r\nHost: x\r\n\r\n").as_bytes(),
        Duration::from_secs(30),
    )
}

/// CPU seconds a process has used (utime + stime from /proc, in ticks of
/// `getconf CLK_TCK`).
fn cpu_seconds(pid: u32) -> f64 {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap_or_default();
    let rest = stat.rsplit_once(')').map(|(_, r)| r).unwrap_or("");
    let f: Vec<f64> = rest
        .split_whitespace()
        .map(|x| x.parse().unwrap_or(0.0))
        .collect();
    let tck: f64 = Command::new("getconf")
        .arg("CLK_TCK")
        .output()
        .ok()
        .and_then(|o| String::from_utf8_lossy(&o.stdout).trim().parse().ok())
        .unwrap_or(100.0);
    (f.get(11).unwrap_or(&0.0) + f.get(12).unwrap_or(&0.0)) / tck
}

fn repo() -> tempfile::TempDir {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(
        dir.path().join("plimsoll.yaml"),
        "name: t\nreleases:\n  - {name: a, chart: ./c, version: 1.0.0, namespace: n, stage: s, layers: [v.yaml]}\n",
    )
    .unwrap();
    std::fs::write(dir.path().join("v.yaml"), "a: 1\n").unwrap();
    let git = git2::Repository::init(dir.path()).unwrap();
    git.set_head("refs/heads/main").unwrap();
    commit_all(&git, "one");
    dir
}

#[test]
fn slow_clients_beyond_the_file_limit_neither_spin_nor_silence_metrics() {
    let repo = repo();
    let d = start(repo.path(), 48, "");
    assert_eq!(get(&d.addr, "/healthz").map(|r| r.0), Some(200));
    // 100 clients that open a connection and never finish their headers:
    // more than the process may hold files.
    let slow: Vec<TcpStream> = (0..100)
        .filter_map(|_| {
            let mut s = TcpStream::connect(&d.addr).ok()?;
            let _ = s.write_all(b"GET /metrics HTTP/1.1\r\nHost:");
            Some(s)
        })
        .collect();
    assert!(slow.len() >= 90, "the kernel queued the connections");
    let cpu_before = cpu_seconds(d.child.id());
    let started = Instant::now();
    // /metrics answers once the slow clients' header timeout frees room.
    let answered = get(&d.addr, "/metrics");
    let waited = started.elapsed();
    let cpu = cpu_seconds(d.child.id()) - cpu_before;
    eprintln!("/metrics answered after {waited:?}; daemon CPU meanwhile {cpu:.2} s");
    let (code, body) = answered.expect("/metrics answers");
    assert_eq!(code, 200, "{body}");
    assert!(body.contains("plimsoll_owned_stacks 0"), "{body}");
    let log = std::fs::read_to_string(&d.log).unwrap_or_default();
    // A spinning accept loop logs (and burns CPU) thousands of times a
    // second; backing off, a few times.
    let accept_failures = log.matches("accept failed").count();
    assert!(
        accept_failures < 200,
        "{accept_failures} accept failures logged in {waited:?}: the accept loop spins"
    );
    drop(slow);
}

#[test]
fn webhook_bodies_are_bounded_and_signatures_checked() {
    let repo = repo();
    let secret = repo.path().join(".git/secret");
    std::fs::write(&secret, "s3cret\n").unwrap();
    let d = start(
        repo.path(),
        1024,
        &format!("--webhook-secret-file {}", secret.display()),
    );
    // Over the 1 MiB limit: refused without reading it all.
    let big = vec![b'x'; 2 << 20];
    let mut raw = format!(
        "POST /hook HTTP/1.1\r\nHost: x\r\nContent-Length: {}\r\n\r\n",
        big.len()
    )
    .into_bytes();
    raw.extend_from_slice(&big);
    let (code, _) = request(&d.addr, &raw, Duration::from_secs(30)).expect("an answer");
    assert_eq!(code, 413);
    // A wrong signature, then the right one (HMAC-SHA256 of the body).
    let body = b"{\"ref\":\"refs/heads/main\"}";
    let post = |sig: &str| {
        let mut raw = format!(
            "POST /hook HTTP/1.1\r\nHost: x\r\nX-Hub-Signature-256: sha256={sig}\r\nContent-Length: {}\r\n\r\n",
            body.len()
        )
        .into_bytes();
        raw.extend_from_slice(body);
        request(&d.addr, &raw, Duration::from_secs(30)).map(|r| r.0)
    };
    assert_eq!(post(&"0".repeat(64)), Some(401));
    // echo -n '{"ref":"refs/heads/main"}' | openssl dgst -sha256 -hmac s3cret
    let good = Command::new("openssl")
        .args(["dgst", "-sha256", "-hmac", "s3cret", "-r"])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .spawn()
        .and_then(|mut c| {
            c.stdin.take().unwrap().write_all(body)?;
            c.wait_with_output()
        })
        .map(|o| {
            String::from_utf8_lossy(&o.stdout)
                .split_whitespace()
                .next()
                .unwrap_or("")
                .to_string()
        })
        .expect("openssl");
    assert_eq!(good.len(), 64, "{good}");
    assert_eq!(post(&good), Some(202));
    // Unknown paths and methods.
    assert_eq!(get(&d.addr, "/nope").map(|r| r.0), Some(404));
    // Not ready: no pass has succeeded against the unreachable cluster.
    let (code, body) = get(&d.addr, "/readyz").unwrap();
    assert_eq!(code, 503, "{body}");
}

/// The daemon wakes on ref writes (a commit), not on its own reads of the
/// repository: with a pass that fails (here: no helm, no cluster) it used
/// to re-trigger itself through notify about 20 times a second.
#[test]
fn the_daemon_reacts_to_commits_not_to_its_own_reads() {
    let repo = repo();
    let d = start(repo.path(), 1024, "");
    let passes = |d: &Daemon| {
        std::fs::read_to_string(&d.log)
            .unwrap_or_default()
            .matches("new commit on main")
            .count()
    };
    std::thread::sleep(Duration::from_secs(3));
    assert_eq!(
        passes(&d),
        1,
        "only the start pass: {}",
        std::fs::read_to_string(&d.log).unwrap_or_default()
    );
    std::fs::write(repo.path().join("v.yaml"), "a: 2\n").unwrap();
    let git = git2::Repository::open(repo.path()).unwrap();
    commit_all(&git, "two");
    let deadline = Instant::now() + Duration::from_secs(10);
    while passes(&d) < 2 && Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(100));
    }
    std::thread::sleep(Duration::from_secs(2));
    let log = std::fs::read_to_string(&d.log).unwrap_or_default();
    assert_eq!(passes(&d), 2, "one pass for the commit: {log}");
    assert!(log.contains("trigger=\"notify\""), "{log}");
}

/// Without a cluster the daemon cannot share its stacks (the leases are in
/// the cluster): it says so in `/readyz`, retries with backoff (5 s, then
/// up to a round's period), and holds no stack, so nothing is synced.
#[test]
fn without_a_cluster_nothing_is_held_and_readyz_says_why() {
    let repo = repo();
    let d = start(repo.path(), 1024, "--lease-duration 30");
    let log = || std::fs::read_to_string(&d.log).unwrap_or_default();
    let deadline = Instant::now() + Duration::from_secs(30);
    while !log().contains("failure 2 in a row") && Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(200));
    }
    let text = log();
    assert!(
        text.contains("sharing stacks: retrying in 5s (failure 1 in a row)"),
        "{text}"
    );
    assert!(
        text.contains("sharing stacks: retrying in 10s (failure 2 in a row)"),
        "{text}"
    );
    assert_eq!(text.matches("new commit on main").count(), 1, "{text}");
    assert!(!text.contains("syncing ("), "no stack is held: {text}");
    let (code, body) = get(&d.addr, "/readyz").unwrap();
    assert_eq!(code, 503, "{body}");
    assert!(
        body.contains("not ready: cannot share stacks through leases:"),
        "{body}"
    );
}

/// The address the status page was bound to, from the daemon's log.
fn status_addr(d: &Daemon) -> String {
    for _ in 0..100 {
        let log = std::fs::read_to_string(&d.log).unwrap_or_default();
        if let Some(rest) = log.split("serving the status page on http://").nth(1) {
            return rest.split('/').next().unwrap().to_string();
        }
        std::thread::sleep(Duration::from_millis(100));
    }
    panic!(
        "no status page: {}",
        std::fs::read_to_string(&d.log).unwrap_or_default()
    );
}

/// The status page: read only, a token when one is set (a bearer token, or
/// the password of Basic authentication, which a browser asks for), never
/// framed or cached, hostile text escaped; its JSON says what the HTML
/// says.
#[test]
fn the_status_page_requires_its_token_and_escapes_what_it_shows() {
    let repo = repo();
    // A stack file whose name is markup: shown escaped.
    std::fs::create_dir_all(repo.path().join("stacks/evil")).unwrap();
    std::fs::write(
        repo.path().join("stacks/evil/plimsoll.yaml"),
        "name: <script>alert(1)</script>\n",
    )
    .unwrap();
    commit_all(&git2::Repository::open(repo.path()).unwrap(), "two stacks");
    let token = repo.path().join(".git/status-token");
    std::fs::write(&token, "s3cret-t0ken\n").unwrap();
    let d = start(
        repo.path(),
        1024,
        &format!(
            "--stacks plimsoll.yaml --stacks 'stacks/*/plimsoll.yaml' --status-token-file {}",
            token.display()
        ),
    );
    let status = status_addr(&d);
    let with = |path: &str, auth: &str| {
        request(
            &status,
            format!("GET {path} HTTP/1.1\r\nHost: x\r\n{auth}\r\n").as_bytes(),
            Duration::from_secs(30),
        )
        .unwrap()
    };
    let (code, body) = with("/", "");
    assert_eq!(code, 401, "{body}");
    assert!(
        body.contains("WWW-Authenticate: Basic realm=\"plimsoll\"")
            || body
                .to_lowercase()
                .contains("www-authenticate: basic realm=\"plimsoll\""),
        "{body}"
    );
    assert_eq!(with("/", "Authorization: Bearer wrong\r\n").0, 401);
    // The stacks appear once the repository has been read.
    let mut page = String::new();
    for _ in 0..100 {
        let (code, body) = with("/", "Authorization: Bearer s3cret-t0ken\r\n");
        assert_eq!(code, 200, "{body}");
        page = body;
        if page.contains("stacks/evil/plimsoll.yaml") {
            break;
        }
        std::thread::sleep(Duration::from_millis(100));
    }
    let lower = page.to_lowercase();
    for header in [
        "content-type: text/html; charset=utf-8",
        "content-security-policy: default-src 'none'",
        "x-content-type-options: nosniff",
        "cache-control: no-store",
    ] {
        assert!(lower.contains(header), "{header}: {page}");
    }
    assert!(page.contains("stacks/evil/plimsoll.yaml"), "{page}");
    assert!(
        !page.contains("<script>"),
        "markup from a repository is escaped: {page}"
    );
    assert!(
        page.contains("&lt;script&gt;alert(1)&lt;/script&gt;"),
        "{page}"
    );
    assert!(
        page.contains("Cannot share stacks through leases"),
        "{page}"
    );
    // Basic authentication with the token as the password (what a browser
    // sends after asking): `printf 'x:s3cret-t0ken' | base64`.
    let (code, json) = with(
        "/status.json",
        "Authorization: Basic eDpzM2NyZXQtdDBrZW4=\r\n",
    );
    assert_eq!(code, 200, "{json}");
    let body = json.split("\r\n\r\n").nth(1).unwrap();
    let v: serde_json::Value = serde_json::from_str(body).unwrap();
    let mut files: Vec<&str> = v["stacks"]
        .as_array()
        .unwrap()
        .iter()
        .map(|s| s["location"]["file"].as_str().unwrap())
        .collect();
    files.sort();
    assert_eq!(files, ["plimsoll.yaml", "stacks/evil/plimsoll.yaml"]);
    assert!(
        v["stacks"]
            .as_array()
            .unwrap()
            .iter()
            .all(|s| s["state"] == "unowned"),
        "{v}"
    );
    assert!(v["shard_error"].is_string(), "{v}");
    // Read only.
    let (code, _) = request(
        &status,
        b"POST / HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer s3cret-t0ken\r\nContent-Length: 0\r\n\r\n",
        Duration::from_secs(30),
    )
    .unwrap();
    assert_eq!(code, 405);
}
