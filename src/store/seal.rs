//! The seal of an encrypted sync repository: how a stored file's bytes and a path's names are
//! encrypted, and the typed errors of opening them. Pure (no git, no disk): the store applies
//! it to every blob it writes or reads and to every path it lists or names
//! ([`super::objects`]); the keys come from [`super::keys`].
//!
//! * **Content**: zstd, then [age](https://age-encryption.org/v1) to the repository's current
//!   X25519 recipient. Any generation of the repository key opens it, so data written before a
//!   rotation stays readable; standard tools can too (`age -d -i KEY | zstd -d`).
//! * **Names**: every component of a stored path is encrypted deterministically with AES-SIV
//!   (RFC 5297) under a name key derived from one generation of the repository key, and
//!   written in lower-case base32. A rotation renames every stored file under the new
//!   generation's name key, so a removed machine cannot read the names of what is stored next;
//!   older commits keep older names, which the older name keys still open. A folder's name is its encrypted name; a file's name also carries its plaintext
//!   size, so listing a commit gives plaintext sizes without reading a blob. Components are
//!   padded to 16 bytes, so a name tells only a rough length.
//!
//! Nothing here panics on any input: a name or a blob that does not open is a [`SealError`].

use std::io::Read as _;
use std::sync::Mutex;

use aes_siv::KeyInit as _;
use aes_siv::siv::Aes256Siv;
use sha2::{Digest, Sha512};

/// Largest plaintext a stored file may decompress to (a zip bomb stops here).
pub const MAX_PLAINTEXT: u64 = 1 << 30;

/// zstd level of stored files: level 1 compresses transcripts about 6× at several hundred
/// MB/s, which keeps a first push within its budget.
pub(crate) const ZSTD_LEVEL: i32 = 1;

/// Why sealed bytes or a sealed name did not open.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum SealError {
    /// Well-formed, but no key this machine has opens it.
    #[error("no key this machine has opens it")]
    WrongKey,
    /// Not something this seal wrote: cut short, changed, or not encrypted at all.
    #[error("it is damaged or was not encrypted by ccsync ({0})")]
    Corrupt(String),
}

/// The keys of an encrypted repository as one machine holds them.
pub struct Seal {
    /// Every generation of the repository key this machine has, newest first.
    identities: Vec<age::x25519::Identity>,
    /// The current generation's public key: what new data is encrypted to.
    recipient: age::x25519::Recipient,
    /// AES-SIV keys of names (64 bytes each): the first names what is stored now; the others
    /// (older generations) open the names of older commits.
    names: Vec<[u8; 64]>,
    cache: Mutex<NameCache>,
}

#[derive(Default)]
struct NameCache {
    encoded: std::collections::HashMap<(String, Option<u64>), String>,
    decoded: std::collections::HashMap<String, (String, Option<u64>)>,
}

impl std::fmt::Debug for Seal {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Seal")
            .field("generations", &self.identities.len())
            .field("recipient", &self.recipient.to_string())
            .finish_non_exhaustive()
    }
}

/// The name key of one generation of a repository key, from its secret.
pub fn name_key(secret: &str) -> [u8; 64] {
    let mut h = Sha512::new();
    h.update(b"ccsync names v1\0");
    h.update(secret.as_bytes());
    let d = h.finalize();
    let mut k = [0u8; 64];
    k.copy_from_slice(&d);
    k
}

impl Seal {
    /// A seal from the repository's identities (newest first), the recipient new data goes
    /// to, and the name keys (the one names are written with first).
    pub fn new(
        identities: Vec<age::x25519::Identity>,
        recipient: age::x25519::Recipient,
        names: Vec<[u8; 64]>,
    ) -> Seal {
        Seal {
            identities,
            recipient,
            names,
            cache: Mutex::new(NameCache::default()),
        }
    }

    /// A seal with one fresh key (tests and benchmarks).
    pub fn generate() -> Seal {
        let id = age::x25519::Identity::generate();
        let names = {
            use age::secrecy::ExposeSecret as _;
            name_key(id.to_string().expose_secret())
        };
        let r = id.to_public();
        Seal::new(vec![id], r, vec![names])
    }

    /// The recipient new data is encrypted to.
    pub fn recipient(&self) -> &age::x25519::Recipient {
        &self.recipient
    }

    /// Compress and encrypt a stored file.
    pub fn seal(&self, plain: &[u8]) -> anyhow::Result<Vec<u8>> {
        seal_to(&self.recipient, plain)
    }

    /// Decrypt and decompress a stored file.
    pub fn open(&self, sealed: &[u8]) -> Result<Vec<u8>, SealError> {
        let packed = open_age(sealed, &self.identities)?;
        let mut out = Vec::new();
        let dec = zstd::stream::read::Decoder::with_buffer(packed.as_slice())
            .map_err(|e| SealError::Corrupt(format!("zstd: {e}")))?;
        dec.take(MAX_PLAINTEXT + 1)
            .read_to_end(&mut out)
            .map_err(|e| SealError::Corrupt(format!("zstd: {e}")))?;
        if out.len() as u64 > MAX_PLAINTEXT {
            return Err(SealError::Corrupt(
                "larger than 1 GiB once decompressed".into(),
            ));
        }
        Ok(out)
    }

    /// The stored name of a path component: a folder (`size: None`) or a file of `size`
    /// plaintext bytes. Deterministic: the same component always gets the same name.
    pub fn encode_name(&self, name: &str, size: Option<u64>) -> String {
        let key = (name.to_string(), size);
        if let Some(hit) = self
            .cache
            .lock()
            .ok()
            .and_then(|c| c.encoded.get(&key).cloned())
        {
            return hit;
        }
        let mut p = Vec::with_capacity(name.len() + 32);
        match size {
            None => p.push(b'd'),
            Some(s) => {
                p.push(b'f');
                p.extend_from_slice(&s.to_le_bytes());
            }
        }
        p.extend_from_slice(name.as_bytes());
        let padded = p.len().div_ceil(16).max(1) * 16;
        p.resize(padded, 0);
        let Some(name_key) = self.names.first() else {
            return format!("invalid-{}", base32(name.as_bytes()));
        };
        let mut siv = Aes256Siv::new(name_key.into());
        let ct = match siv.encrypt(std::iter::empty::<&[u8]>(), &p) {
            Ok(c) => c,
            // AES-SIV fails only on absurd lengths, which a path component never has.
            Err(_) => return format!("invalid-{}", base32(name.as_bytes())),
        };
        let out = base32(&ct);
        if let Ok(mut c) = self.cache.lock() {
            if c.encoded.len() > 200_000 {
                c.encoded.clear();
            }
            c.encoded.insert(key, out.clone());
        }
        out
    }

    /// A stored name back: the component and, for a file, its plaintext size.
    pub fn decode_name(&self, stored: &str) -> Result<(String, Option<u64>), SealError> {
        if let Some(hit) = self
            .cache
            .lock()
            .ok()
            .and_then(|c| c.decoded.get(stored).cloned())
        {
            return Ok(hit);
        }
        let ct = unbase32(stored).ok_or_else(|| SealError::Corrupt("not a sealed name".into()))?;
        if ct.len() < 32 || ct.len() % 16 != 0 {
            return Err(SealError::Corrupt("not a sealed name".into()));
        }
        let p = self
            .names
            .iter()
            .find_map(|key| {
                Aes256Siv::new(key.into())
                    .decrypt(std::iter::empty::<&[u8]>(), &ct)
                    .ok()
            })
            .ok_or(SealError::WrongKey)?;
        let (size, rest) = match p.split_first() {
            Some((b'd', rest)) => (None, rest),
            Some((b'f', rest)) if rest.len() >= 8 => {
                let mut b = [0u8; 8];
                b.copy_from_slice(&rest[..8]);
                (Some(u64::from_le_bytes(b)), &rest[8..])
            }
            _ => return Err(SealError::Corrupt("a sealed name of no known kind".into())),
        };
        let end = rest.iter().position(|&b| b == 0).unwrap_or(rest.len());
        if rest[end..].iter().any(|&b| b != 0) {
            return Err(SealError::Corrupt("a sealed name with bad padding".into()));
        }
        let name = std::str::from_utf8(&rest[..end])
            .map_err(|_| SealError::Corrupt("a sealed name that is not UTF-8".into()))?
            .to_string();
        if let Ok(mut c) = self.cache.lock() {
            if c.decoded.len() > 200_000 {
                c.decoded.clear();
            }
            c.decoded.insert(stored.to_string(), (name.clone(), size));
        }
        Ok((name, size))
    }
}

/// Compress and encrypt to a recipient (what [`Seal::seal`] does; a machine without the key can
/// encrypt to the repository's public recipient this way).
pub fn seal_to(recipient: &age::x25519::Recipient, plain: &[u8]) -> anyhow::Result<Vec<u8>> {
    let packed = zstd::bulk::compress(plain, ZSTD_LEVEL)
        .map_err(|e| anyhow::anyhow!("cannot compress a file to store: {e}"))?;
    age::encrypt(recipient, &packed)
        .map_err(|e| anyhow::anyhow!("cannot encrypt a file to store: {e}"))
}

/// Decrypt age bytes with any of `identities`.
pub fn open_age(sealed: &[u8], identities: &[age::x25519::Identity]) -> Result<Vec<u8>, SealError> {
    let dec = age::Decryptor::new_buffered(sealed).map_err(classify)?;
    let mut r = dec
        .decrypt(identities.iter().map(|i| i as &dyn age::Identity))
        .map_err(classify)?;
    let mut out = Vec::new();
    r.read_to_end(&mut out)
        .map_err(|e| SealError::Corrupt(format!("age: {e}")))?;
    Ok(out)
}

/// An age error as a [`SealError`].
pub fn classify(e: age::DecryptError) -> SealError {
    match e {
        age::DecryptError::NoMatchingKeys => SealError::WrongKey,
        other => SealError::Corrupt(format!("age: {other}")),
    }
}

const ALPHABET: &[u8; 32] = b"abcdefghijklmnopqrstuvwxyz234567";

/// Lower-case base32 (RFC 4648 alphabet), no padding: names that stay distinct on
/// case-insensitive file systems.
pub fn base32(data: &[u8]) -> String {
    let mut out = String::with_capacity(data.len().div_ceil(5) * 8);
    let mut buf: u64 = 0;
    let mut bits = 0u32;
    for &b in data {
        buf = (buf << 8) | u64::from(b);
        bits += 8;
        while bits >= 5 {
            bits -= 5;
            out.push(ALPHABET[((buf >> bits) & 31) as usize] as char);
        }
    }
    if bits > 0 {
        out.push(ALPHABET[((buf << (5 - bits)) & 31) as usize] as char);
    }
    out
}

/// [`base32`] back; `None` for anything it did not write.
pub fn unbase32(s: &str) -> Option<Vec<u8>> {
    let mut out = Vec::with_capacity(s.len() * 5 / 8);
    let mut buf: u64 = 0;
    let mut bits = 0u32;
    for c in s.bytes() {
        let v = match c {
            b'a'..=b'z' => c - b'a',
            b'2'..=b'7' => c - b'2' + 26,
            _ => return None,
        };
        buf = (buf << 5) | u64::from(v);
        bits += 5;
        if bits >= 8 {
            bits -= 8;
            out.push((buf >> bits) as u8);
        }
    }
    // Leftover bits must be zero padding of fewer than 5 bits.
    if bits >= 5 || (buf & ((1 << bits) - 1)) != 0 {
        return None;
    }
    Some(out)
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn seal() -> &'static Seal {
        static S: std::sync::OnceLock<Seal> = std::sync::OnceLock::new();
        S.get_or_init(Seal::generate)
    }

    #[test]
    fn content_round_trips_and_other_keys_are_refused() {
        let s = seal();
        for plain in [&b""[..], b"x", &b"{\"uuid\":\"a\"}\n".repeat(1000)] {
            let c = s.seal(plain).unwrap();
            assert_eq!(s.open(&c).unwrap(), plain);
            assert!(c.starts_with(b"age-encryption.org/v1\n"));
        }
        let other = Seal::generate();
        let c = s.seal(b"secret").unwrap();
        assert_eq!(other.open(&c), Err(SealError::WrongKey));
        // Every truncation and every single-bit change is refused, never a panic.
        for cut in 0..c.len() {
            assert!(s.open(&c[..cut]).is_err(), "cut at {cut}");
        }
        for i in 0..c.len() {
            let mut d = c.clone();
            d[i] ^= 0x20;
            assert!(s.open(&d).is_err(), "bit flip at {i}");
        }
        assert!(matches!(
            s.open(b"{\"plain\":1}"),
            Err(SealError::Corrupt(_))
        ));
    }

    #[test]
    fn names_are_deterministic_opaque_and_carry_sizes() {
        let s = seal();
        let a = s.encode_name("PROJECTS-my-app-1a2b3c4d", None);
        assert_eq!(a, s.encode_name("PROJECTS-my-app-1a2b3c4d", None));
        assert!(!a.contains("my-app"));
        assert!(a.bytes().all(|b| ALPHABET.contains(&b)));
        assert_ne!(a, s.encode_name("PROJECTS-my-app-1a2b3c4d", Some(0)));
        let f = s.encode_name("000001.jsonl", Some(16 << 20));
        assert_eq!(
            s.decode_name(&f).unwrap(),
            ("000001.jsonl".to_string(), Some(16 << 20))
        );
        assert_eq!(s.decode_name(&a).unwrap().1, None);
        assert_eq!(
            Seal::generate().decode_name(&a),
            Err(SealError::WrongKey),
            "another repository's key"
        );
        assert!(s.decode_name("ccsync.json").is_err());
        // Lengths are padded: names of 1 and 15 bytes look alike.
        assert_eq!(
            s.encode_name("a", None).len(),
            s.encode_name("abcdefghijklmno", None).len()
        );
    }

    #[test]
    fn base32_round_trips() {
        for n in 0..40 {
            let d: Vec<u8> = (0..n).map(|i| (i * 37 + 11) as u8).collect();
            assert_eq!(unbase32(&base32(&d)).unwrap(), d);
        }
        assert_eq!(unbase32("A"), None);
        assert_eq!(unbase32("ab1"), None);
    }

    proptest! {
        #![proptest_config(ProptestConfig { cases: 256, ..ProptestConfig::default() })]

        #[test]
        fn any_bytes_open_to_an_error_or_the_truth(data in proptest::collection::vec(any::<u8>(), 0..600)) {
            let s = seal();
            // Arbitrary bytes, and arbitrary bytes behind a real age header.
            let _ = s.open(&data);
            let mut framed = b"age-encryption.org/v1\n-> X25519 ".to_vec();
            framed.extend_from_slice(&data);
            let _ = s.open(&framed);
        }

        #[test]
        fn damaged_sealed_bytes_never_open_to_something_else(
            plain in proptest::collection::vec(any::<u8>(), 0..2000),
            at in any::<usize>(),
            flip in 1u8..=255,
        ) {
            let s = seal();
            let c = s.seal(&plain).unwrap();
            let mut d = c.clone();
            let i = at % d.len();
            d[i] ^= flip;
            prop_assert!(s.open(&d).is_err());
            prop_assert!(s.open(&c[..at % c.len()]).is_err());
            prop_assert_eq!(s.open(&c).unwrap(), plain);
        }

        #[test]
        fn any_name_decodes_to_an_error_or_a_name(name in "[a-z2-7]{0,120}") {
            let _ = seal().decode_name(&name);
        }

        #[test]
        fn names_round_trip(name in "[^/\u{0}]{1,80}", size in proptest::option::of(any::<u64>())) {
            let s = seal();
            let e = s.encode_name(&name, size);
            prop_assert_eq!(s.decode_name(&e).unwrap(), (name, size));
        }
    }
}
