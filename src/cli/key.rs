//! `ccsync key …` and `ccsync encrypt`: the keys of an encrypted sync repository, and
//! encrypting a plain one.

use std::io::Write as _;
use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::{Result, bail};
use clap::{Args, Subcommand};

use super::Env;
use crate::store::{Store, keys, members};

/// Where a passphrase comes from (never a command-line argument).
#[derive(Debug, Args, Clone, Default)]
pub struct PassphraseArgs {
    /// Read the passphrase from the first line of FILE (else `CCSYNC_PASSPHRASE`, else a
    /// prompt on a terminal).
    #[arg(long, value_name = "FILE")]
    pub passphrase_file: Option<PathBuf>,
}

/// Where a new passphrase comes from.
#[derive(Debug, Args, Clone, Default)]
pub struct NewPassphraseArgs {
    #[command(flatten)]
    pub from: PassphraseArgs,
    /// Make a random recovery key instead of a passphrase, and print it once.
    #[arg(long)]
    pub recovery_key: bool,
}

#[derive(Debug, Args)]
pub struct KeyArgs {
    #[command(subcommand)]
    cmd: KeyCmd,
}

#[derive(Debug, Subcommand)]
enum KeyCmd {
    /// Whether the repository is encrypted, its key generation, and this machine's key.
    Status,
    /// The machines (and the passphrase) that hold the key.
    List,
    /// Join with the repository's passphrase.
    Unlock(PassphraseArgs),
    /// Ask to join: a machine that has the key then runs `ccsync key approve THIS-MACHINE`.
    Request,
    /// The machines waiting for approval.
    Requests,
    /// Give the key to a machine that asked for it (compare the code it printed).
    Approve { machine: String },
    /// Take the key from a machine: the key is rotated, so it cannot read what is stored next.
    Remove { machine: String },
    /// Rotate the key (new data is encrypted to a new generation; old data stays readable).
    Rotate,
    /// Change the passphrase.
    Passphrase(NewPassphraseArgs),
}

/// Read the passphrase: `--passphrase-file`, `CCSYNC_PASSPHRASE`, or the terminal.
pub fn passphrase(args: &PassphraseArgs, confirm: bool) -> Result<Option<String>> {
    if let Some(p) = keys::passphrase_from(args.passphrase_file.as_deref())? {
        return Ok(Some(p));
    }
    if !crate::os::stdin_is_tty() {
        return Ok(None);
    }
    let first = read_hidden("Passphrase of the sync repository: ")?;
    if confirm {
        let again = read_hidden("The same passphrase again: ")?;
        if again != first {
            bail!("the two passphrases differ: nothing was changed");
        }
    }
    if first.is_empty() {
        bail!("an empty passphrase: nothing was changed");
    }
    Ok(Some(first))
}

/// A new passphrase, or a recovery key made here (printed once).
pub fn new_passphrase(args: &NewPassphraseArgs) -> Result<String> {
    if args.recovery_key {
        let key = format!(
            "ccsync-{}",
            crate::store::seal::base32(&hex_bytes(&crate::util::random_hex(20)))
        );
        println!("Recovery key (keep it somewhere safe; it is shown only now): {key}");
        return Ok(key);
    }
    match passphrase(&args.from, true)? {
        Some(p) => Ok(p),
        None => bail!(
            "an encrypted repository needs a passphrase: give it with --passphrase-file FILE or CCSYNC_PASSPHRASE, or use --recovery-key"
        ),
    }
}

fn hex_bytes(h: &str) -> Vec<u8> {
    (0..h.len() / 2)
        .filter_map(|i| u8::from_str_radix(&h[2 * i..2 * i + 2], 16).ok())
        .collect()
}

/// A line from the terminal without echo.
fn read_hidden(prompt: &str) -> Result<String> {
    use crossterm::event::{Event, KeyCode, KeyEventKind, KeyModifiers, read};
    let mut err = std::io::stderr();
    write!(err, "{prompt}")?;
    err.flush()?;
    crossterm::terminal::enable_raw_mode()?;
    let mut s = String::new();
    let r = loop {
        match read() {
            Ok(Event::Key(k)) if k.kind != KeyEventKind::Release => match k.code {
                KeyCode::Enter => break Ok(()),
                KeyCode::Char('c') if k.modifiers.contains(KeyModifiers::CONTROL) => {
                    break Err(anyhow::anyhow!("cancelled"));
                }
                KeyCode::Char(c) => s.push(c),
                KeyCode::Backspace => {
                    s.pop();
                }
                KeyCode::Esc => break Err(anyhow::anyhow!("cancelled")),
                _ => {}
            },
            Ok(_) => {}
            Err(e) => break Err(e.into()),
        }
    };
    crossterm::terminal::disable_raw_mode()?;
    writeln!(err)?;
    r.map(|()| s)
}

pub fn run(env: &Env, args: KeyArgs) -> Result<ExitCode> {
    let config = env.home.require_config()?;
    let store = Store::of(&env.home, &config)?;
    let me = &config.machine_id;
    match args.cmd {
        KeyCmd::Status => {
            let head = store.fetch(crate::store::git::network_timeout())?;
            let enc = members::marker_encryption(&store, head.as_ref())?;
            let mine = store.local_keys().recipient()?;
            match enc {
                None => println!(
                    "The sync repository {} is not encrypted (`ccsync encrypt` encrypts it).",
                    config.remote
                ),
                Some(e) => {
                    println!(
                        "The sync repository {} is encrypted ({}), key generation {}.",
                        config.remote, e.scheme, e.generation
                    );
                    match store.sealed() {
                        Ok(_) => println!(
                            "This machine holds the key (its code {}).",
                            keys::code_of(&mine)
                        ),
                        Err(err) => println!("{}", super::output::error_line(&err)),
                    }
                }
            }
        }
        KeyCmd::List => {
            store.fetch(crate::store::git::network_timeout())?;
            for m in members::list(&store)?.values() {
                let when = m
                    .added_at
                    .map(|t| t.format("%Y-%m-%d").to_string())
                    .unwrap_or_default();
                println!(
                    "{:<24} {}  added {} by {}",
                    m.name,
                    keys::code_of(&m.recipient),
                    when,
                    m.added_by
                );
            }
        }
        KeyCmd::Unlock(p) => {
            let Some(pass) = passphrase(&p, false)? else {
                bail!(
                    "give the passphrase with --passphrase-file FILE or CCSYNC_PASSPHRASE (never on the command line)"
                );
            };
            members::unlock(&store, me, &pass)?;
            println!(
                "This machine holds the key of {} now; run `ccsync pull`.",
                config.remote
            );
        }
        KeyCmd::Request => {
            let code = members::request(&store, me)?;
            println!(
                "Asked to join {}: on a machine that has the key run `ccsync key approve {me}` and check that it shows the code {code}; then run `ccsync pull` here.",
                config.remote
            );
        }
        KeyCmd::Requests => {
            store.fetch(crate::store::git::network_timeout())?;
            let r = members::requests(&store)?;
            if r.is_empty() {
                println!("No machine is waiting.");
            }
            for (_, q) in r {
                println!(
                    "{:<24} code {}  host {}  asked {}",
                    q.machine_id,
                    q.code(),
                    q.hostname,
                    q.requested_at.format("%Y-%m-%d %H:%M UTC")
                );
            }
        }
        KeyCmd::Approve { machine } => {
            let r = members::approve(&store, me, &machine)?;
            println!(
                "Gave the key to {} (code {}, host {}); it can sync at its next command.",
                r.machine_id,
                r.code(),
                r.hostname
            );
        }
        KeyCmd::Remove { machine } => {
            let g = members::remove(&store, me, &machine)?;
            println!(
                "Removed {machine}: what is stored from now on is encrypted to key generation {g}, which it does not have (it can still read what it read before)."
            );
        }
        KeyCmd::Rotate => {
            store.fetch(crate::store::git::network_timeout())?;
            let g = members::rotate(&store, me, &format!("{me}: rotate the key"), &[])?;
            println!("New data is encrypted to key generation {g}.");
        }
        KeyCmd::Passphrase(p) => {
            let pass = new_passphrase(&p)?;
            members::set_passphrase(&store, me, &pass)?;
            println!("The passphrase of {} is changed.", config.remote);
        }
    }
    Ok(ExitCode::SUCCESS)
}

#[derive(Debug, Args)]
pub struct EncryptArgs {
    /// Write the encrypted repository to this new branch of the remote (its history starts
    /// clean); this machine then syncs there.
    #[arg(long, conflicts_with = "remote")]
    branch: Option<String>,
    /// Write it to this new, empty repository instead; this machine then syncs there.
    #[arg(long, value_name = "URL-or-PATH")]
    remote: Option<String>,
    /// Rewrite the sync branch itself (its history keeps the plaintext).
    #[arg(long, conflicts_with_all = ["branch", "remote"])]
    in_place: bool,
    #[command(flatten)]
    pass: NewPassphraseArgs,
}

pub fn encrypt(env: &Env, args: EncryptArgs) -> Result<ExitCode> {
    let mut config = env.home.require_config()?;
    if args.branch.is_none() && args.remote.is_none() && !args.in_place {
        bail!(
            "encrypting keeps the plaintext in the git history of {} ({}): choose --branch NAME (a new branch with a clean history) or --remote URL (a new repository), then delete the old one on the host; or --in-place to encrypt the branch itself, knowing its history still holds everything in the clear",
            config.remote,
            config.branch
        );
    }
    if args.remote.is_some() && config.github_repo.is_some() {
        tracing::info!(
            "the new repository replaces the GitHub repository in this machine's configuration"
        );
    }
    let pass = new_passphrase(&args.pass)?;
    let mut store = Store::of(&env.home, &config)?;
    let plan = members::plan_conversion(&store)?;
    let n = if args.in_place {
        let n = members::convert(&store, &plan, true, &config.machine_id, &pass)?;
        drop(store);
        n
    } else if let Some(b) = &args.branch {
        store.branch = b.clone();
        let n = members::convert(&store, &plan, false, &config.machine_id, &pass)?;
        drop(store);
        n
    } else {
        // Another repository: the same local clone (it holds the blobs) pointed at it.
        let url = crate::config::setup::prepare_remote(args.remote.as_deref().unwrap_or_default())?;
        drop(store);
        let target = Store::open(&env.home, &url, &config.branch, &config.machine_id)?;
        let n = members::convert(&target, &plan, false, &config.machine_id, &pass)?;
        config.remote = url;
        config.github_repo = None;
        n
    };
    let old_branch = config.branch.clone();
    if let Some(b) = &args.branch {
        config.branch = b.clone();
    }
    env.home.save_config(&config)?;
    crate::sync::state::reset_after_encryption(&env.home, &config.remote)?;
    match (&args.branch, &args.remote) {
        (None, Some(old)) => println!(
            "Encrypted {n} files into {}, whose history holds nothing in the clear; this machine syncs there now. The old repository {old} still holds everything in the clear: delete it on the host once every machine moved.",
            config.remote
        ),
        (None, None) => println!(
            "Encrypted {n} files of {} in place. Its git history still holds them in the clear: anyone who can read the repository can read them there. To be rid of them, encrypt into a new branch (`--branch NAME`) and delete this one on the host.",
            config.remote
        ),
        (Some(b), _) => println!(
            "Encrypted {n} files of {} into the new branch {b}, whose history holds nothing in the clear; this machine syncs there now. The branch {old_branch} still holds everything in the clear: delete it on the host (`git push {} --delete {old_branch}`) once every machine moved.",
            config.remote, config.remote
        ),
    }
    if let Some(b) = &args.branch {
        println!(
            "Other machines: run `ccsync config set branch {b}`, then `ccsync key unlock` (with the passphrase) or `ccsync key request`."
        );
    }
    println!(
        "Other machines: run `ccsync key unlock` (with the passphrase) or `ccsync key request`."
    );
    Ok(ExitCode::SUCCESS)
}
