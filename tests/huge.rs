//! Transcript lines too large to hold (over 8 MiB, streamed in pieces): pushed and pulled with
//! every path mapped, secrets redacted and protected values kept exactly as a short line would
//! have them, merged without duplicates.

mod common;

use common::*;
use serde_json::json;

const SID: &str = "5a9e0000-0000-4000-8000-000000000001";
/// A made-up AWS access key id (the rule wants `AKIA` and 16 upper-case letters or digits).
const KEY: &str = "AKIAZ7Q3XK4B2M9PLW5R";

/// One user line of about `mb` megabytes: a tool result mentioning paths under `cwd`
/// throughout, one secret in the middle, and an image whose base64 data holds the same
/// key-shaped text (protected: it must arrive untouched).
fn huge_line(cwd: &str, mb: usize) -> String {
    let unit = format!("read {cwd}/src/lib.rs:42 and C:/not/mapped \\ {{{{braces}}}}\n");
    let n = mb * 1_000_000 / unit.len();
    let mut text = String::with_capacity(mb * 1_000_000 + 100);
    for i in 0..n {
        if i == n / 2 {
            text.push_str(&format!("export AWS_ACCESS_KEY_ID={KEY}\n"));
        }
        text.push_str(&unit);
    }
    let data = format!("iVBORw0KGgo{}{KEY}AAAA", "A".repeat(1000));
    serde_json::to_string(&json!({
        "parentUuid": null, "isSidechain": false, "userType": "external", "cwd": cwd,
        "sessionId": SID, "version": "2.1.197", "type": "user",
        "message": {"role": "user", "content": [
            {"type": "tool_result", "tool_use_id": "toolu_01", "content": text},
            {"type": "image", "source": {"type": "base64", "media_type": "image/png", "data": data}}
        ]},
        "uuid": "5a9e0000-0000-4000-8000-0000000000aa", "timestamp": ts_at(1)
    }))
    .unwrap()
}

fn short_line(cwd: &str, uuid: &str, parent: &str, minute: u32, text: &str) -> String {
    user_line(SID, cwd, uuid, Some(parent), &ts_at(minute), text)
}

/// What the other machine must hold: the line with its paths and the secret replaced.
fn expected_on(line: &str, from: &ProjectMachine, to: &ProjectMachine) -> String {
    let token = ccsync::secrets::redaction_token("aws-access-key", KEY.as_bytes());
    let secret = format!("AWS_ACCESS_KEY_ID={KEY}");
    assert_eq!(line.matches(&secret).count(), 1);
    line.replace(&from.projects, &to.projects)
        .replace(&secret, &format!("AWS_ACCESS_KEY_ID={token}"))
}

#[test]
fn a_huge_line_is_pushed_and_pulled_mapped_and_redacted_like_a_short_one() {
    let w = World::new();
    let remote = w.path().join("sync.git");
    let a = ProjectMachine::new(&w, "a", &remote);
    let b = ProjectMachine::new(&w, "b", &remote);
    let big = huge_line(&a.cwd(), 9);
    assert!(big.len() > 8 << 20);
    let first = format!("{big}\n");
    let path_a = a.m.write_transcript(&a.cwd(), SID, first.as_bytes());
    a.m.ok(&["push"]);
    b.m.ok(&["pull"]);
    let path_b = b.m.transcript_path(&b.cwd(), SID);
    let got = std::fs::read_to_string(&path_b).unwrap();
    let want = format!("{}\n", expected_on(&big, &a, &b));
    assert!(got == want, "the huge line arrived changed");
    // The protected image data kept the key-shaped text; the tool result did not.
    assert_eq!(got.matches(KEY).count(), 1);
    assert!(got.contains(&format!("{KEY}AAAA")));
    // `restore show` and `restore --at … -o FILE` stream it in B's form, the same bytes.
    let shown = b.m.ok(&["restore", "show", SID]);
    assert!(shown == want, "restore show changed the huge line");
    let out = b.m.home.join("restored.jsonl");
    let head = String::from_utf8(
        std::process::Command::new("git")
            .args(["rev-parse", "HEAD"])
            .current_dir(&remote)
            .output()
            .unwrap()
            .stdout,
    )
    .unwrap();
    b.m.ok(&[
        "restore",
        SID,
        "--at",
        head.trim(),
        "-o",
        out.to_str().unwrap(),
    ]);
    assert!(std::fs::read_to_string(&out).unwrap() == want);

    // Appends after it on both machines, then the full merge (`pull --force` reads every local
    // line again): one copy of the huge line, every short line, on both.
    let la = short_line(
        &a.cwd(),
        "5a9e0000-0000-4000-8000-0000000000b1",
        "5a9e0000-0000-4000-8000-0000000000aa",
        2,
        "from a",
    );
    let lb = short_line(
        &b.cwd(),
        "5a9e0000-0000-4000-8000-0000000000b2",
        "5a9e0000-0000-4000-8000-0000000000aa",
        3,
        "from b",
    );
    append(&path_a, &la);
    append(&path_b, &lb);
    a.m.ok(&["push"]);
    b.m.ok(&["sync"]);
    a.m.ok(&["pull"]);
    b.m.ok(&["pull", "--force"]);
    for (m, path) in [(&a, &path_a), (&b, &path_b)] {
        let text = std::fs::read_to_string(path).unwrap();
        let lines: Vec<&str> = text.lines().collect();
        assert_eq!(lines.len(), 3, "{}: {} lines", m.m.name, lines.len());
        assert_eq!(text.matches("\"from a\"").count(), 1);
        assert_eq!(text.matches("\"from b\"").count(), 1);
        assert_eq!(
            text.matches("\"uuid\":\"5a9e0000-0000-4000-8000-0000000000aa\"")
                .count(),
            1
        );
    }
    // A's own copy of its huge line never changed.
    let a_text = std::fs::read_to_string(&path_a).unwrap();
    assert!(a_text.starts_with(&first));
}

#[test]
fn a_huge_last_line_without_newline_is_pushed_once_quiet() {
    let w = World::new();
    let remote = w.path().join("sync.git");
    let a = ProjectMachine::new(&w, "a", &remote);
    let b = ProjectMachine::new(&w, "b", &remote);
    let head = short_line(
        &a.cwd(),
        "5a9e0000-0000-4000-8000-0000000000c1",
        "5a9e0000-0000-4000-8000-0000000000c0",
        0,
        "first",
    );
    let big = huge_line(&a.cwd(), 9);
    let path =
        a.m.write_transcript(&a.cwd(), SID, format!("{head}\n{big}").as_bytes());
    // Quiet for longer than the 10 s rule: an hour old.
    let old = std::time::SystemTime::now() - std::time::Duration::from_secs(3600);
    std::fs::File::options()
        .write(true)
        .open(&path)
        .unwrap()
        .set_modified(old)
        .unwrap();
    a.m.ok(&["push"]);
    b.m.ok(&["pull"]);
    let got = std::fs::read_to_string(b.m.transcript_path(&b.cwd(), SID)).unwrap();
    let want = format!(
        "{}\n{}",
        head.replace(&a.projects, &b.projects),
        expected_on(&big, &a, &b)
    );
    assert!(got == want, "the unterminated huge line arrived changed");
}

fn append(path: &std::path::Path, line: &str) {
    use std::io::Write;
    let mut f = std::fs::OpenOptions::new().append(true).open(path).unwrap();
    writeln!(f, "{line}").unwrap();
}
