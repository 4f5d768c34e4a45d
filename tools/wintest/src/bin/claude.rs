//! A fake Claude Code for end-to-end tests (built as `claude.exe` for Windows). It appends one
//! JSON line to `claude.log` beside itself: `{"argv": [...], "cwd": "...", "pid": N}`. With
//! `--resume ID` it also appends one user turn to that session's transcript under
//! `%CLAUDE_CONFIG_DIR%\projects\<folder of the cwd>\ID.jsonl` (as Claude Code would), and
//! while it runs it keeps `sessions\<pid>.json` there, as Claude Code does. Exits 0.

use std::io::Write as _;
use std::path::{Path, PathBuf};
use std::time::{SystemTime, UNIX_EPOCH};

fn main() {
    if let Err(e) = run() {
        eprintln!("fake claude: {e}");
        std::process::exit(1);
    }
}

fn run() -> Result<(), String> {
    let argv: Vec<String> = std::env::args().skip(1).collect();
    let cwd = std::env::current_dir()
        .map_err(|e| format!("cannot read the working directory: {e}"))?
        .to_string_lossy()
        .into_owned();
    let pid = std::process::id();
    let exe = std::env::current_exe().map_err(|e| format!("cannot find myself: {e}"))?;
    let dir = exe.parent().unwrap_or(Path::new("."));
    let args_json: Vec<String> = argv.iter().map(|a| json_str(a)).collect();
    append(
        &dir.join("claude.log"),
        &format!(
            "{{\"argv\":[{}],\"cwd\":{},\"pid\":{pid}}}\n",
            args_json.join(","),
            json_str(&cwd)
        ),
    )?;
    let resumed = argv
        .iter()
        .position(|a| a == "--resume")
        .and_then(|i| argv.get(i + 1));
    let Some(config) = std::env::var_os("CLAUDE_CONFIG_DIR").map(PathBuf::from) else {
        return Ok(());
    };
    let sessions = config.join("sessions");
    let live = sessions.join(format!("{pid}.json"));
    if let Some(sid) = resumed {
        std::fs::create_dir_all(&sessions)
            .map_err(|e| format!("cannot create {}: {e}", sessions.display()))?;
        std::fs::write(
            &live,
            format!(
                "{{\"pid\":{pid},\"sessionId\":{},\"cwd\":{}}}",
                json_str(sid),
                json_str(&cwd)
            ),
        )
        .map_err(|e| format!("cannot write {}: {e}", live.display()))?;
        let folder = config.join("projects").join(project_folder(&cwd));
        std::fs::create_dir_all(&folder)
            .map_err(|e| format!("cannot create {}: {e}", folder.display()))?;
        let line = format!(
            "{{\"type\":\"user\",\"uuid\":\"fake-claude-exe-{pid}\",\"cwd\":{},\"sessionId\":{},\
             \"timestamp\":\"{}\",\"message\":{{\"role\":\"user\",\"content\":\"a turn from claude.exe\"}}}}\n",
            json_str(&cwd),
            json_str(sid),
            now_rfc3339()
        );
        append(&folder.join(format!("{sid}.jsonl")), &line)?;
        std::fs::remove_file(&live)
            .map_err(|e| format!("cannot remove {}: {e}", live.display()))?;
    }
    Ok(())
}

fn append(path: &Path, text: &str) -> Result<(), String> {
    std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(path)
        .and_then(|mut f| f.write_all(text.as_bytes()))
        .map_err(|e| format!("cannot append to {}: {e}", path.display()))
}

/// Claude Code's project folder name for a working directory: every UTF-16 unit that is not an
/// ASCII letter or digit becomes `-` (the paths of tests are short: no hash suffix).
fn project_folder(cwd: &str) -> String {
    cwd.encode_utf16()
        .map(|u| match u8::try_from(u) {
            Ok(b) if b.is_ascii_alphanumeric() => b as char,
            _ => '-',
        })
        .collect()
}

fn json_str(s: &str) -> String {
    let mut out = String::with_capacity(s.len() + 2);
    out.push('"');
    for c in s.chars() {
        match c {
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            '\n' => out.push_str("\\n"),
            c if (c as u32) < 0x20 => out.push_str(&format!("\\u{:04x}", c as u32)),
            c => out.push(c),
        }
    }
    out.push('"');
    out
}

/// Now as `YYYY-MM-DDTHH:MM:SS.mmmZ`.
fn now_rfc3339() -> String {
    let d = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap_or_default();
    let secs = d.as_secs();
    let (days, rem) = ((secs / 86_400) as i64, secs % 86_400);
    // Days since 1970-01-01 to a civil date (Howard Hinnant's algorithm).
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let day = doy - (153 * mp + 2) / 5 + 1;
    let month = if mp < 10 { mp + 3 } else { mp - 9 };
    let year = yoe + era * 400 + i64::from(month <= 2);
    format!(
        "{year:04}-{month:02}-{day:02}T{:02}:{:02}:{:02}.{:03}Z",
        rem / 3600,
        rem % 3600 / 60,
        rem % 60,
        d.subsec_millis()
    )
}
