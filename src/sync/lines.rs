//! Reading the lines of logs without ever holding a huge one.
//!
//! A transcript line can be hundreds of megabytes (a tool result holding a whole file, an Edit
//! of a big file). Lines up to [`HUGE_LINE`] are handed over whole, in chunks of many lines; a
//! longer one is handed over as a span of its source, which can be *replayed* in pieces as often
//! as its processing needs (a first pass for what the JSON protects from redaction, one for its
//! identity, one to write it), so no step holds more than a few megabytes of it.

use std::fs::File;
use std::io::{Read, Seek, SeekFrom};
use std::path::Path;

use anyhow::Result;

use crate::claude::tree::LineFacts;
use crate::os::IoAt;

/// Lines longer than this are streamed, never held whole.
pub const HUGE_LINE: usize = 8 << 20;

/// How much of a huge line is read at a time.
const PIECE: usize = 1 << 20;

/// Where the pieces of a streamed line go.
pub type Sink<'s> = dyn FnMut(&[u8]) -> Result<()> + 's;

/// Streams a huge line's bytes to the sink it is given, in order, each time it is called.
pub type Replay<'r> = dyn FnMut(&mut Sink<'_>) -> Result<()> + 'r;

/// What [`for_each_chunk`] hands over.
#[derive(Debug)]
pub enum Chunk<'a> {
    /// Whole lines (the last may lack its newline when the range ends there), and the file
    /// offset of their first byte.
    Lines(&'a [u8], u64),
    /// One line longer than [`HUGE_LINE`]: its byte range in the file, newline included.
    Huge { start: u64, end: u64 },
}

/// Call `f` with chunks of whole lines of `file` between `from` and `to` (the last chunk may
/// end without a newline when `to` does). Chunks are about `chunk` bytes; a line longer than
/// `chunk` is a chunk of its own, and one longer than `huge` is handed over as a range
/// ([`Chunk::Huge`]) without being held. `path` names the file in errors.
pub fn for_each_chunk(
    file: &mut File,
    path: &Path,
    from: u64,
    to: u64,
    chunk: usize,
    huge: usize,
    mut f: impl FnMut(Chunk<'_>) -> Result<()>,
) -> Result<()> {
    let chunk = chunk.max(1);
    file.seek(SeekFrom::Start(from)).at("read", path)?;
    // `buf` holds the file's bytes from `offset` to `read_to`.
    let mut buf: Vec<u8> = Vec::with_capacity(chunk.min(HUGE_LINE));
    let mut offset = from;
    let mut read_to = from;
    loop {
        if read_to < to {
            let want = (chunk as u64).min(to - read_to) as usize;
            let old = buf.len();
            buf.resize(old + want, 0);
            file.read_exact(&mut buf[old..]).at("read", path)?;
            read_to += want as u64;
        }
        let at_end = read_to == to;
        // Whole lines first.
        let cut = match memchr::memrchr(b'\n', &buf) {
            Some(i) => i + 1,
            None => 0,
        };
        if cut > 0 {
            f(Chunk::Lines(&buf[..cut], offset))?;
            offset += cut as u64;
            buf.drain(..cut);
        }
        // What is left is the start of one line.
        if buf.len() > huge {
            let end = if at_end {
                to
            } else {
                line_end(file, path, read_to, to)?
            };
            f(Chunk::Huge { start: offset, end })?;
            buf.clear();
            offset = end;
            read_to = end;
            file.seek(SeekFrom::Start(end)).at("read", path)?;
            if end == to {
                return Ok(());
            }
            continue;
        }
        if at_end {
            if !buf.is_empty() {
                f(Chunk::Lines(&buf, offset))?;
            }
            return Ok(());
        }
    }
}

/// The end (after its newline) of the line that continues at `pos`, or `to`.
fn line_end(file: &mut File, path: &Path, mut pos: u64, to: u64) -> Result<u64> {
    file.seek(SeekFrom::Start(pos)).at("read", path)?;
    let mut block = vec![0u8; PIECE];
    while pos < to {
        let n = (PIECE as u64).min(to - pos) as usize;
        file.read_exact(&mut block[..n]).at("read", path)?;
        if let Some(i) = memchr::memchr(b'\n', &block[..n]) {
            return Ok(pos + i as u64 + 1);
        }
        pos += n as u64;
    }
    Ok(to)
}

/// The end of the last complete line of a file of size `size` (0 if none). Reads backwards in
/// blocks, so a huge last line costs its own length at most.
pub fn complete_end(file: &mut File, size: u64) -> std::io::Result<u64> {
    let mut end = size;
    let mut buf = vec![0u8; 64 * 1024];
    while end > 0 {
        let start = end.saturating_sub(buf.len() as u64);
        let n = (end - start) as usize;
        file.seek(SeekFrom::Start(start))?;
        file.read_exact(&mut buf[..n])?;
        if let Some(i) = memchr::memrchr(b'\n', &buf[..n]) {
            return Ok(start + i as u64 + 1);
        }
        end = start;
    }
    Ok(0)
}

/// The facts of every line of the log at `path` (see [`LineFacts`]), huge lines streamed.
pub fn for_each_line_facts(path: &Path, mut f: impl FnMut(&LineFacts)) -> Result<()> {
    let mut file = File::open(path).at("read", path)?;
    let size = file.metadata().at("read the metadata of", path)?.len();
    for_each_chunk(&mut file, path, 0, size, 4 << 20, HUGE_LINE, |c| {
        match c {
            Chunk::Lines(chunk, _) => {
                for line in super::push::split_lines(chunk) {
                    f(&LineFacts::of(super::log::strip_nl(line)));
                }
            }
            Chunk::Huge { start, end } => {
                let mut s = LineFacts::scanner();
                replay_file(path, start, end, &mut |piece| {
                    s.feed(piece);
                    Ok(())
                })?;
                f(&LineFacts::from_scanner(&s));
            }
        }
        Ok(())
    })
}

/// Stream `path`'s bytes from `start` to `end` to `sink`, a piece at a time.
pub fn replay_file(path: &Path, start: u64, end: u64, sink: &mut Sink<'_>) -> Result<()> {
    let mut f = File::open(path).at("read", path)?;
    f.seek(SeekFrom::Start(start)).at("read", path)?;
    let mut block = vec![0u8; PIECE];
    let mut pos = start;
    while pos < end {
        let n = (PIECE as u64).min(end - pos) as usize;
        f.read_exact(&mut block[..n]).at("read", path)?;
        sink(&block[..n])?;
        pos += n as u64;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn chunks(data: &[u8], from: u64, to: u64, chunk: usize, huge: usize) -> Vec<String> {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("f");
        std::fs::write(&p, data).unwrap();
        let mut f = File::open(&p).unwrap();
        let mut got = Vec::new();
        for_each_chunk(&mut f, &p, from, to, chunk, huge, |c| {
            got.push(match c {
                Chunk::Lines(b, off) => format!("{off}:{}", String::from_utf8_lossy(b)),
                Chunk::Huge { start, end } => {
                    let mut all = Vec::new();
                    replay_file(&p, start, end, &mut |piece| {
                        all.extend_from_slice(piece);
                        Ok(())
                    })
                    .unwrap();
                    format!("huge {start}..{end}:{}", String::from_utf8_lossy(&all))
                }
            });
            Ok(())
        })
        .unwrap();
        got
    }

    #[test]
    fn the_end_of_the_last_complete_line() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("f");
        std::fs::write(&p, b"a\nbb\nccc").unwrap();
        assert_eq!(complete_end(&mut File::open(&p).unwrap(), 8).unwrap(), 5);
        std::fs::write(&p, b"no newline").unwrap();
        assert_eq!(complete_end(&mut File::open(&p).unwrap(), 10).unwrap(), 0);
    }

    #[test]
    fn chunks_of_whole_lines() {
        assert_eq!(
            chunks(b"l1\nline2\nl3\nlast", 3, 16, 4, 100),
            ["3:line2\n", "9:l3\n", "12:last"]
        );
    }

    #[test]
    fn a_line_longer_than_huge_is_a_range() {
        let data = b"ab\n0123456789abcdef\ncd\nLONGLONGLONGLONG";
        assert_eq!(
            chunks(data, 0, data.len() as u64, 4, 6),
            [
                "0:ab\n",
                "huge 3..20:0123456789abcdef\n",
                "20:cd\n",
                "huge 23..39:LONGLONGLONGLONG"
            ]
        );
        // Up to `huge`, a long line is one chunk of its own.
        assert_eq!(
            chunks(data, 0, 23, 4, 100),
            ["0:ab\n", "3:0123456789abcdef\n", "20:cd\n"]
        );
    }
}
