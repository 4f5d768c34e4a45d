//! A transcript as people read it: turns (who, when, what), with tool calls and results as
//! folded blocks, in plain text for a terminal, Markdown, or one self-contained HTML page.

use std::fmt::Write as _;

use chrono::{DateTime, Utc};
use serde_json::Value;

/// Who speaks in a turn.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Role {
    User,
    Assistant,
    /// A tool's result (sent back to the model as a user message).
    Tool,
    System,
}

impl Role {
    pub fn as_str(self) -> &'static str {
        match self {
            Role::User => "user",
            Role::Assistant => "assistant",
            Role::Tool => "tool",
            Role::System => "system",
        }
    }

    pub fn parse(s: &str) -> Option<Role> {
        match s {
            "user" => Some(Role::User),
            "assistant" => Some(Role::Assistant),
            "tool" => Some(Role::Tool),
            "system" => Some(Role::System),
            _ => None,
        }
    }
}

/// One part of a turn.
#[derive(Debug, Clone, PartialEq)]
pub enum Block {
    Text(String),
    Thinking(String),
    ToolUse {
        name: String,
        /// One line saying what it does (a path, a command, a pattern…).
        summary: String,
        input: String,
    },
    ToolResult {
        text: String,
        is_error: bool,
    },
    /// An image: its media type and base64 data (checked to be base64).
    Image {
        media_type: String,
        data: String,
    },
}

/// One line of the transcript that says something.
#[derive(Debug, Clone, PartialEq)]
pub struct Turn {
    pub role: Role,
    pub time: Option<DateTime<Utc>>,
    pub uuid: Option<String>,
    pub blocks: Vec<Block>,
}

impl Turn {
    /// The turn of one transcript line, if the line is a message.
    pub fn of_line(line: &[u8]) -> Option<Turn> {
        let v: Value = serde_json::from_slice(line).ok()?;
        let kind = v.get("type")?.as_str()?;
        let time = v
            .get("timestamp")
            .and_then(Value::as_str)
            .and_then(crate::claude::transcript::parse_timestamp);
        let uuid = v.get("uuid").and_then(Value::as_str).map(str::to_string);
        let mut role = match kind {
            "user" => Role::User,
            "assistant" => Role::Assistant,
            "system" => Role::System,
            _ => return None,
        };
        let mut blocks = Vec::new();
        if role == Role::System {
            let text = v.get("content").and_then(Value::as_str)?;
            blocks.push(Block::Text(text.to_string()));
        } else {
            match v.get("message").and_then(|m| m.get("content"))? {
                Value::String(s) => blocks.push(Block::Text(s.clone())),
                Value::Array(items) => {
                    for b in items {
                        if let Some(block) = block_of(b) {
                            blocks.push(block);
                        }
                    }
                }
                _ => return None,
            }
        }
        if blocks.is_empty() {
            return None;
        }
        if role == Role::User
            && blocks
                .iter()
                .all(|b| matches!(b, Block::ToolResult { .. } | Block::Image { .. }))
        {
            role = Role::Tool;
        }
        Some(Turn {
            role,
            time,
            uuid,
            blocks,
        })
    }

    /// Every text a search looks at, one string per block.
    pub fn texts(&self) -> impl Iterator<Item = &str> {
        self.blocks.iter().filter_map(|b| match b {
            Block::Text(t) | Block::Thinking(t) => Some(t.as_str()),
            Block::ToolUse { input, .. } => Some(input.as_str()),
            Block::ToolResult { text, .. } => Some(text.as_str()),
            Block::Image { .. } => None,
        })
    }
}

fn block_of(b: &Value) -> Option<Block> {
    match b.get("type")?.as_str()? {
        "text" => Some(Block::Text(b.get("text")?.as_str()?.to_string())),
        "thinking" => Some(Block::Thinking(b.get("thinking")?.as_str()?.to_string())),
        "tool_use" => {
            let name = b.get("name")?.as_str()?.to_string();
            let input = b.get("input").cloned().unwrap_or(Value::Null);
            Some(Block::ToolUse {
                summary: tool_summary(&input),
                input: serde_json::to_string_pretty(&input).unwrap_or_default(),
                name,
            })
        }
        "tool_result" => {
            let text = match b.get("content") {
                Some(Value::String(s)) => s.clone(),
                Some(Value::Array(parts)) => parts
                    .iter()
                    .filter_map(|p| p.get("text").and_then(Value::as_str))
                    .collect::<Vec<_>>()
                    .join("\n"),
                _ => String::new(),
            };
            let is_error = b.get("is_error").and_then(Value::as_bool).unwrap_or(false);
            Some(Block::ToolResult { text, is_error })
        }
        "image" => {
            let src = b.get("source")?;
            let media_type = src.get("media_type")?.as_str()?;
            let data = src.get("data")?.as_str()?;
            let ok_type = matches!(
                media_type,
                "image/png" | "image/jpeg" | "image/gif" | "image/webp"
            );
            let ok_data = data
                .bytes()
                .all(|c| c.is_ascii_alphanumeric() || matches!(c, b'+' | b'/' | b'='));
            (ok_type && ok_data).then(|| Block::Image {
                media_type: media_type.to_string(),
                data: data.to_string(),
            })
        }
        _ => None,
    }
}

/// What a tool call is about, in one line: its path, command, pattern, URL or description.
fn tool_summary(input: &Value) -> String {
    for key in [
        "file_path",
        "command",
        "pattern",
        "url",
        "path",
        "query",
        "description",
        "prompt",
    ] {
        if let Some(s) = input.get(key).and_then(Value::as_str) {
            return one_line(s, 100);
        }
    }
    one_line(&input.to_string(), 100)
}

/// The first line of `s`, cut to `max` characters with an ellipsis.
pub fn one_line(s: &str, max: usize) -> String {
    let first = s.lines().next().unwrap_or("");
    let mut out: String = first.chars().take(max).collect();
    if first.chars().count() > max || s.lines().nth(1).is_some() {
        out.push('…');
    }
    out
}

fn when(t: Option<DateTime<Utc>>) -> String {
    t.map(|t| {
        t.with_timezone(&chrono::Local)
            .format("%Y-%m-%d %H:%M")
            .to_string()
    })
    .unwrap_or_default()
}

/// How to print turns in a terminal.
#[derive(Debug, Clone, Copy, Default)]
pub struct TextStyle {
    pub full: bool,
    pub color: bool,
}

/// Plain text (ANSI colours with `style.color`).
pub fn text(turns: &[Turn], style: TextStyle, out: &mut String) {
    let paint = |code: &str, s: &str| {
        if style.color {
            format!("\x1b[{code}m{s}\x1b[0m")
        } else {
            s.to_string()
        }
    };
    for t in turns {
        let head = format!("── {} · {} ", t.role.as_str(), when(t.time));
        let code = match t.role {
            Role::User => "1;36",
            Role::Assistant => "1;35",
            Role::Tool => "2",
            Role::System => "33",
        };
        let _ = writeln!(out, "{}", paint(code, &head));
        for b in &t.blocks {
            match b {
                Block::Text(s) => {
                    let _ = writeln!(out, "{}", s.trim_end());
                }
                Block::Thinking(s) => {
                    if style.full {
                        let _ = writeln!(out, "{}", paint("2;3", s.trim_end()));
                    } else {
                        let _ = writeln!(out, "{}", paint("2", "(thinking)"));
                    }
                }
                Block::ToolUse {
                    name,
                    summary,
                    input,
                } => {
                    let _ = writeln!(out, "{}", paint("32", &format!("▸ {name} {summary}")));
                    if style.full {
                        for l in input.lines() {
                            let _ = writeln!(out, "    {l}");
                        }
                    }
                }
                Block::ToolResult { text, is_error } => {
                    let n = text.lines().count();
                    let mark = if *is_error { "✗ error" } else { "◂ result" };
                    let _ = writeln!(
                        out,
                        "{}",
                        paint("2", &format!("{mark}: {} ({n} lines)", one_line(text, 80)))
                    );
                    if style.full {
                        for l in text.lines() {
                            let _ = writeln!(out, "    {l}");
                        }
                    }
                }
                Block::Image { media_type, data } => {
                    let _ = writeln!(
                        out,
                        "{}",
                        paint(
                            "2",
                            &format!("[image {media_type}, {} bytes]", data.len() * 3 / 4)
                        )
                    );
                }
            }
        }
        out.push('\n');
    }
}

/// A fence longer than any run of backticks in `s`.
fn fence(s: &str) -> String {
    let mut longest = 0;
    let mut run = 0;
    for c in s.chars() {
        if c == '`' {
            run += 1;
            longest = longest.max(run);
        } else {
            run = 0;
        }
    }
    "`".repeat((longest + 1).max(3))
}

/// Markdown: a heading per turn, tool calls and results in `<details>`.
pub fn markdown(title: &str, turns: &[Turn], subagents: &[(String, Vec<Turn>)], out: &mut String) {
    let _ = writeln!(out, "# {}\n", title.replace('\n', " "));
    md_turns(turns, out);
    for (name, turns) in subagents {
        let _ = writeln!(out, "\n## Subagent {name}\n");
        md_turns(turns, out);
    }
}

fn md_turns(turns: &[Turn], out: &mut String) {
    for t in turns {
        let _ = writeln!(out, "### {} · {}\n", t.role.as_str(), when(t.time));
        for b in &t.blocks {
            match b {
                Block::Text(s) => {
                    let _ = writeln!(out, "{}\n", s.trim_end());
                }
                Block::Thinking(s) => {
                    let f = fence(s);
                    let _ = writeln!(
                        out,
                        "<details><summary>thinking</summary>\n\n{f}text\n{}\n{f}\n\n</details>\n",
                        s.trim_end()
                    );
                }
                Block::ToolUse {
                    name,
                    summary,
                    input,
                } => {
                    let f = fence(input);
                    let _ = writeln!(
                        out,
                        "<details><summary>{} {}</summary>\n\n{f}json\n{input}\n{f}\n\n</details>\n",
                        html_escape(name),
                        html_escape(summary)
                    );
                }
                Block::ToolResult { text, is_error } => {
                    let f = fence(text);
                    let mark = if *is_error { "error" } else { "result" };
                    let _ = writeln!(
                        out,
                        "<details><summary>{mark}: {}</summary>\n\n{f}\n{}\n{f}\n\n</details>\n",
                        html_escape(&one_line(text, 80)),
                        text.trim_end()
                    );
                }
                Block::Image { media_type, data } => {
                    let _ = writeln!(out, "![image](data:{media_type};base64,{data})\n");
                }
            }
        }
    }
}

pub fn html_escape(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for c in s.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&#39;"),
            _ => out.push(c),
        }
    }
    out
}

const CSS: &str = "body{font:15px/1.5 system-ui,sans-serif;max-width:56rem;margin:2rem auto;padding:0 1rem;color:#1d1d1f;background:#fff}
h1{font-size:1.4rem}.meta{color:#666;font-size:.85rem}
.turn{border-left:4px solid #ccc;padding:.2rem .9rem;margin:1rem 0}
.user{border-color:#0a84ff}.assistant{border-color:#bf5af2}.tool{border-color:#aaa;background:#fafafa}.system{border-color:#ff9f0a}
.who{font-weight:600;font-size:.8rem;text-transform:uppercase;color:#555}
.text{white-space:pre-wrap;word-wrap:break-word}
pre{background:#f4f4f4;padding:.6rem;overflow:auto;white-space:pre-wrap;word-wrap:break-word}
details{margin:.3rem 0}summary{cursor:pointer;color:#2a7d2a}.error summary{color:#c00}
img{max-width:100%}h2{margin-top:2rem}";

/// One self-contained page: no script, no network resource (images inline as data URLs).
pub fn html(
    title: &str,
    meta: &str,
    turns: &[Turn],
    subagents: &[(String, Vec<Turn>)],
    out: &mut String,
) {
    let _ = write!(
        out,
        "<!DOCTYPE html>\n<html lang=\"en\"><head><meta charset=\"utf-8\">\
         <meta http-equiv=\"Content-Security-Policy\" content=\"default-src 'none'; img-src data:; style-src 'unsafe-inline'\">\
         <meta name=\"viewport\" content=\"width=device-width, initial-scale=1\">\
         <title>{t}</title><style>{CSS}</style></head><body>\n<h1>{t}</h1>\n<p class=\"meta\">{m}</p>\n",
        t = html_escape(title),
        m = html_escape(meta)
    );
    html_turns(turns, out);
    for (name, turns) in subagents {
        let _ = writeln!(
            out,
            "<details><summary><h2 style=\"display:inline\">Subagent {}</h2></summary>",
            html_escape(name)
        );
        html_turns(turns, out);
        out.push_str("</details>\n");
    }
    out.push_str("</body></html>\n");
}

fn html_turns(turns: &[Turn], out: &mut String) {
    for t in turns {
        let r = t.role.as_str();
        let _ = writeln!(
            out,
            "<div class=\"turn {r}\"><div class=\"who\">{r} · {}</div>",
            html_escape(&when(t.time))
        );
        for b in &t.blocks {
            match b {
                Block::Text(s) => {
                    let _ = writeln!(
                        out,
                        "<div class=\"text\">{}</div>",
                        html_escape(s.trim_end())
                    );
                }
                Block::Thinking(s) => {
                    let _ = writeln!(
                        out,
                        "<details><summary>thinking</summary><pre>{}</pre></details>",
                        html_escape(s.trim_end())
                    );
                }
                Block::ToolUse {
                    name,
                    summary,
                    input,
                } => {
                    let _ = writeln!(
                        out,
                        "<details class=\"tool-call\"><summary>{} {}</summary><pre>{}</pre></details>",
                        html_escape(name),
                        html_escape(summary),
                        html_escape(input)
                    );
                }
                Block::ToolResult { text, is_error } => {
                    let (class, mark) = if *is_error {
                        (" class=\"error\"", "error")
                    } else {
                        ("", "result")
                    };
                    let _ = writeln!(
                        out,
                        "<details{class}><summary>{mark}: {}</summary><pre>{}</pre></details>",
                        html_escape(&one_line(text, 80)),
                        html_escape(text.trim_end())
                    );
                }
                Block::Image { media_type, data } => {
                    let _ = writeln!(
                        out,
                        "<img alt=\"image\" src=\"data:{media_type};base64,{data}\">"
                    );
                }
            }
        }
        out.push_str("</div>\n");
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn turns_of_claude_code_lines() {
        let user = br#"{"type":"user","message":{"role":"user","content":"fix the parser"},"uuid":"u1","timestamp":"2026-11-30T10:00:00.000Z"}"#;
        let t = Turn::of_line(user).unwrap();
        assert_eq!(t.role, Role::User);
        assert_eq!(t.blocks, [Block::Text("fix the parser".into())]);
        let asst = br#"{"type":"assistant","message":{"role":"assistant","content":[{"type":"thinking","thinking":"hmm","signature":"sig"},{"type":"text","text":"Reading it."},{"type":"tool_use","id":"t1","name":"Read","input":{"file_path":"/p/src/lib.rs"}}]},"uuid":"a1"}"#;
        let t = Turn::of_line(asst).unwrap();
        assert_eq!(t.role, Role::Assistant);
        assert!(
            matches!(&t.blocks[2], Block::ToolUse { name, summary, .. } if name == "Read" && summary == "/p/src/lib.rs")
        );
        let result = br#"{"type":"user","message":{"role":"user","content":[{"type":"tool_result","tool_use_id":"t1","content":"1\tfn main","is_error":false},{"type":"image","source":{"type":"base64","media_type":"image/png","data":"iVBOR\"><script>"}}]}}"#;
        let t = Turn::of_line(result).unwrap();
        assert_eq!(t.role, Role::Tool);
        // Image data that is not base64 is dropped, never put in a page.
        assert_eq!(t.blocks.len(), 1);
        assert!(Turn::of_line(br#"{"type":"file-history-snapshot"}"#).is_none());
        assert!(Turn::of_line(b"not json").is_none());
    }

    #[test]
    fn html_escapes_everything_the_transcript_says() {
        let t = Turn {
            role: Role::User,
            time: None,
            uuid: None,
            blocks: vec![Block::Text("<script>alert(1)</script> & \"x\"".into())],
        };
        let mut out = String::new();
        html("<t>", "m", &[t], &[], &mut out);
        assert!(!out.contains("<script>alert"));
        assert!(out.contains("&lt;script&gt;alert(1)&lt;/script&gt; &amp; &quot;x&quot;"));
        assert!(out.contains("<title>&lt;t&gt;</title>"));
    }

    #[test]
    fn markdown_fences_outlast_backticks_inside() {
        assert_eq!(fence("a ``` b"), "````");
        assert_eq!(fence("plain"), "```");
    }
}
