//! Real Git remotes on loopback for the status tests, each started on a free port and stopped on drop:
//! `git daemon` (git://, push enabled), `git http-backend` behind a tiny HTTP server written here (it
//! demands a Basic token and counts requests), and Debian's `sshd` with its own host key, config and
//! authorized_keys.

use base64::Engine as _;
use git2::{Repository, Signature, Time};
use std::io::{BufRead, BufReader, Read, Write};
use std::net::{TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

/// A bare repository with one commit on `main`, the tracked branch.
pub struct BareRemote {
    pub root: tempfile::TempDir,
    pub main: git2::Oid,
}

impl BareRemote {
    pub fn new() -> BareRemote {
        let root = tempfile::tempdir().expect("tmp");
        let repo = Repository::init_bare(root.path().join("remote.git")).expect("init bare");
        let sig = Signature::new(
            "Test Author",
            "test@example.com",
            &Time::new(1_700_000_000, 0),
        )
        .expect("sig");
        let blob = repo.blob(b"kind: GameServerSet\n").expect("blob");
        let mut tb = repo.treebuilder(None).expect("tb");
        tb.insert("set.yaml", blob, 0o100644).expect("insert");
        let tree = repo.find_tree(tb.write().expect("tree")).expect("tree");
        let main = repo
            .commit(
                Some("refs/heads/main"),
                &sig,
                &sig,
                "Add the set",
                &tree,
                &[],
            )
            .expect("commit");
        repo.set_head("refs/heads/main").expect("head");
        BareRemote { root, main }
    }

    pub fn path(&self) -> PathBuf {
        self.root.path().join("remote.git")
    }

    pub fn repo(&self) -> Repository {
        Repository::open_bare(self.path()).expect("open remote")
    }
}

pub fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .expect("bind")
        .local_addr()
        .expect("addr")
        .port()
}

fn wait_for_port(port: u16, child: &mut Child, what: &str) {
    wait_for_addr("127.0.0.1", port, child, what)
}

fn wait_for_addr(host: &str, port: u16, child: &mut Child, what: &str) {
    let start = Instant::now();
    while start.elapsed() < Duration::from_secs(10) {
        if TcpStream::connect((host, port)).is_ok() {
            return;
        }
        if let Ok(Some(status)) = child.try_wait() {
            panic!("{what} exited early: {status}");
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    panic!("{what} did not listen on port {port}");
}

/// `git daemon` serving the remote's parent folder, with receive-pack enabled.
pub struct GitDaemon {
    child: Child,
    pub url: String,
}

impl GitDaemon {
    pub fn start(remote: &BareRemote) -> GitDaemon {
        Self::start_on(remote, free_port())
    }

    /// On a given port: to bring a remote back where it was after stopping it.
    pub fn start_on(remote: &BareRemote, port: u16) -> GitDaemon {
        Self::serve(remote.root.path(), "127.0.0.1", port)
    }

    /// Serving the bare `remote.git` under `base` on `host:port` (an address of this machine's own:
    /// loopback, or the test bed's bridge for pods).
    pub fn serve(base: &Path, host: &str, port: u16) -> GitDaemon {
        // The daemon binary itself, not `git daemon`: `git` would run it as a child of its own, and
        // killing `git` would leave the daemon (and every file descriptor it inherited) behind.
        let exec_path = Command::new("git")
            .arg("--exec-path")
            .output()
            .expect("git --exec-path");
        let daemon =
            PathBuf::from(String::from_utf8_lossy(&exec_path.stdout).trim()).join("git-daemon");
        assert!(daemon.is_file(), "{} is missing", daemon.display());
        let mut child = Command::new(daemon)
            .arg("--reuseaddr")
            .arg("--export-all")
            .arg("--enable=receive-pack")
            .arg(format!("--base-path={}", base.display()))
            .arg(format!("--listen={host}"))
            .arg(format!("--port={port}"))
            .arg(base)
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("git daemon");
        wait_for_addr(host, port, &mut child, "git daemon");
        GitDaemon {
            child,
            url: format!("git://{host}:{port}/remote.git"),
        }
    }
}

impl Drop for GitDaemon {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// `git http-backend` behind a one-request-per-connection HTTP/1.1 server that demands
/// `Authorization: Basic base64(x-access-token:<token>)`.
pub struct HttpGit {
    pub port: u16,
    pub url: String,
    /// Every request received.
    pub requests: Arc<AtomicUsize>,
    /// Requests answered 401.
    pub unauthorized: Arc<AtomicUsize>,
    stop: Arc<AtomicBool>,
    thread: Option<std::thread::JoinHandle<()>>,
}

impl HttpGit {
    pub fn start(remote: &BareRemote, token: &str) -> HttpGit {
        let listener = TcpListener::bind("127.0.0.1:0").expect("bind");
        let port = listener.local_addr().expect("addr").port();
        listener.set_nonblocking(true).expect("nonblocking");
        let expected = format!(
            "Basic {}",
            base64::engine::general_purpose::STANDARD.encode(format!("x-access-token:{token}"))
        );
        let requests = Arc::new(AtomicUsize::new(0));
        let unauthorized = Arc::new(AtomicUsize::new(0));
        let stop = Arc::new(AtomicBool::new(false));
        let root = remote.root.path().to_path_buf();
        let (r, u, s) = (requests.clone(), unauthorized.clone(), stop.clone());
        let thread = std::thread::spawn(move || {
            while !s.load(Ordering::SeqCst) {
                match listener.accept() {
                    Ok((stream, _)) => {
                        let (root, expected, r, u) =
                            (root.clone(), expected.clone(), r.clone(), u.clone());
                        std::thread::spawn(move || {
                            let _ = serve(stream, &root, &expected, &r, &u);
                        });
                    }
                    Err(_) => std::thread::sleep(Duration::from_millis(5)),
                }
            }
        });
        HttpGit {
            port,
            url: format!("http://127.0.0.1:{port}/remote.git"),
            requests,
            unauthorized,
            stop,
            thread: Some(thread),
        }
    }
}

impl Drop for HttpGit {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::SeqCst);
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

fn serve(
    stream: TcpStream,
    root: &Path,
    expected_auth: &str,
    requests: &AtomicUsize,
    unauthorized: &AtomicUsize,
) -> std::io::Result<()> {
    stream.set_nonblocking(false)?;
    stream.set_read_timeout(Some(Duration::from_secs(30)))?;
    let mut reader = BufReader::new(stream.try_clone()?);
    let mut out = stream;
    let mut line = String::new();
    reader.read_line(&mut line)?;
    let mut parts = line.split_whitespace();
    let method = parts.next().unwrap_or_default().to_string();
    let target = parts.next().unwrap_or_default().to_string();
    let mut headers: Vec<(String, String)> = Vec::new();
    loop {
        let mut h = String::new();
        reader.read_line(&mut h)?;
        let h = h.trim_end();
        if h.is_empty() {
            break;
        }
        if let Some((k, v)) = h.split_once(':') {
            headers.push((k.trim().to_ascii_lowercase(), v.trim().to_string()));
        }
    }
    let header = |name: &str| {
        headers
            .iter()
            .find(|(k, _)| k == name)
            .map(|(_, v)| v.clone())
    };
    let mut body = Vec::new();
    if header("transfer-encoding").is_some_and(|v| v.eq_ignore_ascii_case("chunked")) {
        loop {
            let mut size = String::new();
            reader.read_line(&mut size)?;
            let n = usize::from_str_radix(size.trim().split(';').next().unwrap_or("0"), 16)
                .unwrap_or(0);
            if n == 0 {
                let mut crlf = String::new();
                reader.read_line(&mut crlf)?;
                break;
            }
            let mut chunk = vec![0; n];
            reader.read_exact(&mut chunk)?;
            body.extend_from_slice(&chunk);
            let mut crlf = [0u8; 2];
            reader.read_exact(&mut crlf)?;
        }
    } else if let Some(n) = header("content-length").and_then(|v| v.parse::<usize>().ok()) {
        body.resize(n, 0);
        reader.read_exact(&mut body)?;
    }
    requests.fetch_add(1, Ordering::SeqCst);
    if header("authorization").as_deref() != Some(expected_auth) {
        unauthorized.fetch_add(1, Ordering::SeqCst);
        out.write_all(
            b"HTTP/1.1 401 Unauthorized\r\nWWW-Authenticate: Basic realm=\"git\"\r\nContent-Length: 0\r\nConnection: close\r\n\r\n",
        )?;
        return out.flush();
    }
    let (path, query) = target.split_once('?').unwrap_or((&target, ""));
    let mut cmd = Command::new("git");
    cmd.arg("http-backend")
        .env_clear()
        .env("PATH", std::env::var_os("PATH").unwrap_or_default())
        .env("GIT_PROJECT_ROOT", root)
        .env("GIT_HTTP_EXPORT_ALL", "1")
        .env("REMOTE_USER", "x-access-token")
        .env("REMOTE_ADDR", "127.0.0.1")
        .env("REQUEST_METHOD", &method)
        .env("PATH_INFO", path)
        .env("QUERY_STRING", query)
        .env("CONTENT_LENGTH", body.len().to_string())
        .env("GATEWAY_INTERFACE", "CGI/1.1")
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::null());
    if let Some(ct) = header("content-type") {
        cmd.env("CONTENT_TYPE", ct);
    }
    if let Some(ce) = header("content-encoding") {
        cmd.env("HTTP_CONTENT_ENCODING", ce);
    }
    if let Some(p) = header("git-protocol") {
        cmd.env("GIT_PROTOCOL", p);
    }
    let mut child = cmd.spawn()?;
    let mut stdin = child.stdin.take().expect("stdin");
    let writer = std::thread::spawn(move || {
        let _ = stdin.write_all(&body);
    });
    let mut cgi = Vec::new();
    child.stdout.take().expect("stdout").read_to_end(&mut cgi)?;
    let _ = writer.join();
    child.wait()?;
    let split = cgi
        .windows(4)
        .position(|w| w == b"\r\n\r\n")
        .map(|i| (i, 4))
        .or_else(|| cgi.windows(2).position(|w| w == b"\n\n").map(|i| (i, 2)));
    let (head, content) = match split {
        Some((i, n)) => (
            String::from_utf8_lossy(&cgi[..i]).to_string(),
            &cgi[i + n..],
        ),
        None => (String::new(), &cgi[..]),
    };
    let mut status = "200 OK".to_string();
    let mut response = Vec::new();
    let mut extra = String::new();
    for h in head.lines() {
        match h.split_once(':') {
            Some((k, v)) if k.eq_ignore_ascii_case("status") => status = v.trim().to_string(),
            Some(_) => {
                extra.push_str(h.trim_end());
                extra.push_str("\r\n");
            }
            None => {}
        }
    }
    write!(
        response,
        "HTTP/1.1 {status}\r\n{extra}Content-Length: {}\r\nConnection: close\r\n\r\n",
        content.len()
    )?;
    response.extend_from_slice(content);
    out.write_all(&response)?;
    out.flush()
}

/// Debian's sshd on a loopback port, as root, with its own host key and the test's client keys.
pub struct Sshd {
    child: Child,
    pub dir: tempfile::TempDir,
    pub port: u16,
    /// A key without passphrase, and one protected by [`Sshd::PASSPHRASE`].
    pub client_key: PathBuf,
    pub client_key_pp: PathBuf,
    /// A known_hosts file with the server's key under `[127.0.0.1]:port`.
    pub known_hosts: PathBuf,
}

impl Sshd {
    pub const PASSPHRASE: &'static str = "correct-horse-battery-staple";

    /// `None` (and a note on stderr) when this machine cannot run it: not root, or no sshd.
    pub fn start() -> Option<Sshd> {
        let sshd = Path::new("/usr/sbin/sshd");
        let uid = Command::new("id").arg("-u").output().ok()?;
        if !sshd.exists() || String::from_utf8_lossy(&uid.stdout).trim() != "0" {
            eprintln!(
                "skipping: sshd tests need root and /usr/sbin/sshd (scripts/install-deps.sh)"
            );
            return None;
        }
        let dir = tempfile::tempdir().expect("tmp");
        let d = dir.path();
        let keygen = |name: &str, pass: &str| {
            let st = Command::new("ssh-keygen")
                .args(["-q", "-t", "ed25519", "-N", pass, "-C", name, "-f"])
                .arg(d.join(name))
                .status()
                .expect("ssh-keygen");
            assert!(st.success());
        };
        keygen("host_key", "");
        keygen("client_key", "");
        keygen("client_key_pp", Self::PASSPHRASE);
        let read = |name: &str| std::fs::read_to_string(d.join(name)).expect("read key");
        std::fs::write(
            d.join("authorized_keys"),
            format!(
                "restrict {}restrict {}",
                read("client_key.pub"),
                read("client_key_pp.pub")
            ),
        )
        .expect("authorized_keys");
        let port = free_port();
        let config = format!(
            "Port {port}\nListenAddress 127.0.0.1\nHostKey {d}/host_key\nPidFile {d}/sshd.pid\n\
             AuthorizedKeysFile {d}/authorized_keys\nStrictModes no\nUsePAM no\n\
             PasswordAuthentication no\nKbdInteractiveAuthentication no\nPubkeyAuthentication yes\n\
             PermitRootLogin prohibit-password\nAllowUsers root\nLogLevel ERROR\n",
            d = d.display()
        );
        std::fs::write(d.join("sshd_config"), config).expect("config");
        // sshd's privilege separation directory.
        std::fs::create_dir_all("/run/sshd").expect("/run/sshd");
        let mut child = Command::new(sshd)
            .args(["-D", "-e", "-f"])
            .arg(d.join("sshd_config"))
            .stdout(Stdio::null())
            .stderr(std::fs::File::create(d.join("sshd.log")).expect("log"))
            .spawn()
            .expect("sshd");
        wait_for_port(port, &mut child, "sshd");
        let host_pub = read("host_key.pub");
        let mut fields = host_pub.split_whitespace();
        let (kt, blob) = (fields.next().expect("type"), fields.next().expect("blob"));
        let known_hosts = d.join("known_hosts");
        std::fs::write(&known_hosts, format!("[127.0.0.1]:{port} {kt} {blob}\n"))
            .expect("known_hosts");
        Some(Sshd {
            child,
            port,
            client_key: d.join("client_key"),
            client_key_pp: d.join("client_key_pp"),
            known_hosts,
            dir,
        })
    }

    pub fn url(&self, remote: &BareRemote) -> String {
        format!(
            "ssh://root@127.0.0.1:{}{}",
            self.port,
            remote.path().display()
        )
    }

    pub fn log(&self) -> String {
        std::fs::read_to_string(self.dir.path().join("sshd.log")).unwrap_or_default()
    }
}

impl Drop for Sshd {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}
