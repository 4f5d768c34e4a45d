//! Who holds the key of an encrypted repository, and the commits that change it: encrypting a
//! new repository, joining with the passphrase, asking to join and approving, removing a
//! machine (which rotates the key), converting a plain repository. Every change is one
//! compare-and-swap commit (see [`super::keys`] for the files).

use std::time::Duration;

use anyhow::{Context as _, Result, anyhow, bail};
use chrono::Utc;

use super::format::{self, FORMAT_FILE, FormatMarker};
use super::keys::{
    self, Keyring, MEMBERS_FILE, Member, Members, PASSPHRASE_FILE, RECOVERY, Request,
};
use super::objects::{StoreError, Txn, UNOPENED, clear_path};
use super::seal::SealError;
use super::{Oid, Sealing, Store};

/// Network steps of key commands.
const TIMEOUT: Duration = Duration::from_secs(120);

/// The encryption the format marker at `head` describes, if any.
pub fn marker_encryption(store: &Store, head: Option<&Oid>) -> Result<Option<keys::Encryption>> {
    let Some(h) = head else { return Ok(None) };
    let Some(b) = store.read_clear(h, FORMAT_FILE)? else {
        return Ok(None);
    };
    let m: FormatMarker = serde_json::from_slice(&b)
        .map_err(|e| anyhow!("{FORMAT_FILE} in the sync repository is not valid: {e}"))?;
    Ok(m.encryption)
}

/// The members at `head` (read with the store's seal).
fn members(store: &Store, head: Option<&Oid>) -> Result<Members> {
    let Some(h) = head else {
        return Ok(Members::new());
    };
    let Some(b) = store.read_clear(h, MEMBERS_FILE)? else {
        return Ok(Members::new());
    };
    let seal = store
        .seal()?
        .ok_or_else(|| anyhow!("the sync repository is not encrypted"))?;
    let plain = seal
        .open(&b)
        .map_err(|e| anyhow!("{MEMBERS_FILE} in the sync repository does not open: {e}"))?;
    serde_json::from_slice(&plain)
        .map_err(|e| anyhow!("{MEMBERS_FILE} in the sync repository is not valid: {e}"))
}

fn write_members(txn: &mut Txn, store: &Store, m: &Members) -> Result<()> {
    let seal = store
        .seal()?
        .ok_or_else(|| anyhow!("the sync repository is not encrypted"))?;
    let data = seal.seal(&serde_json::to_vec_pretty(m)?)?;
    let mark = txn.blob_sealed_raw(data)?;
    txn.put(MEMBERS_FILE, mark)
}

fn member(name: &str, recipient: &str, by: &str) -> (String, Member) {
    (
        keys::fingerprint(recipient),
        Member {
            name: name.to_string(),
            recipient: recipient.to_string(),
            added_at: Some(Utc::now()),
            added_by: by.to_string(),
        },
    )
}

/// Files to write: (path, bytes).
type Files = Vec<(String, Vec<u8>)>;

/// A new passphrase's recovery identity, its wrapped form and its member entry.
fn recovery(ring: &Keyring, passphrase: &str, me: &str) -> Result<(Files, (String, Member))> {
    let id = age::x25519::Identity::generate();
    let r = id.to_public().to_string();
    let files = vec![
        (
            PASSPHRASE_FILE.to_string(),
            keys::wrap_passphrase(&id, passphrase)?,
        ),
        (keys::machine_file(&r), keys::wrap(ring, &r)?),
    ];
    Ok((files, member(RECOVERY, &r, me)))
}

/// Encrypt a new (empty) repository: a new key, wrapped for this machine and the passphrase.
/// What follows (registering the machine) is then encrypted.
pub fn create(store: &Store, machine_id: &str, passphrase: &str) -> Result<()> {
    let ring = Keyring::generate(&store.remote);
    let mine = store.local_keys().recipient()?;
    let (rec_files, rec_member) = recovery(&ring, passphrase, machine_id)?;
    store.local_keys().save_ring(&ring)?;
    store.use_keyring(&ring)?;
    let enc = ring.encryption()?;
    let r = store.commit_and_push_as(
        Sealing::Current,
        &format!("{machine_id}: encrypt the repository"),
        true,
        TIMEOUT,
        |head, txn| {
            if head.is_some() {
                bail!(
                    "the sync repository {} is not empty any more: run `ccsync encrypt` to encrypt what it holds",
                    store.remote
                );
            }
            txn.put_bytes(FORMAT_FILE, &format::to_json_bytes(&FormatMarker::encrypted(enc.clone()))?)?;
            txn.put_bytes(&keys::machine_file(&mine), &keys::wrap(&ring, &mine)?)?;
            for (p, d) in &rec_files {
                txn.put_bytes(p, d)?;
            }
            let mut m = Members::new();
            m.extend([member(machine_id, &mine, machine_id), rec_member.clone()]);
            write_members(txn, store, &m)
        },
    );
    if let Err(e) = r {
        store.local_keys().drop_ring();
        return Err(e);
    }
    Ok(())
}

/// Join with the passphrase: open the recovery identity, take the keyring it holds, and leave
/// this machine's own wrapped copy (and its member entry) in the repository.
pub fn unlock(store: &Store, machine_id: &str, passphrase: &str) -> Result<()> {
    let head = store.fetch(TIMEOUT)?;
    let Some(enc) = marker_encryption(store, head.as_ref())? else {
        bail!("the sync repository {} is not encrypted", store.remote);
    };
    let h = head
        .as_ref()
        .ok_or_else(|| anyhow!("the sync repository is empty"))?;
    let data = store.read_clear(h, PASSPHRASE_FILE)?.ok_or_else(|| {
        anyhow!(
            "the encrypted sync repository {} has no passphrase key ({PASSPHRASE_FILE})",
            store.remote
        )
    })?;
    let rec = keys::unwrap_passphrase(&data, passphrase).map_err(|e| match e {
        SealError::WrongKey => anyhow::Error::new(StoreError::WrongKey(format!(
            "the passphrase does not open the encrypted sync repository {}: nothing was changed",
            store.remote
        ))),
        SealError::Corrupt(why) => {
            anyhow!("{PASSPHRASE_FILE} in the sync repository is damaged: {why}")
        }
    })?;
    let rp = rec.to_public().to_string();
    let wrapped = store
        .read_clear(h, &keys::machine_file(&rp))?
        .ok_or_else(|| {
            anyhow!(
                "the encrypted sync repository {} has no key for its passphrase",
                store.remote
            )
        })?;
    let mut ring = keys::unwrap(&wrapped, &rec)
        .map_err(|e| anyhow!("the passphrase's key in the sync repository does not open: {e}"))?;
    if let Some(old) = store
        .local_keys()
        .ring()?
        .filter(|r| r.repository == ring.repository)
    {
        ring.absorb(&old);
    }
    ring.remote = store.remote.clone();
    ring.seal(&enc)
        .map_err(|_| anyhow!("the passphrase's key does not match the repository's current key: ask a member to run `ccsync key rotate`"))?;
    store.local_keys().save_ring(&ring)?;
    store.resolve_seal(head.as_ref())?;
    join(store, machine_id, machine_id)
}

/// Leave this machine's wrapped key and member entry (and drop its request).
fn join(store: &Store, machine_id: &str, by: &str) -> Result<()> {
    let mine = store.local_keys().recipient()?;
    let ring = store
        .local_keys()
        .ring()?
        .ok_or_else(|| anyhow!("this machine has no key"))?;
    store.commit_and_push(
        &format!("{machine_id}: join"),
        false,
        TIMEOUT,
        |head, txn| {
            let mut m = members(store, head)?;
            let (fp, mem) = member(machine_id, &mine, by);
            if m.get(&fp) != Some(&mem) {
                m.insert(fp, mem);
                write_members(txn, store, &m)?;
            }
            txn.put_bytes(&keys::machine_file(&mine), &keys::wrap(&ring, &mine)?)?;
            if let Some(h) = head
                && store.read_clear(h, &keys::request_file(&mine))?.is_some()
            {
                txn.delete(&keys::request_file(&mine))?;
            }
            Ok(())
        },
    )?;
    Ok(())
}

/// Ask to join: leave a request (this machine's id and public key, encrypted to the
/// repository's public key) for a member to approve. Returns the check code.
pub fn request(store: &Store, machine_id: &str) -> Result<String> {
    let head = store.fetch(TIMEOUT)?;
    let Some(enc) = marker_encryption(store, head.as_ref())? else {
        bail!("the sync repository {} is not encrypted", store.remote);
    };
    let mine = store.local_keys().recipient()?;
    let req = Request {
        machine_id: machine_id.to_string(),
        hostname: crate::os::hostname(),
        recipient: mine.clone(),
        requested_at: Utc::now(),
    };
    let repo: age::x25519::Recipient = enc
        .recipient
        .parse()
        .map_err(|e| anyhow!("the repository's public key does not parse: {e}"))?;
    let data = super::seal::seal_to(&repo, &serde_json::to_vec(&req)?)?;
    store.commit_and_push_as(
        Sealing::ClearOnly,
        &format!("{machine_id}: ask to join"),
        false,
        TIMEOUT,
        |_, txn| txn.put_bytes(&keys::request_file(&mine), &data),
    )?;
    Ok(req.code())
}

/// The requests waiting at the head (read with this machine's key).
pub fn requests(store: &Store) -> Result<Vec<(String, Request)>> {
    let Some(head) = store.known_head()? else {
        return Ok(Vec::new());
    };
    let seal = store
        .seal()?
        .ok_or_else(|| anyhow!("the sync repository {} is not encrypted", store.remote))?;
    let mut out = Vec::new();
    for e in store.ls_tree(&head, Some("keys/requests"))? {
        let Some(path) = e.path_str().map(str::to_string) else {
            continue;
        };
        let Some(b) = store.read_clear(&head, &path)? else {
            continue;
        };
        match seal
            .open(&b)
            .ok()
            .and_then(|p| serde_json::from_slice::<Request>(&p).ok())
        {
            Some(r) if keys::request_file(&r.recipient) == path => out.push((path, r)),
            _ => tracing::warn!("ignoring {path}: it does not open"),
        }
    }
    out.sort_by_key(|r| std::cmp::Reverse(r.1.requested_at));
    Ok(out)
}

/// Approve a machine's request: wrap the keyring for its key. Returns the request approved.
pub fn approve(store: &Store, me: &str, machine: &str) -> Result<Request> {
    store.fetch(TIMEOUT)?;
    let found = requests(store)?;
    let Some((path, req)) = found.into_iter().find(|(_, r)| r.machine_id == machine) else {
        bail!(
            "no machine {machine:?} asked to join {} (on that machine run `ccsync key request`, then approve it here)",
            store.remote
        );
    };
    let ring = store
        .local_keys()
        .ring()?
        .ok_or_else(|| anyhow!("this machine has no key of the repository"))?;
    store.commit_and_push(
        &format!("{me}: approve {machine}"),
        false,
        TIMEOUT,
        |head, txn| {
            let mut m = members(store, head)?;
            let (fp, mem) = member(&req.machine_id, &req.recipient, me);
            m.insert(fp, mem);
            write_members(txn, store, &m)?;
            txn.put_bytes(
                &keys::machine_file(&req.recipient),
                &keys::wrap(&ring, &req.recipient)?,
            )?;
            txn.delete(&path)?;
            Ok(())
        },
    )?;
    Ok(req)
}

/// The members at the head.
pub fn list(store: &Store) -> Result<Members> {
    let head = store.known_head()?;
    store.seal()?;
    members(store, head.as_ref())
}

/// Remove a machine and rotate the key: a new generation, wrapped for every member left; the
/// removed machine keeps what it could read, and cannot read what is stored from now on.
/// Returns the new generation.
pub fn remove(store: &Store, me: &str, machine: &str) -> Result<u32> {
    let head = store.fetch(TIMEOUT)?;
    store.resolve_seal(head.as_ref())?;
    let current = members(store, head.as_ref())?;
    let mine = store.local_keys().recipient()?;
    let gone: Vec<String> = current
        .iter()
        .filter(|(_, m)| m.name == machine)
        .map(|(fp, _)| fp.clone())
        .collect();
    if gone.is_empty() {
        bail!(
            "{machine:?} is not a member of the encrypted sync repository {} (`ccsync key list` shows them)",
            store.remote
        );
    }
    if gone.contains(&keys::fingerprint(&mine)) {
        bail!(
            "this machine cannot remove itself: run `ccsync key remove {machine}` on another member"
        );
    }
    rotate(
        store,
        me,
        &format!("{me}: remove {machine} and rotate the key"),
        &gone,
    )
}

/// Rotate the key (dropping the members `gone`): returns the new generation.
pub fn rotate(store: &Store, me: &str, message: &str, gone: &[String]) -> Result<u32> {
    let mut ring = store
        .local_keys()
        .ring()?
        .ok_or_else(|| anyhow!("this machine has no key of the repository"))?;
    ring.rotate();
    let generation = ring.generation();
    let enc = ring.encryption()?;
    // Read the members with the key of the head, write everything with the new one.
    let head = store.known_head()?;
    let mut m = members(store, head.as_ref())?;
    m.retain(|fp, _| !gone.contains(fp));
    store.use_keyring(&ring)?;
    let r = store.commit_and_push_as(Sealing::Current, message, false, TIMEOUT, |head, txn| {
        txn.put_bytes(
            FORMAT_FILE,
            &format::to_json_bytes(&FormatMarker::encrypted(enc.clone()))?,
        )?;
        for fp in gone {
            txn.delete(&format!("keys/machines/{fp}.age"))?;
        }
        for mem in m.values() {
            txn.put_bytes(
                &keys::machine_file(&mem.recipient),
                &keys::wrap(&ring, &mem.recipient)?,
            )?;
        }
        write_members(txn, store, &m)?;
        // Every stored file is renamed under the new generation's name key, so the removed
        // machine cannot read the names of what is stored from now on (the blobs stay: what
        // was stored before, it could read already).
        if let Some(h) = head {
            for e in store.tree(h)? {
                let Some(p) = e.path_str() else { continue };
                if !e.is_regular_file() || clear_path(p) || p.starts_with(UNOPENED) {
                    continue;
                }
                if let Some(size) = e.size {
                    txn.put_existing(p, &e.oid, size)?;
                }
            }
        }
        Ok(())
    });
    if let Err(e) = r {
        store.resolve_seal(store.known_head()?.as_ref()).ok();
        return Err(e);
    }
    let mut saved = ring.clone();
    saved.remote = store.remote.clone();
    store.local_keys().save_ring(&saved)?;
    let _ = me;
    Ok(generation)
}

/// Change the passphrase (a member only): a new recovery identity under the new passphrase.
pub fn set_passphrase(store: &Store, me: &str, passphrase: &str) -> Result<()> {
    let head = store.fetch(TIMEOUT)?;
    store.resolve_seal(head.as_ref())?;
    let ring = store
        .local_keys()
        .ring()?
        .ok_or_else(|| anyhow!("this machine has no key of the repository"))?;
    let (files, rec) = recovery(&ring, passphrase, me)?;
    store.commit_and_push(
        &format!("{me}: change the passphrase"),
        false,
        TIMEOUT,
        |head, txn| {
            let mut m = members(store, head)?;
            let old: Vec<String> = m
                .iter()
                .filter(|(_, v)| v.name == RECOVERY)
                .map(|(k, _)| k.clone())
                .collect();
            for fp in &old {
                txn.delete(&format!("keys/machines/{fp}.age"))?;
                m.remove(fp);
            }
            for (p, d) in &files {
                txn.put_bytes(p, d)?;
            }
            m.insert(rec.0.clone(), rec.1.clone());
            write_members(txn, store, &m)
        },
    )?;
    Ok(())
}

/// What a plain repository holds, to be encrypted ([`convert`]).
pub struct Conversion {
    head: Oid,
    /// Every file (path, blob) but the marker.
    contents: Vec<(String, Oid)>,
    /// The names at its root.
    top: Vec<String>,
}

/// Read what a plain repository holds at its head.
pub fn plan_conversion(source: &Store) -> Result<Conversion> {
    let head = source.fetch(TIMEOUT)?;
    let Some(h) = head else {
        bail!(
            "the sync repository {} is empty: use `ccsync init --encrypt`",
            source.remote
        );
    };
    if source.sealed()? {
        bail!("the sync repository {} is encrypted already", source.remote);
    }
    let mut contents = Vec::new();
    for e in source.tree(&h)?.iter().filter(|e| e.is_regular_file()) {
        let Some(p) = e.path_str() else { continue };
        if p == FORMAT_FILE || super::objects::clear_path(p) {
            continue;
        }
        contents.push((p.to_string(), e.oid.clone()));
    }
    let top = source.top_names(&h)?;
    Ok(Conversion {
        head: h,
        contents,
        top,
    })
}

/// Encrypt what [`plan_conversion`] read into `target`: the same branch (`in_place`, the
/// plaintext then stays in its history), or a new branch or repository that must be empty
/// (the same local clone holds the blobs). Returns the number of files.
pub fn convert(
    target: &Store,
    plan: &Conversion,
    in_place: bool,
    machine_id: &str,
    passphrase: &str,
) -> Result<usize> {
    let (contents, top) = (&plan.contents, &plan.top);
    let head = Some(plan.head.clone());
    let mut reader = target.reader()?;
    let target_head = if in_place {
        head.clone()
    } else {
        target.fetch(TIMEOUT)?
    };
    if !in_place && target_head.is_some() {
        bail!(
            "the branch {} of {} is not empty: choose a new branch or an empty repository",
            target.branch,
            target.remote
        );
    }
    let ring = Keyring::generate(&target.remote);
    let mine = target.local_keys().recipient()?;
    let (rec_files, rec_member) = recovery(&ring, passphrase, machine_id)?;
    target.use_keyring(&ring)?;
    let enc = ring.encryption()?;
    let mut n = 0;
    let r = target.commit_and_push_as(
        Sealing::Current,
        &format!("{machine_id}: encrypt the repository"),
        false,
        Duration::from_secs(600),
        |base, txn| {
            if base != target_head.as_ref() {
                bail!("the sync repository changed while it was being encrypted: run `ccsync encrypt` again");
            }
            if in_place {
                for name in top {
                    txn.delete_stored(name);
                }
            }
            n = 0;
            for (path, oid) in contents {
                let data = reader.read(oid).with_context(|| format!("cannot read {path}"))?;
                txn.put_bytes(path, &data)?;
                n += 1;
            }
            txn.put_bytes(FORMAT_FILE, &format::to_json_bytes(&FormatMarker::encrypted(enc.clone()))?)?;
            txn.put_bytes(&keys::machine_file(&mine), &keys::wrap(&ring, &mine)?)?;
            for (p, d) in &rec_files {
                txn.put_bytes(p, d)?;
            }
            let mut m = Members::new();
            m.extend([member(machine_id, &mine, machine_id), rec_member.clone()]);
            write_members(txn, target, &m)
        },
    );
    if let Err(e) = r {
        target.local_keys().drop_ring();
        return Err(e);
    }
    let mut saved = ring;
    saved.remote = target.remote.clone();
    target.local_keys().save_ring(&saved)?;
    Ok(n)
}
