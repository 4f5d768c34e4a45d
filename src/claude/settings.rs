//! Editing Claude Code's `settings.json` as text: ccsync's hook entries are inserted and removed
//! without re-serialising the file, so every byte outside the edit stays as the user wrote it,
//! and removing what was inserted gives the original bytes back.
//!
//! Pure: text in, text out. The hooks format is
//! `{"hooks": {"SessionStart": [{"matcher": …, "hooks": [{"type": "command", "command": …}]}]}}`.

use anyhow::{Result, anyhow, bail};

/// A JSON value with the byte span it occupies.
#[derive(Debug, Clone)]
enum Node {
    Object {
        start: usize,
        end: usize,
        members: Vec<Member>,
    },
    Array {
        start: usize,
        end: usize,
        items: Vec<Node>,
    },
    Scalar {
        start: usize,
        end: usize,
    },
}

#[derive(Debug, Clone)]
struct Member {
    key: String,
    key_start: usize,
    value: Node,
}

impl Node {
    fn start(&self) -> usize {
        match self {
            Node::Object { start, .. } | Node::Array { start, .. } | Node::Scalar { start, .. } => {
                *start
            }
        }
    }
    fn end(&self) -> usize {
        match self {
            Node::Object { end, .. } | Node::Array { end, .. } | Node::Scalar { end, .. } => *end,
        }
    }
    fn member(&self, key: &str) -> Option<(usize, &Member)> {
        match self {
            Node::Object { members, .. } => members.iter().enumerate().find(|(_, m)| m.key == key),
            _ => None,
        }
    }
}

struct Parser<'a> {
    b: &'a [u8],
    i: usize,
}

const MAX_DEPTH: usize = 200;

impl Parser<'_> {
    fn ws(&mut self) {
        while self.i < self.b.len() && matches!(self.b[self.i], b' ' | b'\t' | b'\r' | b'\n') {
            self.i += 1;
        }
    }

    fn err(&self, what: &str) -> anyhow::Error {
        let line = self.b[..self.i.min(self.b.len())]
            .iter()
            .filter(|c| **c == b'\n')
            .count()
            + 1;
        anyhow!("{what} at line {line}")
    }

    fn string(&mut self) -> Result<(usize, usize)> {
        let start = self.i;
        self.i += 1;
        while self.i < self.b.len() {
            match self.b[self.i] {
                b'\\' => self.i += 2,
                b'"' => {
                    self.i += 1;
                    return Ok((start, self.i));
                }
                _ => self.i += 1,
            }
        }
        Err(self.err("unterminated string"))
    }

    fn value(&mut self, depth: usize) -> Result<Node> {
        if depth > MAX_DEPTH {
            return Err(self.err("nesting too deep"));
        }
        self.ws();
        let start = self.i;
        match self.b.get(self.i) {
            Some(b'{') => {
                self.i += 1;
                let mut members = Vec::new();
                self.ws();
                if self.b.get(self.i) == Some(&b'}') {
                    self.i += 1;
                    return Ok(Node::Object {
                        start,
                        end: self.i,
                        members,
                    });
                }
                loop {
                    self.ws();
                    if self.b.get(self.i) != Some(&b'"') {
                        return Err(self.err("expected a key"));
                    }
                    let (ks, ke) = self.string()?;
                    let key: String =
                        serde_json::from_slice(&self.b[ks..ke]).map_err(|_| self.err("bad key"))?;
                    self.ws();
                    if self.b.get(self.i) != Some(&b':') {
                        return Err(self.err("expected ':'"));
                    }
                    self.i += 1;
                    let value = self.value(depth + 1)?;
                    members.push(Member {
                        key,
                        key_start: ks,
                        value,
                    });
                    self.ws();
                    match self.b.get(self.i) {
                        Some(b',') => self.i += 1,
                        Some(b'}') => {
                            self.i += 1;
                            return Ok(Node::Object {
                                start,
                                end: self.i,
                                members,
                            });
                        }
                        _ => return Err(self.err("expected ',' or '}'")),
                    }
                }
            }
            Some(b'[') => {
                self.i += 1;
                let mut items = Vec::new();
                self.ws();
                if self.b.get(self.i) == Some(&b']') {
                    self.i += 1;
                    return Ok(Node::Array {
                        start,
                        end: self.i,
                        items,
                    });
                }
                loop {
                    items.push(self.value(depth + 1)?);
                    self.ws();
                    match self.b.get(self.i) {
                        Some(b',') => self.i += 1,
                        Some(b']') => {
                            self.i += 1;
                            return Ok(Node::Array {
                                start,
                                end: self.i,
                                items,
                            });
                        }
                        _ => return Err(self.err("expected ',' or ']'")),
                    }
                }
            }
            Some(b'"') => {
                let (s, e) = self.string()?;
                Ok(Node::Scalar { start: s, end: e })
            }
            Some(_) => {
                while self.i < self.b.len()
                    && !matches!(
                        self.b[self.i],
                        b',' | b'}' | b']' | b' ' | b'\t' | b'\r' | b'\n'
                    )
                {
                    self.i += 1;
                }
                if self.i == start {
                    return Err(self.err("expected a value"));
                }
                Ok(Node::Scalar { start, end: self.i })
            }
            None => Err(self.err("unexpected end")),
        }
    }
}

/// Parse a document and check it is a JSON object (also with serde, which validates scalars).
fn parse(text: &str) -> Result<Node> {
    serde_json::from_str::<serde_json::Value>(text).map_err(|e| anyhow!("not valid JSON: {e}"))?;
    let mut p = Parser {
        b: text.as_bytes(),
        i: 0,
    };
    let root = p.value(0)?;
    match root {
        Node::Object { .. } => Ok(root),
        _ => bail!("the top level is not a JSON object"),
    }
}

fn splice(text: &str, at: usize, remove_to: usize, insert: &str) -> String {
    let mut s = String::with_capacity(text.len() + insert.len());
    s.push_str(&text[..at]);
    s.push_str(insert);
    s.push_str(&text[remove_to..]);
    s
}

fn insert_member(text: &str, obj: &Node, key: &str, value: &str) -> String {
    let Node::Object { start, members, .. } = obj else {
        return text.to_string();
    };
    let k = serde_json::to_string(key).unwrap_or_else(|_| format!("\"{key}\""));
    match members.last() {
        None => splice(text, start + 1, start + 1, &format!("{k}: {value}")),
        Some(m) => splice(
            text,
            m.value.end(),
            m.value.end(),
            &format!(", {k}: {value}"),
        ),
    }
}

fn insert_item(text: &str, arr: &Node, item: &str) -> String {
    let Node::Array { start, items, .. } = arr else {
        return text.to_string();
    };
    match items.last() {
        None => splice(text, start + 1, start + 1, item),
        Some(last) => splice(text, last.end(), last.end(), &format!(", {item}")),
    }
}

fn remove_member(text: &str, obj: &Node, idx: usize) -> String {
    let Node::Object { members, .. } = obj else {
        return text.to_string();
    };
    let m = &members[idx];
    if idx > 0 {
        splice(text, members[idx - 1].value.end(), m.value.end(), "")
    } else if members.len() > 1 {
        splice(text, m.key_start, members[1].key_start, "")
    } else {
        splice(text, m.key_start, m.value.end(), "")
    }
}

fn remove_item(text: &str, arr: &Node, idx: usize) -> String {
    let Node::Array { items, .. } = arr else {
        return text.to_string();
    };
    if idx > 0 {
        splice(text, items[idx - 1].end(), items[idx].end(), "")
    } else if items.len() > 1 {
        splice(text, items[0].start(), items[1].start(), "")
    } else {
        splice(text, items[0].start(), items[0].end(), "")
    }
}

/// A hook ccsync installs, in the client's exec form (`command` is the program, `args` its
/// arguments): Claude Code then starts it directly, with no shell, so the same entry works
/// under sh, Git Bash and PowerShell alike.
#[derive(Debug, Clone)]
pub struct HookSpec {
    pub event: &'static str,
    pub program: String,
    pub args: Vec<String>,
    pub timeout_secs: u64,
}

impl HookSpec {
    fn group(&self) -> String {
        serde_json::json!({"hooks": [{"type": "command", "command": self.program, "args": self.args, "timeout": self.timeout_secs}]}).to_string()
    }
}

/// Whether a hook entry is one of ccsync's (for `event`): the exec form this version writes, or
/// the shell command line older versions wrote.
pub fn is_ours(hook: &serde_json::Value, event: &str) -> bool {
    let word = match event {
        "SessionStart" => "session-start",
        "SessionEnd" => "session-end",
        _ => return false,
    };
    let Some(command) = hook.get("command").and_then(|c| c.as_str()) else {
        return false;
    };
    let ccsync = command.contains("ccsync") || command.contains("claude-session-sync");
    match hook.get("args").and_then(|a| a.as_array()) {
        Some(args) => {
            ccsync
                && args.first().and_then(|a| a.as_str()) == Some("hook")
                && args.get(1).and_then(|a| a.as_str()) == Some(word)
        }
        None => ccsync && command.trim_end().ends_with(&format!("hook {word}")),
    }
}

/// Indexes of ccsync's groups in an event's array.
fn our_groups(text: &str, arr: &Node, event: &str) -> Vec<usize> {
    let Node::Array { items, .. } = arr else {
        return Vec::new();
    };
    items
        .iter()
        .enumerate()
        .filter(|(_, g)| {
            serde_json::from_str::<serde_json::Value>(&text[g.start()..g.end()])
                .ok()
                .and_then(|v| v.get("hooks").and_then(|h| h.as_array()).cloned())
                .is_some_and(|hs| !hs.is_empty() && hs.iter().all(|h| is_ours(h, event)))
        })
        .map(|(i, _)| i)
        .collect()
}

/// What [`install`] created (so that [`remove`] can take exactly that away).
#[derive(Debug, Clone, Default, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct Created {
    pub hooks_object: bool,
    pub events: Vec<String>,
}

/// Insert ccsync's hook groups (replacing older ccsync groups). Returns the new text and what
/// was created; the text is unchanged when the hooks are already there.
pub fn install(text: &str, specs: &[HookSpec]) -> Result<(String, Created)> {
    let mut t = if text.trim().is_empty() {
        "{}".to_string()
    } else {
        text.to_string()
    };
    let mut created = Created::default();
    for spec in specs {
        let root = parse(&t)?;
        let Some((_, hooks)) = root.member("hooks") else {
            let value = format!(
                "{{{}: [{}]}}",
                serde_json::to_string(spec.event)?,
                spec.group()
            );
            t = insert_member(&t, &root, "hooks", &value);
            created.hooks_object = true;
            created.events.push(spec.event.to_string());
            continue;
        };
        if !matches!(hooks.value, Node::Object { .. }) {
            bail!("\"hooks\" is not an object");
        }
        match hooks.value.member(spec.event) {
            None => {
                t = insert_member(&t, &hooks.value, spec.event, &format!("[{}]", spec.group()));
                created.events.push(spec.event.to_string());
            }
            Some((_, ev)) => {
                if !matches!(ev.value, Node::Array { .. }) {
                    bail!("\"hooks\".\"{}\" is not a list", spec.event);
                }
                let ours = our_groups(&t, &ev.value, spec.event);
                let same = ours.len() == 1 && {
                    let Node::Array { items, .. } = &ev.value else {
                        unreachable!()
                    };
                    let g = &items[ours[0]];
                    serde_json::from_str::<serde_json::Value>(&t[g.start()..g.end()]).ok()
                        == serde_json::from_str::<serde_json::Value>(&spec.group()).ok()
                };
                if same {
                    continue;
                }
                // Drop older ccsync groups (other paths, options), last first, then add ours.
                for idx in ours.into_iter().rev() {
                    let root = parse(&t)?;
                    let arr = event_array(&root, spec.event)
                        .ok_or_else(|| anyhow!("settings.json changed while editing"))?;
                    t = remove_item(&t, &arr, idx);
                }
                let root = parse(&t)?;
                let arr = event_array(&root, spec.event)
                    .ok_or_else(|| anyhow!("settings.json changed while editing"))?;
                t = insert_item(&t, &arr, &spec.group());
            }
        }
    }
    Ok((t, created))
}

fn event_array(root: &Node, event: &str) -> Option<Node> {
    let (_, hooks) = root.member("hooks")?;
    let (_, ev) = hooks.value.member(event)?;
    Some(ev.value.clone())
}

/// Remove ccsync's hook groups, and the containers `created` says install made when they are
/// empty again.
pub fn remove(text: &str, created: &Created) -> Result<String> {
    let mut t = text.to_string();
    for event in ["SessionStart", "SessionEnd"] {
        loop {
            let root = parse(&t)?;
            let Some(arr) = event_array(&root, event) else {
                break;
            };
            let Some(&idx) = our_groups(&t, &arr, event).last() else {
                break;
            };
            t = remove_item(&t, &arr, idx);
        }
        if created.events.iter().any(|e| e == event) {
            let root = parse(&t)?;
            if let Some((_, hooks)) = root.member("hooks")
                && let Some((i, ev)) = hooks.value.member(event)
                && matches!(&ev.value, Node::Array { items, .. } if items.is_empty())
            {
                t = remove_member(&t, &hooks.value, i);
            }
        }
    }
    if created.hooks_object {
        let root = parse(&t)?;
        if let Some((i, hooks)) = root.member("hooks")
            && matches!(&hooks.value, Node::Object { members, .. } if members.is_empty())
        {
            t = remove_member(&t, &root, i);
        }
    }
    Ok(t)
}

/// Whether ccsync's hooks are installed in this text.
pub fn installed(text: &str) -> bool {
    let Ok(root) = parse(text) else { return false };
    ["SessionStart", "SessionEnd"]
        .iter()
        .all(|e| event_array(&root, e).is_some_and(|arr| !our_groups(text, &arr, e).is_empty()))
}

/// Check that a settings file can be edited (a JSON object).
pub fn check(text: &str) -> Result<()> {
    if text.trim().is_empty() {
        return Ok(());
    }
    parse(text).map(|_| ())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn specs() -> Vec<HookSpec> {
        vec![
            HookSpec {
                event: "SessionStart",
                program: "/bin/ccsync".into(),
                args: vec!["hook".into(), "session-start".into()],
                timeout_secs: 10,
            },
            HookSpec {
                event: "SessionEnd",
                program: "/bin/ccsync".into(),
                args: vec!["hook".into(), "session-end".into()],
                timeout_secs: 10,
            },
        ]
    }

    #[test]
    fn round_trips_are_byte_identical() {
        let cases = [
            "{}",
            "{ }\n",
            "{\n    \"model\": \"opus\",\n    \"cleanupPeriodDays\": 90\n}\n",
            r#"{"hooks": {}}"#,
            "{\n  \"hooks\": {\n    \"PreToolUse\": [ { \"matcher\": \"Bash\", \"hooks\": [ { \"type\": \"command\", \"command\": \"echo hi\" } ] } ]\n  },\n  \"env\": {\"A\": \"1\"}\n}",
            r#"{"hooks":{"SessionStart":[],"SessionEnd":[{"hooks":[{"type":"command","command":"other-tool end"}]}]},"x":[1,2.5e3,true,null,"é\"\\"]}"#,
        ];
        for original in cases {
            let (installed_text, created) = install(original, &specs()).unwrap();
            assert!(installed(&installed_text), "{installed_text}");
            let v: serde_json::Value = serde_json::from_str(&installed_text).unwrap();
            assert_eq!(
                v["hooks"]["SessionStart"]
                    .as_array()
                    .unwrap()
                    .last()
                    .unwrap()["hooks"][0],
                serde_json::json!({"type": "command", "command": "/bin/ccsync", "args": ["hook", "session-start"], "timeout": 10})
            );
            // Idempotent.
            let (again, _) = install(&installed_text, &specs()).unwrap();
            assert_eq!(again, installed_text);
            assert_eq!(
                remove(&installed_text, &created).unwrap(),
                original,
                "round trip of {original}"
            );
        }
    }

    #[test]
    fn other_hooks_are_kept_and_old_ccsync_groups_replaced() {
        let text = r#"{"hooks":{"SessionStart":[{"hooks":[{"type":"command","command":"'/old/ccsync' hook session-start"}]},{"hooks":[{"type":"command","command":"mine.sh"}]},{"hooks":[{"type":"command","command":"/old/ccsync","args":["hook","session-start","--home","/x"]}]}]}}"#;
        let (t, _) = install(text, &specs()).unwrap();
        let v: serde_json::Value = serde_json::from_str(&t).unwrap();
        let groups = v["hooks"]["SessionStart"].as_array().unwrap();
        assert_eq!(groups.len(), 2);
        assert_eq!(groups[0]["hooks"][0]["command"], "mine.sh");
        assert!(t.contains("mine.sh") && !t.contains("/old/ccsync"));
        let back = remove(&t, &Created::default()).unwrap();
        assert!(back.contains("mine.sh") && !back.contains("ccsync"));
    }

    #[test]
    fn ours_in_both_forms_and_nothing_else() {
        use serde_json::json;
        let exec =
            json!({"command": "C:/Users/a/.cargo/bin/ccsync.exe", "args": ["hook", "session-end"]});
        assert!(is_ours(&exec, "SessionEnd"));
        assert!(!is_ours(&exec, "SessionStart"));
        assert!(is_ours(
            &json!({"command": "CCSYNC_HOME='/t' '/b/ccsync' hook session-start"}),
            "SessionStart"
        ));
        assert!(!is_ours(
            &json!({"command": "node", "args": ["hook", "session-start"]}),
            "SessionStart"
        ));
        assert!(!is_ours(
            &json!({"command": "ccsync-audit.sh"}),
            "SessionStart"
        ));
        assert!(!is_ours(&json!({"args": ["hook"]}), "SessionStart"));
    }

    #[test]
    fn malformed_settings_are_refused() {
        for bad in [
            "{",
            "[1,2]",
            "{\"hooks\": 3}",
            "{\"a\": tru}",
            "{\"hooks\": {\"SessionStart\": {}}}",
        ] {
            assert!(install(bad, &specs()).is_err(), "{bad}");
        }
        assert!(check("not json").is_err());
        assert!(check("").is_ok());
    }
}
