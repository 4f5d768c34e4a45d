//! Converting a repository written by the Python `claude-session-sync` 0.x into the ccsync
//! format, losing no session, memory file or placeholder.
//!
//! The Python layout (0.3): `sessions/_paths.json`, `sessions/<ENC(portable cwd)>/<id>.jsonl`
//! (re-serialised JSON, `{{NAME}}` in string values only), `session_meta/<id>.json`
//! (`last_editor`), `shared_config/{CLAUDE.md, memory/<dir>/…, plans/…}` (raw copies, paths not
//! converted), `shared_placeholders.json` (the same table as ours), `machines/<id>.json` (another
//! shape), `locks/*.lock.json`. Older versions kept `sessions/<machine>/<dir>/<id>.jsonl`.
//!
//! The conversion is one compare-and-swap commit on top of the legacy head: transcripts become
//! segmented logs (merged by line identity into any session ccsync already stores), raw paths
//! left by the Python tool become placeholders, memory/CLAUDE.md/plans move under `projects/` and
//! `global/`, machine records take our shape, and the legacy folders are removed (they stay in the
//! git history). Files it does not know are left where they are.

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::time::Duration;

use anyhow::{Context as _, Result};
use serde::Deserialize;

use crate::claude::jsonscan::{TopScanner, Want};
use crate::paths::{self, Context, Mapper, PathStyle, is_terminator};
use crate::store::format::{
    self, FORMAT_FILE, FormatMarker, MachineRecord, SHARED_PLACEHOLDERS, SharedPlaceholders,
};
use crate::store::layout::{self, ProjectRecord, SessionMeta, TRANSCRIPT_LOG};
use crate::store::{BlobReader, Oid, Store, TreeEntry};
use crate::sync::log::{self, SegmentWriter, StoredLog};
use crate::sync::snapshot::Snapshot;

/// What a migration converted.
#[derive(Debug, Default, Clone, serde::Serialize)]
pub struct MigrationReport {
    pub sessions: usize,
    pub memory_files: usize,
    pub placeholders: usize,
}

/// Whether the top-level names of a repository look like the Python tool's layout.
pub fn looks_legacy(top: &[&str]) -> bool {
    top.contains(&"session_meta")
        || top.contains(&"shared_config")
        || (top.contains(&"sessions") && !top.contains(&"ccsync.json"))
}

#[derive(Deserialize, Default)]
struct LegacySessionMeta {
    #[serde(default)]
    last_editor: Option<String>,
}

#[derive(Deserialize, Default)]
struct LegacyMachine {
    #[serde(default)]
    machine_id: Option<String>,
    #[serde(default)]
    updated_at: Option<String>,
}

/// Placeholder names, and every machine's path for each, as one mapper per path style.
struct LegacyMappers {
    names: BTreeSet<String>,
    by_style: BTreeMap<&'static str, Mapper>,
    machine_style: BTreeMap<String, PathStyle>,
}

const ALT: &str = "_CCSYNCALT";

fn guess_style(path: &str) -> PathStyle {
    let b = path.as_bytes();
    if (b.len() >= 2 && b[0].is_ascii_alphabetic() && b[1] == b':') || path.starts_with("\\\\") {
        PathStyle::Windows
    } else {
        PathStyle::Posix
    }
}

impl LegacyMappers {
    fn new(shared: &SharedPlaceholders) -> Self {
        let mut names = BTreeSet::new();
        let mut machine_style = BTreeMap::new();
        let mut entries: BTreeMap<&'static str, Vec<(String, String)>> = BTreeMap::new();
        let mut i = 0;
        for (name, per) in &shared.placeholders {
            if !paths::valid_name(name) {
                continue;
            }
            names.insert(name.clone());
            for (machine, path) in per {
                let style = guess_style(path);
                machine_style.entry(machine.clone()).or_insert(style);
                if paths::normalize_path(style, name, path).is_err() {
                    continue;
                }
                i += 1;
                entries
                    .entry(style.as_str())
                    .or_default()
                    .push((format!("{name}{ALT}{i}"), path.clone()));
            }
        }
        let mut by_style = BTreeMap::new();
        for (style, list) in entries {
            let st = if style == "windows" {
                PathStyle::Windows
            } else {
                PathStyle::Posix
            };
            if let Ok(m) = Mapper::new(st, list) {
                by_style.insert(style, m);
            }
        }
        LegacyMappers {
            names,
            by_style,
            machine_style,
        }
    }

    /// Legacy content → our portable form: `{{NAME}}` tokens the Python tool wrote are kept (and
    /// the rest of a Windows path after them gets `/`), other `{{` are escaped, and raw paths of
    /// any machine become placeholders.
    fn convert(&self, data: &[u8], ctx: Context, editor_style: PathStyle) -> Vec<u8> {
        let mapper = self.by_style.get(editor_style.as_str());
        let mut out = Vec::with_capacity(data.len() + 64);
        let mut text_start = 0;
        let mut i = 0;
        let flush = |out: &mut Vec<u8>, text: &[u8]| match mapper {
            Some(m) => {
                let mut conv = Vec::with_capacity(text.len());
                m.to_portable(text, ctx, &mut conv);
                out.extend_from_slice(&strip_alt(&conv));
            }
            None => {
                let mut k = 0;
                while k < text.len() {
                    if text[k..].starts_with(b"{{") {
                        out.extend_from_slice(b"{{{{");
                        k += 2;
                    } else {
                        out.push(text[k]);
                        k += 1;
                    }
                }
            }
        };
        while let Some(rel) = memchr::memmem::find(&data[i..], b"{{") {
            let at = i + rel;
            let name_end = data[at + 2..]
                .iter()
                .position(|b| !(b.is_ascii_uppercase() || b.is_ascii_digit() || *b == b'_'))
                .map(|p| at + 2 + p);
            let token = name_end
                .filter(|&e| data[e..].starts_with(b"}}"))
                .and_then(|e| {
                    let name = std::str::from_utf8(&data[at + 2..e]).ok()?;
                    self.names.contains(name).then_some(e + 2)
                });
            match token {
                Some(end) => {
                    flush(&mut out, &data[text_start..at]);
                    out.extend_from_slice(&data[at..end]);
                    let mut k = end;
                    if editor_style == PathStyle::Windows {
                        // `{{P}}\\app\\src` → `{{P}}/app/src`
                        let sep: &[u8] = if ctx == Context::Json { b"\\\\" } else { b"\\" };
                        while data[k..].starts_with(sep) {
                            out.push(b'/');
                            k += sep.len();
                            while k < data.len()
                                && !is_terminator(data[k])
                                && data[k] != b'\\'
                                && data[k] != b'/'
                            {
                                out.push(data[k]);
                                k += 1;
                            }
                        }
                    }
                    i = k;
                    text_start = k;
                }
                None => i = at + 2,
            }
        }
        flush(&mut out, &data[text_start..]);
        out
    }
}

/// `{{NAME_CCSYNCALT7` → `{{NAME`.
fn strip_alt(data: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(data.len());
    let mut i = 0;
    while let Some(rel) = memchr::memmem::find(&data[i..], ALT.as_bytes()) {
        let at = i + rel;
        out.extend_from_slice(&data[i..at]);
        let mut k = at + ALT.len();
        while k < data.len() && data[k].is_ascii_digit() {
            k += 1;
        }
        i = k;
    }
    out.extend_from_slice(&data[i..]);
    out
}

static CWD_WANT: &[Want] = &[Want {
    key: "cwd",
    cap: 8192,
}];

fn first_cwd(portable: &[u8]) -> Option<String> {
    for line in portable.split(|b| *b == b'\n').take(200) {
        let mut s = TopScanner::new(CWD_WANT);
        s.feed(line);
        if let Some(c) = s.get_str("cwd").filter(|c| !c.is_empty()) {
            // Stored cwds are text-context portable paths; JSON decoding gave the text.
            return Some(c);
        }
    }
    None
}

fn blob_json<T: for<'de> Deserialize<'de> + Default>(
    reader: &mut BlobReader,
    e: Option<&TreeEntry>,
) -> T {
    e.and_then(|e| reader.read(&e.oid).ok())
        .and_then(|b| serde_json::from_slice(&b).ok())
        .unwrap_or_default()
}

/// Convert the legacy repository at `head` (one compare-and-swap commit).
pub fn migrate(
    store: &Store,
    _head: Option<&Oid>,
    machine: &str,
    timeout: Duration,
) -> Result<MigrationReport> {
    let mut report = MigrationReport::default();
    store
        .commit_and_push(
            "convert from claude-session-sync 0.x",
            false,
            timeout,
            |head, txn| {
                report = MigrationReport::default();
                let Some(head) = head else { return Ok(()) };
                let entries = store.tree(head)?;
                let by_path: BTreeMap<String, &TreeEntry> = entries
                    .iter()
                    .filter(|e| e.is_regular_file())
                    .filter_map(|e| e.path_str().map(|p| (p.to_string(), e)))
                    .collect();
                let mut reader = store.git.reader()?;
                let shared: SharedPlaceholders =
                    blob_json(&mut reader, by_path.get(SHARED_PLACEHOLDERS).copied());
                report.placeholders = shared.placeholders.len();
                let mappers = LegacyMappers::new(&shared);
                let style_of = |m: &str| {
                    mappers
                        .machine_style
                        .get(m)
                        .copied()
                        .unwrap_or(PathStyle::Posix)
                };
                let any_editor = shared
                    .placeholders
                    .values()
                    .flat_map(|p| p.keys())
                    .next()
                    .cloned()
                    .unwrap_or_else(|| machine.to_string());
                let paths_json: BTreeMap<String, String> =
                    blob_json(&mut reader, by_path.get("sessions/_paths.json").copied());
                let mem_paths_json: BTreeMap<String, String> = blob_json(
                    &mut reader,
                    by_path.get("shared_config/memory/_paths.json").copied(),
                );
                let snap = Snapshot::load(store, Some(head))?;
                let mut touched_projects: BTreeSet<String> = BTreeSet::new();
                let mut project_cwd: BTreeMap<String, String> = BTreeMap::new();

                // Sessions (several copies of one session, from older layouts, are merged).
                let mut by_sid: BTreeMap<String, Vec<(&String, &TreeEntry)>> = BTreeMap::new();
                for (p, e) in &by_path {
                    let Some(rest) = p.strip_prefix("sessions/") else {
                        continue;
                    };
                    let Some(stem) = rest
                        .rsplit('/')
                        .next()
                        .and_then(|f| f.strip_suffix(".jsonl"))
                    else {
                        continue;
                    };
                    if layout::valid_session_id(stem) && rest.contains('/') {
                        by_sid.entry(stem.to_string()).or_default().push((p, e));
                    }
                }
                for (sid, copies) in &by_sid {
                    let editor = blob_json::<LegacySessionMeta>(
                        &mut reader,
                        by_path.get(&format!("session_meta/{sid}.json")).copied(),
                    )
                    .last_editor
                    .unwrap_or_else(|| any_editor.clone());
                    let mut portable_copies = Vec::new();
                    for (p, e) in copies {
                        let raw = reader.read(&e.oid)?;
                        let conv = mappers.convert(&raw, Context::Json, style_of(&editor));
                        let dir = p
                            .strip_prefix("sessions/")
                            .and_then(|r| r.split('/').next())
                            .unwrap_or("");
                        portable_copies.push((conv, dir.to_string()));
                    }
                    let cwd = portable_copies
                        .iter()
                        .find_map(|(c, _)| first_cwd(c))
                        .or_else(|| {
                            portable_copies
                                .iter()
                                .find_map(|(_, d)| paths_json.get(d).cloned())
                        });
                    let Some(cwd) = cwd else {
                        tracing::warn!(
                            "legacy session {sid} has no working directory; left in sessions/"
                        );
                        continue;
                    };
                    let existing = snap.sessions.get(sid);
                    let slug = existing
                        .map(|s| s.slug.clone())
                        .unwrap_or_else(|| layout::project_slug(&cwd));
                    let dir = existing
                        .map(|s| s.dir.clone())
                        .unwrap_or_else(|| layout::session_dir(&slug, sid));
                    let stored = existing
                        .and_then(|s| s.transcript().cloned())
                        .unwrap_or_else(|| StoredLog {
                            dir: format!("{dir}/{TRANSCRIPT_LOG}"),
                            segs: vec![],
                        });
                    // The union keeps, for each line identity, the largest count any copy has.
                    let mut have: HashMap<log::Ident, u32> = HashMap::new();
                    log::for_each_repo_line(&mut reader, &stored.segs, |l| {
                        *have.entry(log::identity(l)).or_default() += 1;
                        Ok(())
                    })?;
                    let mut writer = SegmentWriter::new(stored.clone());
                    let mut all = Vec::new();
                    for (conv, _) in &portable_copies {
                        let mut mine: HashMap<log::Ident, u32> = HashMap::new();
                        for line in conv.split_inclusive(|b| *b == b'\n') {
                            let id = log::identity(line);
                            let n = mine.entry(id).or_default();
                            *n += 1;
                            let h = have.entry(id).or_default();
                            if *n <= *h {
                                continue;
                            }
                            *h += 1;
                            let mut l = line.to_vec();
                            if !l.ends_with(b"\n") {
                                l.push(b'\n');
                            }
                            writer.push(&l, txn)?;
                            all.extend_from_slice(&l);
                        }
                    }
                    let size = stored.size() + writer.appended;
                    let lines = writer.lines;
                    if !writer.is_empty() {
                        writer.finish(txn, &mut reader)?;
                    }
                    let meta = legacy_meta(sid, &cwd, &editor, &all, size, lines)?;
                    let m = txn.blob(&format::to_json_bytes(&meta)?)?;
                    txn.put(&format!("{dir}/{}", layout::META_FILE), m);
                    if snap.projects.get(&slug).is_none_or(|p| p.record.is_none())
                        && touched_projects.insert(slug.clone())
                    {
                        let m =
                            txn.blob(&format::to_json_bytes(&ProjectRecord { cwd: cwd.clone() })?)?;
                        txn.put(
                            &format!("{}/{}", layout::project_dir(&slug), layout::PROJECT_FILE),
                            m,
                        );
                    }
                    for (_, d) in &portable_copies {
                        project_cwd.entry(d.clone()).or_insert_with(|| cwd.clone());
                    }
                    report.sessions += 1;
                }

                // Memory, CLAUDE.md, plans.
                for (p, e) in &by_path {
                    let target = if let Some(rest) = p.strip_prefix("shared_config/memory/") {
                        let Some((dir, rel)) = rest.split_once('/') else {
                            continue;
                        };
                        let cwd = paths_json
                            .get(dir)
                            .or(project_cwd.get(dir))
                            .or(mem_paths_json.get(dir))
                            .cloned();
                        let Some(cwd) = cwd else { continue };
                        let slug = layout::project_slug(&cwd);
                        if snap.projects.get(&slug).is_none_or(|p| p.record.is_none())
                            && touched_projects.insert(slug.clone())
                        {
                            let m = txn.blob(&format::to_json_bytes(&ProjectRecord { cwd })?)?;
                            txn.put(
                                &format!("{}/{}", layout::project_dir(&slug), layout::PROJECT_FILE),
                                m,
                            );
                        }
                        report.memory_files += 1;
                        format!("{}/{rel}", layout::memory_dir(&slug))
                    } else if *p == "shared_config/CLAUDE.md" {
                        layout::claude_md_path()
                    } else if let Some(rel) = p.strip_prefix("shared_config/plans/") {
                        format!("{}/{rel}", layout::plans_dir())
                    } else {
                        continue;
                    };
                    if format::check_rel_path(&target).is_err() {
                        continue;
                    }
                    let raw = reader.read(&e.oid)?;
                    let conv = mappers.convert(
                        &raw,
                        crate::sync::files::context_for(&target),
                        style_of(&any_editor),
                    );
                    let target = if by_path.contains_key(&target)
                        && by_path.get(&target).map(|x| &x.oid) != Some(&e.oid)
                    {
                        // ccsync already stores this file: keep both.
                        crate::sync::files::conflict_path(
                            &target,
                            machine,
                            chrono::Utc::now(),
                            &raw,
                            |p| by_path.contains_key(p),
                        )?
                    } else {
                        target
                    };
                    let m = txn.blob(&conv)?;
                    txn.put(&target, m);
                }

                // Machine records in our shape.
                for (p, e) in &by_path {
                    let Some(id) = p
                        .strip_prefix("machines/")
                        .and_then(|r| r.strip_suffix(".json"))
                    else {
                        continue;
                    };
                    if !format::valid_machine_id(id) {
                        continue;
                    }
                    let bytes = reader.read(&e.oid)?;
                    if serde_json::from_slice::<MachineRecord>(&bytes).is_ok() {
                        continue;
                    }
                    let old: LegacyMachine = serde_json::from_slice(&bytes).unwrap_or_default();
                    let when = old
                        .updated_at
                        .and_then(|t| chrono::DateTime::parse_from_rfc3339(&t).ok())
                        .map(|t| t.with_timezone(&chrono::Utc));
                    let rec = MachineRecord {
                        machine_id: old.machine_id.unwrap_or_else(|| id.to_string()),
                        hostname: String::new(),
                        path_style: style_of(id),
                        registered_at: when,
                        last_seen: when,
                        ccsync_version: "claude-session-sync 0.x".into(),
                        install_id: String::new(),
                    };
                    let m = txn.blob(&format::to_json_bytes(&rec)?)?;
                    txn.put(p, m);
                }
                for dir in ["sessions", "session_meta", "shared_config"] {
                    if by_path.keys().any(|p| p.starts_with(&format!("{dir}/"))) {
                        txn.delete(dir);
                    }
                }
                for p in by_path
                    .keys()
                    .filter(|p| p.starts_with("locks/") && p.ends_with(".lock.json"))
                {
                    txn.delete(p);
                }
                if !by_path.contains_key(FORMAT_FILE) {
                    let m = txn.blob(&format::to_json_bytes(&FormatMarker::new(machine))?)?;
                    txn.put(FORMAT_FILE, m);
                }
                Ok(())
            },
        )
        .context("cannot convert the Python claude-session-sync repository")?;
    Ok(report)
}

fn legacy_meta(
    sid: &str,
    cwd: &str,
    editor: &str,
    portable: &[u8],
    size: u64,
    lines: u64,
) -> Result<SessionMeta> {
    // Read the converted transcript like a local one for its title and times.
    let mut tmp = tempfile::NamedTempFile::new()?;
    std::io::Write::write_all(&mut tmp, portable)?;
    let t = crate::claude::transcript::scan(tmp.path(), None)?;
    Ok(SessionMeta {
        session_id: sid.to_string(),
        cwd: cwd.to_string(),
        title: t.title().map(str::to_string),
        custom_title: t.custom_title.is_some(),
        first_activity: t.first_activity,
        last_activity: t.last_activity,
        last_machine: editor.to_string(),
        size,
        lines: lines.max(t.lines),
        subagents: Vec::new(),
        updated_at: Some(chrono::Utc::now()),
        picker_hidden: t.picker_hidden_reason().map(str::to_string),
        is_sidechain: t.is_sidechain,
        entrypoint: t.entrypoint.clone(),
        // Read from the portable transcript, so already portable.
        relocated_cwd: t.relocated_cwd.clone(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn legacy_content_conversion() {
        let mut shared = SharedPlaceholders::default();
        shared.set("HOME", "a", "/home/a");
        shared.set("PROJECTS", "a", "/home/a/p");
        shared.set("PROJECTS", "b", "/srv/b");
        shared.set("HOME", "w", "C:\\Users\\w");
        let m = LegacyMappers::new(&shared);
        // Python tokens stay, raw paths of any machine become tokens, other braces are escaped.
        let raw = br#"{"cwd":"{{PROJECTS}}/app","k":{"/home/a/p/app/x.rs":1},"t":"{{ x }} /srv/b/y {{UNKNOWN}}"}"#;
        let got = String::from_utf8(m.convert(raw, Context::Json, PathStyle::Posix)).unwrap();
        assert_eq!(
            got,
            r#"{"cwd":"{{PROJECTS}}/app","k":{"{{PROJECTS}}/app/x.rs":1},"t":"{{{{ x }} {{PROJECTS}}/y {{{{UNKNOWN}}"}"#
        );
        // A Windows editor's token is followed by backslashes: they become '/'.
        let raw = br#"{"cwd":"{{HOME}}\\src\\app","x":"C:\\Users\\w\\y"}"#;
        let got = String::from_utf8(m.convert(raw, Context::Json, PathStyle::Windows)).unwrap();
        assert_eq!(got, r#"{"cwd":"{{HOME}}/src/app","x":"{{HOME}}/y"}"#);
        assert!(looks_legacy(&["README.md", "sessions", "session_meta"]));
        assert!(!looks_legacy(&["ccsync.json", "projects"]));
    }
}
