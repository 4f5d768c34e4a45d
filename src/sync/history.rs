//! `history.jsonl`, the prompt history behind Claude Code's `/resume` picker: entries of synced
//! sessions are union-merged (paths mapped), so every machine's picker knows every session.
//!
//! Claude Code appends to this file while it runs, so pull never replaces it: missing entries
//! are appended in one write. Entries are identified by their portable bytes.

use std::io::Write;

use anyhow::{Context as _, Result};

use super::log::{self, IdentBag, SegmentWriter};
use super::push::{LogDraft, PushReport, split_lines};
use super::snapshot::Snapshot;
use super::state::LogRecord;
use super::{Engine, FileSecrets};
use crate::claude::jsonscan::{TopScanner, Want};
use crate::config::SecretMode;
use crate::os::IoAt;
use crate::store::{BlobReader, Txn};

/// The key of `history.jsonl` in the state index.
pub const KEY: &str = "history.jsonl";

static LINE_WANT: &[Want] = &[
    Want {
        key: "project",
        cap: 8192,
    },
    Want {
        key: "sessionId",
        cap: 256,
    },
];

/// Whether a local history line belongs to a synced project.
pub(crate) fn synced_line(engine: &Engine, line: &[u8], all: bool) -> bool {
    synced(engine, line, all).0
}

/// Whether a local history line belongs to a synced project, and its session.
fn synced(engine: &Engine, line: &[u8], all: bool) -> (bool, Option<String>) {
    let mut s = TopScanner::new(LINE_WANT);
    s.feed(log::strip_nl(line));
    if !s.done() || !s.valid() {
        return (false, None);
    }
    let sid = s.get_str("sessionId");
    match s.get_str("project") {
        Some(p) => (all || engine.config.in_sync_dirs(&p), sid),
        None => (false, sid),
    }
}

/// Append the local entries the stored history lacks.
#[allow(clippy::too_many_arguments)]
pub(crate) fn push(
    engine: &Engine,
    snap: &Snapshot,
    size: u64,
    mtime_ns: i128,
    all: bool,
    txn: &mut Txn,
    reader: &mut BlobReader,
    report: &mut PushReport,
) -> Result<Option<LogDraft>> {
    let path = engine.claude.history();
    let data = std::fs::read(&path).with_context(|| format!("cannot read {}", path.display()))?;
    let complete = memchr::memrchr(b'\n', &data).map_or(0, |i| i + 1);
    let mut bag = IdentBag::default();
    log::for_each_repo_line(reader, &snap.history.segs, |l| {
        bag.add(log::identity(l));
        Ok(())
    })?;
    let mut writer = SegmentWriter::new(snap.history.clone());
    let mut n = 0u64;
    // Entries of sessions held back for their secrets (`secret_scan = block`) stay here too.
    let blocked: std::collections::BTreeSet<String> = report.blocked.iter().cloned().collect();
    let block = engine.config.secret_scan == SecretMode::Block;
    let mut secrets = FileSecrets::default();
    for (i, line) in split_lines(&data[..complete]).enumerate() {
        // Every line teaches the file's secret state, synced or not, as pull reads them.
        let mut out = Vec::with_capacity(line.len());
        let mut found = Vec::new();
        engine.outbound(
            line,
            &mut out,
            KEY,
            i as u64 + 1,
            &mut found,
            &mut secrets,
            0,
        );
        let (is_synced, sid) = synced(engine, line, all);
        if !is_synced || sid.is_some_and(|s| blocked.contains(&s)) {
            continue;
        }
        if bag.take(&log::identity(&out)) {
            continue;
        }
        let has_secrets = !found.is_empty();
        report.secrets.extend(found);
        if block && has_secrets {
            report.blocked.push(format!("{KEY} line {}", i + 1));
            continue;
        }
        writer.push(&out, txn)?;
        n += 1;
    }
    report.history_lines += n;
    let segs = if writer.is_empty() {
        snap.history
            .segs
            .iter()
            .map(|s| (s.name.clone(), Some(s.oid.clone()), s.size))
            .collect()
    } else {
        report.bytes += writer.appended;
        writer.finish(txn, reader)?
    };
    Ok(Some(LogDraft {
        key: KEY.to_string(),
        repo_dir: snap.history.dir.clone(),
        segs,
        local_len: complete as u64,
        local_fp: 0,
        local_lines: 0,
        equal: false,
        size,
        mtime_ns,
        secret_lines: None,
    }))
}

/// Append the stored entries this machine lacks to `history.jsonl`; returns how many.
pub fn pull(
    engine: &Engine,
    snap: &Snapshot,
    record: Option<&LogRecord>,
    reader: &mut BlobReader,
    dry_run: bool,
) -> Result<(u64, Option<LogRecord>)> {
    if snap.history.segs.is_empty() || record.is_some_and(|r| r.segs == snap.history.segs) {
        return Ok((0, None));
    }
    let path = engine.claude.history();
    if crate::claude::discover::link_below(&engine.claude.root, &path).is_some() {
        // A symbolic link is never written through (push reports it).
        return Ok((0, None));
    }
    let before = std::fs::metadata(&path)
        .ok()
        .map(|m| (m.len(), crate::os::mtime_ns(&m)));
    // Entries added here since the last push must still look changed to the next push.
    let pushed_all = record.is_some_and(|r| before == Some((r.size, r.mtime_ns)));
    let local = match std::fs::read(&path) {
        Ok(d) => d,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Vec::new(),
        Err(e) => return Err(e).with_context(|| format!("cannot read {}", path.display())),
    };
    let mut have = IdentBag::default();
    let mut ignored = Vec::new();
    let mut secrets = FileSecrets::default();
    for line in split_lines(&local) {
        let mut out = Vec::with_capacity(line.len());
        engine.outbound(line, &mut out, KEY, 0, &mut ignored, &mut secrets, 0);
        have.add(log::identity(&out));
    }
    let mut add: Vec<u8> = Vec::new();
    let mut n = 0u64;
    log::for_each_repo_line(reader, &snap.history.segs, |l| {
        if have.take(&log::identity(l)) {
            return Ok(());
        }
        // An entry of a project this machine has no path for would not make sense here.
        let mut line = Vec::with_capacity(l.len());
        if !engine
            .mapper
            .to_local(l, crate::paths::Context::Json, &mut line)
            .unknown
            .is_empty()
        {
            return Ok(());
        }
        add.extend_from_slice(&line);
        if !add.ends_with(b"\n") {
            add.push(b'\n');
        }
        n += 1;
        Ok(())
    })?;
    if n > 0 && !dry_run {
        let mut f = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(&path)
            .at("open", &path)?;
        if !local.is_empty() && !local.ends_with(b"\n") {
            add.insert(0, b'\n');
        }
        // One write: Claude Code may be appending to the same file.
        f.write_all(&add).at("append to", &path)?;
    }
    let after = std::fs::metadata(&path)
        .ok()
        .map(|m| (m.len(), crate::os::mtime_ns(&m)));
    let (size, mtime_ns) = if pushed_all {
        after.unwrap_or((0, 0))
    } else {
        (0, 0)
    };
    let rec = LogRecord {
        repo_dir: snap.history.dir.clone(),
        segs: snap.history.segs.clone(),
        local_len: 0,
        local_fp: 0,
        local_lines: 0,
        equal: false,
        size,
        mtime_ns,
        secret_lines: None,
    };
    Ok((n, Some(rec)))
}
