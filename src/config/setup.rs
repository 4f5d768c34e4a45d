//! Registering this machine with a sync repository (`init`) and changing the configuration
//! afterwards (`config …`). No terminal here: questions go through a [`Prompter`].

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::time::Duration;

use anyhow::{Context as _, Result, anyhow, bail};

use super::shared::{self, RepoKind};
use super::{Config, Home, SecretMode};
use crate::paths::{self, PathStyle};
use crate::store::{self, Store, format};

/// How long network steps of set-up may take.
pub const NET_TIMEOUT: Duration = Duration::from_secs(120);

/// Asks the person at the keyboard. `None` from [`Prompter::ask_path`] skips the question.
pub trait Prompter {
    /// Whether questions can be asked at all.
    fn interactive(&self) -> bool;
    /// This machine's path for a placeholder other machines defined (their paths given).
    fn ask_path(&mut self, name: &str, others: &BTreeMap<String, String>)
    -> Result<Option<String>>;
}

/// A prompter that never asks (non-interactive runs, `--yes`).
pub struct NoPrompt;

impl Prompter for NoPrompt {
    fn interactive(&self) -> bool {
        false
    }
    fn ask_path(&mut self, _: &str, _: &BTreeMap<String, String>) -> Result<Option<String>> {
        Ok(None)
    }
}

/// What `init` was asked to do.
#[derive(Debug, Default, Clone)]
pub struct InitOptions {
    pub remote: Option<String>,
    pub github: Option<String>,
    pub machine_id: Option<String>,
    /// `NAME=PATH` as given.
    pub placeholders: Vec<String>,
    pub sync_dirs: Vec<String>,
    pub path_style: Option<PathStyle>,
    /// Take over a machine id registered by another installation (this machine set up again).
    pub reclaim: bool,
    /// Encrypt the (new, empty) repository with this passphrase (or recovery key).
    pub encrypt: Option<String>,
    /// The passphrase of an encrypted repository, to join it without an approval.
    pub passphrase: Option<String>,
}

/// What `init` did.
#[derive(Debug)]
pub struct InitReport {
    pub config: Config,
    pub first_machine: bool,
    pub reinit: bool,
    /// Human sentences, one per change.
    pub changes: Vec<String>,
    /// The repository is encrypted and this machine asked to join: the check code an
    /// approving machine shows. Nothing else was done yet.
    pub pending: Option<String>,
    /// Placeholders other machines define that this machine has no path for.
    pub missing: Vec<String>,
    /// Set when the remote was converted from the Python tool's layout.
    pub migrated: Option<crate::migrate::MigrationReport>,
}

/// Split `NAME=PATH`.
pub fn parse_assignment(s: &str) -> Result<(String, String)> {
    let (n, p) = s
        .split_once('=')
        .ok_or_else(|| anyhow!("{s:?} is not NAME=PATH (example: PROJECTS=~/projects)"))?;
    let n = n.trim();
    if !paths::valid_name(n) {
        bail!(
            "placeholder name {n:?} is not valid: use capital letters, digits and _, starting with a letter"
        );
    }
    Ok((n.to_string(), p.trim().to_string()))
}

/// Expand a leading `~` with this machine's home, then check and normalise for `style`.
pub fn normalize_for(
    style: PathStyle,
    name: &str,
    raw: &str,
    home: Option<&str>,
) -> Result<String> {
    let expanded = match (raw.strip_prefix('~'), home) {
        (Some(rest), Some(h))
            if rest.is_empty() || rest.starts_with('/') || rest.starts_with('\\') =>
        {
            format!("{h}{rest}")
        }
        _ => raw.to_string(),
    };
    Ok(paths::normalize_path(style, name, &expanded)?)
}

/// A sync directory: like a placeholder path, but the root of a drive or file system is fine.
pub fn normalize_sync_dir(style: PathStyle, raw: &str, home: Option<&str>) -> Result<String> {
    let t = raw.trim();
    let is_root = match style {
        PathStyle::Posix => t == "/",
        PathStyle::Windows => {
            let b = t.as_bytes();
            b.len() <= 3
                && b.len() >= 2
                && b[0].is_ascii_alphabetic()
                && b[1] == b':'
                && b.get(2).is_none_or(|c| *c == b'\\' || *c == b'/')
        }
    };
    if is_root {
        return Ok(match style {
            PathStyle::Posix => "/".to_string(),
            PathStyle::Windows => format!("{}\\", &t[..2]),
        });
    }
    normalize_for(style, "sync-dir", raw, home)
        .map_err(|_| anyhow!("sync directory {raw:?} is not an absolute {style} path"))
}

/// Resolve a `--remote` value: URLs stay as they are; a local path becomes absolute, and a path
/// that does not exist (or an empty folder) becomes a new bare repository.
pub fn prepare_remote(remote: &str) -> Result<String> {
    if !store::is_local_remote(remote) {
        return Ok(remote.to_string());
    }
    let p = store::local_remote_path(remote);
    let abs = if p.is_absolute() {
        p
    } else {
        std::env::current_dir()?.join(p)
    };
    let empty_dir = abs.is_dir()
        && std::fs::read_dir(&abs)
            .map(|mut d| d.next().is_none())
            .unwrap_or(false);
    if !abs.exists() || empty_dir {
        store::Git::init_bare(&abs)
            .with_context(|| format!("cannot create a git repository at {}", abs.display()))?;
    } else if !store::Git::new(&abs).is_valid() && !store::Git::new(abs.join(".git")).is_valid() {
        bail!(
            "{} exists and is not a git repository: give an empty or new folder, or a git URL",
            abs.display()
        );
    }
    Ok(abs.to_string_lossy().into_owned())
}

fn default_remote(home: &Home) -> Result<String> {
    let p = home.default_remote();
    if !store::Git::new(&p).is_valid() {
        home.ensure()?;
        store::Git::init_bare(&p)?;
        crate::os::make_private(&p).ok();
    }
    Ok(p.to_string_lossy().into_owned())
}

fn native_home(style: PathStyle) -> Option<String> {
    let h = crate::os::home_dir()?.to_string_lossy().into_owned();
    paths::normalize_path(style, "HOME", &h).ok()
}

/// Register this machine (first run) or change what the options say (later runs).
pub fn init(home: &Home, opts: InitOptions, prompter: &mut dyn Prompter) -> Result<InitReport> {
    let existing = home.load_config()?;
    let reinit = existing.is_some();
    let mut changes = Vec::new();

    let style = opts
        .path_style
        .or(existing.as_ref().map(|c| c.path_style))
        .unwrap_or_else(PathStyle::native);
    let machine_id = match (&opts.machine_id, &existing) {
        (Some(m), _) => m.clone(),
        (None, Some(c)) => c.machine_id.clone(),
        (None, None) => format::machine_id_from_hostname(&crate::os::hostname()),
    };
    if !format::valid_machine_id(&machine_id) {
        bail!(
            "machine id {machine_id:?} is not valid: use letters, digits, '.', '_' and '-' (no spaces or '/'), at most 64"
        );
    }

    let mut github_repo = existing.as_ref().and_then(|c| c.github_repo.clone());
    let remote = if let Some(spec) = &opts.github {
        let gh = store::github::find_or_create(spec)?;
        changes.push(if gh.created {
            format!("created the private GitHub repository {}", gh.full_name)
        } else {
            format!("using the GitHub repository {}", gh.full_name)
        });
        github_repo = Some(gh.full_name);
        gh.url
    } else if let Some(r) = &opts.remote {
        github_repo = None;
        prepare_remote(r)?
    } else if let Some(c) = &existing {
        c.remote.clone()
    } else {
        default_remote(home)?
    };
    if let Some(c) = &existing {
        if c.remote != remote {
            changes.push(format!("remote changed from {} to {remote}", c.remote));
        }
        if c.machine_id != machine_id {
            changes.push(format!(
                "machine id changed from {} to {machine_id}",
                c.machine_id
            ));
        }
        if c.path_style != style {
            changes.push(format!(
                "path style changed from {} to {style}",
                c.path_style
            ));
        }
    }

    let mut config = existing
        .clone()
        .unwrap_or_else(|| Config::new(machine_id.clone(), remote.clone(), style));
    config.machine_id = machine_id.clone();
    config.remote = remote.clone();
    config.path_style = style;
    config.github_repo = github_repo;
    if config.install_id.is_empty() {
        config.install_id = crate::util::random_hex(16);
    }

    let store = Store::open(home, &remote, &config.branch, &machine_id)?;
    let mut head = store.fetch(NET_TIMEOUT)?;
    // An encrypted repository: this machine needs its key before it reads or writes anything
    // else (the passphrase, else a request for a member to approve).
    if store::members::marker_encryption(&store, head.as_ref())?.is_some() {
        if let Err(e) = store.resolve_seal(head.as_ref()) {
            let keyless = matches!(
                store::store_error(&e),
                Some(store::StoreError::NoKey(_) | store::StoreError::WrongKey(_))
            );
            if !keyless {
                return Err(e);
            }
            match &opts.passphrase {
                Some(p) => {
                    store::members::unlock(&store, &machine_id, p)?;
                    changes.push("joined the encrypted repository with its passphrase".into());
                    head = store.known_head()?;
                }
                None => {
                    let code = store::members::request(&store, &machine_id)?;
                    // Enough to sync once approved; `init` again adopts what other machines
                    // share (it can read it then).
                    config.placeholders = preview_placeholders(&config, &opts, style);
                    if !reinit {
                        config.sync_directories = default_sync_dirs(&config.placeholders);
                    }
                    home.save_config(&config)?;
                    return Ok(InitReport {
                        config,
                        first_machine: false,
                        reinit,
                        changes,
                        missing: Vec::new(),
                        migrated: None,
                        pending: Some(code),
                    });
                }
            }
        }
    } else if let Some(pass) = &opts.encrypt {
        if shared::classify(&store, head.as_ref())? != RepoKind::Empty {
            bail!(
                "the sync repository {remote} already holds data in the clear: run `ccsync encrypt` (it says what stays in the git history)"
            );
        }
        store::members::create(&store, &machine_id, pass)?;
        changes.push("encrypted the new repository".into());
        head = None;
    }
    let mut migrated = None;
    let first_machine = match shared::classify(&store, head.as_ref())? {
        RepoKind::Empty => true,
        RepoKind::Ccsync(marker) => {
            marker.check()?;
            false
        }
        RepoKind::Legacy => {
            // The conversion maps this machine's raw paths too and says which it lacks.
            let mine = preview_placeholders(&config, &opts, style);
            let me = crate::migrate::ThisMachine {
                id: &machine_id,
                style,
                placeholders: &mine,
            };
            migrated = Some(crate::migrate::migrate(
                &store,
                head.as_ref(),
                me,
                NET_TIMEOUT,
            )?);
            false
        }
        RepoKind::Foreign(n) => bail!(
            "the remote {remote} holds something other than a ccsync repository ({n} entries at its root and no {}): \
             use a new, empty repository",
            format::FORMAT_FILE
        ),
    };
    let head = if migrated.is_some() {
        store.known_head()?
    } else {
        head
    };
    let shared_state = shared::read_shared(&store, head.as_ref())?;

    // A machine id belongs to one machine.
    if let Some(rec) = shared_state.machines.get(&machine_id)
        && !opts.reclaim
        && existing.as_ref().is_none_or(|c| c.machine_id != machine_id)
        && (rec.install_id.is_empty() || rec.install_id != config.install_id)
    {
        bail!(
            "machine id {machine_id:?} is already registered (by host {:?}): choose another with --machine-id, \
             or, if this is that machine set up again, add --reclaim",
            rec.hostname
        );
    }

    // Placeholders: HOME first, then the flags, then what others defined.
    let home_path = config
        .placeholders
        .get("HOME")
        .cloned()
        .or_else(|| native_home(style));
    let mut wanted: Vec<(String, String)> = Vec::new();
    for a in &opts.placeholders {
        wanted.push(parse_assignment(a)?);
    }
    let flag_home = wanted
        .iter()
        .find(|(n, _)| n == "HOME")
        .map(|(_, p)| p.clone());
    let home_for_tilde = match &flag_home {
        Some(h) => Some(normalize_for(style, "HOME", h, None)?),
        None => home_path.clone(),
    };
    let Some(home_value) = home_for_tilde.clone() else {
        bail!(
            "this machine's home folder is not a {style} path: give it with --add-placeholder HOME=PATH \
             (for example HOME=C:\\Users\\you)"
        );
    };
    let mut placeholders = config.placeholders.clone();
    if placeholders.get("HOME") != Some(&home_value) {
        if reinit {
            changes.push(format!("placeholder HOME set to {home_value}"));
        }
        placeholders.insert("HOME".into(), home_value.clone());
    }
    for (name, raw) in &wanted {
        let p = normalize_for(style, name, raw, Some(&home_value))?;
        if placeholders.get(name) != Some(&p) {
            if reinit {
                changes.push(format!("placeholder {name} set to {p}"));
            }
            placeholders.insert(name.clone(), p);
        }
    }
    // Paths other machines set for this one (`config set-path NAME me PATH`) are adopted.
    for (name, path) in shared_state.placeholders.for_machine(&machine_id) {
        if placeholders.contains_key(&name) {
            continue;
        }
        match paths::normalize_path(style, &name, &path) {
            Ok(p) => {
                changes.push(format!(
                    "placeholder {name} = {p} (set for this machine in the repository)"
                ));
                placeholders.insert(name, p);
            }
            Err(e) => {
                tracing::warn!("ignoring the repository's path for {name} on this machine: {e}")
            }
        }
    }
    let mut missing = Vec::new();
    for (name, per_machine) in &shared_state.placeholders.placeholders {
        if placeholders.contains_key(name) {
            continue;
        }
        let answer = if prompter.interactive() {
            prompter.ask_path(name, per_machine)?
        } else {
            None
        };
        match answer.filter(|a| !a.trim().is_empty()) {
            Some(raw) => {
                let p = normalize_for(style, name, &raw, Some(&home_value))?;
                changes.push(format!("placeholder {name} set to {p}"));
                placeholders.insert(name.clone(), p);
            }
            None => missing.push(name.clone()),
        }
    }
    config.placeholders = placeholders;
    config.mapper().map_err(|e| anyhow!("{e}"))?;

    // Sync directories: the flags, else what was configured, else the placeholder paths.
    if !opts.sync_dirs.is_empty() {
        let mut dirs = Vec::new();
        for d in &opts.sync_dirs {
            dirs.push(normalize_sync_dir(style, d, Some(&home_value))?);
        }
        if reinit && dirs != config.sync_directories {
            changes.push(format!("sync directories set to {}", dirs.join(", ")));
        }
        config.sync_directories = dirs;
    } else if !reinit {
        config.sync_directories = default_sync_dirs(&config.placeholders);
    }

    let me = shared::my_record(&config);
    let placeholders = config.placeholders.clone();
    let my_id = config.machine_id.clone();
    shared::update_shared(
        &store,
        &format!("register machine {my_id}"),
        &me,
        true,
        NET_TIMEOUT,
        |sp| {
            for (name, path) in &placeholders {
                sp.set(name, &my_id, path);
            }
            Ok(())
        },
    )?;
    home.save_config(&config)?;
    Ok(InitReport {
        config,
        first_machine,
        reinit,
        changes,
        missing,
        migrated,
        pending: None,
    })
}

/// This machine's placeholders as `init` is about to set them (HOME and the flags), for a
/// conversion that runs before they are checked; a flag that does not parse is left out here
/// and reported by the checks that follow.
fn preview_placeholders(
    config: &Config,
    opts: &InitOptions,
    style: PathStyle,
) -> BTreeMap<String, String> {
    let mut mine = config.placeholders.clone();
    let wanted: Vec<(String, String)> = opts
        .placeholders
        .iter()
        .filter_map(|a| parse_assignment(a).ok())
        .collect();
    let home = wanted
        .iter()
        .find(|(n, _)| n == "HOME")
        .and_then(|(_, h)| normalize_for(style, "HOME", h, None).ok())
        .or_else(|| mine.get("HOME").cloned())
        .or_else(|| native_home(style));
    if let Some(h) = &home {
        mine.insert("HOME".into(), h.clone());
    }
    for (n, raw) in wanted {
        if let Ok(p) = normalize_for(style, &n, &raw, home.as_deref()) {
            mine.insert(n, p);
        }
    }
    mine
}

/// The default sync directories: the placeholder paths other than HOME, or HOME alone.
pub fn default_sync_dirs(placeholders: &BTreeMap<String, String>) -> Vec<String> {
    let mut dirs: Vec<String> = placeholders
        .iter()
        .filter(|(n, _)| *n != "HOME")
        .map(|(_, p)| p.clone())
        .collect();
    if dirs.is_empty() {
        dirs.extend(placeholders.get("HOME").cloned());
    }
    dirs.sort();
    dirs.dedup();
    dirs
}

/// `config add-placeholder NAME=PATH`: this machine's path for a (new or existing) placeholder.
pub fn add_placeholder(home: &Home, assignment: &str) -> Result<Config> {
    let mut config = home.require_config()?;
    let (name, raw) = parse_assignment(assignment)?;
    let path = normalize_for(
        config.path_style,
        &name,
        &raw,
        config.placeholders.get("HOME").map(String::as_str),
    )?;
    config.placeholders.insert(name.clone(), path.clone());
    config.mapper().map_err(|e| anyhow!("{e}"))?;
    let store = Store::of(home, &config)?;
    let me = shared::my_record(&config);
    let id = config.machine_id.clone();
    shared::update_shared(
        &store,
        &format!("{id}: placeholder {name}"),
        &me,
        false,
        NET_TIMEOUT,
        |sp| {
            sp.set(&name, &id, &path);
            Ok(())
        },
    )?;
    home.save_config(&config)?;
    Ok(config)
}

/// `config set-path NAME MACHINE PATH`: a machine's path for a placeholder, checked against that
/// machine's path style.
pub fn set_path(home: &Home, name: &str, machine: &str, raw: &str) -> Result<String> {
    let mut config = home.require_config()?;
    if !paths::valid_name(name) {
        bail!(
            "placeholder name {name:?} is not valid: use capital letters, digits and _, starting with a letter"
        );
    }
    let store = Store::of(home, &config)?;
    let head = store.fetch(NET_TIMEOUT)?;
    let state = shared::read_shared(&store, head.as_ref())?;
    let style = if machine == config.machine_id {
        config.path_style
    } else {
        match state.machines.get(machine) {
            Some(r) => r.path_style,
            None => {
                let known: Vec<&str> = state.machines.keys().map(String::as_str).collect();
                bail!(
                    "no machine {machine:?} is registered (known: {})",
                    known.join(", ")
                );
            }
        }
    };
    let tilde_home = if machine == config.machine_id {
        config.placeholders.get("HOME").cloned()
    } else {
        None
    };
    let path = normalize_for(style, name, raw, tilde_home.as_deref())?;
    let me = shared::my_record(&config);
    shared::update_shared(
        &store,
        &format!("{}: {name} for {machine}", config.machine_id),
        &me,
        false,
        NET_TIMEOUT,
        |sp| {
            sp.set(name, machine, &path);
            Ok(())
        },
    )?;
    if machine == config.machine_id {
        config.placeholders.insert(name.to_string(), path.clone());
        home.save_config(&config)?;
    }
    Ok(path)
}

/// `config set-remote URL`: move this machine to another remote, carrying the shared
/// placeholders it knows, and register there. The caller pushes the sessions afterwards.
pub fn set_remote(home: &Home, remote: &str) -> Result<Config> {
    let mut config = home.require_config()?;
    let new_remote = prepare_remote(remote)?;
    let known = {
        let store = Store::of(home, &config)?;
        let head = store.known_head()?;
        shared::read_shared(&store, head.as_ref()).unwrap_or_default()
    };
    let store = Store::open(home, &new_remote, &config.branch, &config.machine_id)?;
    let head = store.fetch(NET_TIMEOUT)?;
    match shared::classify(&store, head.as_ref())? {
        RepoKind::Empty => {}
        RepoKind::Ccsync(m) => m.check()?,
        RepoKind::Legacy => {
            let me = crate::migrate::ThisMachine {
                id: &config.machine_id,
                style: config.path_style,
                placeholders: &config.placeholders,
            };
            crate::migrate::migrate(&store, head.as_ref(), me, NET_TIMEOUT)?;
        }
        RepoKind::Foreign(n) => bail!(
            "the remote {new_remote} holds something other than a ccsync repository ({n} entries at its root)"
        ),
    }
    config.remote = new_remote;
    config.github_repo = None;
    let me = shared::my_record(&config);
    let mine = config.placeholders.clone();
    let id = config.machine_id.clone();
    shared::update_shared(
        &store,
        &format!("{id} moved here"),
        &me,
        true,
        NET_TIMEOUT,
        |sp| {
            for (name, per) in &known.placeholders.placeholders {
                for (m, p) in per {
                    sp.placeholders
                        .entry(name.clone())
                        .or_default()
                        .entry(m.clone())
                        .or_insert_with(|| p.clone());
                }
            }
            for (name, path) in &mine {
                sp.set(name, &id, path);
            }
            Ok(())
        },
    )?;
    home.save_config(&config)?;
    crate::sync::state::State::forget_remote(home)?;
    Ok(config)
}

/// Keys `config set` accepts.
pub const SETTABLE_KEYS: &[&str] = &[
    "sync_directories",
    "secret_scan",
    "lock_ttl_secs",
    "daemon_interval_secs",
    "daemon_debounce_secs",
    "pull_timeout_secs",
    "hook_timeout_secs",
    "network_timeout_secs",
    "path_style",
    "branch",
];

/// `config set KEY VALUE`.
pub fn set_key(home: &Home, key: &str, value: &str) -> Result<Config> {
    let mut config = home.require_config()?;
    let num = |v: &str, min: u64| -> Result<u64> {
        let n: u64 = v
            .trim()
            .parse()
            .map_err(|_| anyhow!("{key} takes a whole number of seconds, not {v:?}"))?;
        if n < min {
            bail!("{key} must be at least {min}");
        }
        Ok(n)
    };
    match key {
        "sync_directories" => {
            let home_dir = config.placeholders.get("HOME").cloned();
            let items: Vec<String> = if value.trim_start().starts_with('[') {
                serde_json::from_str(value)
                    .map_err(|e| anyhow!("sync_directories: not a JSON list of paths: {e}"))?
            } else {
                value
                    .split(',')
                    .map(|s| s.trim().to_string())
                    .filter(|s| !s.is_empty())
                    .collect()
            };
            let mut dirs = Vec::new();
            for d in items {
                dirs.push(normalize_sync_dir(
                    config.path_style,
                    &d,
                    home_dir.as_deref(),
                )?);
            }
            config.sync_directories = dirs;
        }
        "secret_scan" => {
            config.secret_scan = value.parse::<SecretMode>().map_err(|e| anyhow!(e))?
        }
        "lock_ttl_secs" => config.lock_ttl_secs = num(value, 10)?,
        "daemon_interval_secs" => config.daemon_interval_secs = num(value, 5)?,
        "daemon_debounce_secs" => config.daemon_debounce_secs = num(value, 1)?,
        "pull_timeout_secs" => config.pull_timeout_secs = num(value, 1)?,
        "hook_timeout_secs" => config.hook_timeout_secs = num(value, 1)?,
        "network_timeout_secs" => config.network_timeout_secs = num(value, 1)?,
        "path_style" => {
            let style: PathStyle = value.parse().map_err(|e: String| anyhow!(e))?;
            let mapper = crate::paths::Mapper::new(style, config.placeholders.iter());
            if let Err(e) = mapper {
                bail!("cannot switch to {style} paths: {e}; fix the placeholders first");
            }
            config.path_style = style;
        }
        "branch" => {
            let v = value.trim();
            if v.is_empty() || v.contains(['/', ' ', ':', '~', '^']) {
                bail!("branch {v:?} is not a simple branch name");
            }
            config.branch = v.to_string();
        }
        "machine_id" | "remote" | "placeholders" => bail!(
            "{key} is changed with {}",
            match key {
                "machine_id" => "`ccsync init --machine-id ID`",
                "remote" => "`ccsync config set-remote URL`",
                _ => "`ccsync config add-placeholder NAME=PATH`",
            }
        ),
        _ => bail!("unknown key {key:?}: one of {}", SETTABLE_KEYS.join(", ")),
    }
    home.save_config(&config)?;
    Ok(config)
}

/// The local path of a remote given in the config, for display.
pub fn describe_remote(remote: &str) -> String {
    if store::is_local_remote(remote) {
        format!("{} (local)", Path::new(remote).display())
    } else {
        remote.to_string()
    }
}

/// Where a default local remote would live.
pub fn default_remote_path(home: &Home) -> PathBuf {
    home.default_remote()
}
