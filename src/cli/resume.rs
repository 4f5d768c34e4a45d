//! `ccsync resume`, `start` and `update`: run Claude Code on a session from any machine.

use std::collections::BTreeMap;
use std::io::{BufRead, Write};
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::time::Duration;

use anyhow::{Context as _, Result, anyhow, bail};
use chrono::{DateTime, Utc};
use clap::Args;

use super::Env;
use super::output::{print_json, table_width};
use super::picker::{self, Row};
use super::sync_cmd::config_or_first_run;
use crate::catalog;
use crate::config::Config;
use crate::launch::{self, Launch};
use crate::lock::{self, Acquired, Holder, Lock, Observer};
use crate::store::Store;
use crate::sync::{self, Engine, PullOptions, PushOptions};
use crate::util::{human_size, relative_age, rfc3339, short_id, tilde};

#[derive(Debug, Args)]
pub struct ResumeArgs {
    /// Session id, or a unique prefix of one.
    id: Option<String>,
    /// The most recently active session.
    #[arg(long, conflicts_with = "id")]
    latest: bool,
    /// Only sessions last edited on this machine id.
    #[arg(long, value_name = "MACHINE")]
    from: Option<String>,
    /// Also sessions outside the sync directories.
    #[arg(long)]
    all: bool,
    /// Run Claude Code in this directory (the session moves to its project folder).
    #[arg(long, value_name = "DIR")]
    cwd: Option<PathBuf>,
    /// Take the lock even when another machine holds it.
    #[arg(long)]
    take_over: bool,
}

#[derive(Debug, Args)]
pub struct StartArgs {
    /// Directory to start Claude Code in (default: the current one).
    #[arg(long, value_name = "DIR")]
    cwd: Option<PathBuf>,
}

/// A session either side knows.
#[derive(Debug, Clone)]
pub struct Candidate {
    pub id: String,
    /// The working directory on this machine (when its placeholders map).
    pub cwd: Option<String>,
    /// The portable cwd, for display when it does not map.
    pub portable_cwd: Option<String>,
    pub title: Option<String>,
    pub last_activity: Option<DateTime<Utc>>,
    pub machine: String,
    pub lock: Option<Lock>,
    /// Why Claude Code's own picker leaves the session out (`-p`, `sidechain`, …), if it does.
    pub hidden: Option<String>,
}

/// Local sessions and stored ones, merged by id, newest first. Remote metadata comes from the
/// last fetch (no network here).
pub fn candidates(env: &Env, config: &Config, all: bool) -> Result<Vec<Candidate>> {
    let mapper = config.mapper().map_err(|e| anyhow!("{e}"))?;
    let cat = catalog::load(
        &env.claude,
        Some(&env.home.state_dir().join("catalog.json")),
    )?;
    let mut by_id: BTreeMap<String, Candidate> = BTreeMap::new();
    for e in &cat.entries {
        by_id.insert(
            e.session.id.clone(),
            Candidate {
                id: e.session.id.clone(),
                cwd: e.meta.cwd.clone(),
                portable_cwd: e.meta.cwd.as_deref().map(|c| mapper.portable_path(c)),
                title: e.meta.title().map(str::to_string),
                last_activity: e.meta.last_activity,
                machine: config.machine_id.clone(),
                lock: None,
                hidden: e.meta.picker_hidden_reason().map(str::to_string),
            },
        );
    }
    if let Ok(store) = Store::of_waiting(&env.home, config, Duration::from_secs(5))
        && let Ok(head) = store.known_head()
    {
        let remote = sync::remote::sessions_at(
            &store,
            head.as_ref(),
            Some(&env.home.state_dir().join("remote-meta.json")),
        )?;
        for r in remote {
            let m = &r.meta;
            let local_cwd = mapper.local_path(&m.cwd).ok();
            let c = by_id
                .entry(m.session_id.clone())
                .or_insert_with(|| Candidate {
                    id: m.session_id.clone(),
                    cwd: local_cwd.clone(),
                    portable_cwd: Some(m.cwd.clone()),
                    title: m.title.clone(),
                    last_activity: m.last_activity,
                    machine: m.last_machine.clone(),
                    lock: None,
                    hidden: m.picker_hidden.clone(),
                });
            if !m.last_machine.is_empty() && m.last_activity >= c.last_activity {
                c.machine = m.last_machine.clone();
            }
            c.last_activity = c.last_activity.max(m.last_activity);
            if m.custom_title || c.title.is_none() {
                c.title = m.title.clone().or(c.title.take());
            }
            c.lock = r.lock.clone();
            if c.hidden.is_none() {
                c.hidden = m.picker_hidden.clone();
            }
        }
    }
    let mut out: Vec<Candidate> = by_id
        .into_values()
        .filter(|c| all || c.cwd.as_deref().is_some_and(|cwd| config.in_sync_dirs(cwd)))
        .collect();
    out.sort_by(|a, b| {
        b.last_activity
            .cmp(&a.last_activity)
            .then_with(|| a.id.cmp(&b.id))
    });
    Ok(out)
}

/// The one candidate whose id is `id` or starts with it.
pub fn resolve<'c>(cands: &'c [Candidate], id: &str) -> Result<&'c Candidate> {
    if let Some(c) = cands.iter().find(|c| c.id == id) {
        return Ok(c);
    }
    let hits: Vec<&Candidate> = cands.iter().filter(|c| c.id.starts_with(id)).collect();
    match hits.as_slice() {
        [] => bail!(
            "no session {id} here or in the repository (`ccsync list --remote` shows what the repository has; --all includes sessions outside the sync directories)"
        ),
        [one] => Ok(one),
        many => {
            let list: Vec<String> = many
                .iter()
                .take(10)
                .map(|c| format!("{} ({})", c.id, c.title.as_deref().unwrap_or("no title")))
                .collect();
            bail!(
                "{id:?} matches {} sessions: {}; give more of the id",
                many.len(),
                list.join("; ")
            )
        }
    }
}

fn rows(cands: &[Candidate], home: Option<&str>) -> Vec<Row> {
    let now = Utc::now();
    cands
        .iter()
        .map(|c| Row {
            id: c.id.clone(),
            lock: c.lock.as_ref().map(|l| l.machine_id.clone()),
            machine: c.machine.clone(),
            project: c
                .cwd
                .as_deref()
                .map(|p| tilde(p, home))
                .or_else(|| c.portable_cwd.clone())
                .unwrap_or_else(|| "?".into()),
            age: relative_age(c.last_activity, now),
            title: c.title.clone().unwrap_or_else(|| "(no prompt)".into()),
            hidden: c.hidden.clone(),
        })
        .collect()
}

/// Ask a yes/no question on the terminal (end of input: no).
fn confirm(question: &str) -> Result<bool> {
    let mut err = std::io::stderr();
    write!(err, "{question} [y/N] ")?;
    err.flush()?;
    let mut line = String::new();
    if std::io::stdin().lock().read_line(&mut line)? == 0 {
        return Ok(false);
    }
    Ok(matches!(
        line.trim().to_ascii_lowercase().as_str(),
        "y" | "yes"
    ))
}

fn quick_timeout(config: &Config) -> Duration {
    Duration::from_secs(config.pull_timeout_secs.max(1))
}

/// Finish what crashed runs of ccsync left (push, release), saying so.
fn recover(engine: &Engine, config: &Config, release_running: bool) {
    for r in launch::recover(
        engine,
        Duration::from_secs(config.pull_timeout_secs.max(30)),
        release_running,
    ) {
        let sid = r.session_id.as_deref().unwrap_or("(new session)");
        if r.claude_running && !release_running {
            eprintln!(
                "Claude Code is still running session {sid} from an earlier ccsync; its lock is kept (ccsync update releases it)."
            );
        } else if let Some(e) = r
            .outcome
            .push_error
            .as_ref()
            .or(r.outcome.release_error.as_ref())
        {
            eprintln!("warning: could not finish the earlier run of session {sid}: {e}");
        } else {
            eprintln!(
                "Finished an earlier run that ccsync could not: pushed session {sid} and released its lock."
            );
        }
    }
}

pub fn resume(env: &Env, args: ResumeArgs) -> Result<ExitCode> {
    let config = config_or_first_run(env)?;
    let engine = Engine::new(&env.claude, &env.home, &config)?;
    let claude = launch::claude_executable()?;
    // Until Claude Code starts, resume waits for another ccsync process that holds the local
    // clone (a session-end hook still pushing, the daemon) at most pull_timeout_secs in all.
    let quick = quick_timeout(&config);
    crate::store::limit_clone_waits(Some(quick));

    // Quick pull: bounded; a slow or unreachable remote, or a clone another process keeps,
    // leaves what is local.
    let mut online = true;
    let mut busy: Option<String> = None;
    // In all, however much the remote has to send (network_timeout_secs only bounds silence).
    let pulled = crate::store::git::within(quick, || {
        sync::pull(
            &engine,
            &PullOptions {
                timeout: Some(quick),
                all: args.all,
                ..PullOptions::default()
            },
        )
    });
    if let Err(e) = pulled {
        online = false;
        match crate::store::clone_busy(&e) {
            // Said once the session is known to be here (else the error says it).
            Some(b) => busy = Some(b.holder.clone()),
            None => eprintln!(
                "warning: could not pull ({}); resuming from what is on this machine",
                super::output::error_line(&e)
            ),
        }
    }
    if busy.is_none() {
        recover(&engine, &config, false);
    }
    let mut cands = candidates(env, &config, args.all)?;
    if let Some(m) = &args.from {
        cands.retain(|c| &c.machine == m);
    }
    let home = config.placeholders.get("HOME").cloned();
    let chosen: Candidate = if let Some(id) = &args.id {
        match (resolve(&cands, id), &busy) {
            (Ok(c), _) => c.clone(),
            (Err(_), Some(holder)) if !cands.iter().any(|c| c.id.starts_with(id.as_str())) => {
                bail!(
                    "no session {id} on this machine, and the repository could not be searched because {holder} is using the local clone: run `ccsync resume {id}` again when it is done"
                )
            }
            (Err(e), _) => return Err(e),
        }
    } else if args.latest {
        cands
            .first()
            .cloned()
            .ok_or_else(|| anyhow!("there are no sessions to resume"))?
    } else if crate::os::stdin_is_tty() && crate::os::stdout_is_tty() {
        if cands.is_empty() {
            bail!("there are no sessions to resume (ccsync start begins a new one)");
        }
        match picker::pick(&rows(&cands, home.as_deref()))? {
            Some(i) => cands[i].clone(),
            None => return Ok(ExitCode::SUCCESS),
        }
    } else {
        print_table(&cands, home.as_deref());
        bail!(
            "give a session to resume: ccsync resume ID (a unique prefix is enough), or --latest"
        );
    };
    let sid = chosen.id.clone();

    // Fetch a session that is only in the repository (or was cleaned up here).
    let mut local = catalog::load(
        &env.claude,
        Some(&env.home.state_dir().join("catalog.json")),
    )?
    .entries
    .into_iter()
    .find(|e| e.session.id == sid);
    let only_there = |holder: &str| {
        anyhow!(
            "session {sid} is only in the repository, and {holder} is using the local clone: run `ccsync resume {sid}` again when it is done"
        )
    };
    if local.is_none() {
        if let Some(holder) = &busy {
            return Err(only_there(holder));
        }
        let opts = PullOptions {
            only: Some([sid.clone()].into_iter().collect()),
            no_fetch: !online,
            timeout: Some(Duration::from_secs(120)),
            all: true,
            ..PullOptions::default()
        };
        let r = sync::pull(&engine, &opts).map_err(|e| match crate::store::clone_busy(&e) {
            Some(b) => only_there(&b.holder),
            None => e.context("cannot fetch the session from the repository"),
        })?;
        if let Some(s) = r.skipped.first() {
            bail!("cannot bring session {sid} here: {}", s.reason);
        }
        local = catalog::load(&env.claude, None)?
            .entries
            .into_iter()
            .find(|e| e.session.id == sid);
    }
    let Some(local) = local else {
        bail!(
            "session {sid} could not be brought to this machine (its project may map to no path here: ccsync doctor)"
        );
    };
    if let Some(holder) = &busy {
        eprintln!(
            "warning: {holder} kept the local clone for longer than the {} s resume waits (pull_timeout_secs); resuming from what is on this machine, without pulling and without the session's lock",
            quick.as_secs()
        );
    }
    if let Some(live) = crate::claude::live::live_sessions(&env.claude)
        .into_iter()
        .find(|l| l.session_id == sid)
    {
        bail!(
            "session {sid} is already open in Claude Code on this machine (pid {})",
            live.pid
        );
    }

    // Where Claude Code runs.
    let session_cwd = local
        .meta
        .effective_cwd()
        .map(str::to_string)
        .ok_or_else(|| anyhow!("session {sid} does not say its working directory"))?;
    let cwd = match &args.cwd {
        Some(d) => {
            let d =
                std::path::absolute(d).with_context(|| format!("cannot use {}", d.display()))?;
            if !d.is_dir() {
                bail!("{} is not a directory", d.display());
            }
            move_session(env, &local.session, &d)?;
            d
        }
        None => {
            let d = PathBuf::from(&session_cwd);
            if !d.is_dir() {
                let ask = crate::os::stdin_is_tty()
                    && confirm(&format!(
                        "The session's directory {} does not exist on this machine. Create it?",
                        d.display()
                    ))?;
                if !ask {
                    bail!(
                        "the session's directory {} does not exist on this machine: create it (mkdir -p {}) or run Claude Code elsewhere with --cwd DIR",
                        d.display(),
                        d.display()
                    );
                }
                std::fs::create_dir_all(&d)
                    .with_context(|| format!("cannot create {}", d.display()))?;
            }
            d
        }
    };

    // The lock.
    let mut locked = false;
    if online {
        let holder = Holder::new(&config.machine_id, config.lock_ttl_secs);
        let lock_result = Store::of_waiting(&env.home, &config, quick)
            .and_then(|s| lock::acquire(&s, &holder, &sid, args.take_over, quick));
        match lock_result {
            Ok(Acquired::Yes(_)) => locked = true,
            Ok(Acquired::TookOver { previous, .. }) => {
                eprintln!(
                    "Took over the lock of session {sid} from {}.",
                    previous.describe()
                );
                locked = true;
            }
            Ok(Acquired::HeldBy(l)) => {
                // How long this machine has seen the lock unchanged (its own clock): the holder's
                // times say nothing here, its clock may be off.
                let seen = Observer::new(&env.home, &config.machine_id)
                    .judge(&l)
                    .describe();
                let take = crate::os::stdin_is_tty()
                    && confirm(&format!(
                        "Session {sid} is being worked on by {} ({seen}). Take it over?",
                        l.describe()
                    ))?;
                if !take {
                    bail!(
                        "session {sid} is locked by {} ({seen}); pass --take-over to take it anyway",
                        l.describe()
                    );
                }
                let s = Store::of_waiting(&env.home, &config, quick)?;
                lock::acquire(&s, &holder, &sid, true, quick)?;
                locked = true;
            }
            Err(e) => match crate::store::clone_busy(&e) {
                Some(b) => eprintln!(
                    "warning: {} kept the local clone, so the session's lock was not taken; resuming without it",
                    b.holder
                ),
                None => eprintln!(
                    "warning: could not take the lock ({}); resuming without it",
                    super::output::error_line(&e)
                ),
            },
        }
    }

    // After Claude Code exits, the push and the release wait for the clone as long as they
    // take (Launch::timeout).
    crate::store::limit_clone_waits(None);
    let out = launch::run(
        &engine,
        &Launch {
            session_id: Some(sid.clone()),
            cwd,
            claude,
            locked,
            timeout: Duration::from_secs(120),
        },
    )?;
    report_outcome(&out, locked);
    Ok(ExitCode::SUCCESS)
}

fn report_outcome(out: &launch::Outcome, locked: bool) {
    if let Some(who) = &out.lock_lost {
        eprintln!(
            "warning: the lock was taken over by {who} while Claude Code ran; both machines' turns are kept"
        );
    }
    match (&out.pushed, &out.push_error) {
        (Some(r), _) if !r.up_to_date => {
            eprintln!("Pushed {} (+{} lines).", out.sessions.join(", "), r.lines)
        }
        (Some(_), _) => {}
        (None, Some(e)) => eprintln!(
            "warning: could not push ({e}); run `ccsync update` when the remote is reachable"
        ),
        (None, None) => {}
    }
    if locked {
        match &out.release_error {
            None if out.released => eprintln!("Released the lock."),
            Some(e) => eprintln!(
                "warning: could not release the lock ({e}); run `ccsync update` when the remote is reachable"
            ),
            _ => {}
        }
    }
}

/// Move a session into the project folder of `dir`, so that `claude --resume` started there
/// finds it — the way Claude Code's `/cd` does: a `relocated` line says where the session now
/// lives, so every machine (and the next pull here) keeps it there.
fn move_session(env: &Env, s: &crate::claude::discover::LocalSession, dir: &Path) -> Result<()> {
    let dir = crate::claude::naming::client_path(&dir.to_string_lossy());
    let target = crate::claude::naming::session_file(&env.claude, &dir, &s.id)?;
    if crate::sync::place::in_place(s, &target) {
        return Ok(());
    }
    crate::sync::append_lines(
        &s.transcript,
        &[crate::sync::relocate::relocated_line(&s.id, &dir)],
    )?;
    let remote = env.config()?.map(|c| c.remote).unwrap_or_default();
    let mut index = crate::sync::state::Index::load(&env.home, &remote);
    crate::sync::place::move_session(&env.claude, s, &target, &mut index)?;
    index.save(&env.home)
}

pub fn start(env: &Env, args: StartArgs) -> Result<ExitCode> {
    let config = config_or_first_run(env)?;
    let engine = Engine::new(&env.claude, &env.home, &config)?;
    let claude = launch::claude_executable()?;
    crate::store::limit_clone_waits(Some(quick_timeout(&config)));
    recover(&engine, &config, false);
    crate::store::limit_clone_waits(None);
    let cwd = match args.cwd {
        Some(d) => {
            std::path::absolute(&d).with_context(|| format!("cannot use {}", d.display()))?
        }
        None => std::env::current_dir().context("cannot read the current directory")?,
    };
    if !cwd.is_dir() {
        bail!("{} is not a directory", cwd.display());
    }
    let out = launch::run(
        &engine,
        &Launch {
            session_id: None,
            cwd,
            claude,
            locked: false,
            timeout: Duration::from_secs(120),
        },
    )?;
    report_outcome(&out, false);
    Ok(ExitCode::SUCCESS)
}

pub fn update(env: &Env) -> Result<ExitCode> {
    let config = config_or_first_run(env)?;
    let engine = Engine::new(&env.claude, &env.home, &config)?;
    recover(&engine, &config, true);
    let pushed = sync::push(&engine, &PushOptions::default())?;
    if pushed.up_to_date {
        println!("Push: everything is up to date.");
    } else {
        println!(
            "Pushed {} session(s) (+{} lines, {}).",
            pushed.sessions_new + pushed.sessions_updated,
            pushed.lines,
            human_size(pushed.bytes)
        );
    }
    let store = Store::of(&env.home, &config)?;
    let released = lock::release_all(&store, &config.machine_id, Duration::from_secs(120))?;
    if released.is_empty() {
        println!("This machine holds no locks.");
    } else {
        println!(
            "Released {} lock(s): {}",
            released.len(),
            released.join(", ")
        );
    }
    Ok(if pushed.blocked.is_empty() {
        ExitCode::SUCCESS
    } else {
        ExitCode::from(1)
    })
}

fn print_table(cands: &[Candidate], home: Option<&str>) {
    let rows: Vec<[String; 5]> = rows(cands, home)
        .into_iter()
        .map(|r| [short_id(&r.id), r.project, r.age, r.machine, r.title])
        .collect();
    print!(
        "{}",
        super::list::render_table(
            &["ID", "PROJECT", "LAST", "MACHINE", "TITLE"],
            &rows,
            table_width()
        )
    );
}

/// `list --remote`: the repository's sessions from their metadata.
pub fn list_remote(
    env: &Env,
    config: &Config,
    all: bool,
    from: Option<&str>,
    json: bool,
) -> Result<ExitCode> {
    let engine = Engine::new(&env.claude, &env.home, config)?;
    let store = Store::open_waiting(
        &env.home,
        &config.remote,
        &config.branch,
        &config.machine_id,
        quick_timeout(config),
    )?;
    let quick = quick_timeout(config);
    let head = match crate::store::git::within(quick, || store.fetch(quick)) {
        Ok(h) => h,
        Err(e) => {
            eprintln!("warning: {e}; listing what was last fetched");
            store.known_head()?
        }
    };
    let sessions = sync::remote::sessions_at(
        &store,
        head.as_ref(),
        Some(&env.home.state_dir().join("remote-meta.json")),
    )?;
    let home = config.placeholders.get("HOME").cloned();
    let rows: Vec<(sync::remote::RemoteSession, Option<String>)> = sessions
        .into_iter()
        .filter(|s| from.is_none_or(|m| s.meta.last_machine == m))
        .map(|s| {
            let local = engine.mapper.local_path(&s.meta.cwd).ok();
            (s, local)
        })
        .filter(|(_, local)| all || local.as_deref().is_some_and(|c| config.in_sync_dirs(c)))
        .collect();
    if json {
        let v: Vec<serde_json::Value> = rows
            .iter()
            .map(|(s, local)| {
                serde_json::json!({
                    "session_id": s.meta.session_id,
                    "project_path": local,
                    "portable_project": s.meta.cwd,
                    "title": s.meta.title,
                    "first_activity": s.meta.first_activity.map(rfc3339),
                    "last_activity": s.meta.last_activity.map(rfc3339),
                    "size_bytes": s.meta.size,
                    "lines": s.meta.lines,
                    "subagents": s.meta.subagents.len(),
                    "machine": s.meta.last_machine,
                    "locked_by": s.lock.as_ref().map(|l| l.machine_id.clone()),
                    "hidden_in_claude": s.meta.picker_hidden.is_some(),
                    "hidden_reason": s.meta.picker_hidden,
                    "entrypoint": s.meta.entrypoint,
                    "is_sidechain": s.meta.is_sidechain,
                    "relocated_cwd": s.meta.relocated_cwd,
                })
            })
            .collect();
        print_json(&v)?;
        return Ok(ExitCode::SUCCESS);
    }
    let now = Utc::now();
    let table: Vec<[String; 5]> = rows
        .iter()
        .map(|(s, local)| {
            let lock = s
                .lock
                .as_ref()
                .map(|l| format!(" [locked by {}]", l.machine_id))
                .unwrap_or_default();
            [
                short_id(&s.meta.session_id),
                local
                    .as_deref()
                    .map(|p| tilde(p, home.as_deref()))
                    .unwrap_or_else(|| s.meta.cwd.clone()),
                relative_age(s.meta.last_activity, now),
                s.meta.last_machine.clone(),
                format!(
                    "{}{}{lock}",
                    s.meta
                        .picker_hidden
                        .as_deref()
                        .map(|why| format!("[{why}] "))
                        .unwrap_or_default(),
                    s.meta.title.clone().unwrap_or_else(|| "(no prompt)".into())
                ),
            ]
        })
        .collect();
    if table.is_empty() {
        eprintln!(
            "The repository has no sessions for this machine's sync directories (--all shows every one)."
        );
    } else {
        print!(
            "{}",
            super::list::render_table(
                &["ID", "PROJECT", "LAST", "MACHINE", "TITLE"],
                &table,
                table_width()
            )
        );
    }
    Ok(ExitCode::SUCCESS)
}
