//! Windows machines for end-to-end tests: `ccsync.exe` (the cross-build in `target/windows`)
//! runs under Wine, with the machine's environment spelt the Windows way (`Z:\tmp\…` paths,
//! `USERPROFILE`, `APPDATA`, `NUL` for no global git config), and finds as `git` on its PATH the
//! relay `git.exe` of `tools/wintest`, which runs the host's git through a server this test
//! process starts on 127.0.0.1.
//!
//! [`wine`] says whether all of that is here. Tests skip (pass, saying why) when it is not,
//! unless `CCSYNC_WINDOWS_TESTS=1`, which makes a missing piece a failure (CI sets it after
//! `scripts/build-windows.sh --tests`).

use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::OnceLock;

use wintest::paths::Drives;

pub const TARGET: &str = "x86_64-pc-windows-gnu";

/// What running Windows programs here takes.
pub struct Wine {
    pub wine64: PathBuf,
    pub prefix: PathBuf,
    /// The folder of `ccsync.exe`, `git.exe`, `claude.exe` and `envrun.exe`.
    pub exe_dir: PathBuf,
    /// The value of `WINTEST_RELAY` for `git.exe`.
    pub relay: String,
    pub drives: Drives,
}

/// Whether these tests must run (`CCSYNC_WINDOWS_TESTS=1`).
pub fn required() -> bool {
    std::env::var("CCSYNC_WINDOWS_TESTS").is_ok_and(|v| v == "1")
}

/// Wine and the Windows build, or `None` (after printing why) when a piece is missing; with
/// `CCSYNC_WINDOWS_TESTS=1` a missing piece panics instead.
pub fn wine() -> Option<&'static Wine> {
    static WINE: OnceLock<Result<Wine, String>> = OnceLock::new();
    match WINE.get_or_init(find) {
        Ok(w) => Some(w),
        Err(why) if required() => panic!("CCSYNC_WINDOWS_TESTS=1, but {why}"),
        Err(why) => {
            eprintln!(
                "skipped: {why} (scripts/build-windows.sh --tests builds and sets up what these \
                 tests need; CCSYNC_WINDOWS_TESTS=1 makes them required)"
            );
            None
        }
    }
}

fn manifest_dir() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

fn find() -> Result<Wine, String> {
    let wine64 = std::env::var_os("CCSYNC_WINE64")
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from("/usr/lib/wine/wine64"));
    if !wine64.is_file() {
        return Err(format!("there is no Wine ({})", wine64.display()));
    }
    let preloader = wine64.with_file_name("wine64-preloader");
    if !preloader.is_file() {
        return Err(format!(
            "{} is missing (Debian package wine64-preloader)",
            preloader.display()
        ));
    }
    let prefix = std::env::var_os("WINEPREFIX")
        .map(PathBuf::from)
        .or_else(|| {
            std::env::var_os("CCSYNC_WIN_CACHE").map(|c| PathBuf::from(c).join("wineprefix"))
        })
        .or_else(|| {
            std::env::var_os("HOME").map(|h| PathBuf::from(h).join(".cache/ccsync-win/wineprefix"))
        })
        .ok_or("no Wine prefix (neither WINEPREFIX nor HOME is set)")?;
    let stub = prefix.join("drive_c/windows/system32/bcryptprimitives.dll");
    if !prefix.join("system.reg").is_file() || !stub.is_file() {
        return Err(format!(
            "the Wine prefix {} is not set up (with the stub bcryptprimitives.dll)",
            prefix.display()
        ));
    }
    let target_dir = std::env::var_os("CCSYNC_WIN_TARGET_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| manifest_dir().join("target/windows"));
    let exe_dir = target_dir.join(TARGET).join("debug");
    for exe in ["ccsync.exe", "git.exe", "claude.exe", "envrun.exe"] {
        if !exe_dir.join(exe).is_file() {
            return Err(format!(
                "there is no Windows build of {exe} in {}",
                exe_dir.display()
            ));
        }
    }
    if !required() {
        // A build older than the sources would test old code: only when asked for.
        let built = modified(&exe_dir.join("ccsync.exe"));
        let newest = [
            manifest_dir().join("src"),
            manifest_dir().join("tools/wintest/src"),
        ]
        .iter()
        .filter_map(|d| newest_in(d))
        .max();
        if let (Some(b), Some(n)) = (built, newest)
            && n > b
        {
            return Err(format!(
                "the Windows build in {} is older than the sources",
                exe_dir.display()
            ));
        }
    }
    let drives = Drives::of_prefix(Some(&prefix));
    let server = wintest::server::Server::start(wintest::server::Config {
        drives: drives.clone(),
        ..wintest::server::Config::from_env()
    })
    .map_err(|e| format!("the git relay cannot listen on 127.0.0.1: {e}"))?;
    Ok(Wine {
        wine64,
        prefix,
        exe_dir,
        relay: server.relay_var(),
        drives,
    })
}

fn modified(p: &Path) -> Option<std::time::SystemTime> {
    std::fs::metadata(p).and_then(|m| m.modified()).ok()
}

fn newest_in(dir: &Path) -> Option<std::time::SystemTime> {
    let mut newest = modified(dir);
    for e in std::fs::read_dir(dir).ok()?.flatten() {
        let p = e.path();
        let t = if p.is_dir() {
            newest_in(&p)
        } else {
            modified(&p)
        };
        newest = newest.max(t);
    }
    newest
}

impl Wine {
    /// The Windows spelling of a host path (`/tmp/x` → `Z:\tmp\x`).
    pub fn win(&self, p: &Path) -> String {
        let s = p.to_str().expect("test paths are UTF-8");
        self.drives
            .to_windows(s)
            .unwrap_or_else(|| panic!("{s} has no Windows spelling"))
    }

    /// A Windows program (a path on the host) under Wine, with a cleared environment but for
    /// Wine's own variables.
    pub fn command(&self, exe: &Path) -> Command {
        let mut c = Command::new(&self.wine64);
        c.arg(exe)
            .env_clear()
            .env("WINEPREFIX", &self.prefix)
            .env("WINEDEBUG", "-all")
            .env("WINEDLLOVERRIDES", "mscoree,mshtml=");
        c
    }

    /// One of the built programs (`ccsync.exe`, `git.exe`…).
    pub fn exe(&self, name: &str) -> PathBuf {
        self.exe_dir.join(name)
    }
}

/// The environment of Windows machine `m` for `ccsync.exe`, started through `envrun.exe` so
/// that the variables Wine sets itself get the machine's values.
pub fn machine_command(m: &super::Machine) -> Command {
    let wine = wine().expect("a Windows machine exists only where Wine does");
    program_command(m, &wine.win(&wine.exe("ccsync.exe")))
}

/// The Windows program `program` (its Windows path) with the environment of Windows machine
/// `m`, as Claude Code there would start it (a hook, in the exec form).
pub fn program_command(m: &super::Machine, program: &str) -> Command {
    let wine = wine().expect("a Windows machine exists only where Wine does");
    let w = |p: &Path| wine.win(p);
    let base = m.home.parent().expect("a machine's home has a parent");
    let temp = base.join("temp");
    std::fs::create_dir_all(&temp).expect("create the machine's temp folder");
    let mut c = wine.command(&wine.exe("envrun.exe"));
    c.arg(program)
        .env("WINTEST_SET_USERPROFILE", w(&m.home))
        .env("WINTEST_SET_APPDATA", w(&m.home.join("AppData/Roaming")))
        .env("WINTEST_SET_LOCALAPPDATA", w(&m.home.join("AppData/Local")))
        .env("WINTEST_SET_TEMP", w(&temp))
        .env("WINTEST_SET_TMP", w(&temp))
        .env(
            "WINTEST_SET_PATH",
            format!(r"{};C:\windows\system32;C:\windows", w(&m.bin)),
        )
        .env("CLAUDE_CONFIG_DIR", w(&m.claude))
        .env("CCSYNC_HOME", w(&m.tool))
        .env(
            "GIT_CONFIG_GLOBAL",
            m.git_config.as_deref().map(w).unwrap_or("NUL".into()),
        )
        .env("GIT_CONFIG_NOSYSTEM", "1")
        .env("GIT_AUTHOR_NAME", "test")
        .env("GIT_AUTHOR_EMAIL", "test@example.com")
        .env("GIT_COMMITTER_NAME", "test")
        .env("GIT_COMMITTER_EMAIL", "test@example.com")
        .env("TZ", "UTC")
        .env("CCSYNC_SCRYPT_LOG_N", "10")
        .env(wintest::proto::RELAY_VAR, &wine.relay);
    if let Some(cols) = m.columns {
        c.env("COLUMNS", cols.to_string());
    }
    c
}

/// Put the relay `git.exe` in a Windows machine's bin folder (first on its PATH).
pub fn install_git(bin: &Path) {
    let wine = wine().expect("a Windows machine exists only where Wine does");
    std::fs::copy(wine.exe("git.exe"), bin.join("git.exe")).expect("copy git.exe");
}

/// Put the fake `claude.exe` in a Windows machine's bin folder; it records its runs in
/// `bin/claude.log` (one JSON object a line: `argv`, `cwd`, `pid`).
pub fn install_fake_claude(bin: &Path) {
    let wine = wine().expect("a Windows machine exists only where Wine does");
    std::fs::copy(wine.exe("claude.exe"), bin.join("claude.exe")).expect("copy claude.exe");
}
