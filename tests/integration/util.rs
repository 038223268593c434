//! The harness: runs the real `socklab` binary (and nc/socat peers), feeds stdin from a
//! thread, collects stdout/stderr on threads, waits for readiness on a line of stderr with a
//! bounded poll, kills every child on drop and, on any failure, shows the command, its exit
//! status, stdout and stderr (after ripgrep's tests/util.rs and mio's tests/util).

use std::io::{Read, Write};
use std::net::SocketAddr;
use std::process::{Child, Command, ExitStatus, Stdio};
use std::sync::{Arc, Condvar, Mutex};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use sha2::{Digest, Sha256};

/// How long any single wait in these tests may take before the test fails.
pub(crate) const WAIT: Duration = Duration::from_secs(20);

/// The socklab binary under test.
pub(crate) const BIN: &str = env!("CARGO_BIN_EXE_socklab");

/// A `socklab ARGS…` command.
pub(crate) fn socklab(args: &[&str]) -> Command {
    let mut c = Command::new(BIN);
    c.args(args);
    c
}

/// Runs `socklab ARGS` to its end (stdin empty, no time bound: for runs that may take longer
/// than [`WAIT`], such as a whole lab) and expects exit 0; returns its stdout.
pub(crate) fn socklab_stdout(args: &[&str]) -> Vec<u8> {
    let out = socklab(args)
        .stdin(Stdio::null())
        .output()
        .expect("run socklab");
    assert!(out.status.success(), "socklab {args:?}: {out:?}");
    out.stdout
}

/// Whether `prog` can be run (found on PATH).
pub(crate) fn have(prog: &str) -> bool {
    std::env::var_os("PATH")
        .is_some_and(|path| std::env::split_paths(&path).any(|dir| dir.join(prog).is_file()))
}

/// Held by tests that load the machine's own loopback with thousands of connections, and by
/// the lab tests that run experiments on that loopback (the unprivileged fallback): the
/// experiments observe ports and TIME-WAIT states that a flood running beside them would
/// share (in CI a rebind met another test's connection on the same port).
pub(crate) fn loopback_exclusive() -> std::sync::MutexGuard<'static, ()> {
    static LOCK: Mutex<()> = Mutex::new(());
    LOCK.lock().unwrap_or_else(|e| e.into_inner())
}

/// Whether nftables can be used; prints why a test skips when not.
pub(crate) fn have_nft() -> bool {
    let ok = Command::new("nft")
        .arg("--version")
        .output()
        .is_ok_and(|o| o.status.success());
    if !ok {
        eprintln!("skipped: nft (nftables) is not installed");
    }
    ok
}

/// Runs each `nft` command (split on spaces) inside `ns`, asserting that each succeeds.
pub(crate) fn nft<S: AsRef<str>>(ns: &socklab::netns::Netns, cmds: &[S]) {
    for cmd in cmds {
        let cmd = cmd.as_ref();
        let out = ns
            .command("nft")
            .args(cmd.split(' '))
            .output()
            .expect("nft");
        assert!(
            out.status.success(),
            "nft {cmd}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
    }
}

/// What a child's stdin gets.
pub(crate) enum Input {
    /// Nothing: stdin is /dev/null (immediate EOF).
    Null,
    /// These bytes, then EOF.
    Bytes(Vec<u8>),
    /// `len` pseudo-random bytes from `seed`, then EOF.
    Random { len: u64, seed: u64 },
    /// A pipe the test keeps open: stdin never ends until the child exits.
    Open,
    /// This file (not a pipe: the relay's sendfile path instead of splice).
    File(std::path::PathBuf),
    /// These bytes through a Unix stream socket, then EOF: neither a pipe nor a file (the
    /// relay's read + send path, as for a terminal).
    Stream(Vec<u8>),
}

/// What to do with a child's stdout.
#[derive(Clone, Copy, PartialEq, Eq)]
pub(crate) enum Output {
    /// Keep it all (small outputs).
    Keep,
    /// Only count and hash it (large transfers).
    Hash,
}

/// A buffer filled by a reader thread, with a condvar to wait for new data.
#[derive(Default)]
struct Shared {
    data: Mutex<(Vec<u8>, bool)>,
    cond: Condvar,
}

impl Shared {
    fn text(&self) -> String {
        String::from_utf8_lossy(&self.data.lock().unwrap().0).into_owned()
    }
}

/// Length and SHA-256 of a byte stream.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Digested {
    /// Bytes seen.
    pub(crate) len: u64,
    /// Their SHA-256, hex.
    pub(crate) sha256: String,
}

fn hex(d: &[u8]) -> String {
    d.iter().map(|b| format!("{b:02x}")).collect()
}

/// A running child; killed on drop.
pub(crate) struct Proc {
    desc: String,
    child: Child,
    stdout: Arc<Shared>,
    stderr: Arc<Shared>,
    out_thread: Option<JoinHandle<Digested>>,
    err_thread: Option<JoinHandle<Digested>>,
    in_thread: Option<JoinHandle<Digested>>,
    held_stdin: Option<std::process::ChildStdin>,
    status: Option<ExitStatus>,
}

/// Starts `cmd` with `input` on stdin and stdout handled as `output`.
pub(crate) fn spawn(cmd: Command, input: Input, output: Output) -> Proc {
    spawn_to(cmd, input, output, None)
}

/// Like [`spawn`], but the child's stdout is `stdout` (a file such as /dev/full, a pipe whose
/// reader is gone) instead of a pipe the harness reads; [`Finished::stdout`] is then empty.
pub(crate) fn spawn_with_stdout(cmd: Command, input: Input, stdout: Stdio) -> Proc {
    spawn_to(cmd, input, Output::Keep, Some(stdout))
}

fn spawn_to(mut cmd: Command, input: Input, output: Output, stdout_to: Option<Stdio>) -> Proc {
    let desc = format!("{cmd:?}");
    cmd.stdin(match &input {
        Input::Null => Stdio::null(),
        Input::File(path) => Stdio::from(std::fs::File::open(path).expect("open the stdin file")),
        Input::Stream(_) => Stdio::null(),
        _ => Stdio::piped(),
    });
    let mut stream_writer = None;
    if let Input::Stream(bytes) = &input {
        let (ours, theirs) = std::os::unix::net::UnixStream::pair().expect("socketpair");
        cmd.stdin(Stdio::from(std::os::fd::OwnedFd::from(theirs)));
        let bytes = bytes.clone();
        stream_writer = Some(std::thread::spawn(move || {
            let mut ours = ours;
            let _ = ours.write_all(&bytes);
            digest(&bytes)
        }));
    }
    cmd.stdout(stdout_to.unwrap_or_else(Stdio::piped))
        .stderr(Stdio::piped());
    let mut child = cmd
        .spawn()
        .unwrap_or_else(|e| panic!("cannot start {desc}: {e}"));
    // The parent's copy of a given stdout is closed now (the Command owned it): a pipe's
    // reader sees EOF when the child is done.
    drop(cmd);
    let stdout = Arc::new(Shared::default());
    let stderr = Arc::new(Shared::default());
    let err = child.stderr.take().expect("piped stderr");
    let out_thread = match child.stdout.take() {
        Some(out) => {
            let so = stdout.clone();
            std::thread::spawn(move || pump(out, &so, output == Output::Keep))
        }
        None => {
            let so = stdout.clone();
            std::thread::spawn(move || pump(std::io::empty(), &so, true))
        }
    };
    let se = stderr.clone();
    let err_thread = std::thread::spawn(move || pump(err, &se, true));
    let mut held_stdin = None;
    let in_thread = child.stdin.take().and_then(|mut stdin| match input {
        Input::Bytes(b) => Some(std::thread::spawn(move || {
            // The child may exit early (a refused connect): a broken pipe is its business.
            let _ = stdin.write_all(&b);
            digest(&b)
        })),
        Input::Random { len, seed } => Some(std::thread::spawn(move || {
            let mut h = Sha256::new();
            let mut rng = seed | 1;
            let mut buf = vec![0u8; 1 << 20];
            let mut left = len;
            while left > 0 {
                let n = left.min(buf.len() as u64) as usize;
                fill_random(&mut buf[..n], &mut rng);
                h.update(&buf[..n]);
                if stdin.write_all(&buf[..n]).is_err() {
                    break;
                }
                left -= n as u64;
            }
            Digested {
                len: len - left,
                sha256: hex(&h.finalize()),
            }
        })),
        Input::Open => {
            held_stdin = Some(stdin);
            None
        }
        Input::Null | Input::File(_) | Input::Stream(_) => None,
    });
    let in_thread = in_thread.or(stream_writer);
    Proc {
        desc,
        child,
        stdout,
        stderr,
        out_thread: Some(out_thread),
        err_thread: Some(err_thread),
        in_thread,
        held_stdin,
        status: None,
    }
}

/// xorshift64*: cheap pseudo-random bytes, so a transfer's content is not a repeated pattern.
fn fill_random(buf: &mut [u8], state: &mut u64) {
    for chunk in buf.chunks_mut(8) {
        *state ^= *state >> 12;
        *state ^= *state << 25;
        *state ^= *state >> 27;
        let v = state.wrapping_mul(0x2545_f491_4f6c_dd1d).to_le_bytes();
        chunk.copy_from_slice(&v[..chunk.len()]);
    }
}

/// Length and SHA-256 of `b`.
pub(crate) fn digest(b: &[u8]) -> Digested {
    Digested {
        len: b.len() as u64,
        sha256: hex(&Sha256::digest(b)),
    }
}

fn pump(mut r: impl Read, into: &Shared, keep: bool) -> Digested {
    let mut h = Sha256::new();
    let mut len = 0u64;
    let mut buf = vec![0u8; 1 << 20];
    loop {
        match r.read(&mut buf) {
            Ok(0) | Err(_) => break,
            Ok(n) => {
                len += n as u64;
                if keep {
                    into.data.lock().unwrap().0.extend_from_slice(&buf[..n]);
                    into.cond.notify_all();
                } else {
                    h.update(&buf[..n]);
                }
            }
        }
    }
    into.data.lock().unwrap().1 = true;
    into.cond.notify_all();
    Digested {
        len,
        sha256: hex(&h.finalize()),
    }
}

impl Proc {
    /// Everything about this child, for a failure message.
    pub(crate) fn show(&self) -> String {
        format!(
            "command: {}\nstatus: {:?}\n--- stdout ---\n{}\n--- stderr ---\n{}",
            self.desc,
            self.status,
            self.stdout.text(),
            self.stderr.text()
        )
    }

    /// Fails the test with `why` and everything about this child.
    pub(crate) fn fail(&self, why: &str) -> ! {
        panic!("{why}\n{}", self.show())
    }

    /// Waits (bounded) until a stderr line contains `needle`; returns the text after it on
    /// that line.
    pub(crate) fn wait_line(&self, needle: &str) -> String {
        let deadline = Instant::now() + WAIT;
        let mut g = self.stderr.data.lock().unwrap();
        loop {
            let text = String::from_utf8_lossy(&g.0).into_owned();
            if let Some(line) = text.lines().find(|l| l.contains(needle))
                && text.contains(&format!("{line}\n"))
            {
                let at = line.find(needle).unwrap() + needle.len();
                return line[at..].trim().to_string();
            }
            let now = Instant::now();
            if g.1 || now >= deadline {
                drop(g);
                self.fail(&format!("no stderr line with {needle:?}"));
            }
            g = self.stderr.cond.wait_timeout(g, deadline - now).unwrap().0;
        }
    }

    /// Waits for the `-v` readiness line ("listening on ADDR" or "bound to ADDR") and returns
    /// the address the child really got (port 0 resolved).
    pub(crate) fn ready(&self) -> SocketAddr {
        let deadline = Instant::now() + WAIT;
        loop {
            let text = self.stderr.text();
            // Only whole lines: a half-written "127.0.0.1:4" would parse as the wrong port.
            let whole = &text[..text.rfind('\n').map_or(0, |i| i + 1)];
            for line in whole.lines() {
                for key in ["listening on ", "bound to "] {
                    // Text ("socklab: bound to ADDR") or JSON ({"message":"bound to ADDR"}).
                    if let Some(rest) = line.split(key).nth(1)
                        && let Ok(a) = rest.split('"').next().unwrap_or("").trim().parse()
                    {
                        return a;
                    }
                }
            }
            let closed = self.stderr.data.lock().unwrap().1;
            if closed || Instant::now() >= deadline {
                self.fail("the child never said where it listens (-v readiness line)");
            }
            let g = self.stderr.data.lock().unwrap();
            drop(self.stderr.cond.wait_timeout(g, Duration::from_millis(50)));
        }
    }

    /// Waits (bounded) for stdout to contain at least `n` bytes.
    pub(crate) fn wait_stdout(&self, n: usize) {
        let deadline = Instant::now() + WAIT;
        let mut g = self.stdout.data.lock().unwrap();
        while g.0.len() < n {
            let now = Instant::now();
            if g.1 || now >= deadline {
                drop(g);
                self.fail(&format!("stdout never reached {n} bytes"));
            }
            g = self.stdout.cond.wait_timeout(g, deadline - now).unwrap().0;
        }
    }

    /// Waits (bounded) for the child to exit; returns its status.
    pub(crate) fn wait(&mut self) -> ExitStatus {
        let deadline = Instant::now() + WAIT;
        loop {
            if let Some(s) = self.child.try_wait().unwrap() {
                self.status = Some(s);
                return s;
            }
            if Instant::now() >= deadline {
                let _ = self.child.kill();
                self.fail("the child did not exit in time (killed)");
            }
            std::thread::sleep(Duration::from_millis(10));
        }
    }

    /// Waits for the exit and the output threads; returns the whole stdout.
    pub(crate) fn finish(&mut self) -> Finished {
        let status = self.wait();
        let out = self.out_thread.take().map(join_bounded);
        self.err_thread.take().map(join_bounded);
        let input = self
            .in_thread
            .take()
            .and_then(|t| t.is_finished().then(|| t.join().expect("stdin thread")));
        let stdout = self.stdout.data.lock().unwrap().0.clone();
        Finished {
            status,
            stdout,
            stderr: self.stderr.text(),
            stdout_digest: out.unwrap_or_else(|| digest(b"")),
            stdin_digest: input,
            shown: self.show(),
        }
    }

    /// Waits for exit and asserts the exit code.
    pub(crate) fn expect_code(&mut self, code: i32) -> Finished {
        let f = self.finish();
        if f.status.code() != Some(code) {
            panic!("expected exit code {code}\n{}", f.shown);
        }
        f
    }

    /// Writes to a stdin opened with [`Input::Open`].
    pub(crate) fn write_stdin(&mut self, b: &[u8]) {
        let w = self
            .held_stdin
            .as_mut()
            .expect("stdin opened with Input::Open");
        w.write_all(b).expect("write to the child's stdin");
        w.flush().expect("flush the child's stdin");
    }

    /// Closes a stdin opened with [`Input::Open`] (the child sees EOF).
    pub(crate) fn close_stdin(&mut self) {
        self.held_stdin = None;
    }

    /// The child's process id (for /proc/PID/status).
    pub(crate) fn pid(&self) -> u32 {
        self.child.id()
    }

    /// Sends SIGINT (Ctrl-C).
    pub(crate) fn interrupt(&self) {
        let pid = nix::unistd::Pid::from_raw(self.child.id() as i32);
        let _ = nix::sys::signal::kill(pid, nix::sys::signal::Signal::SIGINT);
    }

    /// The child's stdout so far, as text.
    pub(crate) fn stdout_text(&self) -> String {
        self.stdout.text()
    }

    /// The child's stderr so far.
    pub(crate) fn stderr(&self) -> String {
        self.stderr.text()
    }
}

fn join_bounded<T>(t: JoinHandle<T>) -> T {
    let deadline = Instant::now() + WAIT;
    while !t.is_finished() {
        assert!(Instant::now() < deadline, "an output thread did not end");
        std::thread::sleep(Duration::from_millis(5));
    }
    t.join().expect("output thread")
}

impl Drop for Proc {
    fn drop(&mut self) {
        if self.status.is_none() {
            let _ = self.child.kill();
            let _ = self.child.wait();
        }
        if std::thread::panicking() {
            eprintln!("--- child at the time of the failure ---\n{}", self.show());
        }
    }
}

/// A finished child.
pub(crate) struct Finished {
    /// Its exit status.
    pub(crate) status: ExitStatus,
    /// Its stdout, when kept ([`Output::Keep`]).
    pub(crate) stdout: Vec<u8>,
    /// Its stderr.
    pub(crate) stderr: String,
    /// Length and hash of its stdout.
    pub(crate) stdout_digest: Digested,
    /// Length and hash of what was written to its stdin, once that thread ended.
    pub(crate) stdin_digest: Option<Digested>,
    /// Everything about it, for failure messages.
    pub(crate) shown: String,
}

impl Finished {
    /// stdout as text.
    pub(crate) fn out(&self) -> String {
        String::from_utf8_lossy(&self.stdout).into_owned()
    }

    /// Asserts `cond`, showing everything about the child otherwise.
    pub(crate) fn check(&self, cond: bool, what: &str) {
        if !cond {
            panic!("{what}\n{}", self.shown);
        }
    }
}

/// One address family for tests that run on both.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Fam {
    /// The loopback address, e.g. `127.0.0.1`.
    pub(crate) host: &'static str,
    /// `-4` or `-6`.
    pub(crate) flag: &'static str,
}

impl Fam {
    /// `HOST:PORT` with brackets for IPv6.
    pub(crate) fn addr(&self, port: u16) -> String {
        if self.host.contains(':') {
            format!("[{}]:{port}", self.host)
        } else {
            format!("{}:{port}", self.host)
        }
    }

    /// The loopback address with port 0 (the kernel picks one).
    pub(crate) fn any_port(&self) -> String {
        self.addr(0)
    }
}

/// IPv4 loopback.
pub(crate) const V4: Fam = Fam {
    host: "127.0.0.1",
    flag: "-4",
};

/// IPv6 loopback.
pub(crate) const V6: Fam = Fam {
    host: "::1",
    flag: "-6",
};

/// Runs `body` on 127.0.0.1 and on ::1.
pub(crate) fn on_both(body: impl Fn(Fam)) {
    for fam in [V4, V6] {
        body(fam);
    }
}

/// Starts a socklab server (with `-v` added) and waits until it says where it listens.
pub(crate) fn server(args: &[&str], input: Input, output: Output) -> (Proc, SocketAddr) {
    let mut all = args.to_vec();
    all.push("-v");
    let p = spawn(socklab(&all), input, output);
    let addr = p.ready();
    (p, addr)
}

/// A UDP port nobody uses right now on `fam`'s loopback (for tests that need a port known
/// before the process binds it, or a closed one to be refused by). See [`free_port`].
pub(crate) fn free_udp_port(fam: Fam) -> u16 {
    free_port(|p| std::net::UdpSocket::bind(fam.addr(p)).is_ok())
}

/// A TCP port nobody uses right now on `fam`'s loopback. See [`free_port`].
pub(crate) fn free_tcp_port(fam: Fam) -> u16 {
    free_port(|p| std::net::TcpListener::bind(fam.addr(p)).is_ok())
}

/// A port that `bindable` accepts, taken from just below the kernel's ephemeral range
/// (net.ipv4.ip_local_port_range): the kernel never hands those out for port 0, so between our
/// check and the child's bind no test that binds port 0 can take it. Tests pick from a
/// pseudo-random start so concurrent ones rarely try the same port.
fn free_port(bindable: impl Fn(u16) -> bool) -> u16 {
    use std::sync::atomic::{AtomicU32, Ordering};
    static NEXT: AtomicU32 = AtomicU32::new(0);
    let low: u32 = std::fs::read_to_string("/proc/sys/net/ipv4/ip_local_port_range")
        .ok()
        .and_then(|s| s.split_whitespace().next()?.parse().ok())
        .unwrap_or(32768);
    let span = low.saturating_sub(10_000).clamp(1, 10_000);
    let seed = std::process::id().wrapping_mul(7919)
        ^ std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| d.subsec_nanos());
    for _ in 0..span {
        let n = NEXT.fetch_add(1, Ordering::Relaxed);
        let port = low - 1 - (seed.wrapping_add(n.wrapping_mul(7)) % span);
        if let Ok(p) = u16::try_from(port) {
            if bindable(p) {
                return p;
            }
        }
    }
    panic!("no free port below the ephemeral range {low}");
}

/// A copy of the binary uid 65534 can run, in a world-readable directory of its own (the build
/// tree may sit in a directory other users cannot enter, such as a `mktemp -d` clone), removed
/// on drop.
pub(crate) struct NobodyCopy {
    dir: std::path::PathBuf,
}

impl NobodyCopy {
    pub(crate) fn new(tag: &str) -> Self {
        let dir = std::env::temp_dir().join(format!("socklab-nobody-{tag}-{}", std::process::id()));
        std::fs::create_dir_all(&dir).expect("create a directory for the unprivileged copy");
        let exe = dir.join("socklab");
        std::fs::copy(BIN, &exe).expect("copy the binary");
        for p in [&dir, &exe] {
            std::fs::set_permissions(p, std::os::unix::fs::PermissionsExt::from_mode(0o755))
                .expect("make it readable for uid 65534");
        }
        Self { dir }
    }

    /// The copy's path.
    pub(crate) fn exe(&self) -> std::path::PathBuf {
        self.dir.join("socklab")
    }
}

impl Drop for NobodyCopy {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}
