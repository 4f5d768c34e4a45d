//! `ccsync mcp`: the archive as a Model Context Protocol server on standard input and output,
//! so a Claude Code session on one machine can search, list and read what was done on any.
//!
//! JSON-RPC 2.0, one message per line (the MCP stdio transport). Tools: `search`, `list_sessions`,
//! `show_session`. Every answer is what the CLI would print, with secrets redacted as push
//! redacts them (what a tool returns goes to the model). The archive is opened again for each
//! call, so sessions pulled meanwhile are found; the repository is read as last fetched (no
//! network in a tool call).

use std::io::{BufRead, Write};

use anyhow::{Context as _, Result};
use serde_json::{Value, json};

use super::render::{self, Role, TextStyle};
use super::search::{self, Case, Filters, Query};
use super::{Archive, Repo};
use crate::claude::ClaudeDir;
use crate::config::{Config, Home};

/// The protocol versions this server speaks (newest first).
const VERSIONS: &[&str] = &["2025-06-18", "2025-03-26", "2024-11-05"];

/// The most text one tool answer carries.
const MAX_ANSWER: usize = 200_000;

/// Where the archive comes from.
pub struct Server<'a> {
    pub claude: &'a ClaudeDir,
    pub home: &'a Home,
    pub config: &'a Config,
    /// Whether this machine is connected to a repository.
    pub connected: bool,
}

impl Server<'_> {
    /// Serve until standard input ends.
    pub fn run(&self, input: impl BufRead, mut output: impl Write) -> Result<()> {
        for line in input.lines() {
            let line = line.context("cannot read the MCP client's message")?;
            if line.trim().is_empty() {
                continue;
            }
            if let Some(reply) = self.handle(&line) {
                let mut text = serde_json::to_string(&reply)?;
                text.push('\n');
                output
                    .write_all(text.as_bytes())
                    .and_then(|()| output.flush())
                    .context("cannot answer the MCP client")?;
            }
        }
        Ok(())
    }

    /// The answer to one message (`None` for a notification).
    pub fn handle(&self, line: &str) -> Option<Value> {
        let msg: Value = match serde_json::from_str(line) {
            Ok(v) => v,
            Err(e) => return Some(error(Value::Null, -32700, &format!("parse error: {e}"))),
        };
        let id = msg.get("id").cloned();
        let method = msg.get("method").and_then(Value::as_str).unwrap_or("");
        let params = msg.get("params").cloned().unwrap_or(Value::Null);
        let id = id?; // Notifications (`notifications/initialized`, …) get no answer.
        let result = match method {
            "initialize" => {
                let asked = params
                    .get("protocolVersion")
                    .and_then(Value::as_str)
                    .unwrap_or(VERSIONS[0]);
                let version = VERSIONS
                    .iter()
                    .find(|v| **v == asked)
                    .unwrap_or(&VERSIONS[0]);
                json!({
                    "protocolVersion": version,
                    "capabilities": {"tools": {}},
                    "serverInfo": {"name": "ccsync", "version": env!("CARGO_PKG_VERSION")},
                    "instructions": "The archive of every Claude Code conversation on every machine synced with ccsync: search it, list its sessions, read one."
                })
            }
            "ping" => json!({}),
            "tools/list" => json!({"tools": tools()}),
            "tools/call" => {
                let name = params.get("name").and_then(Value::as_str).unwrap_or("");
                let args = params.get("arguments").cloned().unwrap_or(json!({}));
                match self.call(name, &args) {
                    Ok(text) => {
                        json!({"content": [{"type": "text", "text": text}], "isError": false})
                    }
                    Err(e) => {
                        json!({"content": [{"type": "text", "text": format!("{e:#}")}], "isError": true})
                    }
                }
            }
            _ => return Some(error(id, -32601, &format!("method not found: {method}"))),
        };
        Some(json!({"jsonrpc": "2.0", "id": id, "result": result}))
    }

    fn archive(&self) -> Result<Archive<'_>> {
        let repo = if self.connected {
            Repo::Known
        } else {
            Repo::None
        };
        Archive::open(self.claude, self.home, self.config, repo)
    }

    fn call(&self, name: &str, args: &Value) -> Result<String> {
        let s = |k: &str| args.get(k).and_then(Value::as_str).map(str::to_string);
        match name {
            "search" => {
                let archive = self.archive()?;
                let query = Query {
                    pattern: s("query").context("`query` is required")?,
                    regex: args.get("regex").and_then(Value::as_bool).unwrap_or(false),
                    case: Case::Smart,
                };
                let date = |k: &str, end: bool| -> Result<Option<chrono::DateTime<chrono::Utc>>> {
                    s(k).map(|d| crate::clock::parse_date(&d, end)).transpose()
                };
                let filters = Filters {
                    project: s("project"),
                    machine: s("machine"),
                    since: date("since", false)?,
                    until: date("until", true)?,
                    role: s("role").as_deref().and_then(Role::parse),
                    files: s("files"),
                };
                let limit = args.get("limit").and_then(Value::as_u64).unwrap_or(20) as usize;
                let hits = search::search(&archive, &query, &filters, limit.clamp(1, 200))?;
                if hits.is_empty() {
                    return Ok(format!("No match in {} sessions.", archive.sessions.len()));
                }
                let mut out = String::new();
                for h in hits {
                    let snippet = redact_text(&archive, &h.snippet);
                    out.push_str(&format!(
                        "session {} | {} | machine {} | {} | {}\n  {}\n",
                        h.session_id,
                        h.time.map(|t| t.to_rfc3339()).unwrap_or_default(),
                        h.machine,
                        h.role.as_str(),
                        h.project.unwrap_or_default(),
                        snippet
                    ));
                }
                Ok(cap(out))
            }
            "list_sessions" => {
                let archive = self.archive()?;
                let limit = args.get("limit").and_then(Value::as_u64).unwrap_or(50) as usize;
                let project = s("project").map(|p| p.to_lowercase());
                let mut out = String::new();
                for x in archive
                    .sessions
                    .iter()
                    .filter(|x| {
                        project.as_deref().is_none_or(|p| {
                            x.cwd
                                .as_deref()
                                .or(x.portable_cwd.as_deref())
                                .is_some_and(|c| c.to_lowercase().contains(p))
                        })
                    })
                    .take(limit.clamp(1, 1000))
                {
                    let title = x.title.as_deref().map(|t| redact_text(&archive, t));
                    out.push_str(&format!(
                        "{} | {} | machine {} | {} | {}\n",
                        x.id,
                        x.last_activity.map(|t| t.to_rfc3339()).unwrap_or_default(),
                        x.machine,
                        x.cwd
                            .as_deref()
                            .or(x.portable_cwd.as_deref())
                            .unwrap_or("?"),
                        title.as_deref().unwrap_or("(untitled)")
                    ));
                }
                Ok(cap(out))
            }
            "show_session" => {
                let archive = self.archive()?;
                let id = s("id").context("`id` is required")?;
                let full = args.get("full").and_then(Value::as_bool).unwrap_or(false);
                let session = archive.find(&id)?;
                let turns = archive.turns(&session.transcript, true, true)?;
                let mut out = format!(
                    "{} ({} · {} · machine {})\n\n",
                    session
                        .title
                        .as_deref()
                        .map(|t| redact_text(&archive, t))
                        .unwrap_or_else(|| "(untitled)".into()),
                    session.id,
                    session
                        .cwd
                        .as_deref()
                        .or(session.portable_cwd.as_deref())
                        .unwrap_or("?"),
                    session.machine
                );
                render::text(&turns, TextStyle { full, color: false }, &mut out);
                Ok(cap(out))
            }
            _ => anyhow::bail!("no tool {name} (there are search, list_sessions, show_session)"),
        }
    }
}

fn redact_text(archive: &Archive<'_>, text: &str) -> String {
    match archive.scanner {
        Some(sc) => {
            let hits = sc.scan_text(text.as_bytes());
            String::from_utf8_lossy(&sc.redact(text.as_bytes(), &hits)).into_owned()
        }
        None => text.to_string(),
    }
}

fn cap(mut text: String) -> String {
    if text.len() > MAX_ANSWER {
        let mut cut = MAX_ANSWER;
        while !text.is_char_boundary(cut) {
            cut -= 1;
        }
        text.truncate(cut);
        text.push_str("\n… (cut here: ask for less, or narrow the search)\n");
    }
    text
}

fn error(id: Value, code: i64, message: &str) -> Value {
    json!({"jsonrpc": "2.0", "id": id, "error": {"code": code, "message": message}})
}

fn tools() -> Value {
    json!([
        {
            "name": "search",
            "title": "Search every past conversation",
            "description": "Full-text search across every Claude Code session of every machine synced with ccsync (including sessions deleted locally), newest first. Returns session id, time, machine, role and a snippet per hit. Use show_session with an id to read one.",
            "inputSchema": {
                "type": "object",
                "properties": {
                    "query": {"type": "string", "description": "Text to find (case-insensitive unless it has an upper-case letter)."},
                    "regex": {"type": "boolean", "description": "Treat query as a regular expression."},
                    "project": {"type": "string", "description": "Only sessions whose project directory contains this."},
                    "machine": {"type": "string", "description": "Only sessions last written by this machine."},
                    "since": {"type": "string", "description": "Only turns since this date (YYYY-MM-DD or RFC 3339)."},
                    "until": {"type": "string", "description": "Only turns until this date."},
                    "role": {"type": "string", "enum": ["user", "assistant", "tool", "system"]},
                    "files": {"type": "string", "description": "Only sessions whose tool calls touched a path containing this."},
                    "limit": {"type": "integer", "description": "At most this many hits (default 20)."}
                },
                "required": ["query"]
            }
        },
        {
            "name": "list_sessions",
            "title": "List past conversations",
            "description": "The sessions of every machine, newest first: id, last activity, machine, project directory, title.",
            "inputSchema": {
                "type": "object",
                "properties": {
                    "project": {"type": "string", "description": "Only sessions whose project directory contains this."},
                    "limit": {"type": "integer", "description": "At most this many (default 50)."}
                }
            }
        },
        {
            "name": "show_session",
            "title": "Read a past conversation",
            "description": "One session as a transcript: the branch Claude Code shows, turn by turn, tool calls folded to one line unless full is true.",
            "inputSchema": {
                "type": "object",
                "properties": {
                    "id": {"type": "string", "description": "Session id, or a unique start of one."},
                    "full": {"type": "boolean", "description": "Unfold tool calls, results and thinking."}
                },
                "required": ["id"]
            }
        }
    ])
}

#[cfg(test)]
mod tests {
    use super::*;

    fn server_answer(line: &str) -> Option<Value> {
        let dir = tempfile::tempdir().unwrap();
        let claude = ClaudeDir::new(dir.path().join("claude"));
        let home = Home::new(dir.path().join("tool"));
        let config = Config::new(
            "m".into(),
            "/nowhere".into(),
            crate::paths::PathStyle::Posix,
        );
        let s = Server {
            claude: &claude,
            home: &home,
            config: &config,
            connected: false,
        };
        s.handle(line)
    }

    #[test]
    fn handshake_tools_and_errors() {
        let init = server_answer(r#"{"jsonrpc":"2.0","id":1,"method":"initialize","params":{"protocolVersion":"2025-06-18","capabilities":{},"clientInfo":{"name":"t","version":"1"}}}"#).unwrap();
        assert_eq!(init["result"]["protocolVersion"], "2025-06-18");
        assert_eq!(init["id"], 1);
        let old = server_answer(r#"{"jsonrpc":"2.0","id":2,"method":"initialize","params":{"protocolVersion":"2099-01-01"}}"#).unwrap();
        assert_eq!(old["result"]["protocolVersion"], VERSIONS[0]);
        assert!(
            server_answer(r#"{"jsonrpc":"2.0","method":"notifications/initialized"}"#).is_none()
        );
        let list = server_answer(r#"{"jsonrpc":"2.0","id":"x","method":"tools/list"}"#).unwrap();
        let names: Vec<&str> = list["result"]["tools"]
            .as_array()
            .unwrap()
            .iter()
            .map(|t| t["name"].as_str().unwrap())
            .collect();
        assert_eq!(names, ["search", "list_sessions", "show_session"]);
        let none = server_answer(r#"{"jsonrpc":"2.0","id":3,"method":"nope"}"#).unwrap();
        assert_eq!(none["error"]["code"], -32601);
        let bad = server_answer("{not json").unwrap();
        assert_eq!(bad["error"]["code"], -32700);
        let missing = server_answer(r#"{"jsonrpc":"2.0","id":4,"method":"tools/call","params":{"name":"search","arguments":{}}}"#).unwrap();
        assert_eq!(missing["result"]["isError"], true);
    }
}
