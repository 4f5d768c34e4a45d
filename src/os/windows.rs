//! The Windows side of [`super`]: processes, console events and standard handles through the
//! Win32 API (`windows-sys`). Only `super` calls these.

use std::io;
use std::os::windows::io::IntoRawHandle as _;
use std::path::Path;
use std::sync::Mutex;

use windows_sys::Win32::Foundation::{
    CloseHandle, ERROR_ACCESS_DENIED, FILETIME, GetLastError, HANDLE, HANDLE_FLAG_INHERIT,
    INVALID_HANDLE_VALUE, STILL_ACTIVE, SetHandleInformation,
};
use windows_sys::Win32::System::Console::{
    CTRL_BREAK_EVENT, CTRL_C_EVENT, CTRL_CLOSE_EVENT, CTRL_LOGOFF_EVENT, CTRL_SHUTDOWN_EVENT,
    GetStdHandle, STD_ERROR_HANDLE, STD_INPUT_HANDLE, STD_OUTPUT_HANDLE, SetConsoleCtrlHandler,
    SetStdHandle,
};
use windows_sys::Win32::System::Diagnostics::ToolHelp::{
    CreateToolhelp32Snapshot, PROCESSENTRY32W, Process32FirstW, Process32NextW, TH32CS_SNAPPROCESS,
};
use windows_sys::Win32::System::JobObjects::{
    AssignProcessToJobObject, CreateJobObjectW, TerminateJobObject,
};
use windows_sys::Win32::System::Threading::{
    GetExitCodeProcess, GetProcessTimes, OpenProcess, PROCESS_QUERY_LIMITED_INFORMATION,
    PROCESS_SET_QUOTA, PROCESS_TERMINATE,
};

/// A handle closed when dropped.
struct Owned(HANDLE);

impl Drop for Owned {
    fn drop(&mut self) {
        // SAFETY: the handle was returned open by the system and is closed once, here.
        unsafe {
            CloseHandle(self.0);
        }
    }
}

/// Open process `pid` with `access`; the error is the Win32 error code.
fn open_process(pid: u32, access: u32) -> Result<Owned, u32> {
    // SAFETY: OpenProcess has no memory-safety requirements; a null handle means failure.
    let h = unsafe { OpenProcess(access, 0, pid) };
    if h.is_null() {
        // SAFETY: reads this thread's last error.
        Err(unsafe { GetLastError() })
    } else {
        Ok(Owned(h))
    }
}

/// Whether process `pid` runs: it can be opened (or exists but may not be opened by us) and has
/// no exit code yet. A process that ended but whose handle someone keeps open is not alive.
pub fn pid_alive(pid: u32) -> bool {
    // Pid 0 is the idle process, never a program that could hold a session.
    if pid == 0 {
        return false;
    }
    match open_process(pid, PROCESS_QUERY_LIMITED_INFORMATION) {
        Ok(h) => {
            let mut code = 0u32;
            // SAFETY: a valid process handle and a valid place for the exit code.
            let ok = unsafe { GetExitCodeProcess(h.0, &mut code) } != 0;
            // When the question cannot be answered, the safe answer is "alive".
            !ok || code == STILL_ACTIVE as u32
        }
        // Another user's (or a protected) process still exists.
        Err(e) => e == ERROR_ACCESS_DENIED,
    }
}

/// When process `pid` was created, in 100 ns units since 1601 (a `FILETIME`); with the pid it
/// names one process even after its pid is reused.
pub fn process_start_time(pid: u32) -> Option<u64> {
    if pid == 0 {
        return None;
    }
    let h = open_process(pid, PROCESS_QUERY_LIMITED_INFORMATION).ok()?;
    let zero = FILETIME {
        dwLowDateTime: 0,
        dwHighDateTime: 0,
    };
    let (mut created, mut exited, mut kernel, mut user) = (zero, zero, zero, zero);
    // SAFETY: a valid process handle and four valid FILETIMEs to fill.
    let ok =
        unsafe { GetProcessTimes(h.0, &mut created, &mut exited, &mut kernel, &mut user) } != 0;
    let t = (u64::from(created.dwHighDateTime) << 32) | u64::from(created.dwLowDateTime);
    (ok && t != 0).then_some(t)
}

/// The parent of process `pid` as the system recorded it at its creation (Windows does not
/// re-parent: the parent may have ended since, and its pid been reused).
pub fn parent_of(pid: u32) -> Option<u32> {
    // SAFETY: a snapshot of the process list; checked for failure below.
    let snap = unsafe { CreateToolhelp32Snapshot(TH32CS_SNAPPROCESS, 0) };
    if snap.is_null() || snap == INVALID_HANDLE_VALUE {
        return None;
    }
    let snap = Owned(snap);
    let mut entry = PROCESSENTRY32W {
        dwSize: std::mem::size_of::<PROCESSENTRY32W>() as u32,
        ..Default::default()
    };
    // SAFETY: a valid snapshot handle and an entry whose dwSize is set, as both calls require.
    let mut more = unsafe { Process32FirstW(snap.0, &mut entry) } != 0;
    while more {
        if entry.th32ProcessID == pid {
            return Some(entry.th32ParentProcessID);
        }
        // SAFETY: as above.
        more = unsafe { Process32NextW(snap.0, &mut entry) } != 0;
    }
    None
}

/// Job objects holding running network git commands and everything they start, by git's pid
/// (handles kept as `usize` so that the table may be shared between threads).
static JOBS: Mutex<Vec<(u32, usize)>> = Mutex::new(Vec::new());

/// Put process `pid` (a child not yet waited for, so the pid is still its own) into a job of
/// its own, so that [`kill_job`] ends it and the processes it starts. Without a job (the system
/// refused one) only the process itself can be ended.
pub fn track_job(pid: u32) {
    // SAFETY: an anonymous job object with default security; checked for failure.
    let job = unsafe { CreateJobObjectW(std::ptr::null(), std::ptr::null()) };
    if job.is_null() {
        return;
    }
    let job = Owned(job);
    let Ok(process) = open_process(pid, PROCESS_SET_QUOTA | PROCESS_TERMINATE) else {
        return;
    };
    // SAFETY: two valid handles.
    if unsafe { AssignProcessToJobObject(job.0, process.0) } == 0 {
        return;
    }
    if let Ok(mut jobs) = JOBS.lock() {
        let raw = job.0 as usize;
        std::mem::forget(job);
        jobs.push((pid, raw));
    }
}

/// Forget the job of `pid` (git ended): its handle is closed, whatever still runs in it is left.
pub fn untrack_job(pid: u32) {
    let Ok(mut jobs) = JOBS.lock() else { return };
    jobs.retain(|&(p, h)| {
        if p == pid {
            drop(Owned(h as HANDLE));
            false
        } else {
            true
        }
    });
}

/// End every process in the job of `pid`.
pub fn kill_job(pid: u32) {
    let Ok(jobs) = JOBS.lock() else { return };
    for &(p, h) in jobs.iter() {
        if p == pid {
            // SAFETY: a job handle this table owns.
            unsafe {
                TerminateJobObject(h as HANDLE, 1);
            }
        }
    }
}

/// End every process of every tracked job (a stop was requested).
pub fn kill_all_jobs() {
    let Ok(jobs) = JOBS.lock() else { return };
    for &(_, h) in jobs.iter() {
        // SAFETY: a job handle this table owns.
        unsafe {
            TerminateJobObject(h as HANDLE, 1);
        }
    }
}

/// Console events that ask a program to stop (Ctrl-C, Ctrl-Break, the console closing, log-off,
/// shut-down): handled like SIGINT/SIGTERM/SIGHUP on Unix.
unsafe extern "system" fn on_console_event(kind: u32) -> windows_sys::core::BOOL {
    match kind {
        CTRL_C_EVENT | CTRL_BREAK_EVENT | CTRL_CLOSE_EVENT | CTRL_LOGOFF_EVENT
        | CTRL_SHUTDOWN_EVENT => i32::from(super::stop_event()),
        _ => 0,
    }
}

/// Route console stop events to [`super::stop_event`].
pub fn install_console_handler() {
    // SAFETY: registers a handler with the signature the system expects.
    unsafe {
        SetConsoleCtrlHandler(Some(on_console_event), 1);
    }
}

/// While a child owns the console, Ctrl-C and Ctrl-Break are for it: this process ignores them.
unsafe extern "system" fn ignore_interrupts(kind: u32) -> windows_sys::core::BOOL {
    i32::from(matches!(kind, CTRL_C_EVENT | CTRL_BREAK_EVENT))
}

/// Ignore (or stop ignoring) Ctrl-C and Ctrl-Break in this process.
pub fn ignore_console_interrupts(on: bool) {
    // SAFETY: adds or removes a handler with the signature the system expects.
    unsafe {
        SetConsoleCtrlHandler(Some(ignore_interrupts), i32::from(on));
    }
}

/// Point standard output and error at `path` (appended): Rust's standard streams ask the system
/// for the handles at each write, so replacing them is enough. The previous handles are closed.
pub fn redirect_output(path: &Path) -> io::Result<()> {
    let f = std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(path)?;
    let g = f.try_clone()?;
    let (out, err) = (f.into_raw_handle(), g.into_raw_handle());
    // SAFETY: GetStdHandle and SetStdHandle have no memory-safety requirements; the new handles
    // are owned by the process from here on, and each old one is closed once.
    unsafe {
        let old_out = GetStdHandle(STD_OUTPUT_HANDLE);
        let old_err = GetStdHandle(STD_ERROR_HANDLE);
        SetStdHandle(STD_OUTPUT_HANDLE, out as HANDLE);
        SetStdHandle(STD_ERROR_HANDLE, err as HANDLE);
        for (i, old) in [old_out, old_err].into_iter().enumerate() {
            let usable = !old.is_null() && old != INVALID_HANDLE_VALUE;
            if usable && (i == 0 || old != old_out) {
                CloseHandle(old);
            }
        }
    }
    Ok(())
}

/// Stop this process's standard handles from being inherited. std starts every child with
/// handle inheritance on, so a child gets every inheritable handle of this process, whatever
/// its own standard streams are: a detached child would keep open the pipes this process was
/// given (a program reading our output, as Claude Code reads a hook's, would wait for the
/// child to end). Children still get the streams they are given: std duplicates those.
pub fn keep_std_handles_to_ourselves() {
    for id in [STD_INPUT_HANDLE, STD_OUTPUT_HANDLE, STD_ERROR_HANDLE] {
        // SAFETY: GetStdHandle and SetHandleInformation have no memory-safety requirements; a
        // missing or pseudo handle makes the second fail harmlessly.
        unsafe {
            let h = GetStdHandle(id);
            if !h.is_null() && h != INVALID_HANDLE_VALUE {
                SetHandleInformation(h, HANDLE_FLAG_INHERIT, 0);
            }
        }
    }
}

/// Whether this runs under Wine (its ntdll exports `wine_get_version`): tests of what Wine does
/// not implement as Windows does are told apart.
#[cfg(test)]
pub fn under_wine() -> bool {
    use windows_sys::Win32::System::LibraryLoader::{GetModuleHandleA, GetProcAddress};
    // SAFETY: both take NUL-terminated names; a null module is checked before use.
    unsafe {
        let ntdll = GetModuleHandleA(c"ntdll.dll".as_ptr().cast());
        !ntdll.is_null() && GetProcAddress(ntdll, c"wine_get_version".as_ptr().cast()).is_some()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::process::{Command, Stdio};
    use std::time::{Duration, Instant};

    /// A child that waits for its standard input (cmd's `pause`).
    fn waiting_child() -> std::process::Child {
        Command::new("cmd")
            .args(["/C", "pause"])
            .stdin(Stdio::piped())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap()
    }

    #[test]
    fn a_running_child_is_alive_and_an_ended_one_is_not() {
        let mut child = waiting_child();
        let pid = child.id();
        assert!(pid_alive(pid));
        let start = process_start_time(pid).expect("the start of a running child");
        assert_eq!(process_start_time(pid), Some(start), "stable");
        assert_ne!(process_start_time(std::process::id()), None);
        assert_eq!(parent_of(pid), Some(std::process::id()));
        child.kill().unwrap();
        child.wait().unwrap();
        // Ended, though this process still holds a handle to it.
        assert!(!pid_alive(pid));
        drop(child);
        assert!(!pid_alive(pid));
        assert!(!pid_alive(0));
        assert!(!pid_alive(u32::MAX));
        assert_eq!(process_start_time(0), None);
    }

    #[test]
    fn killing_a_job_ends_its_process() {
        let mut child = waiting_child();
        let pid = child.id();
        track_job(pid);
        kill_job(pid);
        let start = Instant::now();
        let mut ended = false;
        while start.elapsed() < Duration::from_secs(10) {
            if child.try_wait().unwrap().is_some() {
                ended = true;
                break;
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        untrack_job(pid);
        if !ended {
            let _ = child.kill();
        }
        assert!(ended, "the job's process ended");
        assert!(JOBS.lock().unwrap().iter().all(|&(p, _)| p != pid));
    }
}
