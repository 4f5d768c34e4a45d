//! A streaming scanner for the top-level fields of one JSON object (one transcript line).
//!
//! Transcript lines can be many megabytes (tool output, base64 images) while the facts we need
//! (`type`, `cwd`, `timestamp`, …) are a few bytes. The scanner is fed the line in chunks, skips
//! nested values and string bodies with `memchr`, and keeps only the raw bytes of the wanted
//! top-level values, each up to a cap. It never holds the line.
//!
//! Not a validator: it stops caring once the object closes, and reports `valid() == false` only
//! for structure it could not follow.

/// One wanted top-level key and how many bytes of its raw value to keep.
#[derive(Debug, Clone, Copy)]
pub struct Want {
    pub key: &'static str,
    pub cap: usize,
}

/// The raw bytes kept for one wanted key.
#[derive(Debug, Clone, Default)]
pub struct Captured {
    pub raw: Vec<u8>,
    /// The value was longer than the cap; `raw` holds its beginning.
    pub truncated: bool,
    pub present: bool,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Pos {
    Start,
    ExpectKey,
    InKey,
    AfterKey,
    ExpectValue,
    InValue,
    AfterValue,
    Done,
    Invalid,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Val {
    /// Inside a string (at any nesting depth of the value).
    Str,
    /// Outside strings, inside the value's brackets.
    Nested,
    /// A number, `true`, `false` or `null`.
    Scalar,
}

/// See the module documentation.
#[derive(Debug, Clone)]
pub struct TopScanner {
    wants: &'static [Want],
    captures: Vec<Captured>,
    pos: Pos,
    key: Vec<u8>,
    key_overflow: bool,
    escape: bool,
    val: Val,
    /// Bracket depth inside the current value.
    vdepth: u32,
    capturing: Option<usize>,
}

const MAX_KEY: usize = 64;

impl TopScanner {
    pub fn new(wants: &'static [Want]) -> Self {
        TopScanner {
            wants,
            captures: vec![Captured::default(); wants.len()],
            pos: Pos::Start,
            key: Vec::with_capacity(16),
            key_overflow: false,
            escape: false,
            val: Val::Scalar,
            vdepth: 0,
            capturing: None,
        }
    }

    /// The object closed (the rest of the input is of no interest).
    pub fn done(&self) -> bool {
        self.pos == Pos::Done
    }

    /// The input so far was a JSON object the scanner could follow.
    pub fn valid(&self) -> bool {
        self.pos != Pos::Invalid
    }

    /// The kept bytes, one entry per wanted key, in the order of `wants`.
    pub fn captures(&self) -> &[Captured] {
        &self.captures
    }

    /// A kept value by key.
    pub fn get(&self, key: &str) -> Option<&Captured> {
        let i = self.wants.iter().position(|w| w.key == key)?;
        let c = &self.captures[i];
        c.present.then_some(c)
    }

    /// Convenience: a kept complete string value, decoded.
    pub fn get_str(&self, key: &str) -> Option<String> {
        let c = self.get(key)?;
        if c.truncated {
            return None;
        }
        serde_json::from_slice::<String>(&c.raw).ok()
    }

    fn keep(&mut self, bytes: &[u8]) {
        if let Some(i) = self.capturing {
            let cap = self.wants[i].cap;
            let c = &mut self.captures[i];
            let room = cap.saturating_sub(c.raw.len());
            if bytes.len() > room {
                c.raw.extend_from_slice(&bytes[..room]);
                c.truncated = true;
            } else {
                c.raw.extend_from_slice(bytes);
            }
        }
    }

    fn end_value(&mut self) {
        self.capturing = None;
        self.pos = Pos::AfterValue;
    }

    /// Feed the next chunk of the line (without its newline).
    pub fn feed(&mut self, data: &[u8]) {
        let mut i = 0;
        while i < data.len() {
            match self.pos {
                Pos::Done | Pos::Invalid => return,
                Pos::Start => {
                    let b = data[i];
                    i += 1;
                    match b {
                        b' ' | b'\t' | b'\r' | b'\n' => {}
                        0xEF | 0xBB | 0xBF => {} // tolerate a UTF-8 byte order mark
                        b'{' => self.pos = Pos::ExpectKey,
                        _ => self.pos = Pos::Invalid,
                    }
                }
                Pos::ExpectKey => {
                    let b = data[i];
                    i += 1;
                    match b {
                        b' ' | b'\t' | b'\r' | b'\n' => {}
                        b'"' => {
                            self.key.clear();
                            self.key_overflow = false;
                            self.escape = false;
                            self.pos = Pos::InKey;
                        }
                        b'}' => self.pos = Pos::Done,
                        _ => self.pos = Pos::Invalid,
                    }
                }
                Pos::InKey => {
                    let rest = &data[i..];
                    if self.escape {
                        self.escape = false;
                        self.push_key(rest[0]);
                        i += 1;
                        continue;
                    }
                    match memchr::memchr2(b'"', b'\\', rest) {
                        None => {
                            self.push_key_slice(rest);
                            i = data.len();
                        }
                        Some(j) => {
                            self.push_key_slice(&rest[..j]);
                            if rest[j] == b'\\' {
                                self.push_key(b'\\');
                                self.escape = true;
                            } else {
                                self.pos = Pos::AfterKey;
                            }
                            i += j + 1;
                        }
                    }
                }
                Pos::AfterKey => {
                    let b = data[i];
                    i += 1;
                    match b {
                        b' ' | b'\t' | b'\r' | b'\n' => {}
                        b':' => self.pos = Pos::ExpectValue,
                        _ => self.pos = Pos::Invalid,
                    }
                }
                Pos::ExpectValue => {
                    let b = data[i];
                    match b {
                        b' ' | b'\t' | b'\r' | b'\n' => {
                            i += 1;
                            continue;
                        }
                        _ => {}
                    }
                    self.capturing = if self.key_overflow {
                        None
                    } else {
                        self.wants
                            .iter()
                            .position(|w| w.key.as_bytes() == self.key.as_slice())
                            .filter(|&k| !self.captures[k].present)
                    };
                    if let Some(k) = self.capturing {
                        self.captures[k].present = true;
                    }
                    self.escape = false;
                    self.vdepth = 0;
                    self.pos = Pos::InValue;
                    match b {
                        b'"' => {
                            self.val = Val::Str;
                            self.keep(b"\"");
                            i += 1;
                        }
                        b'{' | b'[' => {
                            self.val = Val::Nested;
                            self.vdepth = 1;
                            self.keep(&[b]);
                            i += 1;
                        }
                        b'}' | b',' | b']' | b':' => self.pos = Pos::Invalid,
                        _ => self.val = Val::Scalar,
                    }
                }
                Pos::InValue => {
                    let rest = &data[i..];
                    match self.val {
                        Val::Str => {
                            if self.escape {
                                self.escape = false;
                                self.keep(&rest[..1]);
                                i += 1;
                                continue;
                            }
                            match memchr::memchr2(b'"', b'\\', rest) {
                                None => {
                                    self.keep(rest);
                                    i = data.len();
                                }
                                Some(j) => {
                                    self.keep(&rest[..=j]);
                                    i += j + 1;
                                    if rest[j] == b'\\' {
                                        self.escape = true;
                                    } else if self.vdepth == 0 {
                                        self.end_value();
                                    } else {
                                        self.val = Val::Nested;
                                    }
                                }
                            }
                        }
                        Val::Nested => {
                            // Find the next structural byte outside strings.
                            let mut j = 0;
                            let mut ended = false;
                            while j < rest.len() {
                                match rest[j] {
                                    b'"' => {
                                        self.val = Val::Str;
                                        j += 1;
                                        break;
                                    }
                                    b'{' | b'[' => self.vdepth += 1,
                                    b'}' | b']' => {
                                        self.vdepth -= 1;
                                        if self.vdepth == 0 {
                                            j += 1;
                                            ended = true;
                                            break;
                                        }
                                    }
                                    _ => {}
                                }
                                j += 1;
                            }
                            self.keep(&rest[..j]);
                            i += j;
                            if ended {
                                self.end_value();
                            }
                        }
                        Val::Scalar => {
                            let end = rest.iter().position(|&b| {
                                matches!(b, b',' | b'}' | b' ' | b'\t' | b'\r' | b'\n')
                            });
                            match end {
                                None => {
                                    self.keep(rest);
                                    i = data.len();
                                }
                                Some(j) => {
                                    self.keep(&rest[..j]);
                                    i += j;
                                    self.end_value();
                                }
                            }
                        }
                    }
                }
                Pos::AfterValue => {
                    let b = data[i];
                    i += 1;
                    match b {
                        b' ' | b'\t' | b'\r' | b'\n' => {}
                        b',' => self.pos = Pos::ExpectKey,
                        b'}' => self.pos = Pos::Done,
                        _ => self.pos = Pos::Invalid,
                    }
                }
            }
        }
    }

    fn push_key(&mut self, b: u8) {
        if self.key.len() < MAX_KEY {
            self.key.push(b);
        } else {
            self.key_overflow = true;
        }
    }

    fn push_key_slice(&mut self, s: &[u8]) {
        if self.key.len() + s.len() <= MAX_KEY {
            self.key.extend_from_slice(s);
        } else {
            self.key_overflow = true;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    static WANTS: &[Want] = &[
        Want {
            key: "type",
            cap: 64,
        },
        Want {
            key: "timestamp",
            cap: 64,
        },
        Want {
            key: "message",
            cap: 32,
        },
        Want { key: "n", cap: 16 },
    ];

    fn scan_in_chunks(line: &[u8], chunk: usize) -> TopScanner {
        let mut s = TopScanner::new(WANTS);
        for c in line.chunks(chunk.max(1)) {
            s.feed(c);
        }
        s
    }

    #[test]
    fn finds_top_level_fields_whatever_the_chunking() {
        let line = br#"{"message":{"type":"inner","content":"a \"quoted\" {brace} [x]"},"type":"user","n":12,"timestamp":"2026-01-02T03:04:05.000Z"}"#;
        for chunk in [1, 2, 3, 7, 1000] {
            let s = scan_in_chunks(line, chunk);
            assert!(s.done() && s.valid(), "chunk {chunk}");
            assert_eq!(s.get_str("type").as_deref(), Some("user"), "chunk {chunk}");
            assert_eq!(
                s.get_str("timestamp").as_deref(),
                Some("2026-01-02T03:04:05.000Z")
            );
            assert_eq!(s.get("n").unwrap().raw, b"12");
            let m = s.get("message").unwrap();
            assert!(m.truncated);
            assert_eq!(m.raw.len(), 32);
            assert!(m.raw.starts_with(br#"{"type":"inner""#));
        }
    }

    #[test]
    fn nested_keys_are_not_top_level() {
        let line = br#"{"a":{"type":"nested","timestamp":"x"},"b":[{"type":"y"}]}"#;
        let s = scan_in_chunks(line, 5);
        assert!(s.done());
        assert!(s.get("type").is_none());
        assert!(s.get("timestamp").is_none());
    }

    #[test]
    fn garbage_is_invalid() {
        for bad in [&b"not json"[..], b"[1,2]", b"{\"a\" 1}", b"{,}"] {
            assert!(
                !scan_in_chunks(bad, 3).valid(),
                "{:?}",
                String::from_utf8_lossy(bad)
            );
        }
        let torn = br#"{"type":"user","message":{"content":"cut"#;
        let s = scan_in_chunks(torn, 4);
        assert!(s.valid() && !s.done());
        assert_eq!(s.get_str("type").as_deref(), Some("user"));
    }
}
