//! Simulated machines for end-to-end tests: each has its own HOME, Claude Code dir and tool home
//! under one temporary root, and runs the real binary with a cleared environment.
#![allow(dead_code)]

pub mod messages_api;
pub mod real_claude;
pub mod windows;

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

use serde_json::{Value, json};

pub struct World {
    pub root: tempfile::TempDir,
}

impl World {
    pub fn new() -> Self {
        World {
            root: tempfile::Builder::new()
                .prefix("ccsync-e2e-")
                .tempdir()
                .unwrap(),
        }
    }

    pub fn path(&self) -> &Path {
        self.root.path()
    }

    /// A machine named `name` with HOME at `<root>/<name>/home`.
    pub fn machine(&self, name: &str) -> Machine {
        self.new_machine(name, false)
    }

    /// A Windows machine (`ccsync.exe` under Wine, see [`windows`]) named `name`, its profile
    /// folder at `<root>/<name>/home` (`Z:\…\<name>\home` to it), or `None` when Wine or the
    /// Windows build is missing and not required (the test then has nothing to do).
    pub fn windows_machine(&self, name: &str) -> Option<Machine> {
        windows::wine()?;
        let m = self.new_machine(name, true);
        windows::install_git(&m.bin);
        Some(m)
    }

    fn new_machine(&self, name: &str, windows: bool) -> Machine {
        let base = self.root.path().join(name);
        let home = base.join("home");
        let claude = home.join(".claude");
        let tool = home.join(".claude-session-sync");
        let bin = base.join("bin");
        std::fs::create_dir_all(&claude).unwrap();
        std::fs::create_dir_all(&bin).unwrap();
        Machine {
            name: name.to_string(),
            home,
            claude,
            tool,
            bin,
            columns: None,
            git_config: None,
            windows,
        }
    }
}

pub struct Machine {
    pub name: String,
    pub home: PathBuf,
    pub claude: PathBuf,
    pub tool: PathBuf,
    /// Put first on PATH: fake `claude`, fake `gh`.
    pub bin: PathBuf,
    pub columns: Option<usize>,
    /// A global git config file (default: none).
    pub git_config: Option<PathBuf>,
    /// A Windows machine: `ccsync.exe` under Wine (see [`windows`]).
    pub windows: bool,
}

pub fn bin_path() -> PathBuf {
    PathBuf::from(env!("CARGO_BIN_EXE_ccsync"))
}

impl Machine {
    /// The ccsync command for this machine, with a cleared, hermetic environment.
    pub fn cmd(&self) -> Command {
        if self.windows {
            return windows::machine_command(self);
        }
        let mut c = Command::new(bin_path());
        c.env_clear();
        let path = format!(
            "{}:{}",
            self.bin.display(),
            std::env::var("PATH").unwrap_or_default()
        );
        c.env("PATH", path)
            .env("HOME", &self.home)
            .env("CLAUDE_CONFIG_DIR", &self.claude)
            .env("CCSYNC_HOME", &self.tool)
            .env(
                "GIT_CONFIG_GLOBAL",
                self.git_config.as_deref().unwrap_or(Path::new("/dev/null")),
            )
            .env("GIT_CONFIG_NOSYSTEM", "1")
            .env("GIT_AUTHOR_NAME", "test")
            .env("GIT_AUTHOR_EMAIL", "test@example.com")
            .env("GIT_COMMITTER_NAME", "test")
            .env("GIT_COMMITTER_EMAIL", "test@example.com")
            .env("LANG", "C.UTF-8")
            .env("TZ", "UTC")
            // A cheap scrypt for passphrases (age's default takes a second each).
            .env("CCSYNC_SCRYPT_LOG_N", "10");
        if let Some(w) = self.columns {
            c.env("COLUMNS", w.to_string());
        }
        c
    }

    /// Run ccsync with `args`, returning its output whatever the exit status.
    pub fn run(&self, args: &[&str]) -> Output {
        self.cmd().args(args).output().unwrap()
    }

    /// Run ccsync and insist on success; returns stdout.
    pub fn ok(&self, args: &[&str]) -> String {
        let out = self.run(args);
        assert!(
            out.status.success(),
            "ccsync {args:?} on {} failed ({}):\nstdout: {}\nstderr: {}",
            self.name,
            out.status,
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
        String::from_utf8(out.stdout).unwrap()
    }

    /// Run ccsync with `--format json` appended and parse stdout.
    pub fn json(&self, args: &[&str]) -> Value {
        let mut a = args.to_vec();
        a.extend(["--format", "json"]);
        let s = self.ok(&a);
        serde_json::from_str(&s).unwrap_or_else(|e| panic!("not JSON ({e}): {s}"))
    }

    /// A host path as this machine's ccsync spells it (`Z:\tmp\…` on a Windows machine).
    pub fn native(&self, p: &Path) -> String {
        if self.windows
            && let Some(wine) = windows::wine()
        {
            return wine.win(p);
        }
        p.to_str().unwrap().to_string()
    }

    /// This machine's path separator.
    pub fn sep(&self) -> &'static str {
        if self.windows { "\\" } else { "/" }
    }

    /// `projects/<ENC(cwd)>/<id>.jsonl` on this machine.
    pub fn transcript_path(&self, cwd: &str, id: &str) -> PathBuf {
        self.claude
            .join("projects")
            .join(enc(cwd))
            .join(format!("{id}.jsonl"))
    }

    /// Write a transcript (raw bytes) for session `id` in `cwd`.
    pub fn write_transcript(&self, cwd: &str, id: &str, bytes: &[u8]) -> PathBuf {
        let p = self.transcript_path(cwd, id);
        std::fs::create_dir_all(p.parent().unwrap()).unwrap();
        std::fs::write(&p, bytes).unwrap();
        p
    }
}

/// Claude Code's folder name for a short cwd.
pub fn enc(cwd: &str) -> String {
    cwd.encode_utf16()
        .map(|u| {
            if u < 0x80 && (u as u8).is_ascii_alphanumeric() {
                u as u8 as char
            } else {
                '-'
            }
        })
        .collect()
}

/// A user line as Claude Code writes it.
pub fn user_line(
    sid: &str,
    cwd: &str,
    uuid: &str,
    parent: Option<&str>,
    ts: &str,
    text: &str,
) -> String {
    serde_json::to_string(&json!({
        "parentUuid": parent, "isSidechain": false, "userType": "external", "cwd": cwd,
        "sessionId": sid, "version": "2.1.81", "gitBranch": "main", "type": "user",
        "message": {"role": "user", "content": text}, "uuid": uuid, "timestamp": ts
    }))
    .unwrap()
}

/// An assistant line that mentions a file under `cwd` in a tool call.
pub fn assistant_line(
    sid: &str,
    cwd: &str,
    uuid: &str,
    parent: &str,
    ts: &str,
    file: &str,
) -> String {
    serde_json::to_string(&json!({
        "parentUuid": parent, "isSidechain": false, "userType": "external", "cwd": cwd,
        "sessionId": sid, "version": "2.1.81", "gitBranch": "main", "type": "assistant",
        "message": {"role": "assistant", "content": [
            {"type": "tool_use", "id": format!("toolu_{uuid}"), "name": "Read", "input": {"file_path": file}}
        ]},
        "uuid": uuid, "timestamp": ts
    }))
    .unwrap()
}

/// The timestamp `minute` minutes after a fixed point one day before now (recent enough that
/// Claude Code's clean-up would keep it).
pub fn ts_at(minute: u32) -> String {
    let base = chrono::Utc::now()
        .date_naive()
        .and_hms_opt(0, 0, 0)
        .unwrap()
        .and_utc()
        - chrono::Duration::days(1);
    (base + chrono::Duration::minutes(minute as i64))
        .to_rfc3339_opts(chrono::SecondsFormat::Millis, true)
}

/// A small conversation of `turns` user/assistant pairs, newline-terminated.
pub fn conversation(sid: &str, cwd: &str, sep: &str, turns: usize, start_minute: u32) -> String {
    let mut out = String::new();
    let mut parent: Option<String> = None;
    for t in 0..turns {
        let m = start_minute + t as u32;
        let ts = ts_at(m);
        let u = format!("{sid}-u{t}");
        let a = format!("{sid}-a{t}");
        out += &user_line(
            sid,
            cwd,
            &u,
            parent.as_deref(),
            &ts,
            &format!("prompt {t} about {cwd}{sep}src"),
        );
        out.push('\n');
        out += &assistant_line(sid, cwd, &a, &u, &ts, &format!("{cwd}{sep}src{sep}main.rs"));
        out.push('\n');
        parent = Some(a);
    }
    out
}

impl Machine {
    /// `init` with these extra arguments on a local bare remote.
    pub fn init(&self, remote: &Path, extra: &[&str]) -> String {
        let remote = self.native(remote);
        let mut args = vec![
            "init",
            "--yes",
            "--machine-id",
            &self.name,
            "--remote",
            &remote,
        ];
        args.extend_from_slice(extra);
        self.ok(&args)
    }

    /// Write an executable script into this machine's bin folder.
    pub fn script(&self, name: &str, body: &str) -> PathBuf {
        let p = self.bin.join(name);
        std::fs::write(&p, format!("#!/bin/sh\n{body}")).unwrap();
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt;
            std::fs::set_permissions(&p, std::fs::Permissions::from_mode(0o755)).unwrap();
        }
        p
    }

    pub fn config(&self) -> Value {
        serde_json::from_slice(&std::fs::read(self.tool.join("config.json")).unwrap()).unwrap()
    }
}

/// The bytes of a stored file on the branch `main` of a bare repository, by its stored path
/// (as git has it: a compressed segment's blob is its zstd frame).
pub fn repo_blob(repo: &Path, stored: &str) -> Option<Vec<u8>> {
    let out = Command::new("git")
        .arg("--git-dir")
        .arg(repo)
        .args(["show", &format!("main:{stored}")])
        .env("GIT_CONFIG_GLOBAL", "/dev/null")
        .output()
        .unwrap();
    out.status.success().then_some(out.stdout)
}

/// The text of a file on the branch `main` of a bare repository, by its logical path: a log
/// segment of a version-3 repository, stored compressed as `NNNNNN.<size>.jsonl.zst`, is found
/// under that name and decompressed.
pub fn repo_file(repo: &Path, path: &str) -> Option<String> {
    let stored = ccsync::store::layout::is_segment_path(path)
        .then(|| {
            repo_stored_paths(repo)
                .into_iter()
                .find(|s| ccsync::store::objects::unpacked_path(s).is_some_and(|(l, _)| l == path))
        })
        .flatten()
        .unwrap_or_else(|| path.to_string());
    let bytes = repo_blob(repo, &stored)?;
    let bytes = match ccsync::store::objects::unpacked_path(&stored) {
        Some(_) => ccsync::store::objects::unpack(&bytes).unwrap(),
        None => bytes,
    };
    Some(String::from_utf8(bytes).unwrap())
}

/// Every object of a bare repository as `git cat-file --batch-all-objects --batch` gives it
/// (blobs, trees, commits), and after it the content of every blob that is a zstd frame (a
/// compressed segment of a version-3 repository), decompressed: what the host holds, readable.
pub fn repo_all_objects(repo: &Path) -> Vec<u8> {
    let out = Command::new("git")
        .arg("--git-dir")
        .arg(repo)
        .args(["cat-file", "--batch-all-objects", "--batch"])
        .env("GIT_CONFIG_GLOBAL", "/dev/null")
        .output()
        .unwrap();
    assert!(out.status.success());
    let raw = out.stdout;
    let mut unpacked = Vec::new();
    let mut at = 0;
    while at < raw.len() {
        let nl = at + raw[at..].iter().position(|b| *b == b'\n').unwrap();
        let header = String::from_utf8_lossy(&raw[at..nl]).into_owned();
        let mut f = header.split_whitespace();
        let (_, kind, size) = (f.next(), f.next(), f.next());
        let size: usize = size.unwrap().parse().unwrap();
        let body = &raw[nl + 1..nl + 1 + size];
        if kind == Some("blob") && body.starts_with(&[0x28, 0xb5, 0x2f, 0xfd]) {
            unpacked.extend(ccsync::store::objects::unpack(body).unwrap());
        }
        at = nl + 1 + size + 1;
    }
    let mut all = raw;
    all.extend(unpacked);
    all
}

/// Every file path on `main` of a bare repository, as stored.
pub fn repo_stored_paths(repo: &Path) -> Vec<String> {
    let out = Command::new("git")
        .arg("--git-dir")
        .arg(repo)
        .args(["ls-tree", "-r", "--name-only", "main"])
        .env("GIT_CONFIG_GLOBAL", "/dev/null")
        .output()
        .unwrap();
    String::from_utf8(out.stdout)
        .unwrap()
        .lines()
        .map(str::to_string)
        .collect()
}

/// Every file path on `main` of a bare repository, logical (a compressed segment by its
/// segment name), sorted.
pub fn repo_paths(repo: &Path) -> Vec<String> {
    let mut paths: Vec<String> = repo_stored_paths(repo)
        .into_iter()
        .map(|s| match ccsync::store::objects::unpacked_path(&s) {
            Some((l, _)) => l,
            None => s,
        })
        .collect();
    paths.sort();
    paths
}

pub fn stderr(o: &Output) -> String {
    String::from_utf8_lossy(&o.stderr).into_owned()
}
pub fn stdout(o: &Output) -> String {
    String::from_utf8_lossy(&o.stdout).into_owned()
}

/// Add a commit to `main` of a bare repository with `git fast-import`: `(mode, path, content)`
/// entries, on top of the current `main` when `on_top`.
pub fn fast_import_commit(remote: &Path, entries: &[(&str, &str, &[u8])], on_top: bool) {
    let mut stream: Vec<u8> = Vec::new();
    for (i, (_, _, data)) in entries.iter().enumerate() {
        stream
            .extend_from_slice(format!("blob\nmark :{}\ndata {}\n", i + 1, data.len()).as_bytes());
        stream.extend_from_slice(data);
        stream.push(b'\n');
    }
    stream.extend_from_slice(
        b"commit refs/heads/main\ncommitter t <t@x> 1700000000 +0000\ndata 4\ntest\n",
    );
    if on_top {
        stream.extend_from_slice(b"from refs/heads/main^0\n");
    }
    for (i, (mode, path, _)) in entries.iter().enumerate() {
        stream.extend_from_slice(format!("M {mode} :{} {path}\n", i + 1).as_bytes());
    }
    stream.push(b'\n');
    let mut child = Command::new("git")
        .arg("--git-dir")
        .arg(remote)
        .args(["fast-import", "--quiet"])
        .env("GIT_CONFIG_GLOBAL", "/dev/null")
        .stdin(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    use std::io::Write;
    child.stdin.take().unwrap().write_all(&stream).unwrap();
    assert!(child.wait().unwrap().success());
}

impl Machine {
    /// Install a fake `claude` on this machine's PATH. It records its arguments and working
    /// directory in `bin/claude.log`, appends `bin/claude.append` turns (default 1) to the
    /// session it resumes (or creates a new session when started without `--resume`), runs
    /// `bin/claude.during` if present, sleeps `bin/claude.sleep` seconds and exits with
    /// `bin/claude.exit`.
    pub fn fake_claude(&self) {
        if self.windows {
            // claude.exe: only the log (JSON lines), and one turn appended to a resumed session.
            windows::install_fake_claude(&self.bin);
            return;
        }
        let b = self.bin.display();
        let name = &self.name;
        let body = format!(
            r#"b="{b}"
echo "start $$ $(date +%s.%N) argv=$* cwd=$(pwd)" >> "$b/claude.log"
sid=""
if [ "$1" = "--resume" ]; then sid="$2"; fi
new=0
if [ -z "$sid" ]; then sid=$(cat /proc/sys/kernel/random/uuid); new=1; fi
enc=$(python3 "$b/enc.py" "$(pwd -P)")
f="$CLAUDE_CONFIG_DIR/projects/$enc/$sid.jsonl"
mkdir -p "$CLAUDE_CONFIG_DIR/projects/$enc" "$CLAUDE_CONFIG_DIR/sessions"
printf '{{"pid":%s,"sessionId":"%s","cwd":"%s"}}' "$$" "$sid" "$(pwd -P)" > "$CLAUDE_CONFIG_DIR/sessions/$$.json"
if [ -f "$b/claude.hooks" ]; then python3 "$b/run_hooks.py" SessionStart "$sid"; fi
if [ -f "$b/claude.during" ]; then sh "$b/claude.during" "$sid"; fi
n=$(cat "$b/claude.append" 2>/dev/null || echo 1)
i=0
while [ "$i" -lt "$n" ]; do
  ts=$(date -u +%Y-%m-%dT%H:%M:%S.000Z)
  printf '{{"type":"user","uuid":"fake-{name}-%s-%s","cwd":"%s","sessionId":"%s","timestamp":"%s","message":{{"role":"user","content":"turn %s from {name}"}}}}\n' "$$" "$i" "$(pwd -P)" "$sid" "$ts" "$i" >> "$f"
  i=$((i+1))
done
sleep "$(cat "$b/claude.sleep" 2>/dev/null || echo 0)"
if [ -f "$b/claude.hooks" ]; then python3 "$b/run_hooks.py" SessionEnd "$sid"; fi
rm -f "$CLAUDE_CONFIG_DIR/sessions/$$.json"
echo "end $$ $(date +%s.%N)" >> "$b/claude.log"
exit "$(cat "$b/claude.exit" 2>/dev/null || echo 0)"
"#
        );
        self.script("claude", &body);
        // Claude Code's folder name: UTF-16 units outside [A-Za-z0-9] become '-', and past 200
        // units the name is cut and the base-36 Java-style hash of the whole path appended.
        std::fs::write(
            self.bin.join("enc.py"),
            r#"import sys
p = sys.argv[1]
units = p.encode("utf-16-le")
codes = [int.from_bytes(units[i:i + 2], "little") for i in range(0, len(units), 2)]
s = "".join(chr(c) if c < 128 and chr(c).isalnum() else "-" for c in codes)
if len(s) > 200:
    h = 0
    for c in codes:
        h = (h * 31 + c) & 0xFFFFFFFF
    if h >= 2**31:
        h -= 2**32
    n, digits, out = abs(h), "0123456789abcdefghijklmnopqrstuvwxyz", ""
    while True:
        out = digits[n % 36] + out
        n //= 36
        if n == 0:
            break
    s = s[:200] + "-" + out
print(s)
"#,
        )
        .unwrap();
        // Runs the hooks settings.json names, as Claude Code does, with the hook input on stdin.
        std::fs::write(
            self.bin.join("run_hooks.py"),
            r#"import json, os, subprocess, sys
event, sid = sys.argv[1], sys.argv[2]
try:
    settings = json.load(open(os.path.join(os.environ["CLAUDE_CONFIG_DIR"], "settings.json")))
except Exception:
    sys.exit(0)
payload = json.dumps({"session_id": sid, "cwd": os.getcwd(), "hook_event_name": event,
                      "source": "resume", "reason": "exit", "transcript_path": ""}).encode()
for group in settings.get("hooks", {}).get(event, []):
    for h in group.get("hooks", []):
        if h.get("type") == "command":
            if "args" in h:
                subprocess.run([h["command"]] + h["args"], input=payload)
            else:
                subprocess.run(h["command"], shell=True, input=payload)
"#,
        )
        .unwrap();
    }

    /// Lines of the fake claude's log.
    pub fn claude_log(&self) -> Vec<String> {
        std::fs::read_to_string(self.bin.join("claude.log"))
            .unwrap_or_default()
            .lines()
            .map(str::to_string)
            .collect()
    }

    pub fn set(&self, file: &str, value: &str) {
        std::fs::write(self.bin.join(file), value).unwrap();
    }
}

/// A machine with a PROJECTS placeholder at `~/projects`, syncing everything under `~`, and the
/// fake `claude`; its test project is `~/projects/app`.
pub struct ProjectMachine {
    pub m: Machine,
    pub projects: String,
}

impl ProjectMachine {
    pub fn new(w: &World, name: &str, remote: &Path) -> ProjectMachine {
        Self::on(w.machine(name), remote)
    }

    /// The same on machine `m` (a Windows one too).
    pub fn on(m: Machine, remote: &Path) -> ProjectMachine {
        let projects = m.native(&m.home.join("projects"));
        m.init(
            remote,
            &[
                "--add-placeholder",
                &format!("PROJECTS={projects}"),
                "--sync-dir",
                "~",
            ],
        );
        m.fake_claude();
        ProjectMachine { m, projects }
    }

    pub fn cwd(&self) -> String {
        format!("{}{}app", self.projects, self.m.sep())
    }
}

/// A fake `ssh` named `name` in `m`'s bin folder that runs the remote command here and relays
/// both directions at most 16 KiB per 50 ms (about 270 KiB/s), like a slow link. In the world's
/// folder, it adds its pid to `ssh-pids` and each connection's length (ms) to `relay-ms`. What
/// git sends past `forward` bytes is held: `stall` then leaves the push hanging in silence,
/// `drop` ends the connection as a dropping link would (the remote sees its input end, ssh says
/// so).
pub fn relay_ssh(m: &Machine, w: &World, name: &str, forward: Option<(u64, &str)>) -> PathBuf {
    let pids = w.path().join("ssh-pids");
    let (limit, then) = match forward {
        None => (u64::MAX / 2, ":"),
        Some((n, "stall")) => (n, "exec sleep 600"),
        Some((n, _)) => (n, "echo 'Connection to h closed by remote host.' >&2"),
    };
    m.script(
        name,
        &format!(
            r#"[ "$1" = -G ] && exit 0
echo $$ >> '{pids}'
while [ $# -gt 1 ]; do case "$1" in -o|-p) shift 2;; -*) shift;; *) break;; esac; done
shift
c="$*"
t=$(mktemp -d '{world}/relay.XXXXXX')
# Relay stdin to stdout slowly; true once $2 bytes went through, false at the end of the input.
slow() {{
  n=0
  while dd bs=16384 count=1 of="$t/$1" 2>/dev/null && [ -s "$t/$1" ]; do
    cat "$t/$1"; n=$((n + $(wc -c < "$t/$1"))); sleep 0.05
    [ $n -lt "$2" ] || return 0
  done
  return 1
}}
start=$(date +%s%N)
{{ slow in {limit} && {then}; }} | sh -c "git ${{c#git-}}" | {{ slow out {unlimited} || :; }}
echo $(( ($(date +%s%N) - start) / 1000000 )) >> '{world}/relay-ms'
"#,
            pids = pids.display(),
            world = w.path().display(),
            unlimited = u64::MAX / 2,
        ),
    )
}

/// About `len` bytes of text that compresses no better than a transfer of real transcripts
/// would (letters at random, in words).
pub fn incompressible_text(len: usize) -> String {
    let mut x: u64 = 0x9e37_79b9_7f4a_7c15;
    let mut s = String::with_capacity(len);
    while s.len() < len {
        x ^= x >> 12;
        x ^= x << 25;
        x ^= x >> 27;
        let r = x.wrapping_mul(0x2545_f491_4f6c_dd1d);
        s.push(if r.is_multiple_of(7) {
            ' '
        } else {
            (b'a' + (r >> 32) as u8 % 26) as char
        });
    }
    s
}

/// A session of about `len` bytes on machine `m`.
pub fn big_session(m: &Machine, sid: &str, len: usize) -> String {
    let cwd = format!("{}/work", m.home.display());
    let mut t = conversation(sid, &cwd, "/", 1, 1);
    t += &user_line(
        sid,
        &cwd,
        &format!("{sid}-big"),
        Some(&format!("{sid}-a0")),
        &ts_at(3),
        &incompressible_text(len),
    );
    t.push('\n');
    m.write_transcript(&cwd, sid, t.as_bytes());
    cwd
}
