//! Unit tests of `restore`: dates, the history read from a repository with commits at chosen
//! times, and what `list` makes of it.

use std::io::Write as _;
use std::process::Stdio;

use super::*;
use crate::claude::ClaudeDir;
use crate::config::{Config, Home};
use crate::store::Git;

/// A commit on `main` of `git` made by `who` at `time` (seconds), on `parent`: files set
/// (`Some`) or deleted (`None`). Written with fast-import so that the time is exact.
fn commit_at(
    git: &Git,
    parent: Option<&Oid>,
    who: &str,
    time: i64,
    files: &[(&str, Option<&str>)],
) -> Oid {
    let mut s: Vec<u8> = Vec::new();
    for (i, (_, data)) in files.iter().enumerate() {
        if let Some(d) = data {
            s.extend_from_slice(
                format!("blob\nmark :{}\ndata {}\n{d}\n", i + 1, d.len()).as_bytes(),
            );
        }
    }
    s.extend_from_slice(
        format!(
            "commit refs/heads/main\ncommitter ccsync <{who}@ccsync> {time} +0000\ndata 1\nt\n"
        )
        .as_bytes(),
    );
    if let Some(p) = parent {
        s.extend_from_slice(format!("from {}\n", p.0).as_bytes());
    }
    for (i, (path, data)) in files.iter().enumerate() {
        // `@path`: a symbolic link.
        let (mode, path) = match path.strip_prefix('@') {
            Some(p) => ("120000", p),
            None => ("100644", *path),
        };
        match data {
            Some(_) => s.extend_from_slice(format!("M {mode} :{} {path}\n", i + 1).as_bytes()),
            None => s.extend_from_slice(format!("D {path}\n").as_bytes()),
        }
    }
    s.push(b'\n');
    let mut child = git
        .cmd()
        .args(["fast-import", "--quiet", "--force"])
        .stdin(Stdio::piped())
        .spawn()
        .unwrap();
    child.stdin.take().unwrap().write_all(&s).unwrap();
    assert!(child.wait().unwrap().success());
    git.resolve("refs/heads/main").unwrap().unwrap()
}

fn t(s: &str) -> DateTime<Utc> {
    DateTime::parse_from_rfc3339(s).unwrap().with_timezone(&Utc)
}

#[test]
fn dates_name_periods_and_commits_are_hex() {
    assert_eq!(
        parse_date("2031-01-02T03:04:05Z", true).unwrap(),
        t("2031-01-02T03:04:05Z")
    );
    assert_eq!(
        parse_date("2031-01-02T05:04:05+02:00", false).unwrap(),
        t("2031-01-02T03:04:05Z")
    );
    // A day is the whole day, a minute the whole minute, whatever the local zone.
    let (start, end) = (
        parse_date("2031-01-02", false).unwrap(),
        parse_date("2031-01-02", true).unwrap(),
    );
    assert_eq!(
        end - start,
        chrono::Duration::days(1) - chrono::Duration::nanoseconds(1)
    );
    let (s, e) = (
        parse_date("2031-01-02 10:30", false).unwrap(),
        parse_date("2031-01-02T10:30", true).unwrap(),
    );
    assert_eq!(
        e - s,
        chrono::Duration::minutes(1) - chrono::Duration::nanoseconds(1)
    );
    assert!(start <= s && e <= end);
    let sec = parse_date("2031-01-02 10:30:15", false).unwrap();
    assert_eq!(sec - s, chrono::Duration::seconds(15));
    for bad in [
        "yesterday",
        "2031-13-01",
        "2031-01-02 25:00",
        "",
        "01/02/2031",
    ] {
        assert!(parse_date(bad, true).is_err(), "{bad}");
    }
    assert_eq!(
        At::parse("A97C84D9FB").unwrap(),
        At::Commit("a97c84d9fb".into())
    );
    assert!(matches!(At::parse("2031-01-02").unwrap(), At::Time(_)));
    let e = At::parse("a97").unwrap_err().to_string();
    assert!(e.contains("commit id"), "{e}");
}

#[test]
fn new_session_ids_are_shaped_like_uuids_and_differ() {
    let a = new_session_id();
    let b = new_session_id();
    assert_ne!(a, b);
    let parts: Vec<&str> = a.split('-').collect();
    assert_eq!(
        parts.iter().map(|p| p.len()).collect::<Vec<_>>(),
        [8, 4, 4, 4, 12]
    );
    assert!(parts[2].starts_with('4') && parts[3].starts_with('8'));
    assert!(layout::valid_session_id(&a));
}

#[test]
fn new_files_are_never_written_over_and_dry_runs_only_count() {
    let dir = tempfile::tempdir().unwrap();
    let p = dir.path().join("sub/new.md");
    let mut dry = Sink::new(&p, true, true).unwrap();
    dry.write(b"a\nb").unwrap();
    assert_eq!(
        dry.finish(Some(b"c\n")).unwrap(),
        (3, 6),
        "a newline goes before the last line"
    );
    assert!(
        !p.exists() && !p.parent().unwrap().exists(),
        "a dry run creates nothing"
    );
    let e = format!("{:#}", write_new(&p, b"one\n", false).unwrap_err());
    assert!(
        e.contains(&p.parent().unwrap().display().to_string()),
        "{e}"
    );
    write_new(&p, b"one\n", true).unwrap();
    assert_eq!(std::fs::read(&p).unwrap(), b"one\n");
    let e = format!("{:#}", write_new(&p, b"two\n", true).unwrap_err());
    assert!(e.contains(&p.display().to_string()), "{e}");
    assert_eq!(std::fs::read(&p).unwrap(), b"one\n", "never replaced");
    assert!(refuse_existing(&p).is_err());
    assert!(refuse_existing(&dir.path().join("other")).is_ok());
    // No temporary file is left behind.
    let names: Vec<String> = std::fs::read_dir(p.parent().unwrap())
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    assert_eq!(names, ["new.md"]);
}

const MEM: &str = "projects/P-app-1/memory/MEMORY.md";
const NOTES: &str = "projects/P-app-1/memory/notes.md";
const TODO: &str = "projects/P-app-1/memory/todo.md";
const SID: &str = "5e550000-0000-4000-8000-000000000001";

fn meta(sid: &str, lines: u64) -> String {
    format!(
        r#"{{"session_id":"{sid}","cwd":"{{{{HOME}}}}/app","title":"Parser","lines":{lines},"size":{}}}"#,
        lines * 10
    )
}

/// A repository whose history holds every kind of thing `restore` lists, with a machine whose
/// clock is behind committing last.
struct Repo {
    _dir: tempfile::TempDir,
    home: Home,
    claude: ClaudeDir,
    config: Config,
    c: Vec<Oid>,
}

fn repo() -> Repo {
    let dir = tempfile::tempdir().unwrap();
    let git = Git::init_bare(&dir.path().join("remote.git")).unwrap();
    let sdir = format!("projects/P-app-1/sessions/{SID}");
    let meta_path = format!("{sdir}/meta.json");
    let seg = format!("{sdir}/transcript/000001.jsonl");
    let base = 1_900_000_000; // 2030-03-17
    let mut c = Vec::new();
    c.push(commit_at(
        &git,
        None,
        "a",
        base,
        &[
            ("ccsync.json", Some(r#"{"format":"ccsync","version":1}"#)),
            (
                "projects/P-app-1/project.json",
                Some(r#"{"cwd":"{{HOME}}/app"}"#),
            ),
            (MEM, Some("v1\n")),
            (NOTES, Some("notes\n")),
            (TODO, Some("todo 1\n")),
            (&meta_path, Some(&meta(SID, 2))),
            (&seg, Some("{\"uuid\":\"u1\"}\n{\"uuid\":\"u2\"}\n")),
            // Never listed: a link, a path the checks refuse.
            ("projects/P-app-1/memory/odd:name.md", Some("x")),
            ("@projects/P-app-1/memory/link.md", Some("/etc/passwd")),
        ],
    ));
    c.push(commit_at(
        &git,
        c.last(),
        "b",
        base + 3600,
        &[(MEM, Some("v2\n")), (NOTES, None), (TODO, None)],
    ));
    c.push(commit_at(
        &git,
        c.last(),
        "a",
        base + 7200,
        &[
            (MEM, Some("v3\n")),
            (TODO, Some("todo 2\n")),
            (&meta_path, Some(&meta(SID, 3))),
            (
                &format!("{sdir}/transcript/000002.jsonl"),
                Some("{\"uuid\":\"u3\"}\n"),
            ),
        ],
    ));
    c.push(commit_at(
        &git,
        c.last(),
        "b",
        base + 10800,
        &[
            (&sdir, None),
            (
                "forgotten.json",
                Some(&format!(r#"{{"sessions":{{"{SID}":{{"by":"b"}}}}}}"#)),
            ),
        ],
    ));
    // A machine whose clock is a day behind commits last.
    c.push(commit_at(
        &git,
        c.last(),
        "c",
        base - 86400,
        &[("x.txt", Some("x"))],
    ));
    let home = Home::new(dir.path().join("tool"));
    let claude = ClaudeDir::new(dir.path().join("claude"));
    let remote = git.dir.to_string_lossy().into_owned();
    let mut config = Config::new("a".into(), remote, crate::paths::PathStyle::native());
    config.placeholders.insert(
        "HOME".into(),
        dir.path().join("home").to_string_lossy().into_owned(),
    );
    Repo {
        _dir: dir,
        home,
        claude,
        config,
        c,
    }
}

#[test]
fn the_history_is_read_by_commit_and_dates_pick_the_state_before_the_first_later_commit() {
    let r = repo();
    let store = Store::open(&r.home, &r.config.remote, "main", "a").unwrap();
    let head = store.fetch(Duration::from_secs(30)).unwrap();
    let hist = History::load(&store, head.as_ref()).unwrap();
    let ids: Vec<&Oid> = hist.commits.iter().map(|c| &c.oid).collect();
    let want: Vec<&Oid> = r.c.iter().rev().collect();
    assert_eq!(ids, want);
    assert_eq!(hist.commits[0].machine.as_deref(), Some("c"));
    // Memory and sessions are read; odd names are not.
    let files: Vec<&str> = hist.files.keys().map(String::as_str).collect();
    assert_eq!(files, [MEM, NOTES, TODO]);
    assert_eq!(hist.sessions[SID].len(), 3, "added, changed, deleted");
    assert!(hist.sessions[SID][0].deleted);
    assert!(hist.forgotten.contains(SID));

    let base = 1_900_000_000;
    let at = |secs: i64| At::Time(DateTime::from_timestamp(secs, 0).unwrap());
    // Newest first: c4 (behind) = 0, c3 = 1, c2 = 2, c1 = 3, c0 = 4.
    assert_eq!(hist.commit_index(&at(base)).unwrap(), 4);
    assert_eq!(hist.commit_index(&at(base + 3599)).unwrap(), 4);
    assert_eq!(hist.commit_index(&at(base + 3600)).unwrap(), 3);
    assert_eq!(
        hist.commit_index(&at(base + 7300)).unwrap(),
        2,
        "the late commit with an old stamp does not count as before"
    );
    assert_eq!(hist.commit_index(&at(base + 99_999)).unwrap(), 0);
    let e = hist.commit_index(&at(base - 1)).unwrap_err().to_string();
    assert!(e.contains("history starts"), "{e}");
    assert_eq!(
        hist.commit_index(&At::Commit(r.c[1].0[..12].to_string()))
            .unwrap(),
        3
    );
    assert!(hist.commit_index(&At::Commit("ffffffff".into())).is_err());
    // The version in force at a commit.
    let mem = &hist.files[MEM];
    assert_eq!(History::version_at(mem, 3).map(|c| c.commit), Some(3));
    assert_eq!(History::version_at(mem, 4).map(|c| c.commit), Some(4));
    assert!(
        History::version_at(&hist.files[NOTES], 2).is_none(),
        "deleted then"
    );
    assert!(History::version_at(&hist.files[NOTES], 4).is_some());
}

#[test]
fn list_shows_what_is_gone_and_every_earlier_version() {
    let r = repo();
    let engine = Engine::new(&r.claude, &r.home, &r.config).unwrap();
    let store = Store::open(&r.home, &r.config.remote, "main", "a").unwrap();
    let head = store.fetch(Duration::from_secs(30)).unwrap();
    let hist = History::load(&store, head.as_ref()).unwrap();
    let mut ctx = Ctx::new(&engine, &store, &hist).unwrap();
    let items = ctx.list(&ListOptions::default()).unwrap();
    let got: Vec<(Kind, &str, Option<&str>, u64)> = items
        .iter()
        .map(|i| (i.kind, i.item.as_str(), i.gone_by.as_deref(), i.size))
        .collect();
    assert_eq!(
        got,
        [
            (Kind::ForgottenSession, SID, Some("b"), 30),
            (Kind::EarlierVersion, MEM, Some("a"), 3),
            (Kind::EarlierVersion, MEM, Some("b"), 3),
            (Kind::DeletedFile, NOTES, Some("b"), 6),
            (Kind::EarlierVersion, TODO, Some("b"), 7),
        ],
        "{items:#?}"
    );
    let forgotten = &items[0];
    assert_eq!(forgotten.lines, Some(3));
    assert_eq!(forgotten.title.as_deref(), Some("Parser"));
    assert_eq!(
        forgotten.commit, r.c[2].0,
        "the last state is read where it was"
    );
    // `{{HOME}}/app` in this machine's spelling.
    let app = format!(
        "{}{}app",
        r.config.placeholders["HOME"],
        std::path::MAIN_SEPARATOR
    );
    assert_eq!(forgotten.project.as_deref(), Some(app.as_str()));
    // The memory file goes where Claude Code reads this project's memory here.
    let mem_local = items[1].local_path.as_deref().unwrap();
    assert!(
        mem_local.starts_with(&r.claude.projects().display().to_string())
            && std::path::Path::new(mem_local).ends_with("memory/MEMORY.md"),
        "{mem_local}"
    );

    let only = |o: ListOptions| -> Vec<Kind> {
        let mut ctx = Ctx::new(&engine, &store, &hist).unwrap();
        ctx.list(&o).unwrap().into_iter().map(|i| i.kind).collect()
    };
    assert!(
        !only(ListOptions {
            memory: true,
            ..ListOptions::default()
        })
        .contains(&Kind::ForgottenSession)
    );
    let since = only(ListOptions {
        since: Some(DateTime::from_timestamp(1_900_000_000 + 7200, 0).unwrap()),
        ..ListOptions::default()
    });
    assert_eq!(since, [Kind::ForgottenSession, Kind::EarlierVersion]);
    assert_eq!(
        only(ListOptions {
            project: Some("elsewhere".into()),
            ..ListOptions::default()
        }),
        []
    );
    assert_eq!(
        only(ListOptions {
            project: Some(app.clone()),
            ..ListOptions::default()
        })
        .len(),
        5
    );
    let timeline = {
        let mut ctx = Ctx::new(&engine, &store, &hist).unwrap();
        ctx.list(&ListOptions {
            session: Some(SID[..6].into()),
            ..ListOptions::default()
        })
        .unwrap()
    };
    let lines: Vec<Option<u64>> = timeline.iter().map(|i| i.lines).collect();
    assert_eq!(lines, [Some(3), Some(2)]);
    assert!(timeline[0].gone_at.is_some() && timeline[1].gone_at.is_none());

    // Names: a prefix of a session id, a unique end of a file's path.
    let mut ctx = Ctx::new(&engine, &store, &hist).unwrap();
    assert!(matches!(ctx.resolve(&SID[..8]).unwrap(), Target::Session(s) if s == SID));
    assert!(matches!(ctx.resolve("notes.md").unwrap(), Target::File(p) if p == NOTES));
    assert!(matches!(ctx.resolve(MEM).unwrap(), Target::File(p) if p == MEM));
    assert!(matches!(ctx.resolve(mem_local).unwrap(), Target::File(p) if p == MEM));
    let e = ctx
        .resolve("memory")
        .err()
        .map(|e| e.to_string())
        .unwrap_or_default();
    assert!(e.contains("no session or file"), "{e}");
    let e = ctx
        .resolve(".md")
        .err()
        .map(|e| e.to_string())
        .unwrap_or_default();
    assert!(
        e.contains("no session or file") || e.contains("matches"),
        "{e}"
    );

    // Versions: at a date, and the last one of a deleted file.
    let v = ctx
        .file_version(MEM, Some(&At::Commit(r.c[1].0.clone())), true)
        .unwrap();
    assert_eq!(ctx.local_content(MEM, &v.oid).unwrap(), b"v2\n");
    let v = ctx.file_version(NOTES, None, false).unwrap();
    assert_eq!(ctx.local_content(NOTES, &v.oid).unwrap(), b"notes\n");
    assert_eq!(v.commit, Some(4));
    let e = ctx
        .file_version(NOTES, Some(&At::Commit(r.c[2].0.clone())), true)
        .err()
        .map(|e| e.to_string())
        .unwrap_or_default();
    assert!(e.contains("was not in the repository"), "{e}");
    let (rs, c, m) = ctx.session_version(SID, None).unwrap();
    assert_eq!(
        (c, m.lines),
        (2, 3),
        "read just before the commit that forgot it"
    );
    assert_eq!(rs.transcript().map(|t| t.segs.len()), Some(2));
    let (_, _, m) = ctx
        .session_version(SID, Some(&At::Commit(r.c[0].0.clone())))
        .unwrap();
    assert_eq!(m.lines, 2);
}
