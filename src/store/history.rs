//! The sync branch's history, read (never written) for `restore`: its commits along the first
//! parent (every push is a compare-and-swap on the remote head, so the history is a line), who
//! made each, and which files each one added, changed or deleted.
//!
//! Everything goes through the `git` command like the rest of the store: one `git log` for the
//! commits, one `git log --raw` for the changes of the paths asked for, one
//! `cat-file --batch-check` for the sizes of the blobs to show.

use std::collections::HashMap;

use anyhow::{Result, anyhow, bail};
use chrono::{DateTime, Utc};

use super::git::{Git, Oid};

/// One commit of the sync branch.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Commit {
    pub oid: Oid,
    /// The committer's time (the clock of the machine that made it).
    pub time: DateTime<Utc>,
    /// The machine that made it, when ccsync did (its author is `ccsync <MACHINE@ccsync>`).
    pub machine: Option<String>,
}

/// What one commit did to one file.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RawChange {
    pub path: String,
    /// `A`dded, `M`odified, `D`eleted, `T`ype changed.
    pub status: char,
    /// The blob before (`None` when added) and after (`None` when deleted).
    pub old: Option<Oid>,
    pub new: Option<Oid>,
    /// Whether the file was a regular file before and after (symbolic links and submodules a
    /// hostile repository holds are not files to bring back).
    pub old_regular: bool,
    pub new_regular: bool,
}

/// The commits of `head` along the first parent, newest first.
pub fn commits(git: &Git, head: &Oid) -> Result<Vec<Commit>> {
    let text = git.run(["log", "--first-parent", "--format=%H %ct %ae", &head.0])?;
    let mut out = Vec::new();
    for line in text.lines() {
        let mut it = line.splitn(3, ' ');
        let (Some(oid), Some(t)) = (it.next().and_then(Oid::parse), it.next()) else {
            continue;
        };
        let Some(time) = t
            .parse::<i64>()
            .ok()
            .and_then(|s| DateTime::from_timestamp(s, 0))
        else {
            continue;
        };
        out.push(Commit {
            oid,
            time,
            machine: it.next().and_then(machine_of_author),
        });
    }
    Ok(out)
}

/// The machine named by a commit's author e-mail (`MACHINE@ccsync`), if ccsync made it.
pub fn machine_of_author(email: &str) -> Option<String> {
    let m = email.trim().strip_suffix("@ccsync")?;
    crate::store::format::valid_machine_id(m).then(|| m.to_string())
}

/// The changes to files matching `pathspecs` (git's default pathspec magic: `*` also matches
/// `/`) made by each first-parent commit of `head`, newest first. Commits that changed none of
/// them are left out.
pub fn changes(git: &Git, head: &Oid, pathspecs: &[&str]) -> Result<Vec<(Oid, Vec<RawChange>)>> {
    let mut args: Vec<String> = [
        "log",
        "--first-parent",
        "--root",
        "--no-renames",
        "--raw",
        "-z",
        "--no-abbrev",
        "--format=commit %H",
        &head.0,
        "--",
    ]
    .iter()
    .map(|s| s.to_string())
    .collect();
    args.extend(pathspecs.iter().map(|s| s.to_string()));
    let out = git
        .cmd()
        .args(&args)
        .output()
        .map_err(|e| anyhow!("cannot run git log: {e}"))?;
    if !out.status.success() {
        bail!(
            "git log {} in {} failed: {}",
            head.short(),
            git.dir.display(),
            String::from_utf8_lossy(&out.stderr).trim()
        );
    }
    Ok(parse_changes(&out.stdout))
}

/// Parse `git log --raw -z --format='commit %H'`: a `commit <id>` token, then for each file a
/// `:<old mode> <new mode> <old id> <new id> <status>` token followed by the path token.
fn parse_changes(raw: &[u8]) -> Vec<(Oid, Vec<RawChange>)> {
    let mut out: Vec<(Oid, Vec<RawChange>)> = Vec::new();
    let mut tokens = raw.split(|b| *b == 0);
    while let Some(tok) = tokens.next() {
        let tok = trim_newlines(tok);
        if tok.is_empty() {
            continue;
        }
        if let Some(id) = tok.strip_prefix(b"commit ") {
            if let Some(oid) = std::str::from_utf8(id).ok().and_then(Oid::parse) {
                out.push((oid, Vec::new()));
            }
            continue;
        }
        if tok.first() != Some(&b':') {
            continue;
        }
        // The path always follows its raw entry (whatever bytes it holds).
        let Some(path) = tokens.next() else { break };
        let Some(change) = parse_raw(&tok[1..], path) else {
            continue;
        };
        if let Some((_, list)) = out.last_mut() {
            list.push(change);
        }
    }
    out
}

fn trim_newlines(mut t: &[u8]) -> &[u8] {
    while let Some(rest) = t.strip_prefix(b"\n") {
        t = rest;
    }
    t
}

fn parse_raw(entry: &[u8], path: &[u8]) -> Option<RawChange> {
    let entry = std::str::from_utf8(entry).ok()?;
    let path = std::str::from_utf8(path).ok()?.to_string();
    let f: Vec<&str> = entry.split(' ').collect();
    let [old_mode, new_mode, old, new, status] = f.as_slice() else {
        return None;
    };
    let status = status.chars().next()?;
    let blob = |id: &str| Oid::parse(id).filter(|o| !o.0.bytes().all(|b| b == b'0'));
    let regular = |mode: &str| mode == "100644" || mode == "100755";
    Some(RawChange {
        path,
        status,
        old: blob(old),
        new: blob(new),
        old_regular: regular(old_mode),
        new_regular: regular(new_mode),
    })
}

/// The sizes of blobs (those the repository lacks are left out).
pub fn blob_sizes(git: &Git, oids: &[Oid]) -> Result<HashMap<Oid, u64>> {
    let oids: Vec<Oid> = oids
        .iter()
        .filter(|o| Oid::parse(&o.0).is_some_and(|p| p == **o))
        .cloned()
        .collect();
    let mut sizes = HashMap::new();
    if oids.is_empty() {
        return Ok(sizes);
    }
    let out = git.batch_check("%(objectname) %(objectsize)", &oids)?;
    for line in out.lines() {
        let mut it = line.split(' ');
        if let (Some(id), Some(size)) = (
            it.next().and_then(Oid::parse),
            it.next().and_then(|s| s.parse::<u64>().ok()),
        ) {
            sizes.insert(id, size);
        }
    }
    Ok(sizes)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn commit(git: &Git, parent: Option<&Oid>, who: &str, files: &[(&str, Option<&str>)]) -> Oid {
        let mut txn = git.transaction().unwrap();
        for (path, content) in files {
            match content {
                Some(c) => {
                    let m = txn.blob(c.as_bytes()).unwrap();
                    txn.put(path, m);
                }
                None => txn.delete(path),
            }
        }
        let c = txn
            .commit(parent, &format!("ccsync <{who}@ccsync>"), "t")
            .unwrap();
        git.set_ref("refs/heads/main", Some(&c)).unwrap();
        c
    }

    #[test]
    fn commits_and_changes_along_the_first_parent() {
        let dir = tempfile::tempdir().unwrap();
        let git = Git::init_bare(&dir.path().join("r.git")).unwrap();
        let c1 = commit(
            &git,
            None,
            "a",
            &[("projects/p/memory/M.md", Some("one\n")), ("x", Some("x"))],
        );
        let c2 = commit(
            &git,
            Some(&c1),
            "b",
            &[("projects/p/memory/M.md", Some("two\n"))],
        );
        let c3 = commit(&git, Some(&c2), "a", &[("x", Some("y"))]);
        let c4 = commit(&git, Some(&c3), "b", &[("projects/p/memory/M.md", None)]);
        let all = commits(&git, &c4).unwrap();
        let ids: Vec<&Oid> = all.iter().map(|c| &c.oid).collect();
        assert_eq!(ids, [&c4, &c3, &c2, &c1]);
        assert_eq!(all[0].machine.as_deref(), Some("b"));
        assert_eq!(all[1].machine.as_deref(), Some("a"));

        let ch = changes(&git, &c4, &["projects/*/memory/*"]).unwrap();
        let order: Vec<&Oid> = ch.iter().map(|(c, _)| c).collect();
        assert_eq!(order, [&c4, &c2, &c1], "c3 did not touch memory");
        let del = &ch[0].1[0];
        assert_eq!((del.status, del.new.is_none()), ('D', true));
        assert_eq!(del.path, "projects/p/memory/M.md");
        let modified = &ch[1].1[0];
        assert_eq!(modified.status, 'M');
        assert_eq!(
            modified.old, ch[2].1[0].new,
            "the old blob is the one added"
        );
        assert!(modified.new_regular && modified.old_regular);
        let sizes = blob_sizes(&git, &[del.old.clone().unwrap(), Oid("0".repeat(40))]).unwrap();
        assert_eq!(sizes.get(del.old.as_ref().unwrap()), Some(&4));
        assert_eq!(sizes.len(), 1, "an object the repository lacks has no size");
    }

    #[test]
    fn raw_output_with_odd_paths_parses() {
        let z = "0".repeat(40);
        let a = "a".repeat(40);
        let raw = format!(
            "commit {a}\0\n:000000 100644 {z} {a} A\0dir/with\nnewline\0:100644 120000 {a} {a} T\0commit-like\0commit {b}\0\n",
            b = "b".repeat(40)
        );
        let parsed = parse_changes(raw.as_bytes());
        assert_eq!(parsed.len(), 2);
        let first = &parsed[0].1;
        assert_eq!(first.len(), 2);
        assert_eq!(first[0].path, "dir/with\nnewline");
        assert_eq!(first[0].old, None);
        assert_eq!(
            first[1].path, "commit-like",
            "a path is never taken for a commit"
        );
        assert!(first[1].old_regular && !first[1].new_regular);
        assert!(parsed[1].1.is_empty());
        assert_eq!(machine_of_author("laptop@ccsync"), Some("laptop".into()));
        assert_eq!(machine_of_author("someone@example.com"), None);
    }
}
