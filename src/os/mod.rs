//! Everything that depends on the operating system: process liveness, host name, home directory,
//! private file permissions, terminal facts and atomic file replacement.
//!
//! The rest of the crate never uses `cfg(unix)`/`cfg(windows)`; it asks this module.

pub mod errors;
#[cfg(windows)]
mod windows;

pub use errors::IoAt;

use std::fs::{self, File, OpenOptions};
use std::io::{self, Write};
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

/// The path style of the machine this binary runs on.
pub fn native_is_windows() -> bool {
    cfg!(windows)
}

/// The user's home directory: `$HOME`; on Windows `%USERPROFILE%` (where Claude Code keeps
/// `.claude`), else `%HOMEDRIVE%%HOMEPATH%`.
pub fn home_dir() -> Option<PathBuf> {
    home_from(cfg!(windows), |name| std::env::var_os(name))
}

/// [`home_dir`] for either system, from the variables `var` gives (empty ones do not count).
fn home_from(windows: bool, var: impl Fn(&str) -> Option<std::ffi::OsString>) -> Option<PathBuf> {
    let var = |name: &str| var(name).filter(|v| !v.is_empty());
    if windows {
        var("USERPROFILE").map(PathBuf::from).or_else(|| {
            let mut p = var("HOMEDRIVE")?;
            p.push(var("HOMEPATH")?);
            Some(PathBuf::from(p))
        })
    } else {
        var("HOME").map(PathBuf::from)
    }
}

/// The command line, with the program named as typed: on Windows without the `.exe` the system
/// puts after it (so that usage lines say `ccsync`, as elsewhere).
pub fn args() -> Vec<std::ffi::OsString> {
    let mut args: Vec<_> = std::env::args_os().collect();
    if cfg!(windows)
        && let Some(first) = args.first_mut()
    {
        let p = Path::new(first.as_os_str());
        if p.extension().is_some_and(|e| e.eq_ignore_ascii_case("exe"))
            && let Some(stem) = p.file_stem()
        {
            *first = stem.to_os_string();
        }
    }
    args
}

/// The name of the variable [`home_dir`] reads, for messages.
pub fn home_var() -> &'static str {
    if cfg!(windows) { "USERPROFILE" } else { "HOME" }
}

/// This machine's host name, without any domain part; `machine` when it cannot be read.
pub fn hostname() -> String {
    let raw = read_hostname().unwrap_or_default();
    let short = raw.split('.').next().unwrap_or("").trim().to_string();
    if short.is_empty() {
        "machine".to_string()
    } else {
        short
    }
}

#[cfg(unix)]
fn read_hostname() -> Option<String> {
    let mut buf = [0u8; 256];
    // SAFETY: the buffer is valid for its whole length; gethostname writes at most that many bytes.
    let rc = unsafe { libc::gethostname(buf.as_mut_ptr().cast(), buf.len()) };
    if rc != 0 {
        return None;
    }
    let end = buf.iter().position(|&b| b == 0).unwrap_or(buf.len());
    Some(String::from_utf8_lossy(&buf[..end]).into_owned())
}

#[cfg(not(unix))]
fn read_hostname() -> Option<String> {
    std::env::var("COMPUTERNAME").ok()
}

/// Whether a process with this pid exists. A process we may not signal still exists.
#[cfg(unix)]
pub fn pid_alive(pid: u32) -> bool {
    if pid == 0 || pid > i32::MAX as u32 {
        return false;
    }
    // SAFETY: signal 0 performs only the existence and permission check.
    let rc = unsafe { libc::kill(pid as libc::pid_t, 0) };
    if rc == 0 {
        return true;
    }
    io::Error::last_os_error().raw_os_error() == Some(libc::EPERM)
}

/// Whether a process with this pid runs (Windows: it has no exit code yet).
#[cfg(windows)]
pub fn pid_alive(pid: u32) -> bool {
    windows::pid_alive(pid)
}

/// Whether a process with this pid exists. Without a way to ask, assume it does (the safe answer:
/// a live transcript is left alone).
#[cfg(not(any(unix, windows)))]
pub fn pid_alive(pid: u32) -> bool {
    pid != 0
}

/// This process's peak resident memory in KB, where the OS tells (Linux); children excluded.
pub fn peak_rss_kb() -> Option<u64> {
    let status = fs::read_to_string("/proc/self/status").ok()?;
    let line = status.lines().find(|l| l.starts_with("VmHWM:"))?;
    line.split_whitespace().nth(1)?.parse().ok()
}

/// When a process started: on Linux in clock ticks since boot (`/proc/<pid>/stat`), on Windows
/// its creation time in 100 ns units; `None` where the OS does not tell. Together with the pid
/// it names a process even after pids are reused. Compared only with values from this machine.
pub fn process_start_time(pid: u32) -> Option<u64> {
    #[cfg(windows)]
    {
        windows::process_start_time(pid)
    }
    #[cfg(not(windows))]
    {
        proc_start_ticks(pid)
    }
}

#[cfg(not(windows))]
fn proc_start_ticks(pid: u32) -> Option<u64> {
    let stat = fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    // The command name (field 2) may contain spaces and parentheses: split after the last ')'.
    let rest = &stat[stat.rfind(')')? + 1..];
    rest.split_whitespace().nth(19)?.parse().ok()
}

/// A process's start as Claude Code records it in `sessions/<pid>.json` (`procStart`): on Linux
/// the `starttime` field (22) of `/proc/<pid>/stat`, in clock ticks since boot, as text — the
/// client takes `stat.slice(lastIndexOf(")")+2).split(" ")[19]`. `None` elsewhere (the client's
/// macOS value is `ps -o lstart=` text, which this does not reproduce) or when unreadable.
#[cfg(any(target_os = "linux", target_os = "android"))]
pub fn process_start(pid: u32) -> Option<String> {
    let stat = fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    let rest = stat.get(stat.rfind(')')? + 2..)?;
    let field = rest.split(' ').nth(19)?.trim();
    (!field.is_empty()).then(|| field.to_string())
}

/// See the Linux version: other systems do not tell, and the caller falls back to liveness.
#[cfg(not(any(target_os = "linux", target_os = "android")))]
pub fn process_start(pid: u32) -> Option<String> {
    let _ = pid;
    None
}

/// Whether `pid` is alive and, when a start time is known, is the same process.
pub fn process_matches(pid: u32, started: Option<u64>) -> bool {
    if !pid_alive(pid) {
        return false;
    }
    match (started, process_start_time(pid)) {
        (Some(want), Some(now)) => want == now,
        _ => true,
    }
}

/// While a child program owns the terminal: terminal signals (Ctrl-C, Ctrl-\\, hang-up) reach
/// the child, not us, and the terminal settings are put back however the child ended. Handlers
/// (not "ignore") are installed, so the child starts with the default dispositions.
pub struct ChildForeground {
    #[cfg(unix)]
    termios: Option<libc::termios>,
    #[cfg(unix)]
    old: Vec<(libc::c_int, libc::sigaction)>,
}

#[cfg(unix)]
extern "C" fn ignore_signal(_: libc::c_int) {}

impl ChildForeground {
    #[cfg(unix)]
    pub fn enter() -> Self {
        // SAFETY: tcgetattr writes a termios for fd 0 when it is a terminal; the zeroed value is
        // only used when it succeeded.
        let termios = unsafe {
            let mut t: libc::termios = std::mem::zeroed();
            (libc::isatty(0) == 1 && libc::tcgetattr(0, &mut t) == 0).then_some(t)
        };
        let mut old = Vec::new();
        for sig in [libc::SIGINT, libc::SIGQUIT, libc::SIGHUP] {
            // SAFETY: installing a handler that does nothing is async-signal-safe; the previous
            // action is kept to be restored.
            unsafe {
                let mut act: libc::sigaction = std::mem::zeroed();
                act.sa_sigaction = ignore_signal as *const () as usize;
                libc::sigemptyset(&mut act.sa_mask);
                act.sa_flags = libc::SA_RESTART;
                let mut prev: libc::sigaction = std::mem::zeroed();
                if libc::sigaction(sig, &act, &mut prev) == 0 {
                    old.push((sig, prev));
                }
            }
        }
        ChildForeground { termios, old }
    }

    /// Windows: Ctrl-C and Ctrl-Break reach every program on the console; this one ignores
    /// them while the child runs, so that it lives to push and release after the child.
    #[cfg(windows)]
    pub fn enter() -> Self {
        windows::ignore_console_interrupts(true);
        ChildForeground {}
    }

    #[cfg(not(any(unix, windows)))]
    pub fn enter() -> Self {
        ChildForeground {}
    }
}

impl Drop for ChildForeground {
    fn drop(&mut self) {
        #[cfg(unix)]
        {
            if let Some(t) = &self.termios {
                // SAFETY: restoring the settings read from the same descriptor.
                unsafe {
                    libc::tcsetattr(0, libc::TCSANOW, t);
                }
            }
            for (sig, prev) in &self.old {
                // SAFETY: restoring the action saved in `enter`.
                unsafe {
                    libc::sigaction(*sig, prev, std::ptr::null_mut());
                }
            }
        }
        #[cfg(windows)]
        windows::ignore_console_interrupts(false);
    }
}

/// Start `cmd` detached from this process: its own session, no terminal, standard streams to
/// `log` (appended) or nowhere. Returns the child's pid.
///
/// On Windows the child gets a console of its own that is never shown (so the console programs
/// it runs, such as git, open no window either), its own process group (Ctrl-C here does not
/// reach it), none of this process's standard handles, and leaves this process's job where the
/// job allows it (a program that ends its job's processes when it exits, as a terminal may,
/// does not end the child).
pub fn spawn_detached(cmd: &mut std::process::Command, log: Option<&Path>) -> io::Result<u32> {
    use std::process::Stdio;
    cmd.stdin(Stdio::null());
    match log {
        Some(p) => {
            let f = OpenOptions::new().create(true).append(true).open(p)?;
            make_private(p).ok();
            cmd.stdout(f.try_clone()?).stderr(f);
        }
        None => {
            cmd.stdout(Stdio::null()).stderr(Stdio::null());
        }
    }
    #[cfg(unix)]
    {
        use std::os::unix::process::CommandExt;
        // SAFETY: setsid is async-signal-safe and only affects the child.
        unsafe {
            cmd.pre_exec(|| {
                libc::setsid();
                Ok(())
            });
        }
    }
    #[cfg(windows)]
    {
        use std::os::windows::process::CommandExt;
        // Else the child inherits the pipes this process was given, and whoever reads them
        // waits until the child ends.
        windows::keep_std_handles_to_ourselves();
        const CREATE_NEW_PROCESS_GROUP: u32 = 0x0000_0200;
        const CREATE_BREAKAWAY_FROM_JOB: u32 = 0x0100_0000;
        const CREATE_NO_WINDOW: u32 = 0x0800_0000;
        let flags = CREATE_NO_WINDOW | CREATE_NEW_PROCESS_GROUP;
        cmd.creation_flags(flags | CREATE_BREAKAWAY_FROM_JOB);
        match cmd.spawn() {
            Ok(child) => return Ok(child.id()),
            // A job that does not allow breaking away refuses the whole creation.
            Err(e) if e.kind() == io::ErrorKind::PermissionDenied => {
                cmd.creation_flags(flags);
            }
            Err(e) => return Err(e),
        }
    }
    let child = cmd.spawn()?;
    Ok(child.id())
}

/// Ask a process to stop (SIGTERM on Unix). Returns whether the request was delivered. On
/// Windows there is no such request: the daemon watches for its stop file instead
/// ([`stop_when_file_appears`]).
pub fn request_stop(pid: u32) -> bool {
    #[cfg(unix)]
    {
        if pid == 0 || pid > i32::MAX as u32 {
            return false;
        }
        // SAFETY: sending SIGTERM to a pid we verified belongs to our daemon.
        unsafe { libc::kill(pid as libc::pid_t, libc::SIGTERM) == 0 }
    }
    #[cfg(not(unix))]
    {
        let _ = pid;
        false
    }
}

static STOP_REQUESTED: std::sync::atomic::AtomicBool = std::sync::atomic::AtomicBool::new(false);
/// Whether [`install_stop_handler`] turned signals into a flag (otherwise a signal ends the
/// process, after ending the process groups of running git commands).
static STOP_MODE: std::sync::atomic::AtomicBool = std::sync::atomic::AtomicBool::new(false);
static HANDLER_INSTALLED: std::sync::atomic::AtomicBool = std::sync::atomic::AtomicBool::new(false);

/// How many stop signals arrived: a network step interrupts itself when this changes while it
/// runs (one started after the stop, such as the daemon's release of its locks, may run).
static STOP_COUNT: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(0);

/// How many stop signals arrived so far (see [`install_stop_handler`]).
pub fn stop_count() -> u64 {
    STOP_COUNT.load(std::sync::atomic::Ordering::SeqCst)
}

/// Process groups of running network git commands (0: a free slot); signal handlers read them.
static GROUPS: [std::sync::atomic::AtomicU32; 32] =
    [const { std::sync::atomic::AtomicU32::new(0) }; 32];

/// Note (or forget) a child that leads its own process group, so that a stop signal ends it
/// and everything it started. The first one installs the signal handler that does so.
pub fn track_group(pid: u32, running: bool) {
    use std::sync::atomic::Ordering::SeqCst;
    if running {
        if !HANDLER_INSTALLED.load(SeqCst) {
            install_handler();
        }
        #[cfg(windows)]
        windows::track_job(pid);
        for slot in &GROUPS {
            if slot.compare_exchange(0, pid, SeqCst, SeqCst).is_ok() {
                return;
            }
        }
    } else {
        for slot in &GROUPS {
            let _ = slot.compare_exchange(pid, 0, SeqCst, SeqCst);
        }
        #[cfg(windows)]
        windows::untrack_job(pid);
    }
}

/// Kill every process group [`track_group`] notes (running network git commands and what they
/// started), before this process leaves in a hurry.
pub fn end_tracked_groups() {
    use std::sync::atomic::Ordering::SeqCst;
    for slot in &GROUPS {
        let pid = slot.swap(0, SeqCst);
        if pid > 1 {
            kill_group(pid);
        }
    }
}

/// Kill the process group `pid` leads (Unix), or the job object it was put in when tracked
/// (Windows: it and the processes it started).
pub fn kill_group(pid: u32) {
    #[cfg(unix)]
    if pid > 1 {
        // SAFETY: sending a signal has no memory-safety requirements; a group that does not
        // exist (the child led none, or it is gone) makes this fail harmlessly.
        unsafe {
            libc::kill(-(pid as libc::pid_t), libc::SIGKILL);
        }
    }
    #[cfg(windows)]
    windows::kill_job(pid);
    #[cfg(not(any(unix, windows)))]
    let _ = pid;
}

/// A stop was asked for outside a signal handler (a console event on Windows, the daemon's
/// stop file): running network git commands are ended, and in stop mode the flag is set.
/// Returns whether the stop was taken as a request (otherwise the caller ends the process).
fn stop_event() -> bool {
    use std::sync::atomic::Ordering::SeqCst;
    for slot in &GROUPS {
        let pid = slot.load(SeqCst);
        if pid > 1 {
            kill_group(pid);
        }
    }
    #[cfg(windows)]
    windows::kill_all_jobs();
    if STOP_MODE.load(SeqCst) {
        STOP_REQUESTED.store(true, SeqCst);
        STOP_COUNT.fetch_add(1, SeqCst);
        true
    } else {
        false
    }
}

/// Watch for `path` to appear (checked every `period`) and then call `then`, once, on the
/// watching thread.
pub fn when_file_appears(path: PathBuf, period: Duration, then: impl FnOnce() + Send + 'static) {
    std::thread::spawn(move || {
        while !path.exists() {
            std::thread::sleep(period);
        }
        then();
    });
}

/// The daemon's stop file (the way to stop it on Windows, where there are no signals to send):
/// when `path` appears, running network git commands are ended and [`stop_requested`] becomes
/// true, as on SIGTERM. Call after [`install_stop_handler`].
pub fn stop_when_file_appears(path: PathBuf) {
    when_file_appears(path, Duration::from_millis(250), || {
        stop_event();
    });
}

#[cfg(unix)]
extern "C" fn on_signal(sig: libc::c_int) {
    use std::sync::atomic::Ordering::SeqCst;
    // Only async-signal-safe work here: atomics, kill, signal, raise.
    for slot in &GROUPS {
        let pid = slot.load(SeqCst);
        if pid > 1 {
            // SAFETY: kill is async-signal-safe.
            unsafe {
                libc::kill(-(pid as libc::pid_t), libc::SIGKILL);
            }
        }
    }
    if STOP_MODE.load(SeqCst) {
        STOP_REQUESTED.store(true, SeqCst);
        STOP_COUNT.fetch_add(1, SeqCst);
    } else {
        // SAFETY: signal and raise are async-signal-safe; the default action ends the process
        // as the signal would have without this handler.
        unsafe {
            libc::signal(sig, libc::SIG_DFL);
            libc::raise(sig);
        }
    }
}

fn install_handler() {
    HANDLER_INSTALLED.store(true, std::sync::atomic::Ordering::SeqCst);
    #[cfg(unix)]
    for sig in [libc::SIGTERM, libc::SIGINT, libc::SIGHUP] {
        // SAFETY: the handler does only async-signal-safe work (see `on_signal`).
        unsafe {
            let mut act: libc::sigaction = std::mem::zeroed();
            act.sa_sigaction = on_signal as *const () as usize;
            libc::sigemptyset(&mut act.sa_mask);
            libc::sigaction(sig, &act, std::ptr::null_mut());
        }
    }
    #[cfg(windows)]
    windows::install_console_handler();
}

/// Turn SIGTERM, SIGINT and SIGHUP into a flag the caller polls ([`stop_requested`]); running
/// network git commands are ended at once, and those started later are refused.
pub fn install_stop_handler() {
    STOP_MODE.store(true, std::sync::atomic::Ordering::SeqCst);
    install_handler();
}

/// Whether a stop was requested by a signal.
pub fn stop_requested() -> bool {
    STOP_REQUESTED.load(std::sync::atomic::Ordering::SeqCst)
}

/// Point standard output and error at `path` (appending); used by a detached daemon to move to
/// a fresh log file after rotating the old one.
pub fn redirect_output(path: &Path) -> io::Result<()> {
    #[cfg(unix)]
    {
        use std::os::unix::io::AsRawFd;
        let f = OpenOptions::new().create(true).append(true).open(path)?;
        make_private(path).ok();
        // SAFETY: duplicating a valid descriptor onto 1 and 2.
        unsafe {
            libc::dup2(f.as_raw_fd(), 1);
            libc::dup2(f.as_raw_fd(), 2);
        }
    }
    #[cfg(windows)]
    windows::redirect_output(path)?;
    #[cfg(not(any(unix, windows)))]
    let _ = path;
    Ok(())
}

/// The parent process id (0 when unknown).
pub fn parent_pid() -> u32 {
    #[cfg(unix)]
    {
        // SAFETY: getppid has no preconditions.
        unsafe { libc::getppid() as u32 }
    }
    #[cfg(windows)]
    {
        windows::parent_of(std::process::id()).unwrap_or(0)
    }
    #[cfg(not(any(unix, windows)))]
    {
        0
    }
}

/// Restrict a file or directory to its owner (0600 / 0700 on Unix).
pub fn make_private(path: &Path) -> io::Result<()> {
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        let meta = fs::metadata(path).at("read the metadata of", path)?;
        let mode = if meta.is_dir() { 0o700 } else { 0o600 };
        fs::set_permissions(path, fs::Permissions::from_mode(mode))
            .at("set the permissions of", path)?;
    }
    #[cfg(not(unix))]
    let _ = path;
    Ok(())
}

/// Create a directory (and its parents) readable only by its owner.
pub fn create_private_dir(path: &Path) -> io::Result<()> {
    if path.is_dir() {
        return Ok(());
    }
    fs::create_dir_all(path).at("create the folder", path)?;
    make_private(path)
}

/// Width of the terminal on stdout, if stdout is a terminal.
pub fn terminal_width() -> Option<usize> {
    terminal_size::terminal_size_of(io::stdout()).map(|(w, _)| w.0 as usize)
}

/// The first executable called `name` on PATH (an absolute or relative path is taken as is).
pub fn find_in_path(name: &str) -> Option<PathBuf> {
    let p = Path::new(name);
    if p.components().count() > 1 {
        if cfg!(windows) {
            return runnable(p);
        }
        return p.is_file().then(|| p.to_path_buf());
    }
    let path = std::env::var_os("PATH")?;
    std::env::split_paths(&path).find_map(|dir| runnable(&dir.join(name)))
}

/// `p` when it can be run; on Windows also `p.exe`, `p.cmd` or `p.bat`. There a file without
/// one of those extensions cannot be started: npm puts a shell script `claude` beside
/// `claude.cmd`, and it is the latter that runs.
fn runnable(p: &Path) -> Option<PathBuf> {
    if is_executable(p) {
        return Some(p.to_path_buf());
    }
    if cfg!(windows) {
        for ext in ["exe", "cmd", "bat"] {
            let mut with = p.as_os_str().to_owned();
            with.push(".");
            with.push(ext);
            let c = PathBuf::from(with);
            if c.is_file() {
                return Some(c);
            }
        }
    }
    None
}

fn is_executable(p: &Path) -> bool {
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        fs::metadata(p).is_ok_and(|m| m.is_file() && m.permissions().mode() & 0o111 != 0)
    }
    #[cfg(not(unix))]
    {
        let ext = p.extension().and_then(|e| e.to_str()).unwrap_or("");
        p.is_file()
            && ["exe", "cmd", "bat", "com"]
                .iter()
                .any(|x| ext.eq_ignore_ascii_case(x))
    }
}

/// Whether stdin is an interactive terminal.
pub fn stdin_is_tty() -> bool {
    use std::io::IsTerminal;
    io::stdin().is_terminal()
}

/// Whether stdout is an interactive terminal.
pub fn stdout_is_tty() -> bool {
    use std::io::IsTerminal;
    io::stdout().is_terminal()
}

/// Whether stderr is an interactive terminal.
pub fn stderr_is_tty() -> bool {
    use std::io::IsTerminal;
    io::stderr().is_terminal()
}

thread_local! {
    /// See [`deferring_sync`].
    static DEFER_SYNC: std::cell::Cell<bool> = const { std::cell::Cell::new(false) };
}

/// Run `f` with the files it writes atomically on this thread not flushed to the disk one by
/// one (renamed into place once written, the kernel writing them out later). Only for files
/// whose loss or tearing in a system crash loses nothing: a pull's new sessions, which the
/// repository holds and [`crate::sync::unsynced`] checks after a crash.
pub fn deferring_sync<T>(f: impl FnOnce() -> T) -> T {
    let before = DEFER_SYNC.with(|d| d.replace(true));
    let out = f();
    DEFER_SYNC.with(|d| d.set(before));
    out
}

/// Flush a file's data to the disk before it is renamed into place (unless deferred, see
/// [`deferring_sync`]).
pub fn sync_before_rename(f: &File) -> io::Result<()> {
    if DEFER_SYNC.with(std::cell::Cell::get) {
        return Ok(());
    }
    f.sync_data()
}

/// This boot of the system (Linux), to tell whether it crashed or restarted since something
/// was written without waiting for the disk; `None` where it is not known (then nothing is
/// written that way).
pub fn boot_id() -> Option<String> {
    #[cfg(target_os = "linux")]
    {
        std::fs::read_to_string("/proc/sys/kernel/random/boot_id")
            .ok()
            .map(|s| s.trim().to_string())
            .filter(|s| !s.is_empty())
    }
    #[cfg(not(target_os = "linux"))]
    {
        None
    }
}

/// Write out everything written to the file system holding `path` (`syncfs`, Linux).
pub fn sync_file_system(path: &Path) -> io::Result<()> {
    #[cfg(target_os = "linux")]
    {
        use std::os::fd::AsRawFd;
        let f = File::open(path)?;
        // SAFETY: `syncfs` takes a file descriptor this function holds open.
        if unsafe { libc::syncfs(f.as_raw_fd()) } != 0 {
            return Err(io::Error::last_os_error());
        }
        Ok(())
    }
    #[cfg(not(target_os = "linux"))]
    {
        let _ = path;
        Ok(())
    }
}

/// Write `data` to `path` atomically: a temporary file in the same directory, flushed, then
/// renamed over the target. A crash leaves either the old file or the new one, never a torn one.
pub fn write_atomic(path: &Path, data: &[u8], private: bool) -> io::Result<()> {
    write_atomic_with(path, private, |f| f.write_all(data))
}

/// Like [`write_atomic`], with the content produced by a closure writing into the temporary file.
pub fn write_atomic_with(
    path: &Path,
    private: bool,
    fill: impl FnOnce(&mut File) -> io::Result<()>,
) -> io::Result<()> {
    let mut tmp = temp_beside(path)?;
    if private {
        make_private(tmp.path())?;
    }
    fill(tmp.as_file_mut()).at("write", path)?;
    sync_before_rename(tmp.as_file()).at("write", path)?;
    persist(tmp, path).at("replace", path)
}

/// Put a finished temporary file (from [`temp_beside`]) in place of `dest`, atomically.
///
/// The temporary file's handle is closed first, and the replace goes through [`replace_file`]
/// (which waits out another program holding `dest` for a while). On Windows no handle of this
/// process may be open on `dest` either: the caller closes its own before calling this, or the
/// replace fails with "Access denied" (under Wine, and on Windows without POSIX rename
/// semantics, even a handle that allows deletion blocks it). The temporary file is removed if
/// the replace fails.
pub fn persist(tmp: tempfile::NamedTempFile, dest: &Path) -> io::Result<()> {
    let tmp = tmp.into_temp_path();
    replace_file(&tmp, dest)?;
    // Renamed away: nothing is left to delete.
    let _ = tmp.keep();
    Ok(())
}

/// How long [`replace_file`] keeps trying while another program has the target open.
const REPLACE_PATIENCE: Duration = Duration::from_secs(3);

/// Rename `from` over `to`, replacing it. On Windows (MoveFileEx with REPLACE_EXISTING, as
/// `std::fs::rename` does) this fails while another program has `to` open without letting
/// others delete it (an editor, a virus scanner, an indexer): such a sharing error is retried
/// for a few seconds before it is returned.
pub fn replace_file(from: &Path, to: &Path) -> io::Result<()> {
    let start = Instant::now();
    let mut pause = Duration::from_millis(10);
    loop {
        match fs::rename(from, to) {
            Err(e) if sharing_error(&e) && start.elapsed() < REPLACE_PATIENCE => {
                std::thread::sleep(pause);
                pause = (pause * 2).min(Duration::from_millis(200));
            }
            r => return r,
        }
    }
}

/// Whether an error is Windows saying another program has the file open (or locked): access
/// denied, a sharing violation or a lock violation, all of which pass once it lets go.
fn sharing_error(e: &io::Error) -> bool {
    cfg!(windows) && matches!(e.raw_os_error(), Some(5 | 32 | 33))
}

/// A temporary file in the folder of `path` (so that renaming it over `path` is atomic), named
/// `.ccsync-tmp-*` so that nothing takes it for a transcript; removed unless persisted.
pub fn temp_beside(path: &Path) -> io::Result<tempfile::NamedTempFile> {
    let dir = path
        .parent()
        .filter(|p| !p.as_os_str().is_empty())
        .unwrap_or(Path::new("."));
    tempfile::Builder::new()
        .prefix(".ccsync-tmp-")
        .tempfile_in(dir)
        .at("create a temporary file in", dir)
}

/// Set a file's modification time (seconds since the epoch, UTC).
pub fn set_mtime(path: &Path, unix_secs: i64) -> io::Result<()> {
    let t = if unix_secs >= 0 {
        std::time::UNIX_EPOCH + std::time::Duration::from_secs(unix_secs as u64)
    } else {
        std::time::UNIX_EPOCH
    };
    let f = OpenOptions::new()
        .write(true)
        .open(path)
        .at("set the time of", path)?;
    f.set_modified(t).at("set the time of", path)
}

/// Modification time of file metadata in nanoseconds since the epoch (0 when unknown).
pub fn mtime_ns(meta: &fs::Metadata) -> i128 {
    match meta.modified() {
        Ok(t) => match t.duration_since(std::time::UNIX_EPOCH) {
            Ok(d) => d.as_nanos() as i128,
            Err(e) => -(e.duration().as_nanos() as i128),
        },
        Err(_) => 0,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn own_pid_is_alive_and_absurd_pid_is_not() {
        assert!(pid_alive(std::process::id()));
        assert!(!pid_alive(0));
        assert!(!pid_alive(u32::MAX));
    }

    #[test]
    fn process_start_is_the_proc_stat_start_time() {
        let me = std::process::id();
        if cfg!(target_os = "linux") {
            let start = process_start(me).expect("own /proc/self/stat");
            assert_eq!(
                start.parse::<u64>().ok(),
                process_start_time(me),
                "the same field as the numeric start time"
            );
        }
        assert_eq!(process_start(0), None);
        assert_eq!(process_start(u32::MAX), None);
    }

    #[test]
    fn atomic_write_replaces_content() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("f.txt");
        write_atomic(&p, b"one", true).unwrap();
        write_atomic(&p, b"two", true).unwrap();
        assert_eq!(fs::read(&p).unwrap(), b"two");
        let leftovers: Vec<_> = fs::read_dir(dir.path()).unwrap().collect();
        assert_eq!(leftovers.len(), 1, "no temporary file left behind");
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt;
            assert_eq!(
                fs::metadata(&p).unwrap().permissions().mode() & 0o777,
                0o600
            );
        }
    }

    #[test]
    fn a_replace_works_while_a_reader_has_the_file_open() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("t.jsonl");
        write_atomic(&p, b"one", false).unwrap();
        // Wine 8 cannot replace a file that is open, however it was opened (it lacks the POSIX
        // rename semantics that Windows 10 has and std falls back to).
        #[cfg(windows)]
        if windows::under_wine() {
            return;
        }
        // Rust (and Node) open files letting others rename and delete them.
        let reader = File::open(&p).unwrap();
        write_atomic(&p, b"two", false).unwrap();
        drop(reader);
        assert_eq!(fs::read(&p).unwrap(), b"two");
    }

    /// A program that opened the file without letting others delete it (Windows) holds the
    /// replace up until it lets go, within the patience of `replace_file`.
    #[cfg(windows)]
    #[test]
    fn a_replace_waits_for_a_program_that_holds_the_file() {
        use std::os::windows::fs::OpenOptionsExt;
        const FILE_SHARE_READ: u32 = 1;
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("t.jsonl");
        write_atomic(&p, b"one", false).unwrap();
        let holder = OpenOptions::new()
            .read(true)
            .share_mode(FILE_SHARE_READ)
            .open(&p)
            .unwrap();
        let t = std::thread::spawn(move || {
            std::thread::sleep(Duration::from_millis(400));
            drop(holder);
        });
        let start = Instant::now();
        write_atomic(&p, b"two", false).unwrap();
        t.join().unwrap();
        assert!(start.elapsed() >= Duration::from_millis(300), "it waited");
        assert_eq!(fs::read(&p).unwrap(), b"two");
        let names: Vec<_> = fs::read_dir(dir.path()).unwrap().collect();
        assert_eq!(names.len(), 1, "no temporary file left behind");
    }

    /// Not a test by itself: run as a child process by
    /// `a_replace_waits_for_another_process_that_holds_the_file`, it opens the file named by
    /// `CCSYNC_TEST_HOLD` without letting others delete it, says so, and keeps it open until
    /// the file named by `CCSYNC_TEST_HOLD_UNTIL` exists (20 s at most).
    #[cfg(windows)]
    #[test]
    fn hold_a_file_for_another_test() {
        use std::os::windows::fs::OpenOptionsExt;
        let (Some(path), Some(until)) = (
            std::env::var_os("CCSYNC_TEST_HOLD"),
            std::env::var_os("CCSYNC_TEST_HOLD_UNTIL"),
        ) else {
            return;
        };
        const FILE_SHARE_READ: u32 = 1;
        let held = OpenOptions::new()
            .read(true)
            .share_mode(FILE_SHARE_READ)
            .open(&path)
            .unwrap();
        println!("HOLDING");
        io::stdout().flush().unwrap();
        let start = Instant::now();
        while !Path::new(&until).exists() && start.elapsed() < Duration::from_secs(20) {
            std::thread::sleep(Duration::from_millis(10));
        }
        drop(held);
    }

    /// Another program (here another process) that holds the file without letting others
    /// delete it holds the replace up until it lets go; then the replace happens.
    #[cfg(windows)]
    #[test]
    fn a_replace_waits_for_another_process_that_holds_the_file() {
        use std::io::BufRead;
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("t.jsonl");
        let release = dir.path().join("release");
        write_atomic(&p, b"one", false).unwrap();
        let mut holder = std::process::Command::new(std::env::current_exe().unwrap())
            .args([
                "--exact",
                "os::tests::hold_a_file_for_another_test",
                "--nocapture",
                "--test-threads=1",
            ])
            .env("CCSYNC_TEST_HOLD", &p)
            .env("CCSYNC_TEST_HOLD_UNTIL", &release)
            .stdout(std::process::Stdio::piped())
            .spawn()
            .unwrap();
        let mut out = io::BufReader::new(holder.stdout.take().unwrap());
        let mut line = String::new();
        while !line.contains("HOLDING") {
            line.clear();
            assert_ne!(out.read_line(&mut line).unwrap(), 0, "the holder started");
        }
        let target = p.clone();
        let writer = std::thread::spawn(move || write_atomic(&target, b"two", false));
        std::thread::sleep(Duration::from_millis(300));
        assert!(
            !writer.is_finished(),
            "the replace waits while the file is held"
        );
        assert_eq!(fs::read(&p).unwrap(), b"one");
        fs::write(&release, b"").unwrap();
        writer.join().unwrap().unwrap();
        assert!(holder.wait().unwrap().success());
        assert_eq!(fs::read(&p).unwrap(), b"two");
    }

    #[cfg(windows)]
    #[test]
    fn paths_longer_than_260_characters_work() {
        let dir = tempfile::tempdir().unwrap();
        let mut p = dir.path().to_path_buf();
        for _ in 0..6 {
            p.push("a-folder-name-of-fifty-characters-xxxxxxxxxxxxxxxx");
        }
        assert!(p.as_os_str().len() > 300);
        create_private_dir(&p).unwrap();
        let f = p.join("0f3c-session.jsonl");
        write_atomic(&f, b"{}\n", true).unwrap();
        write_atomic(&f, b"{}\n{}\n", true).unwrap();
        assert_eq!(fs::read(&f).unwrap(), b"{}\n{}\n");
        // The same file named in the verbatim form (`\\?\C:\…`), as canonicalize gives it.
        assert!(f.is_absolute(), "{f:?}");
        let verbatim = PathBuf::from(format!(r"\\?\{}", f.display()));
        write_atomic(&verbatim, b"{}\n", true).unwrap();
        assert_eq!(fs::read(&f).unwrap(), b"{}\n");
        assert_eq!(
            fs::read_dir(&p).unwrap().count(),
            1,
            "no temporary file left"
        );
    }

    #[test]
    fn a_program_is_found_by_the_name_that_runs() {
        let dir = tempfile::tempdir().unwrap();
        // What npm installs for a command: a shell script, and on Windows a .cmd beside it.
        let script = dir.path().join("claude");
        fs::write(&script, "#!/bin/sh\n").unwrap();
        let cmd = dir.path().join("claude.cmd");
        fs::write(&cmd, "@echo off\r\n").unwrap();
        let given = script.to_string_lossy().into_owned();
        if cfg!(windows) {
            assert_eq!(find_in_path(&given), Some(cmd.clone()));
            assert_eq!(find_in_path(&cmd.to_string_lossy()), Some(cmd));
        } else {
            assert_eq!(find_in_path(&given), Some(script));
        }
        assert_eq!(
            find_in_path(&dir.path().join("nothing").to_string_lossy()),
            None
        );
    }

    #[cfg(windows)]
    #[test]
    fn home_is_the_user_profile() {
        if let Some(profile) = std::env::var_os("USERPROFILE").filter(|v| !v.is_empty()) {
            assert_eq!(home_dir(), Some(PathBuf::from(profile)));
        }
        assert_eq!(home_var(), "USERPROFILE");
    }

    #[test]
    fn home_is_userprofile_then_homedrive_and_homepath_on_windows() {
        let env = |pairs: &'static [(&'static str, &'static str)]| {
            move |name: &str| {
                pairs
                    .iter()
                    .find(|(k, _)| *k == name)
                    .map(|(_, v)| std::ffi::OsString::from(v))
            }
        };
        let all = env(&[
            ("HOME", "/home/u"),
            ("USERPROFILE", r"C:\Users\Ann Lee"),
            ("HOMEDRIVE", "D:"),
            ("HOMEPATH", r"\profiles\ann"),
        ]);
        assert_eq!(
            home_from(true, all),
            Some(PathBuf::from(r"C:\Users\Ann Lee"))
        );
        assert_eq!(home_from(false, all), Some(PathBuf::from("/home/u")));
        let no_profile = env(&[
            ("HOME", "/home/u"),
            ("USERPROFILE", ""),
            ("HOMEDRIVE", "D:"),
            ("HOMEPATH", r"\profiles\ann"),
        ]);
        assert_eq!(
            home_from(true, no_profile),
            Some(PathBuf::from(r"D:\profiles\ann"))
        );
        assert_eq!(home_from(true, env(&[("HOME", "/home/u")])), None);
        assert_eq!(home_from(false, env(&[("USERPROFILE", r"C:\x")])), None);
    }

    #[test]
    fn a_detached_child_runs_with_its_output_in_the_log() {
        let dir = tempfile::tempdir().unwrap();
        let log = dir.path().join("child.log");
        let mut cmd = if cfg!(windows) {
            let mut c = std::process::Command::new("cmd");
            c.args(["/C", "echo detached-hello"]);
            c
        } else {
            let mut c = std::process::Command::new("sh");
            c.args(["-c", "echo detached-hello"]);
            c
        };
        let pid = spawn_detached(&mut cmd, Some(&log)).unwrap();
        assert_ne!(pid, 0);
        let start = Instant::now();
        while !fs::read_to_string(&log).is_ok_and(|s| s.contains("detached-hello")) {
            assert!(
                start.elapsed() < Duration::from_secs(20),
                "the child wrote to its log"
            );
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    #[test]
    fn a_file_appearing_is_noticed() {
        let dir = tempfile::tempdir().unwrap();
        let stop = dir.path().join("daemon.stop");
        let (tx, rx) = std::sync::mpsc::channel();
        when_file_appears(stop.clone(), Duration::from_millis(10), move || {
            let _ = tx.send(());
        });
        assert!(rx.recv_timeout(Duration::from_millis(100)).is_err());
        fs::write(&stop, b"stop").unwrap();
        assert!(rx.recv_timeout(Duration::from_secs(10)).is_ok());
    }

    #[test]
    fn hostname_is_never_empty() {
        assert!(!hostname().is_empty());
        assert!(!hostname().contains('.'));
    }
}
