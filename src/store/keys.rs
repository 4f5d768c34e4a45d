//! The keys of an encrypted sync repository: one repository key (an age X25519 identity, in
//! generations: a rotation adds one), wrapped for every member, and where each piece lives.
//!
//! * **This machine**: `keys/machine.key` in the tool home (its own age identity, 0600) and
//!   `keys/keyring.json` (the generations of the repository key it holds, 0600). Whoever can
//!   read the first can unwrap the second from the repository, so caching it adds no exposure
//!   and spares every command a decryption.
//! * **The repository** (`keys/`, in the clear, every file age-encrypted):
//!   * `keys/machines/<fp>.age` — the keyring, wrapped for the member whose recipient has
//!     fingerprint `<fp>`: each machine, and the recovery identity;
//!   * `keys/passphrase.age` — the recovery identity, wrapped with the passphrase (age scrypt):
//!     the passphrase opens the recovery identity, which opens its keyring;
//!   * `keys/members.age` — who the members are (fingerprint → machine id, recipient), sealed
//!     to the repository key, so that a rotation can wrap the new keyring for everyone left;
//!   * `keys/requests/<fp>.age` — a machine asking to join (its id and recipient), encrypted to
//!     the repository's public recipient (the format marker names it), until a member approves.
//!
//! Names of the machine files are fingerprints (a hash of the recipient), so the host learns no
//! machine id.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use age::secrecy::{ExposeSecret as _, SecretString};
use anyhow::{Context as _, Result, anyhow, bail};
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

use super::seal::{Seal, SealError, name_key, open_age};

/// How content and names are sealed (the format marker's `encryption.scheme`).
pub const SCHEME: &str = "age-x25519+zstd, names aes-siv";
pub const PASSPHRASE_FILE: &str = "keys/passphrase.age";
pub const MEMBERS_FILE: &str = "keys/members.age";
/// The member name of the recovery identity.
pub const RECOVERY: &str = "(passphrase)";

/// `encryption` in the format marker.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Encryption {
    pub scheme: String,
    /// A random id of the repository key (every generation shares it).
    pub repository: String,
    /// The generation new data is encrypted to.
    pub generation: u32,
    /// Its public recipient (`age1…`): what join requests are encrypted to.
    pub recipient: String,
    /// The generation whose name key the stored names are under (a rotation renames every
    /// file); 1 in a marker written before names rotated.
    #[serde(default = "first_generation")]
    pub names: u32,
}

fn first_generation() -> u32 {
    1
}

/// One generation of the repository key.
#[derive(Clone, Serialize, Deserialize)]
pub struct Generation {
    pub generation: u32,
    /// `AGE-SECRET-KEY-1…`
    pub secret: String,
}

/// The generations of a repository key one holder has.
#[derive(Clone, Serialize, Deserialize)]
pub struct Keyring {
    pub repository: String,
    pub generations: Vec<Generation>,
    /// The remote this machine uses the keyring with (local copy only).
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub remote: String,
}

impl std::fmt::Debug for Keyring {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Keyring")
            .field("repository", &self.repository)
            .field("generations", &self.generations.len())
            .finish_non_exhaustive()
    }
}

fn identity(secret: &str) -> Result<age::x25519::Identity> {
    secret
        .parse::<age::x25519::Identity>()
        .map_err(|e| anyhow!("a key of the keyring does not parse: {e}"))
}

fn secret_of(id: &age::x25519::Identity) -> String {
    id.to_string().expose_secret().to_string()
}

impl Keyring {
    /// A new repository key (generation 1).
    pub fn generate(remote: &str) -> Keyring {
        Keyring {
            repository: crate::util::random_hex(8),
            generations: vec![Generation {
                generation: 1,
                secret: secret_of(&age::x25519::Identity::generate()),
            }],
            remote: remote.to_string(),
        }
    }

    pub fn current(&self) -> Option<&Generation> {
        self.generations.iter().max_by_key(|g| g.generation)
    }

    pub fn generation(&self) -> u32 {
        self.current().map_or(0, |g| g.generation)
    }

    /// Add a generation: new data goes to it; the older ones still open older data.
    pub fn rotate(&mut self) {
        let next = self.generation() + 1;
        self.generations.push(Generation {
            generation: next,
            secret: secret_of(&age::x25519::Identity::generate()),
        });
    }

    /// The marker's description of this keyring.
    pub fn encryption(&self) -> Result<Encryption> {
        let g = self
            .current()
            .ok_or_else(|| anyhow!("the keyring is empty"))?;
        Ok(Encryption {
            scheme: SCHEME.to_string(),
            repository: self.repository.clone(),
            generation: g.generation,
            recipient: identity(&g.secret)?.to_public().to_string(),
            names: g.generation,
        })
    }

    /// The seal for the repository the marker describes; an error when this keyring is for
    /// another repository or lacks the marker's generation.
    pub fn seal(&self, enc: &Encryption) -> Result<Seal, KeyProblem> {
        if enc.repository != self.repository {
            return Err(KeyProblem::Other);
        }
        let Some(g) = self
            .generations
            .iter()
            .find(|g| g.generation == enc.generation)
        else {
            return Err(KeyProblem::Old(self.generation()));
        };
        let naming = self
            .generations
            .iter()
            .find(|g| g.generation == enc.names)
            .ok_or(KeyProblem::Old(self.generation()))?;
        let cur = identity(&g.secret).map_err(|_| KeyProblem::Other)?;
        if cur.to_public().to_string() != enc.recipient {
            return Err(KeyProblem::Other);
        }
        let mut gens: Vec<&Generation> = self.generations.iter().collect();
        gens.sort_by_key(|g| std::cmp::Reverse(g.generation));
        let ids = gens
            .iter()
            .map(|g| identity(&g.secret))
            .collect::<Result<Vec<_>>>()
            .map_err(|_| KeyProblem::Other)?;
        // Names are written under the marker's naming generation; every generation opens the
        // names of the commits it wrote.
        let mut names = vec![name_key(&naming.secret)];
        names.extend(
            gens.iter()
                .filter(|g| g.generation != enc.names)
                .map(|g| name_key(&g.secret)),
        );
        Ok(Seal::new(ids, cur.to_public(), names))
    }

    /// Merge another holder's generations in (after an approval or a rotation).
    pub fn absorb(&mut self, other: &Keyring) {
        for g in &other.generations {
            if !self
                .generations
                .iter()
                .any(|h| h.generation == g.generation)
            {
                self.generations.push(g.clone());
            }
        }
        self.generations.sort_by_key(|g| g.generation);
    }

    fn payload(&self) -> Result<Vec<u8>> {
        let mut k = self.clone();
        k.remote.clear();
        Ok(serde_json::to_vec(&k)?)
    }
}

/// Why a keyring does not open a repository.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum KeyProblem {
    /// Another repository's key, or one that does not match the marker.
    Other,
    /// It lacks the current generation (it holds up to this one).
    Old(u32),
}

/// The fingerprint of a recipient (names its files in `keys/`).
pub fn fingerprint(recipient: &str) -> String {
    let d = Sha256::digest(recipient.as_bytes());
    d.iter().take(10).map(|b| format!("{b:02x}")).collect()
}

pub fn machine_file(recipient: &str) -> String {
    format!("keys/machines/{}.age", fingerprint(recipient))
}

pub fn request_file(recipient: &str) -> String {
    format!("keys/requests/{}.age", fingerprint(recipient))
}

/// Wrap a keyring for one member.
pub fn wrap(ring: &Keyring, recipient: &str) -> Result<Vec<u8>> {
    let r: age::x25519::Recipient = recipient
        .parse()
        .map_err(|e| anyhow!("not an age recipient ({recipient}): {e}"))?;
    age::encrypt(&r, &ring.payload()?).map_err(|e| anyhow!("cannot wrap the key: {e}"))
}

/// Unwrap a keyring wrapped for `id`.
pub fn unwrap(data: &[u8], id: &age::x25519::Identity) -> Result<Keyring, SealError> {
    let plain = open_age(data, std::slice::from_ref(id))?;
    serde_json::from_slice(&plain).map_err(|e| SealError::Corrupt(format!("keyring: {e}")))
}

/// The scrypt work factor of a new passphrase: N = 2^16 (64 MiB of memory and about a quarter
/// of a second here), unless `CCSYNC_SCRYPT_LOG_N` sets another (tests). age's own choice,
/// "about a second on this machine", reached 2^20 — a gigabyte of memory — on a busy machine,
/// far over the memory any ccsync command may take.
fn scrypt_work() -> u8 {
    std::env::var("CCSYNC_SCRYPT_LOG_N")
        .ok()
        .and_then(|v| v.parse().ok())
        .filter(|n| (1..=22).contains(n))
        .unwrap_or(16)
}

/// Wrap the recovery identity with a passphrase.
pub fn wrap_passphrase(recovery: &age::x25519::Identity, passphrase: &str) -> Result<Vec<u8>> {
    let mut r = age::scrypt::Recipient::new(SecretString::from(passphrase.to_string()));
    r.set_work_factor(scrypt_work());
    age::encrypt(&r, secret_of(recovery).as_bytes())
        .map_err(|e| anyhow!("cannot wrap the key with the passphrase: {e}"))
}

/// The recovery identity from `keys/passphrase.age` and the passphrase.
pub fn unwrap_passphrase(
    data: &[u8],
    passphrase: &str,
) -> Result<age::x25519::Identity, SealError> {
    let mut id = age::scrypt::Identity::new(SecretString::from(passphrase.to_string()));
    // Never more than 256 MiB of memory for a passphrase file someone else wrote.
    id.set_max_work_factor(18);
    let dec = age::Decryptor::new_buffered(data).map_err(super::seal::classify)?;
    let mut r = dec
        .decrypt(std::iter::once(&id as &dyn age::Identity))
        .map_err(|e| match e {
            age::DecryptError::DecryptionFailed | age::DecryptError::NoMatchingKeys => {
                SealError::WrongKey
            }
            other => super::seal::classify(other),
        })?;
    let mut s = String::new();
    std::io::Read::read_to_string(&mut r, &mut s)
        .map_err(|e| SealError::Corrupt(format!("recovery key: {e}")))?;
    identity(s.trim()).map_err(|e| SealError::Corrupt(format!("{e:#}")))
}

/// A member of the repository key.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Member {
    pub name: String,
    pub recipient: String,
    #[serde(default)]
    pub added_at: Option<chrono::DateTime<chrono::Utc>>,
    #[serde(default)]
    pub added_by: String,
}

/// `keys/members.age`: fingerprint → member.
pub type Members = BTreeMap<String, Member>;

/// A machine asking to join (`keys/requests/<fp>.age`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Request {
    pub machine_id: String,
    pub hostname: String,
    pub recipient: String,
    pub requested_at: chrono::DateTime<chrono::Utc>,
}

impl Request {
    /// A short code both machines show, to check that the request approved is this one.
    pub fn code(&self) -> String {
        code_of(&self.recipient)
    }
}

/// The check code of a recipient (`ABCD-EFGH`).
pub fn code_of(recipient: &str) -> String {
    let f = fingerprint(recipient).to_uppercase();
    format!("{}-{}", &f[..4], &f[4..8])
}

/// Encrypt a request to the repository's public recipient.
pub fn seal_request(req: &Request, repo_recipient: &str) -> Result<Vec<u8>> {
    let r: age::x25519::Recipient = repo_recipient
        .parse()
        .map_err(|e| anyhow!("the repository's recipient does not parse: {e}"))?;
    age::encrypt(&r, &serde_json::to_vec(req)?).map_err(|e| anyhow!("cannot encrypt: {e}"))
}

/// This machine's key files in the tool home.
pub struct LocalKeys {
    dir: PathBuf,
}

impl LocalKeys {
    pub fn new(home_root: &Path) -> LocalKeys {
        LocalKeys {
            dir: home_root.join("keys"),
        }
    }

    fn machine_path(&self) -> PathBuf {
        self.dir.join("machine.key")
    }

    fn ring_path(&self) -> PathBuf {
        self.dir.join("keyring.json")
    }

    fn write(&self, path: &Path, data: &[u8]) -> Result<()> {
        crate::os::create_private_dir(&self.dir)
            .with_context(|| format!("cannot create {}", self.dir.display()))?;
        crate::os::write_atomic(path, data, true)
            .with_context(|| format!("cannot write {}", path.display()))
    }

    /// This machine's identity (made on first use).
    pub fn machine(&self) -> Result<age::x25519::Identity> {
        let p = self.machine_path();
        match std::fs::read_to_string(&p) {
            Ok(s) => identity(s.trim()).with_context(|| {
                format!(
                    "{} is damaged: move it away and join the repository again",
                    p.display()
                )
            }),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                let id = age::x25519::Identity::generate();
                self.write(&p, format!("{}\n", secret_of(&id)).as_bytes())?;
                Ok(id)
            }
            Err(e) => Err(e).with_context(|| format!("cannot read {}", p.display())),
        }
    }

    /// This machine's public recipient (made on first use).
    pub fn recipient(&self) -> Result<String> {
        Ok(self.machine()?.to_public().to_string())
    }

    /// The keyring this machine holds, if any.
    pub fn ring(&self) -> Result<Option<Keyring>> {
        let p = self.ring_path();
        match std::fs::read(&p) {
            Ok(b) => serde_json::from_slice(&b)
                .map(Some)
                .with_context(|| format!("{} is damaged", p.display())),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
            Err(e) => Err(e).with_context(|| format!("cannot read {}", p.display())),
        }
    }

    pub fn save_ring(&self, ring: &Keyring) -> Result<()> {
        self.write(&self.ring_path(), &serde_json::to_vec_pretty(ring)?)
    }

    /// Forget the keyring (the machine moved to another remote).
    pub fn drop_ring(&self) {
        let _ = std::fs::remove_file(self.ring_path());
    }
}

/// The passphrase given without a command-line argument: the file named by `file`, else
/// `CCSYNC_PASSPHRASE`. Only the first line of the file counts (without its newline).
pub fn passphrase_from(file: Option<&Path>) -> Result<Option<String>> {
    if let Some(f) = file {
        let text = std::fs::read_to_string(f)
            .with_context(|| format!("cannot read the passphrase file {}", f.display()))?;
        let line = text.lines().next().unwrap_or("").to_string();
        if line.is_empty() {
            bail!("the passphrase file {} is empty", f.display());
        }
        return Ok(Some(line));
    }
    Ok(std::env::var("CCSYNC_PASSPHRASE")
        .ok()
        .filter(|p| !p.is_empty()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_keyring_wraps_for_members_and_the_passphrase() {
        // SAFETY of the test: a low work factor only for this process's tests.
        let ring = Keyring::generate("/r");
        let enc = ring.encryption().unwrap();
        let seal = ring.seal(&enc).unwrap();
        let m = age::x25519::Identity::generate();
        let wrapped = wrap(&ring, &m.to_public().to_string()).unwrap();
        let back = unwrap(&wrapped, &m).unwrap();
        assert_eq!(back.repository, ring.repository);
        assert!(back.remote.is_empty(), "the local remote is not shared");
        let other = age::x25519::Identity::generate();
        assert_eq!(unwrap(&wrapped, &other).unwrap_err(), SealError::WrongKey);
        let data = seal.seal(b"x").unwrap();
        assert_eq!(back.seal(&enc).unwrap().open(&data).unwrap(), b"x");

        let recovery = age::x25519::Identity::generate();
        let mut r = age::scrypt::Recipient::new(SecretString::from("pw".to_string()));
        r.set_work_factor(4);
        let p = age::encrypt(&r, secret_of(&recovery).as_bytes()).unwrap();
        assert_eq!(
            secret_of(&unwrap_passphrase(&p, "pw").unwrap()),
            secret_of(&recovery)
        );
        assert!(matches!(
            unwrap_passphrase(&p, "nope"),
            Err(SealError::WrongKey)
        ));
    }

    #[test]
    fn a_rotation_keeps_old_data_open_and_new_data_from_old_keys() {
        let mut ring = Keyring::generate("/r");
        let old = ring.clone();
        let seal1 = ring.seal(&ring.encryption().unwrap()).unwrap();
        let before = seal1.seal(b"old").unwrap();
        let name = seal1.encode_name("x", None);
        ring.rotate();
        let enc2 = ring.encryption().unwrap();
        assert_eq!(enc2.generation, 2);
        assert_eq!(enc2.names, 2, "a rotation renames under the new generation");
        let seal2 = ring.seal(&enc2).unwrap();
        assert_eq!(seal2.open(&before).unwrap(), b"old");
        let renamed = seal2.encode_name("x", None);
        assert_ne!(renamed, name, "names change with a rotation");
        assert_eq!(
            seal2.decode_name(&name).unwrap().0,
            "x",
            "old names still open"
        );
        assert_eq!(seal1.decode_name(&renamed), Err(SealError::WrongKey));
        // A marker written before names rotated keeps naming with the first generation.
        let kept = ring
            .seal(&Encryption {
                names: 1,
                ..enc2.clone()
            })
            .unwrap();
        assert_eq!(kept.encode_name("x", None), name);
        let after = seal2.seal(b"new").unwrap();
        assert_eq!(seal1.open(&after), Err(SealError::WrongKey));
        assert_eq!(old.seal(&enc2).unwrap_err(), KeyProblem::Old(1));
        assert_eq!(
            Keyring::generate("/r").seal(&enc2).unwrap_err(),
            KeyProblem::Other
        );
    }
}
