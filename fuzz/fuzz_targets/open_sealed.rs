//! The decryption path of an encrypted repository on any input: opening a stored file, a stored
//! name, a wrapped keyring, a passphrase file. Nothing may panic; a damaged or foreign input is
//! an error. `cargo +nightly fuzz run open_sealed`
#![no_main]

use std::sync::OnceLock;

use ccsync::store::{keys, objects, seal::Seal};
use libfuzzer_sys::fuzz_target;

fn seal() -> &'static Seal {
    static S: OnceLock<Seal> = OnceLock::new();
    S.get_or_init(Seal::generate)
}

fuzz_target!(|data: &[u8]| {
    let s = seal();
    let _ = s.open(data);
    if let Ok(text) = std::str::from_utf8(data) {
        let _ = s.decode_name(text);
        let _ = objects::decode_path(s, text, true);
        let _ = keys::unwrap_passphrase(data, "pw");
    }
    let id = age::x25519::Identity::generate();
    let _ = keys::unwrap(data, &id);
    // A real file with one byte changed anywhere still fails cleanly.
    if let Ok(good) = s.seal(data) {
        let mut bad = good.clone();
        let i = data.first().map_or(0, |b| *b as usize) % bad.len();
        bad[i] ^= 0x01;
        assert!(s.open(&bad).is_err());
        assert_eq!(s.open(&good).unwrap(), data);
    }
});
