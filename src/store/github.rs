//! Finding or creating the private GitHub repository for `init --github`, through the GitHub
//! CLI (`gh`), which also gives git its credentials.

use std::process::{Command, Output, Stdio};

use anyhow::{Result, anyhow, bail};

use super::git;

/// The `gh` executable: `$CCSYNC_GH` (tests) or `gh`.
fn gh_exe() -> std::ffi::OsString {
    std::env::var_os("CCSYNC_GH")
        .filter(|s| !s.is_empty())
        .unwrap_or_else(|| "gh".into())
}

/// Run `gh`, bounded like a network step of git (`network_timeout_secs` without a word from it):
/// on expiry `gh` and everything it started are killed and the error says so in one sentence,
/// with the fix.
fn gh(args: &[&str]) -> Result<Output> {
    let mut cmd = Command::new(gh_exe());
    cmd.args(args)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    #[cfg(unix)]
    {
        use std::os::unix::process::CommandExt as _;
        // Its own process group, so that a timeout ends it with whatever it started.
        cmd.process_group(0);
    }
    let child = cmd.spawn().map_err(|e| {
        if e.kind() == std::io::ErrorKind::NotFound {
            anyhow!(
                "the GitHub CLI `gh` is not installed: install it (https://cli.github.com), run `gh auth login`, \
                 or use `ccsync init --remote URL` instead"
            )
        } else {
            anyhow!("cannot run gh: {e}")
        }
    })?;
    crate::os::track_group(child.id(), true);
    // gh says nothing until it has its answer: stopped after `network_timeout_secs` of silence.
    let bound = git::net_bound(git::network_timeout());
    git::wait_with_timeout(child, bound).map_err(|e| {
        match e.chain().find_map(|c| c.downcast_ref::<git::TimedOut>()) {
            Some(t) => anyhow!(
                "`gh {}` did not answer within {} s (it was stopped): check the network and `gh auth status`, then try again, or raise network_timeout_secs",
                shown(args),
                t.after.as_secs_f64().round().max(1.0) as u64
            ),
            None => e.context(format!("gh {} failed", shown(args))),
        }
    })
}

/// A `gh` command line for messages: its first words (the description text is left out).
fn shown(args: &[&str]) -> String {
    args.iter()
        .take_while(|a| !a.starts_with("--"))
        .copied()
        .collect::<Vec<_>>()
        .join(" ")
}

fn stderr_line(o: &Output) -> String {
    String::from_utf8_lossy(&o.stderr)
        .lines()
        .map(str::trim)
        .find(|l| !l.is_empty())
        .unwrap_or("")
        .to_string()
}

/// The login of the user `gh` is authenticated as.
pub fn logged_in_user() -> Result<String> {
    let o = gh(&["api", "user", "--jq", ".login"])?;
    let login = String::from_utf8_lossy(&o.stdout).trim().to_string();
    if !o.status.success() || login.is_empty() {
        bail!(
            "gh is not logged in to GitHub ({}): run `gh auth login`",
            stderr_line(&o)
        );
    }
    Ok(login)
}

/// The outcome of [`find_or_create`].
#[derive(Debug)]
pub struct GithubRepo {
    pub full_name: String,
    pub url: String,
    pub created: bool,
}

/// Split `[OWNER/]REPO`, checking both parts.
pub fn parse_spec(spec: &str) -> Result<(Option<String>, String)> {
    let ok = |s: &str| {
        !s.is_empty()
            && s.len() <= 100
            && s.bytes()
                .all(|b| b.is_ascii_alphanumeric() || b"._-".contains(&b))
    };
    let (owner, name) = match spec.split_once('/') {
        Some((o, n)) => (Some(o.to_string()), n.to_string()),
        None => (None, spec.to_string()),
    };
    if !ok(&name) || owner.as_deref().is_some_and(|o| !ok(o)) {
        bail!(
            "{spec:?} is not a GitHub repository name: use OWNER/REPO or REPO (letters, digits, . _ -)"
        );
    }
    Ok((owner, name))
}

/// Find `OWNER/REPO` (owner defaults to the logged-in user) or create it as a private
/// repository. An existing public repository is refused: transcripts hold private data.
pub fn find_or_create(spec: &str) -> Result<GithubRepo> {
    let (owner, name) = parse_spec(spec)?;
    let login = logged_in_user()?;
    let owner = owner.unwrap_or(login);
    let full = format!("{owner}/{name}");
    let view = gh(&["repo", "view", &full, "--json", "name,visibility,url"])?;
    if view.status.success() {
        let v: serde_json::Value = serde_json::from_slice(&view.stdout)
            .map_err(|e| anyhow!("unexpected answer from `gh repo view {full}`: {e}"))?;
        let visibility = v
            .get("visibility")
            .and_then(|x| x.as_str())
            .unwrap_or("")
            .to_ascii_uppercase();
        if visibility == "PUBLIC" {
            bail!(
                "the GitHub repository {full} is public and transcripts contain private data: make it private \
                 (`gh repo edit {full} --visibility private --accept-visibility-change-consequences`) or choose another name"
            );
        }
        let url = v
            .get("url")
            .and_then(|x| x.as_str())
            .map(|u| format!("{u}.git"))
            .unwrap_or_else(|| format!("https://github.com/{full}.git"));
        return Ok(GithubRepo {
            full_name: full,
            url,
            created: false,
        });
    }
    let err = stderr_line(&view);
    if !(err.contains("Could not resolve")
        || err.contains("Not Found")
        || err.contains("not found"))
    {
        bail!("cannot look up the GitHub repository {full}: {err}");
    }
    let create = gh(&[
        "repo",
        "create",
        &full,
        "--private",
        "--description",
        "Claude Code sessions synced by ccsync",
    ])?;
    if !create.status.success() {
        bail!(
            "cannot create the private GitHub repository {full}: {}",
            stderr_line(&create)
        );
    }
    Ok(GithubRepo {
        full_name: full.clone(),
        url: format!("https://github.com/{full}.git"),
        created: true,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn spec_parsing() {
        assert_eq!(
            parse_spec("claude-sessions").unwrap(),
            (None, "claude-sessions".to_string())
        );
        assert_eq!(
            parse_spec("alice/s.x").unwrap(),
            (Some("alice".into()), "s.x".into())
        );
        for bad in ["", "a/b/c", "a b", "/x", "x/"] {
            assert!(parse_spec(bad).is_err(), "{bad}");
        }
    }
}
