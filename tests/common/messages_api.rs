//! A loopback stand-in for the Anthropic Messages API, scripted per test, for driving the real
//! Claude Code client (`tests/common/real_claude.rs`).
//!
//! It listens on `127.0.0.1` on an ephemeral port, in a background thread, until dropped. Point the
//! client at it with `ANTHROPIC_BASE_URL=<base_url()>`.
//!
//! What Claude Code 2.1.197 sends (recorded from the real client):
//! - `HEAD /` at start-up and now and then (a connectivity probe): answered `200`.
//! - `POST /v1/messages?beta=true` with `"stream": true`, two kinds:
//!   - **conversation turns**: the main model (`claude-opus-…`), the whole conversation in
//!     `messages` and the tool definitions in `tools` (`Write`, `Bash`, `Read`, …). Each one takes
//!     the next scripted [`Reply`] from the queue. After a `tool_use` reply the client runs the tool
//!     (after the permission prompt, if any) and sends another turn whose last user message holds
//!     the `tool_result`; it takes the next reply from the queue as well.
//!   - **side requests**: `tools: []`, a small model (`claude-haiku-…`). Seen: session title
//!     generation ("Generate a concise, sentence-case title …", with
//!     `output_config.format = {type: json_schema, schema: {title: string}}`, run after the first
//!     prompt of a session, concurrently with the turn). A side request with a JSON schema gets a
//!     JSON object that fits the schema (its `title` is [`MessagesApi::set_title`]); any other side
//!     request gets the text `OK`. Side requests never consume the queue.
//! - `POST /v1/messages/count_tokens`: answered `{"input_tokens": …}`.
//! - Anything else: a `404` in the API's error shape (and recorded, so a test can see it).
//!
//! Every request is recorded ([`MessagesApi::requests`]); with `CCSYNC_TEST_API_LOG=<file>` in the
//! environment (or [`MessagesApi::log_to`]) each one is also appended to that file as a JSON line,
//! which is how the list above was found.
#![allow(dead_code)]

use std::collections::VecDeque;
use std::io::{BufRead, BufReader, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use serde_json::{Value, json};

/// One content block of a scripted assistant reply.
#[derive(Clone, Debug)]
pub enum Block {
    Text(String),
    ToolUse { name: String, input: Value },
}

/// A scripted assistant message: its blocks, in order. A reply with a tool call ends with
/// `stop_reason: "tool_use"`, any other with `"end_turn"`.
#[derive(Clone, Debug)]
pub struct Reply {
    pub blocks: Vec<Block>,
    /// Answer only once this file exists (polled, bounded by the duration; answered anyway
    /// then): keeps a turn, and so the client, busy until something has happened.
    pub hold: Option<(PathBuf, Duration)>,
}

impl Reply {
    /// A plain text answer.
    pub fn text(text: &str) -> Reply {
        Reply {
            blocks: vec![Block::Text(text.to_string())],
            hold: None,
        }
    }

    /// A call of tool `name` with `input`.
    pub fn tool(name: &str, input: Value) -> Reply {
        Reply {
            blocks: vec![Block::ToolUse {
                name: name.to_string(),
                input,
            }],
            hold: None,
        }
    }

    /// A call of the `Write` tool creating `file_path` with `content`.
    pub fn write(file_path: &Path, content: &str) -> Reply {
        Reply::tool(
            "Write",
            json!({"file_path": file_path.to_string_lossy(), "content": content}),
        )
    }

    /// The same reply with a text block before its other blocks.
    pub fn after_text(mut self, text: &str) -> Reply {
        self.blocks.insert(0, Block::Text(text.to_string()));
        self
    }

    /// The same reply, sent only once `path` exists (or `timeout` has passed).
    pub fn hold_until(mut self, path: &Path, timeout: Duration) -> Reply {
        self.hold = Some((path.to_path_buf(), timeout));
        self
    }

    /// The text blocks, joined by newlines.
    pub fn text_of(&self) -> String {
        self.blocks
            .iter()
            .filter_map(|b| match b {
                Block::Text(t) => Some(t.as_str()),
                Block::ToolUse { .. } => None,
            })
            .collect::<Vec<_>>()
            .join("\n")
    }

    fn stop_reason(&self) -> &'static str {
        if self
            .blocks
            .iter()
            .any(|b| matches!(b, Block::ToolUse { .. }))
        {
            "tool_use"
        } else {
            "end_turn"
        }
    }
}

/// What the server took a request for.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Kind {
    /// A conversation turn (answered from the queue).
    Turn,
    /// A side request of the client (title generation and the like).
    Side,
    CountTokens,
    /// `HEAD /` and anything else.
    Other,
}

/// A request as received.
#[derive(Clone, Debug)]
pub struct Request {
    pub method: String,
    pub path: String,
    /// Header names in lower case.
    pub headers: Vec<(String, String)>,
    pub body: Vec<u8>,
    pub kind: Kind,
    /// For a turn: the scripted reply it got, `None` when the queue was empty.
    pub reply: Option<Reply>,
}

impl Request {
    pub fn json(&self) -> Option<Value> {
        serde_json::from_slice(&self.body).ok()
    }

    pub fn header(&self, name: &str) -> Option<&str> {
        let name = name.to_ascii_lowercase();
        self.headers
            .iter()
            .find(|(k, _)| *k == name)
            .map(|(_, v)| v.as_str())
    }

    pub fn model(&self) -> Option<String> {
        self.json()?.get("model")?.as_str().map(str::to_string)
    }

    /// The content blocks of the last `user` message (a string content is one text block).
    pub fn last_user_blocks(&self) -> Vec<Value> {
        let Some(body) = self.json() else {
            return Vec::new();
        };
        let Some(last) = body
            .get("messages")
            .and_then(Value::as_array)
            .and_then(|m| m.iter().rev().find(|m| m["role"] == "user"))
        else {
            return Vec::new();
        };
        match &last["content"] {
            Value::String(s) => vec![json!({"type": "text", "text": s})],
            Value::Array(a) => a.clone(),
            _ => Vec::new(),
        }
    }

    /// The text of the last `user` message, its text blocks joined by newlines.
    pub fn last_user_text(&self) -> String {
        self.last_user_blocks()
            .iter()
            .filter(|b| b["type"] == "text")
            .filter_map(|b| b["text"].as_str())
            .collect::<Vec<_>>()
            .join("\n")
    }

    /// Every text of the conversation the request carries (`messages`: string contents, text
    /// blocks and the text of tool results, of both roles), in order. What the client loaded
    /// of a resumed session is exactly what it sends here with the next prompt.
    pub fn conversation_texts(&self) -> Vec<String> {
        fn texts(v: &Value, out: &mut Vec<String>) {
            match v {
                Value::String(s) => out.push(s.clone()),
                Value::Array(a) => a.iter().for_each(|b| texts(b, out)),
                Value::Object(o) => match o.get("type").and_then(Value::as_str) {
                    Some("text") => texts(&o["text"], out),
                    Some("tool_result") => texts(&o["content"], out),
                    _ => {}
                },
                _ => {}
            }
        }
        let mut out = Vec::new();
        if let Some(messages) = self.json().and_then(|b| b.get("messages").cloned()) {
            for m in messages.as_array().into_iter().flatten() {
                texts(&m["content"], &mut out);
            }
        }
        out
    }

    /// Whether some text of the conversation contains `needle`.
    pub fn mentions(&self, needle: &str) -> bool {
        self.conversation_texts().iter().any(|t| t.contains(needle))
    }

    /// The `tool_result` blocks of the last `user` message.
    pub fn tool_results(&self) -> Vec<Value> {
        self.last_user_blocks()
            .into_iter()
            .filter(|b| b["type"] == "tool_result")
            .collect()
    }
}

struct State {
    queue: VecDeque<Reply>,
    requests: Vec<Request>,
    title: String,
    log: Option<PathBuf>,
    counter: u64,
}

/// The stand-in server. Stopped (its thread joined) on drop.
pub struct MessagesApi {
    addr: SocketAddr,
    state: Arc<Mutex<State>>,
    stop: Arc<AtomicBool>,
    thread: Option<JoinHandle<()>>,
}

fn lock(state: &Mutex<State>) -> MutexGuard<'_, State> {
    state.lock().unwrap_or_else(|e| e.into_inner())
}

impl MessagesApi {
    pub fn start() -> MessagesApi {
        let listener = TcpListener::bind("127.0.0.1:0").expect("bind 127.0.0.1:0");
        let addr = listener.local_addr().unwrap();
        let state = Arc::new(Mutex::new(State {
            queue: VecDeque::new(),
            requests: Vec::new(),
            title: "Mock session title".to_string(),
            log: std::env::var_os("CCSYNC_TEST_API_LOG")
                .filter(|v| !v.is_empty())
                .map(PathBuf::from),
            counter: 0,
        }));
        let stop = Arc::new(AtomicBool::new(false));
        let thread = {
            let state = state.clone();
            let stop = stop.clone();
            std::thread::Builder::new()
                .name("messages-api".into())
                .spawn(move || {
                    for conn in listener.incoming() {
                        if stop.load(Ordering::SeqCst) {
                            break;
                        }
                        let Ok(conn) = conn else { continue };
                        let state = state.clone();
                        // One thread per connection: the client runs side requests concurrently
                        // with turns.
                        let _ = std::thread::Builder::new()
                            .name("messages-api-conn".into())
                            .spawn(move || {
                                let _ = serve(conn, &state);
                            });
                    }
                })
                .unwrap()
        };
        MessagesApi {
            addr,
            state,
            stop,
            thread: Some(thread),
        }
    }

    /// `http://127.0.0.1:PORT`, the value for `ANTHROPIC_BASE_URL`.
    pub fn base_url(&self) -> String {
        format!("http://{}", self.addr)
    }

    /// Queue the reply to the next conversation turn.
    pub fn push(&self, reply: Reply) {
        lock(&self.state).queue.push_back(reply);
    }

    /// The title the side request for a session title gets.
    pub fn set_title(&self, title: &str) {
        lock(&self.state).title = title.to_string();
    }

    /// Also append every request to `path` as a JSON line.
    pub fn log_to(&self, path: &Path) {
        lock(&self.state).log = Some(path.to_path_buf());
    }

    /// Replies queued and not yet taken.
    pub fn pending(&self) -> usize {
        lock(&self.state).queue.len()
    }

    /// Every request received so far, in order of arrival.
    pub fn requests(&self) -> Vec<Request> {
        lock(&self.state).requests.clone()
    }

    /// The conversation turns received so far.
    pub fn turns(&self) -> Vec<Request> {
        self.requests()
            .into_iter()
            .filter(|r| r.kind == Kind::Turn)
            .collect()
    }

    /// The conversation turn that got the scripted reply whose text is `text` (the last one).
    pub fn turn_answered(&self, text: &str) -> Option<Request> {
        self.turns()
            .into_iter()
            .rev()
            .find(|t| t.reply.as_ref().is_some_and(|r| r.text_of() == text))
    }

    /// Wait (bounded) until `n` conversation turns have arrived; returns whether they did.
    pub fn wait_for_turns(&self, n: usize, timeout: Duration) -> bool {
        let deadline = Instant::now() + timeout;
        loop {
            if self.turns().len() >= n {
                return true;
            }
            if Instant::now() >= deadline {
                return false;
            }
            std::thread::sleep(Duration::from_millis(20));
        }
    }
}

impl Drop for MessagesApi {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::SeqCst);
        // Wake the accept loop.
        let _ = TcpStream::connect_timeout(&self.addr, Duration::from_secs(1));
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

/// Read one request, answer it, close the connection (`Connection: close` on every response).
fn serve(conn: TcpStream, state: &Mutex<State>) -> std::io::Result<()> {
    conn.set_read_timeout(Some(Duration::from_secs(30)))?;
    conn.set_write_timeout(Some(Duration::from_secs(30)))?;
    let mut reader = BufReader::new(conn.try_clone()?);
    let Some((method, path, headers, body)) = read_request(&mut reader)? else {
        return Ok(());
    };
    let mut out = conn;
    let kind = classify(&method, &path, &body);
    let mut req = Request {
        method,
        path,
        headers,
        body,
        kind,
        reply: None,
    };
    let (n, title) = {
        let mut st = lock(state);
        st.counter += 1;
        if kind == Kind::Turn {
            req.reply = st.queue.pop_front();
        }
        if let Some(log) = &st.log {
            log_request(log, &req);
        }
        st.requests.push(req.clone());
        (st.counter, st.title.clone())
    };
    let json_body = req.json().unwrap_or(Value::Null);
    let stream = json_body["stream"] == true;
    let model = json_body["model"]
        .as_str()
        .unwrap_or("claude-mock")
        .to_string();
    match kind {
        Kind::Turn => {
            if let Some((path, timeout)) = req.reply.as_ref().and_then(|r| r.hold.clone()) {
                let deadline = Instant::now() + timeout;
                while !path.exists() && Instant::now() < deadline {
                    std::thread::sleep(Duration::from_millis(50));
                }
            }
            let reply = req
                .reply
                .clone()
                .unwrap_or_else(|| Reply::text("(the test scripted no reply for this turn)"));
            answer_message(&mut out, n, &model, &reply, stream)
        }
        Kind::Side => {
            let text = match json_body.pointer("/output_config/format/schema") {
                Some(schema) => fill_schema(schema, &title).to_string(),
                None => "OK".to_string(),
            };
            answer_message(&mut out, n, &model, &Reply::text(&text), stream)
        }
        Kind::CountTokens => {
            let tokens = (req.body.len() / 4).max(1);
            respond_json(&mut out, 200, &json!({"input_tokens": tokens}))
        }
        Kind::Other if req.method == "HEAD" || req.path == "/" => {
            out.write_all(b"HTTP/1.1 200 OK\r\ncontent-length: 0\r\nconnection: close\r\n\r\n")?;
            out.flush()
        }
        Kind::Other => respond_json(
            &mut out,
            404,
            &json!({"type": "error", "error": {"type": "not_found_error",
                "message": format!("the test stand-in does not serve {} {}", req.method, req.path)}}),
        ),
    }
}

type RawRequest = (String, String, Vec<(String, String)>, Vec<u8>);

fn read_request(r: &mut impl BufRead) -> std::io::Result<Option<RawRequest>> {
    let mut line = String::new();
    if r.read_line(&mut line)? == 0 {
        return Ok(None);
    }
    let mut parts = line.split_whitespace();
    let method = parts.next().unwrap_or_default().to_string();
    let path = parts.next().unwrap_or_default().to_string();
    let mut headers = Vec::new();
    loop {
        let mut h = String::new();
        if r.read_line(&mut h)? == 0 {
            break;
        }
        let h = h.trim_end();
        if h.is_empty() {
            break;
        }
        if let Some((k, v)) = h.split_once(':') {
            headers.push((k.trim().to_ascii_lowercase(), v.trim().to_string()));
        }
    }
    let get = |name: &str| {
        headers
            .iter()
            .find(|(k, _)| k == name)
            .map(|(_, v)| v.clone())
    };
    let mut body = Vec::new();
    if get("transfer-encoding").is_some_and(|v| v.eq_ignore_ascii_case("chunked")) {
        loop {
            let mut size = String::new();
            r.read_line(&mut size)?;
            let size = usize::from_str_radix(size.trim().split(';').next().unwrap_or("0"), 16)
                .unwrap_or(0);
            if size == 0 {
                // Trailers, up to the empty line.
                loop {
                    let mut t = String::new();
                    if r.read_line(&mut t)? == 0 || t.trim().is_empty() {
                        break;
                    }
                }
                break;
            }
            let start = body.len();
            body.resize(start + size, 0);
            r.read_exact(&mut body[start..])?;
            let mut crlf = [0u8; 2];
            r.read_exact(&mut crlf)?;
        }
    } else if let Some(n) = get("content-length").and_then(|v| v.parse::<usize>().ok()) {
        body.resize(n, 0);
        r.read_exact(&mut body)?;
    }
    Ok(Some((method, path, headers, body)))
}

fn classify(method: &str, path: &str, body: &[u8]) -> Kind {
    let route = path.split('?').next().unwrap_or_default();
    if method != "POST" {
        return Kind::Other;
    }
    if route == "/v1/messages/count_tokens" {
        return Kind::CountTokens;
    }
    if route != "/v1/messages" {
        return Kind::Other;
    }
    let body: Value = serde_json::from_slice(body).unwrap_or(Value::Null);
    let has_tools = body["tools"].as_array().is_some_and(|t| !t.is_empty());
    let structured = body.pointer("/output_config/format").is_some();
    if has_tools && !structured {
        Kind::Turn
    } else {
        Kind::Side
    }
}

/// A value that fits a JSON schema (objects, strings, numbers, booleans, arrays); string
/// properties named `title` get `title`.
fn fill_schema(schema: &Value, title: &str) -> Value {
    match schema["type"].as_str() {
        Some("object") => {
            let mut obj = serde_json::Map::new();
            if let Some(props) = schema["properties"].as_object() {
                for (k, v) in props {
                    let value = if k == "title" && v["type"] == "string" {
                        json!(title)
                    } else {
                        fill_schema(v, title)
                    };
                    obj.insert(k.clone(), value);
                }
            }
            Value::Object(obj)
        }
        Some("array") => json!([]),
        Some("boolean") => json!(false),
        Some("number") | Some("integer") => json!(0),
        Some("null") => Value::Null,
        _ => match schema["enum"].as_array().and_then(|e| e.first()) {
            Some(first) => first.clone(),
            None => json!("mock"),
        },
    }
}

fn log_request(path: &Path, req: &Request) {
    let body = req
        .json()
        .unwrap_or_else(|| Value::String(String::from_utf8_lossy(&req.body).into_owned()));
    let line = json!({
        "method": req.method, "path": req.path, "kind": format!("{:?}", req.kind),
        "headers": req.headers.iter().map(|(k, v)| json!([k, v])).collect::<Vec<_>>(),
        "body": body,
    });
    if let Ok(mut f) = std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(path)
    {
        let _ = writeln!(f, "{line}");
    }
}

fn respond_json(out: &mut TcpStream, status: u16, body: &Value) -> std::io::Result<()> {
    let text = body.to_string();
    let reason = if status == 200 { "OK" } else { "Not Found" };
    write!(
        out,
        "HTTP/1.1 {status} {reason}\r\ncontent-type: application/json\r\ncontent-length: {}\r\n\
         request-id: req_mock\r\nconnection: close\r\n\r\n{text}",
        text.len()
    )?;
    out.flush()
}

fn usage() -> Value {
    json!({"input_tokens": 10, "output_tokens": 5,
           "cache_creation_input_tokens": 0, "cache_read_input_tokens": 0})
}

/// Answer a Messages request with `reply`, as an SSE stream or one JSON message.
fn answer_message(
    out: &mut TcpStream,
    n: u64,
    model: &str,
    reply: &Reply,
    stream: bool,
) -> std::io::Result<()> {
    let id = format!("msg_mock_{n:06}");
    let content: Vec<Value> = reply
        .blocks
        .iter()
        .enumerate()
        .map(|(i, b)| match b {
            Block::Text(t) => json!({"type": "text", "text": t}),
            Block::ToolUse { name, input } => json!({
                "type": "tool_use", "id": format!("toolu_mock_{n:06}_{i}"),
                "name": name, "input": input
            }),
        })
        .collect();
    let stop = reply.stop_reason();
    if !stream {
        return respond_json(
            out,
            200,
            &json!({"id": id, "type": "message", "role": "assistant", "model": model,
                    "content": content, "stop_reason": stop, "stop_sequence": null,
                    "usage": usage()}),
        );
    }
    out.write_all(
        b"HTTP/1.1 200 OK\r\ncontent-type: text/event-stream\r\ncache-control: no-cache\r\n\
          request-id: req_mock\r\nconnection: close\r\n\r\n",
    )?;
    let mut events: Vec<(&str, Value)> = vec![(
        "message_start",
        json!({"type": "message_start", "message": {
            "id": id, "type": "message", "role": "assistant", "model": model, "content": [],
            "stop_reason": null, "stop_sequence": null, "usage": usage()}}),
    )];
    for (i, block) in content.iter().enumerate() {
        let (start, delta) = if block["type"] == "text" {
            (
                json!({"type": "text", "text": ""}),
                json!({"type": "text_delta", "text": block["text"]}),
            )
        } else {
            (
                json!({"type": "tool_use", "id": block["id"], "name": block["name"], "input": {}}),
                json!({"type": "input_json_delta", "partial_json": block["input"].to_string()}),
            )
        };
        events.push((
            "content_block_start",
            json!({"type": "content_block_start", "index": i, "content_block": start}),
        ));
        events.push((
            "content_block_delta",
            json!({"type": "content_block_delta", "index": i, "delta": delta}),
        ));
        events.push((
            "content_block_stop",
            json!({"type": "content_block_stop", "index": i}),
        ));
    }
    events.push((
        "message_delta",
        json!({"type": "message_delta", "delta": {"stop_reason": stop, "stop_sequence": null},
               "usage": {"output_tokens": 5}}),
    ));
    events.push(("message_stop", json!({"type": "message_stop"})));
    for (name, data) in events {
        write!(out, "event: {name}\ndata: {data}\n\n")?;
    }
    out.flush()
}
