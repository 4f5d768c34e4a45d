//! `ccsync lock show | release [ID] | cleanup`.

use std::process::ExitCode;
use std::time::Duration;

use anyhow::{Result, bail};
use clap::{Args, Subcommand};

use super::output::print_json;
use super::{Env, TextFormat};
use crate::lock::{self, Observer, Released};
use crate::store::Store;
use crate::util::rfc3339;

#[derive(Debug, Args)]
pub struct LockArgs {
    #[command(subcommand)]
    command: LockCommand,
}

#[derive(Debug, Subcommand)]
enum LockCommand {
    /// Every session lock in the repository.
    Show {
        #[arg(long, value_enum, default_value_t = TextFormat::Text)]
        format: TextFormat,
    },
    /// Release a lock of this machine (another machine's needs --force); without ID, all of this
    /// machine's locks.
    Release {
        id: Option<String>,
        #[arg(long)]
        force: bool,
    },
    /// Remove expired locks: another machine's lock expires once this machine has seen it
    /// unchanged for longer than its time-to-live (clocks of other machines never count).
    Cleanup,
}

pub fn run(env: &Env, args: LockArgs) -> Result<ExitCode> {
    let config = env.home.require_config()?;
    let store = Store::of(&env.home, &config)?;
    let t = Duration::from_secs(config.pull_timeout_secs.max(30));
    match args.command {
        LockCommand::Show { format } => {
            let head = store.fetch(t)?;
            let locks = lock::list(&store, head.as_ref())?;
            // Looking is seeing: the sightings this records are what expiry is judged by.
            let mut observer = Observer::new(&env.home, &config.machine_id);
            let verdicts = observer.see_all(&locks);
            observer.save_or_warn();
            if format == TextFormat::Json {
                let v: Vec<serde_json::Value> = locks
                    .iter()
                    .zip(&verdicts)
                    .map(|(l, v)| {
                        serde_json::json!({
                            "session_id": l.session_id, "machine": l.machine_id, "hostname": l.hostname, "pid": l.pid,
                            "acquired_at": rfc3339(l.acquired_at), "expires_at": rfc3339(l.expires_at),
                            "ttl_secs": l.ttl_secs, "expired": v.expired, "mine": v.mine,
                            "first_seen_here": v.first_seen.map(rfc3339),
                            "seen_unchanged_secs": v.seen_for.num_seconds(),
                            "expires_after_unchanged_secs": v.expires_after.num_seconds(),
                        })
                    })
                    .collect();
                print_json(&v)?;
            } else if locks.is_empty() {
                println!("No session is locked.");
            } else {
                for (l, v) in locks.iter().zip(&verdicts) {
                    let state = if v.expired { "expired" } else { "live" };
                    println!(
                        "{}  {state:<7}  {}; {}",
                        l.session_id,
                        l.describe(),
                        v.describe()
                    );
                }
            }
        }
        LockCommand::Release { id: None, force } => {
            if force {
                bail!(
                    "give the session whose lock to release with --force: ccsync lock release ID --force"
                );
            }
            let done = lock::release_all(&store, &config.machine_id, t)?;
            if done.is_empty() {
                println!("This machine holds no locks.");
            } else {
                println!("Released {} lock(s): {}", done.len(), done.join(", "));
            }
        }
        LockCommand::Release {
            id: Some(id),
            force,
        } => {
            let head = store.fetch(t)?;
            let sid = lock::list(&store, head.as_ref())?
                .into_iter()
                .map(|l| l.session_id)
                .filter(|s| s.starts_with(&id))
                .collect::<Vec<_>>();
            let sid = match sid.as_slice() {
                [one] => one.clone(),
                [] => id.clone(),
                many => bail!(
                    "{id:?} matches the locks of {}: give more of the id",
                    many.join(", ")
                ),
            };
            match lock::release(&store, &config.machine_id, &sid, force, t)? {
                Released::Yes => println!("Released the lock of {sid}."),
                Released::NotLocked => println!("Session {sid} is not locked."),
                Released::HeldBy(l) => bail!(
                    "the lock of {sid} belongs to {}: add --force to release it anyway",
                    l.describe()
                ),
            }
        }
        LockCommand::Cleanup => {
            let done = lock::cleanup(&store, &config.machine_id, t)?;
            if done.is_empty() {
                println!("No expired locks.");
            } else {
                println!(
                    "Removed {} expired lock(s): {}",
                    done.len(),
                    done.join(", ")
                );
            }
        }
    }
    Ok(ExitCode::SUCCESS)
}
