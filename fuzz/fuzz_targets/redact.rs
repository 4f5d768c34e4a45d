//! The redactor on any input: it never panics, a valid JSON line stays valid JSON, nothing
//! outside a finding changes (the output is the input with each finding replaced by its
//! token), a rescan of the output finds nothing new, and a line streamed through the huge-line
//! path gives the same bytes as the line scanned whole.
#![no_main]

use ccsync::secrets::{Known, Scanner, redaction_token};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let sc = Scanner::new();
    for json in [true, false] {
        let fs = if json {
            sc.scan_json_line(data)
        } else {
            sc.scan_text(data)
        };
        let mut want = Vec::with_capacity(data.len());
        let mut pos = 0;
        for f in &fs {
            assert!(
                pos <= f.start && f.start < f.end && f.end <= data.len(),
                "{fs:?}"
            );
            want.extend_from_slice(&data[pos..f.start]);
            want.extend_from_slice(redaction_token(f.kind, &data[f.start..f.end]).as_bytes());
            pos = f.end;
        }
        want.extend_from_slice(&data[pos..]);
        let red = sc.redact(data, &fs);
        assert_eq!(&red[..], &want[..], "only findings change");
        if json && serde_json::from_slice::<serde_json::Value>(data).is_ok() {
            assert!(
                serde_json::from_slice::<serde_json::Value>(&red).is_ok(),
                "valid JSON stays valid JSON"
            );
        }
    }
    // The streamed path (first pass, then the stream) gives what the whole line gives.
    let mut known = Known::default();
    let whole = sc.scan_json_line_known(data, &mut known.clone());
    let whole = sc.redact(data, &whole).into_owned();
    let mut pass = sc.first_pass();
    for piece in data.chunks(7) {
        pass.feed(piece);
    }
    let passed = pass.finish(&mut known);
    let mut stream = sc.redact_stream(passed, &known, true);
    let mut out = Vec::new();
    for piece in data.chunks(5) {
        stream.feed(piece, &mut out);
    }
    stream.finish(&mut out);
    assert_eq!(out, whole, "streamed like whole");
    // Putting back this machine's own secrets never panics.
    let _ = sc.restore_own(data, &whole, true);
});
