use super::*;
use proptest::prelude::*;

fn posix_a() -> Mapper {
    Mapper::new(
        PathStyle::Posix,
        [
            ("HOME", "/home/alice"),
            ("PROJECTS", "/home/alice/projects"),
        ],
    )
    .unwrap()
}
fn posix_b() -> Mapper {
    Mapper::new(
        PathStyle::Posix,
        [("HOME", "/Users/bob"), ("PROJECTS", "/Users/bob/code")],
    )
    .unwrap()
}
fn win_c() -> Mapper {
    Mapper::new(
        PathStyle::Windows,
        [("HOME", "C:\\Users\\carol"), ("PROJECTS", "C:\\projects")],
    )
    .unwrap()
}

fn out(m: &Mapper, s: &str, ctx: Context) -> String {
    let mut v = Vec::new();
    m.to_portable(s.as_bytes(), ctx, &mut v);
    String::from_utf8(v).unwrap()
}
fn inn(m: &Mapper, s: &str, ctx: Context) -> String {
    let mut v = Vec::new();
    m.to_local(s.as_bytes(), ctx, &mut v);
    String::from_utf8(v).unwrap()
}

#[test]
fn posix_table() {
    let m = posix_a();
    let j = Context::Json;
    let cases: &[(&str, &str)] = &[
        (
            r#""cwd":"/home/alice/projects/app""#,
            r#""cwd":"{{PROJECTS}}/app""#,
        ),
        (r#""/home/alice/projects""#, r#""{{PROJECTS}}""#),
        // Boundaries: a longer name is not under the placeholder.
        (r#""/home/alice/projects2/x""#, r#""{{HOME}}/projects2/x""#),
        (r#""/home/alicex/y""#, r#""/home/alicex/y""#),
        (r#""/home/ab""#, r#""/home/ab""#),
        (r#""/x/home/alice""#, r#""/x/home/alice""#),
        (r#""rel/home/alice""#, r#""rel/home/alice""#),
        (r#""/home/alice.bak""#, r#""/home/alice.bak""#),
        // Sentence end, command text, escapes before and after.
        ("see /home/alice.", "see {{HOME}}."),
        (
            "cd /home/alice/projects/app && cargo test",
            "cd {{PROJECTS}}/app && cargo test",
        ),
        (
            r#""a\n/home/alice/x\n/home/alice/y""#,
            r#""a\n{{HOME}}/x\n{{HOME}}/y""#,
        ),
        (
            r#""src/main.rs:/home/alice/p:1""#,
            r#""src/main.rs:{{HOME}}/p:1""#,
        ),
        ("file:///home/alice/f", "file://{{HOME}}/f"),
        // Object keys are mapped like values.
        (
            r#"{"/home/alice/projects/a/lib.rs":{"v":1}}"#,
            r#"{"{{PROJECTS}}/a/lib.rs":{"v":1}}"#,
        ),
        // Literal braces.
        (
            "{{HOME}} and {{ x }} and {",
            "{{{{HOME}} and {{{{ x }} and {",
        ),
        ("{/home/alice}", "{{{HOME}}}"),
    ];
    for (local, portable) in cases {
        assert_eq!(out(&m, local, j), *portable, "to_portable({local})");
        assert_eq!(inn(&m, portable, j), *local, "to_local({portable})");
    }
}

#[test]
fn posix_to_windows_and_back() {
    let a = posix_a();
    let c = win_c();
    let line = r#"{"cwd":"/home/alice/projects/app","cmd":"cd /home/alice/projects/app/src && ls /home/alice/.config","k":{"/home/alice/projects/app/src/main.rs":1}}"#;
    let p = out(&a, line, Context::Json);
    let on_c = inn(&c, &p, Context::Json);
    assert_eq!(
        on_c,
        r#"{"cwd":"C:\\projects\\app","cmd":"cd C:\\projects\\app\\src && ls C:\\Users\\carol\\.config","k":{"C:\\projects\\app\\src\\main.rs":1}}"#
    );
    let v: serde_json::Value = serde_json::from_str(&on_c).unwrap();
    assert_eq!(v["cwd"], "C:\\projects\\app");
    let back = inn(&a, &out(&c, &on_c, Context::Json), Context::Json);
    assert_eq!(back, line);
}

#[test]
fn windows_spellings_round_trip_on_the_same_machine() {
    let c = win_c();
    let j = Context::Json;
    for local in [
        r#""C:\\projects\\app\\src""#,
        r#""c:\\projects\\app""#,
        r#""C:/projects/app/src""#,
        r#""C:\\Projects/app\\x""#,
        r#""C:\\projects\\app/mixed""#,
        r#""C:\\projects\\""#,
        r#""C:\\projects\\app\n next""#,
        r#""C:\\projects\\app\\\n""#,
        r#""C:\\projectsX\\app""#,
        r#""C:\\Users\\carol\\projects""#,
    ] {
        let p = out(&c, local, j);
        assert_eq!(inn(&c, &p, j), local, "round trip of {local} via {p}");
        assert!(
            serde_json::from_str::<String>(&p).is_ok(),
            "portable form stays valid JSON: {p}"
        );
    }
    assert_eq!(
        out(&c, r#""C:\\projects\\app\\src""#, j),
        r#""{{PROJECTS}}/app/src""#
    );
    assert_eq!(
        out(&c, r#""c:/projects/app""#, j),
        r#""{{PROJECTS|c:/projects}}/app""#
    );
    assert_eq!(out(&c, r#""C:\\projectsX""#, j), r#""C:\\projectsX""#);
    // Another machine turns an odd spelling into its own path with its own separators.
    let a = posix_a();
    assert_eq!(
        inn(&a, r#""{{PROJECTS|c:/projects}}/app\\x""#, j),
        r#""/home/alice/projects/app/x""#
    );
    // Text context: single backslashes.
    assert_eq!(
        out(&c, "C:\\projects\\app\\README.md", Context::Text),
        "{{PROJECTS}}/app/README.md"
    );
    assert_eq!(
        inn(&c, "{{PROJECTS}}/app/README.md", Context::Text),
        "C:\\projects\\app\\README.md"
    );
}

#[test]
fn unknown_placeholders_are_kept_and_reported() {
    let a = posix_a();
    let mut v = Vec::new();
    let un = a.to_local(b"{{WORK}}/x and {{HOME}}/y", Context::Text, &mut v);
    assert_eq!(
        String::from_utf8(v).unwrap(),
        "{{WORK}}/x and /home/alice/y"
    );
    assert!(un.unknown.contains("WORK"));
    assert_eq!(
        a.local_path("{{WORK}}/x")
            .unwrap_err()
            .into_iter()
            .collect::<Vec<_>>(),
        ["WORK"]
    );
    assert_eq!(
        a.local_path("{{PROJECTS}}/my_app").unwrap(),
        "/home/alice/projects/my_app"
    );
    assert_eq!(
        a.portable_path("/home/alice/projects/my_app"),
        "{{PROJECTS}}/my_app"
    );
}

#[test]
fn validation() {
    assert!(
        valid_name("PROJECTS")
            && valid_name("A1_B")
            && !valid_name("projects")
            && !valid_name("1A")
    );
    assert!(!valid_name("") && !valid_name("A-B"));
    let p = PathStyle::Posix;
    assert_eq!(normalize_path(p, "X", "/home/a/").unwrap(), "/home/a");
    for bad in [
        "relative", "/", "/a/../b", "/a//b", "/a/{x}", "/a\\b", "/a\u{0}",
    ] {
        assert!(normalize_path(p, "X", bad).is_err(), "{bad}");
    }
    let w = PathStyle::Windows;
    assert_eq!(
        normalize_path(w, "X", "C:/projects/").unwrap(),
        "C:\\projects"
    );
    assert_eq!(
        normalize_path(w, "X", "\\\\server\\share").unwrap(),
        "\\\\server\\share"
    );
    for bad in [
        "C:",
        "C:\\",
        "projects",
        "/home/a",
        "C:\\a\\..\\b",
        "C:\\a|b",
        "C:\\a\\b:c",
    ] {
        assert!(normalize_path(w, "X", bad).is_err(), "{bad}");
    }
    assert!(Mapper::new(p, [("bad", "/x")]).is_err());
}

#[test]
fn longest_match_wins_regardless_of_order() {
    let m = Mapper::new(
        PathStyle::Posix,
        [("A", "/w"), ("B", "/w/x/y"), ("C", "/w/x")],
    )
    .unwrap();
    assert_eq!(
        out(&m, "/w/x/y/z /w/x/q /w/q", Context::Text),
        "{{B}}/z {{C}}/q {{A}}/q"
    );
}

// ---------- properties ----------

/// Fragments that make up random text: plain words, JSON escapes, braces, and paths.
fn fragment(paths: Vec<&'static str>) -> impl Strategy<Value = String> {
    prop_oneof![
        "[a-zA-Z0-9 ._:/-]{0,12}",
        Just("{{".to_string()),
        Just("{{HOME}}".to_string()),
        Just("{{PROJECTS|x}}".to_string()),
        Just("{".to_string()),
        Just("}}".to_string()),
        Just("\\n".to_string()),
        Just("\\\\".to_string()),
        Just("\"".to_string()),
        Just(" ".to_string()),
        "[é日😀]{1,3}",
        (
            proptest::sample::select(paths),
            "[a-z_.]{0,6}",
            "[/\\\\]{0,2}",
            "[a-z]{0,5}"
        )
            .prop_map(|(p, a, s, b)| format!("{p}{a}{s}{b}")),
    ]
}

fn text(paths: Vec<&'static str>) -> impl Strategy<Value = String> {
    proptest::collection::vec(fragment(paths), 0..24).prop_map(|v| v.concat())
}

fn flip_case(s: &str, mask: u64) -> String {
    s.chars()
        .enumerate()
        .map(|(i, c)| {
            if mask >> (i % 64) & 1 == 1 {
                c.to_ascii_lowercase()
            } else {
                c
            }
        })
        .collect()
}

const POSIX_PATHS: &[&str] = &[
    "/home/alice",
    "/home/alice/projects",
    "/home/alicex",
    "/home/alice/projects2",
    "/tmp",
];
const WIN_JSON: &[&str] = &[
    "C:\\\\projects",
    "c:\\\\Projects",
    "C:/projects",
    "C:\\\\Users\\\\carol",
    "C:\\\\Users\\\\carolx",
    "C:\\\\projects\\\\app",
    "D:\\\\x",
];

proptest! {
    #![proptest_config(ProptestConfig { cases: 600, .. ProptestConfig::default() })]

    #[test]
    fn posix_same_machine_round_trip(x in text(POSIX_PATHS.to_vec())) {
        let m = posix_a();
        for ctx in [Context::Json, Context::Text] {
            let mut p = Vec::new();
            m.to_portable(x.as_bytes(), ctx, &mut p);
            let mut back = Vec::new();
            m.to_local(&p, ctx, &mut back);
            prop_assert_eq!(String::from_utf8(back).unwrap(), x.clone());
        }
    }

    #[test]
    fn windows_same_machine_round_trip(x in text(WIN_JSON.to_vec()), mask in any::<u64>()) {
        let m = win_c();
        let x = flip_case(&x, mask);
        for ctx in [Context::Json, Context::Text] {
            let mut p = Vec::new();
            m.to_portable(x.as_bytes(), ctx, &mut p);
            let mut back = Vec::new();
            m.to_local(&p, ctx, &mut back);
            prop_assert_eq!(String::from_utf8(back).unwrap(), x.clone());
        }
    }

    #[test]
    fn text_without_paths_or_braces_is_untouched(x in "[a-zA-Z0-9 ._:\\\\\"/-]{0,80}") {
        prop_assume!(!x.contains("/home/alice") && !x.contains("/Users/bob"));
        let m = posix_a();
        let mut p = Vec::new();
        m.to_portable(x.as_bytes(), Context::Json, &mut p);
        prop_assert_eq!(&p, x.as_bytes());
        let mut l = Vec::new();
        m.to_local(x.as_bytes(), Context::Json, &mut l);
        prop_assert_eq!(&l, x.as_bytes());
    }

    /// A JSON line with paths in values, keys, escaped strings and command text goes A → B → A
    /// unchanged, for POSIX and Windows machines, and stays valid JSON on the way.
    #[test]
    fn a_to_b_to_a_is_identity(
        rels in proptest::collection::vec("[a-z][a-z0-9_.-]{0,8}(/[a-z][a-z0-9_-]{0,6}){0,3}", 1..5),
        words in "[a-zA-Z ]{0,20}",
        literal in proptest::bool::ANY,
    ) {
        let machines = [posix_a(), posix_b(), win_c()];
        for a in &machines {
            for b in &machines {
                let home = a.path_of("HOME").unwrap();
                let proj = a.path_of("PROJECTS").unwrap();
                let sep = a.style().separator().to_string();
                let join = |base: &str, rel: &str| format!("{base}{sep}{}", rel.replace('/', &sep));
                let f0 = join(proj, &rels[0]);
                let mut obj = serde_json::Map::new();
                obj.insert("cwd".into(), proj.into());
                obj.insert(join(proj, rels.last().unwrap()), serde_json::json!({"v": 1}));
                obj.insert("command".into(), format!("cd {f0} && cat {} {words}", join(home, &rels[0])).into());
                obj.insert("text".into(), format!("{words} {}", if literal { "{{PROJECTS}} {{" } else { "" }).into());
                obj.insert("nested".into(), serde_json::to_string(&serde_json::json!({"p": f0})).unwrap().into());
                let line = serde_json::to_string(&obj).unwrap();
                let mut p1 = Vec::new();
                a.to_portable(line.as_bytes(), Context::Json, &mut p1);
                let mut on_b = Vec::new();
                b.to_local(&p1, Context::Json, &mut on_b);
                prop_assert!(serde_json::from_slice::<serde_json::Value>(&on_b).is_ok(), "valid JSON on B");
                let mut p2 = Vec::new();
                b.to_portable(&on_b, Context::Json, &mut p2);
                let mut back = Vec::new();
                a.to_local(&p2, Context::Json, &mut back);
                prop_assert_eq!(String::from_utf8(back).unwrap(), line.clone());
                // The cwd on B is B's project path.
                let vb: serde_json::Value = serde_json::from_slice(&on_b).unwrap();
                prop_assert_eq!(vb["cwd"].as_str().unwrap(), b.path_of("PROJECTS").unwrap());
            }
        }
    }
}

/// B's placeholder is a symbolic link; Claude Code records its realpath.
fn posix_linked() -> Mapper {
    Mapper::with_aliases(
        PathStyle::Posix,
        [("PROJECTS", "/data/code"), ("HOME", "/home/b")],
        [("PROJECTS", "/home/b/code")],
    )
    .unwrap()
}

#[test]
fn an_alias_maps_out_with_its_spelling_and_comes_back_as_written() {
    let b = posix_linked();
    let mut p = Vec::new();
    b.to_portable(
        br#"{"cwd":"/data/code/app","t":"ls /home/b/code/app/src"}"#,
        Context::Json,
        &mut p,
    );
    assert_eq!(
        String::from_utf8(p.clone()).unwrap(),
        r#"{"cwd":"{{PROJECTS}}/app","t":"ls {{PROJECTS|/home/b/code}}/app/src"}"#
    );
    let mut back = Vec::new();
    b.to_local(&p, Context::Json, &mut back);
    assert_eq!(
        back,
        br#"{"cwd":"/data/code/app","t":"ls /home/b/code/app/src"}"#
    );
    // Another machine takes its own path for both.
    let a = posix_a();
    let mut on_a = Vec::new();
    a.to_local(&p, Context::Json, &mut on_a);
    assert_eq!(
        String::from_utf8(on_a).unwrap(),
        r#"{"cwd":"/home/alice/projects/app","t":"ls /home/alice/projects/app/src"}"#
    );
    assert_eq!(b.path_of("PROJECTS"), Some("/data/code"));
    assert_eq!(b.placeholders().count(), 2, "aliases are not placeholders");
    // An alias of an unknown name, or equal to the path, is ignored.
    let m = Mapper::with_aliases(
        PathStyle::Posix,
        [("HOME", "/home/b")],
        [("NOPE", "/x"), ("HOME", "/home/b")],
    )
    .unwrap();
    let mut q = Vec::new();
    m.to_portable(b"/x/y /home/b/z", Context::Text, &mut q);
    assert_eq!(q, b"/x/y {{HOME}}/z");
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 300, .. ProptestConfig::default() })]

    #[test]
    fn aliases_round_trip_on_their_machine(x in text(vec!["/data/code", "/home/b/code", "/home/b", "/home/b/codex", "/data/codes"])) {
        let m = posix_linked();
        for ctx in [Context::Json, Context::Text] {
            let mut p = Vec::new();
            m.to_portable(x.as_bytes(), ctx, &mut p);
            let mut back = Vec::new();
            m.to_local(&p, ctx, &mut back);
            prop_assert_eq!(String::from_utf8(back).unwrap(), x.clone());
        }
    }
}

// ---------- working directories with odd names ----------

#[test]
fn working_directories_are_checked_for_shape_not_characters() {
    let p = PathStyle::Posix;
    for ok in [
        "/",
        "/home/a/quo\"te",
        "/home/a/back\\slash",
        "/home/a/tab\there",
        "/home/a/new\nline",
        "/home/a/br{{ace}}|x",
        "/home/a/日本 é",
        "/home/a/trailing/",
        "/a//b",
    ] {
        assert_eq!(check_cwd(p, ok), Ok(()), "{ok:?}");
    }
    for bad in ["", "relative/dir", "/a/../b", "/a/./b", "/a\0b", "C:\\x"] {
        assert!(check_cwd(p, bad).is_err(), "{bad:?}");
    }
    let w = PathStyle::Windows;
    for ok in [
        "C:\\",
        "C:\\projects\\a b",
        "c:/x/{{y}}",
        "\\\\server\\share\\x",
    ] {
        assert_eq!(check_cwd(w, ok), Ok(()), "{ok:?}");
    }
    for bad in ["/home/a", "C:", "C:\\a\\..\\b", "projects", "\\x"] {
        assert!(check_cwd(w, bad).is_err(), "{bad:?}");
    }
}

#[test]
fn json_escapes_before_a_path_are_boundaries_as_in_the_decoded_text() {
    let m = posix_a();
    for esc in [
        "\\n", "\\t", "\\r", "\\b", "\\f", "\\u001f", "\\u0000", "\\u007f",
    ] {
        let raw = format!("\"x{esc}/home/alice/p\"");
        assert_eq!(
            out(&m, &raw, Context::Json),
            format!("\"x{esc}{{{{HOME}}}}/p\""),
            "{esc}"
        );
    }
    // Escaped backslashes followed by a letter are not escapes; non-ASCII is part of a name.
    for raw in [
        "\"x\\\\n/home/alice/p\"",
        "\"x\\\\u001f/home/alice/p\"",
        "\"x\\u00e9/home/alice/p\"",
    ] {
        assert_eq!(out(&m, raw, Context::Json), raw, "{raw}");
    }
}

/// Directory names as they occur: every character POSIX allows in a name.
fn posix_component() -> impl Strategy<Value = String> {
    proptest::collection::vec(
        prop_oneof![
            "[a-zA-Z0-9_.-]{1,4}",
            Just("\"".to_string()),
            Just("\\".to_string()),
            Just("\t".to_string()),
            Just("\n".to_string()),
            Just("\r".to_string()),
            Just("\u{1f}".to_string()),
            Just("\u{8}".to_string()),
            Just("\u{7f}".to_string()),
            Just("{{".to_string()),
            Just("{".to_string()),
            Just("}}".to_string()),
            Just("{{HOME}}".to_string()),
            Just("|".to_string()),
            Just("'".to_string()),
            Just(" ".to_string()),
            Just(":".to_string()),
            "[é日😀]{1,2}",
            // A mapped path right after an odd byte (inside one name, as text can have it).
            Just("/home/alice".to_string()),
        ],
        1..5,
    )
    .prop_map(|v| v.concat())
    .prop_filter("a real name", |c| c != "." && c != "..")
}

/// Directory names a Windows file system allows (no `"<>|?*:` and no control characters).
fn windows_component() -> impl Strategy<Value = String> {
    proptest::collection::vec(
        prop_oneof![
            "[a-zA-Z0-9_.-]{1,4}",
            Just("{{".to_string()),
            Just("{".to_string()),
            Just("}}".to_string()),
            Just("{{PROJECTS}}".to_string()),
            Just("'".to_string()),
            Just(" ".to_string()),
            Just("$&!^()[];,=+@#~`%".to_string()),
            "[é日😀]{1,2}",
        ],
        1..5,
    )
    .prop_map(|v| v.concat())
    .prop_filter("a real name", |c| {
        c != "." && c != ".." && !c.ends_with('.') && !c.ends_with(' ')
    })
}

/// The `cwd` of a transcript line (JSON context, escaped) and the `cwd` of `meta.json` (the
/// decoded string, text context) must map to the same portable form, and on every machine back
/// to the same local form: the session is filed by one and Claude Code reads the other. With
/// `exact`, the way back is byte-identical (not so for a POSIX name holding a backslash that
/// went through Windows, or a Windows spelling another machine does not keep).
fn check_cwd_forms(a: &Mapper, b: &Mapper, cwd: &str, exact: bool) -> Result<(), TestCaseError> {
    let line = serde_json::to_string(&serde_json::json!({"cwd": cwd, "type": "user"})).unwrap();
    let meta = a.portable_path(cwd);
    prop_assert_eq!(
        a.local_path(&meta).ok(),
        Some(cwd.to_string()),
        "A's meta cwd round trip"
    );
    let mut p1 = Vec::new();
    a.to_portable(line.as_bytes(), Context::Json, &mut p1);
    let v: serde_json::Value = serde_json::from_slice(&p1).unwrap();
    prop_assert_eq!(
        v["cwd"].as_str(),
        Some(meta.as_str()),
        "line and meta agree"
    );
    let on_b = b.local_path(&meta).unwrap();
    let mut l1 = Vec::new();
    b.to_local(&p1, Context::Json, &mut l1);
    let vb: serde_json::Value = serde_json::from_slice(&l1).unwrap();
    prop_assert_eq!(vb["cwd"].as_str(), Some(on_b.as_str()), "the same cwd on B");
    let mut p2 = Vec::new();
    b.to_portable(&l1, Context::Json, &mut p2);
    let v2: serde_json::Value = serde_json::from_slice(&p2).unwrap();
    let meta2 = b.portable_path(&on_b);
    if exact {
        prop_assert_eq!(
            v2["cwd"].as_str(),
            Some(meta2.as_str()),
            "line and meta agree on B"
        );
        let mut back = Vec::new();
        a.to_local(&p2, Context::Json, &mut back);
        prop_assert_eq!(String::from_utf8(back).unwrap(), line, "A → B → A");
        prop_assert_eq!(
            a.local_path(&meta2).ok(),
            Some(cwd.to_string()),
            "meta A → B → A"
        );
    }
    // A POSIX name holding a backslash has no Windows spelling (documented in PATHS.md): only
    // paths that keep one form must be placeable on the other machine.
    if exact && check_cwd(a.style(), cwd).is_ok() && meta.starts_with("{{") {
        prop_assert!(
            check_cwd(b.style(), &on_b).is_ok(),
            "placeable on B: {:?}",
            on_b
        );
    }
    Ok(())
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 400, .. ProptestConfig::default() })]

    #[test]
    fn odd_posix_working_directories_keep_one_form(
        base in proptest::sample::select(vec!["/home/alice", "/home/alice/projects", "/home/alicex", "/tmp"]),
        comps in proptest::collection::vec(posix_component(), 0..4),
    ) {
        let cwd = std::iter::once(base.to_string()).chain(comps).collect::<Vec<_>>().join("/");
        for b in [posix_a(), posix_b(), win_c()] {
            let exact = b.style() == PathStyle::Posix || !cwd.contains('\\');
            check_cwd_forms(&posix_a(), &b, &cwd, exact)?;
        }
    }

    #[test]
    fn odd_windows_working_directories_keep_one_form(
        base in proptest::sample::select(vec!["C:\\Users\\carol", "C:\\projects", "c:\\Projects", "C:\\Users\\carolx", "D:\\x"]),
        comps in proptest::collection::vec(windows_component(), 0..4),
    ) {
        let cwd = std::iter::once(base.to_string()).chain(comps).collect::<Vec<_>>().join("\\");
        for (b, same) in [(posix_a(), false), (win_c(), true)] {
            check_cwd_forms(&win_c(), &b, &cwd, same || !base.starts_with('c'))?;
        }
    }
}

/// Map `x` through a [`MapStream`] with tiny windows, fed in pieces of the given sizes.
fn streamed(m: &Mapper, dir: Direction, ctx: Context, x: &[u8], cuts: &[usize]) -> Vec<u8> {
    // Windows of a few bytes; lookahead and kept context larger than any path in the tests.
    let mut s = MapStream::new(m, dir, ctx).with_sizes(3, 40, 8);
    let mut out = Vec::new();
    let mut rest = x;
    for &c in cuts.iter().cycle().take(x.len() + 1) {
        if rest.is_empty() {
            break;
        }
        let (a, b) = rest.split_at(c.clamp(1, rest.len()));
        s.feed(a, &mut out);
        rest = b;
    }
    s.finish(&mut out);
    out
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 400, .. ProptestConfig::default() })]

    /// A text mapped in pieces through small windows gives exactly what mapping it whole gives,
    /// both ways, on POSIX and Windows machines.
    #[test]
    fn streaming_maps_like_whole(
        x in text(POSIX_PATHS.to_vec()),
        w in text(WIN_JSON.to_vec()),
        cuts in proptest::collection::vec(1usize..9, 1..6),
    ) {
        for (m, x) in [(posix_a(), &x), (win_c(), &w)] {
            for ctx in [Context::Json, Context::Text] {
                let mut whole = Vec::new();
                m.to_portable(x.as_bytes(), ctx, &mut whole);
                let s = streamed(&m, Direction::ToPortable, ctx, x.as_bytes(), &cuts);
                prop_assert_eq!(&s, &whole);
                let mut back = Vec::new();
                let un = m.to_local(&whole, ctx, &mut back);
                let mut st = MapStream::new(&m, Direction::ToLocal, ctx).with_sizes(2, 40, 8);
                let mut sb = Vec::new();
                for piece in whole.chunks(cuts[0]) {
                    st.feed(piece, &mut sb);
                }
                st.finish(&mut sb);
                prop_assert_eq!(&sb, &back);
                prop_assert_eq!(&st.unmapped, &un);
            }
        }
    }
}
