//! One home for Claude Code's naming rules: where the client puts a working directory's
//! sessions and its memory. Every placement of a file into the Claude Code dir goes through
//! here.
//!
//! What the client 2.1.197 does (from its bundled code):
//!
//! - It names the project folder after its *original cwd*, which is the **realpath** of the
//!   process's working directory: `originalCwd = realpathSync(process.cwd())` (falling back to
//!   the path as given when that fails), and transcripts go to
//!   `join(projects, $E(originalCwd))` ([`super::encode`] has `$E`).
//! - Memory lives per **git root of the main worktree**: `gm()` is
//!   `join(configDir, "projects", $E(findCanonicalGitRoot(projectRoot) ?? projectRoot),
//!   "memory")`, unless `autoMemoryDirectory` names another directory
//!   ([`MergedSettings::auto_memory_directory`]). The git root is found without running git:
//!   the nearest ancestor holding a `.git` directory or file, and for a linked worktree (a
//!   `.git` *file* saying `gitdir: …`) the main repository, through that gitdir's `commondir`.
//!
//! ccsync also places sessions of working directories that do not exist on this machine (yet):
//! for those the realpath of the longest existing ancestor is taken and the rest appended; a
//! path that is not absolute here (another OS's path) is encoded as given.

use std::path::{Component, Path, PathBuf};

use anyhow::{Result, bail};

use super::ClaudeDir;
use super::settings::MergedSettings;

/// The pure encoding of a path string (no file-system access); see [`super::encode`].
pub use super::encode::encode_project_dir;

/// Undo the `\\?\` form `std::fs::canonicalize` gives on Windows: `\\?\C:\x` → `C:\x`,
/// `\\?\UNC\server\share\x` → `\\server\share\x`. Other strings (including other verbatim forms
/// such as `\\?\Volume{…}\`, which have no ordinary spelling) come back unchanged.
pub fn strip_verbatim(p: &str) -> String {
    if let Some(rest) = p.strip_prefix(r"\\?\") {
        if let Some(unc) = rest.strip_prefix(r"UNC\") {
            return format!(r"\\{unc}");
        }
        let b = rest.as_bytes();
        if b.len() >= 2 && b[0].is_ascii_alphabetic() && b[1] == b':' {
            return rest.to_string();
        }
    }
    p.to_string()
}

/// `std::fs::canonicalize`, spelled as the client spells a realpath.
fn realpath(p: &Path) -> std::io::Result<PathBuf> {
    let real = std::fs::canonicalize(p)?;
    Ok(match real.to_str() {
        Some(s) => PathBuf::from(strip_verbatim(s)),
        None => real,
    })
}

/// The working directory as the client would see it: the realpath of `cwd` (symbolic links
/// resolved) when it exists; when only an ancestor exists, that ancestor's realpath with the
/// rest appended; else `cwd` as given (also for paths that are not absolute on this OS).
pub fn client_path(cwd: &str) -> String {
    resolve(Path::new(cwd))
        .map(|p| p.to_string_lossy().into_owned())
        .unwrap_or_else(|| cwd.to_string())
}

/// The realpath of `p`, or of its longest existing ancestor with the rest appended; `None` when
/// `p` is not absolute or nothing can be resolved.
fn resolve(p: &Path) -> Option<PathBuf> {
    if !p.is_absolute() {
        return None;
    }
    let mut rest = Vec::new();
    let mut cur = p;
    loop {
        match realpath(cur) {
            Ok(mut real) => {
                for name in rest.iter().rev() {
                    real.push(name);
                }
                return Some(real);
            }
            Err(e)
                if matches!(
                    e.kind(),
                    std::io::ErrorKind::NotFound | std::io::ErrorKind::NotADirectory
                ) =>
            {
                rest.push(cur.file_name()?.to_os_string());
                cur = cur.parent()?;
            }
            Err(_) => return None,
        }
    }
}

/// The project folder name the client uses for `cwd` on this machine: `ENC(realpath(cwd))`.
pub fn project_folder_name(cwd: &str) -> String {
    encode_project_dir(&client_path(cwd))
}

/// The folder the client writes `cwd`'s sessions to: `<claude>/projects/ENC(realpath(cwd))`.
///
/// This is the exact name; the client's `--resume` lookup also accepts folders with the same
/// first 200 characters of a long name ([`super::encode::folder_matches`]).
pub fn project_folder(claude: &ClaudeDir, cwd: &str) -> PathBuf {
    claude.projects().join(project_folder_name(cwd))
}

/// The transcript of session `id` of `cwd`: `<project folder>/<id>.jsonl`. Refuses ids that are
/// not a single plain file name (they come from files ccsync did not write).
pub fn session_file(claude: &ClaudeDir, cwd: &str, id: &str) -> Result<PathBuf> {
    let plain = !id.is_empty()
        && id != "."
        && id != ".."
        && !id.contains(['/', '\\', ':', '\0'])
        && !id.chars().any(char::is_control);
    if !plain {
        bail!("session id {id:?} is not a plain file name");
    }
    Ok(project_folder(claude, cwd).join(format!("{id}.jsonl")))
}

/// Node's `path.resolve(base, p)` without touching the disk: `p` if absolute, else `base/p`,
/// with `.` and `..` applied lexically.
fn resolve_lexically(base: &Path, p: &str) -> PathBuf {
    let joined = base.join(p);
    let mut out: Vec<Component> = Vec::new();
    for c in joined.components() {
        match c {
            Component::CurDir => {}
            Component::ParentDir => {
                if matches!(out.last(), Some(Component::Normal(_))) {
                    out.pop();
                }
            }
            _ => out.push(c),
        }
    }
    out.iter().collect()
}

/// The nearest directory at or above `start` holding a `.git` directory or file (the client's
/// `findGitRoot`: `statSync(join(dir, ".git"))` is a directory or a file).
fn nearest_git_root(start: &Path) -> Option<PathBuf> {
    start
        .ancestors()
        .find(|d| std::fs::metadata(d.join(".git")).is_ok_and(|m| m.is_dir() || m.is_file()))
        .map(Path::to_path_buf)
}

/// For a linked worktree, the main repository's root; else `root` itself (the client's
/// `findCanonicalGitRoot`, step by step; any failure keeps `root`).
fn canonical_git_root(root: &Path) -> PathBuf {
    main_worktree_root(root).unwrap_or_else(|| root.to_path_buf())
}

fn main_worktree_root(root: &Path) -> Option<PathBuf> {
    // A `.git` directory cannot be read as a file: that is a main worktree.
    let text = std::fs::read_to_string(root.join(".git")).ok()?;
    let gitdir = text.trim().strip_prefix("gitdir:")?.trim();
    // `<main>/.git/worktrees/<name>`.
    let r = resolve_lexically(root, gitdir);
    let commondir = std::fs::read_to_string(r.join("commondir")).ok()?;
    let s = resolve_lexically(&r, commondir.trim());
    // The gitdir must sit in the common dir's `worktrees/`…
    if resolve_lexically(r.parent()?, ".") != s.join("worktrees") {
        return None;
    }
    // … and point back at this worktree's `.git` file.
    let back = std::fs::read_to_string(r.join("gitdir")).ok()?;
    if realpath(Path::new(back.trim())).ok()? != realpath(root).ok()?.join(".git") {
        return None;
    }
    if s.file_name().is_some_and(|n| n == ".git") {
        s.parent().map(Path::to_path_buf)
    } else {
        // A bare repository: the common dir itself.
        Some(s)
    }
}

/// The git root the client keeps memory under for a working directory: the nearest ancestor of
/// its realpath with a `.git`, and for a linked worktree the **main** worktree's root. No `git`
/// process is run. `None` when `dir` is not in a git repository — and when `dir` does not exist
/// here: the client only ever runs in an existing directory, and guessing from the ancestors of
/// a missing one would file its memory under an unrelated outer repository (a dotfiles repo in
/// the home dir, say).
pub fn git_root(dir: &Path) -> Option<PathBuf> {
    let real = realpath(dir).ok()?;
    nearest_git_root(&real).map(|root| canonical_git_root(&root))
}

/// The memory directory the client uses for `cwd`: `autoMemoryDirectory` when the settings set
/// a usable one, else `<claude>/projects/ENC(git root of realpath(cwd), or that realpath)/memory`.
///
/// `settings` should be loaded for the same cwd (`MergedSettings::load(claude, Some(cwd))`).
pub fn memory_dir(claude: &ClaudeDir, cwd: &str, settings: &MergedSettings) -> PathBuf {
    if let Some(dir) = settings.auto_memory_directory() {
        return dir;
    }
    let real = client_path(cwd);
    let base = git_root(Path::new(&real))
        .map(|p| p.to_string_lossy().into_owned())
        .unwrap_or(real);
    claude
        .projects()
        .join(encode_project_dir(&base))
        .join("memory")
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A temp dir by its realpath (on macOS `/var` is a link to `/private/var`).
    fn tmp() -> (tempfile::TempDir, PathBuf) {
        let t = tempfile::tempdir().unwrap();
        let real = realpath(t.path()).unwrap();
        (t, real)
    }

    fn s(p: &Path) -> String {
        p.to_string_lossy().into_owned()
    }

    fn no_settings(claude: &ClaudeDir) -> MergedSettings {
        let none = claude.root.join("no-managed-dir");
        MergedSettings::load_from(claude, None, &none, None)
    }

    #[test]
    fn verbatim_prefixes_are_stripped() {
        let cases = [
            (r"\\?\C:\Users\a\p", r"C:\Users\a\p"),
            (r"\\?\d:\x", r"d:\x"),
            (r"\\?\UNC\server\share\x", r"\\server\share\x"),
            (r"\\?\Volume{abc}\x", r"\\?\Volume{abc}\x"),
            (r"C:\already", r"C:\already"),
            (r"\\server\share", r"\\server\share"),
            ("/home/a", "/home/a"),
            (r"\\?\", r"\\?\"),
        ];
        for (input, want) in cases {
            assert_eq!(strip_verbatim(input), want, "{input}");
        }
        // The stripped forms encode as the client's paths do.
        assert_eq!(
            encode_project_dir(&strip_verbatim(r"\\?\C:\Users\a\p")),
            "C--Users-a-p"
        );
        assert_eq!(
            encode_project_dir(&strip_verbatim(r"\\?\UNC\server\share\x")),
            "--server-share-x"
        );
    }

    #[test]
    fn existing_paths_use_their_realpath() {
        let (_t, root) = tmp();
        let real = root.join("real");
        std::fs::create_dir(&real).unwrap();
        assert_eq!(client_path(&s(&real)), s(&real));
        assert_eq!(
            project_folder_name(&s(&real)),
            encode_project_dir(&s(&real))
        );
        // `.` and `..` are resolved the way the kernel resolves them.
        let dotted = real.join(".").join("x").join("..");
        std::fs::create_dir(real.join("x")).unwrap();
        assert_eq!(client_path(&s(&dotted)), s(&real));
    }

    #[cfg(unix)]
    #[test]
    fn symbolic_links_are_resolved() {
        let (_t, root) = tmp();
        let real = root.join("real");
        std::fs::create_dir(&real).unwrap();
        let link = root.join("link");
        std::os::unix::fs::symlink(&real, &link).unwrap();
        assert_eq!(client_path(&s(&link)), s(&real));
        assert_eq!(
            project_folder_name(&s(&link)),
            encode_project_dir(&s(&real))
        );
        // Only an ancestor exists: it is resolved, the rest appended.
        let deep = link.join("not").join("yet");
        assert_eq!(client_path(&s(&deep)), s(&real.join("not").join("yet")));
        // The memory of a linked checkout goes to the real repository's folder.
        fake_repo(&real);
        assert_eq!(git_root(&link), Some(real.clone()));
        // A dangling link: its parent is resolved and the link's name kept.
        let dangling = root.join("dangling");
        std::os::unix::fs::symlink(root.join("nowhere"), &dangling).unwrap();
        assert_eq!(client_path(&s(&dangling)), s(&dangling));
    }

    #[test]
    fn missing_and_foreign_paths_are_kept() {
        let (_t, root) = tmp();
        let missing = root.join("gone").join("x");
        assert_eq!(client_path(&s(&missing)), s(&missing));
        for foreign in ["relative/dir", "", "C:\\Users\\a\\p", "~/x"] {
            if crate::os::native_is_windows() && foreign.starts_with("C:") {
                continue;
            }
            assert_eq!(client_path(foreign), foreign);
        }
        // On Windows the path is this machine's own and its existing part is resolved on disk,
        // in the disk's spelling (Wine's profile folder is `C:\users`).
        if !crate::os::native_is_windows() {
            assert_eq!(project_folder_name("C:\\Users\\a\\p"), "C--Users-a-p");
        }
        // A file in the middle of the path.
        let file = root.join("f");
        std::fs::write(&file, "").unwrap();
        assert_eq!(client_path(&s(&file.join("x"))), s(&file.join("x")));
    }

    #[test]
    fn folders_and_session_files() {
        let (_t, root) = tmp();
        let claude = ClaudeDir::new(root.join(".claude"));
        let cwd = root.join("p");
        std::fs::create_dir(&cwd).unwrap();
        let folder = project_folder(&claude, &s(&cwd));
        assert_eq!(folder, claude.projects().join(encode_project_dir(&s(&cwd))));
        assert_eq!(
            session_file(&claude, &s(&cwd), "0b6a-11").unwrap(),
            folder.join("0b6a-11.jsonl")
        );
        for bad in ["", ".", "..", "../x", "a/b", "a\\b", "c:x", "a\0b", "a\nb"] {
            assert!(session_file(&claude, &s(&cwd), bad).is_err(), "{bad:?}");
        }
    }

    /// `git init` by hand: `<dir>/.git/` with a HEAD.
    fn fake_repo(dir: &Path) {
        std::fs::create_dir_all(dir.join(".git/worktrees")).unwrap();
        std::fs::write(dir.join(".git/HEAD"), "ref: refs/heads/main\n").unwrap();
    }

    /// `git worktree add <wt>` by hand, as git lays it out.
    fn fake_worktree(main: &Path, wt: &Path, name: &str) {
        let admin = main.join(".git/worktrees").join(name);
        std::fs::create_dir_all(&admin).unwrap();
        std::fs::create_dir_all(wt).unwrap();
        std::fs::write(admin.join("commondir"), "../..\n").unwrap();
        std::fs::write(admin.join("gitdir"), format!("{}\n", s(&wt.join(".git")))).unwrap();
        std::fs::write(wt.join(".git"), format!("gitdir: {}\n", s(&admin))).unwrap();
    }

    #[test]
    fn git_root_of_a_plain_repository() {
        let (_t, root) = tmp();
        let repo = root.join("repo");
        fake_repo(&repo);
        let sub = repo.join("src").join("deep");
        std::fs::create_dir_all(&sub).unwrap();
        assert_eq!(git_root(&repo), Some(repo.clone()));
        assert_eq!(git_root(&sub), Some(repo.clone()));
        // Not in a repository (the temp dir is assumed not to be inside one).
        let outside = root.join("outside");
        std::fs::create_dir(&outside).unwrap();
        if nearest_git_root(&root).is_none() {
            assert_eq!(git_root(&outside), None);
        }
        // A missing directory has no git root, even inside a repository.
        assert_eq!(git_root(&repo.join("missing")), None);
    }

    #[test]
    fn git_root_of_a_linked_worktree_is_the_main_one() {
        let (_t, root) = tmp();
        let main = root.join("main");
        fake_repo(&main);
        let wt = root.join("wt-feature");
        fake_worktree(&main, &wt, "wt-feature");
        std::fs::create_dir_all(wt.join("src")).unwrap();
        assert_eq!(git_root(&wt), Some(main.clone()));
        assert_eq!(git_root(&wt.join("src")), Some(main.clone()));
        // A relative gitdir works too.
        let wt2 = root.join("wt2");
        fake_worktree(&main, &wt2, "wt2");
        std::fs::write(wt2.join(".git"), "gitdir: ../main/.git/worktrees/wt2").unwrap();
        assert_eq!(git_root(&wt2), Some(main.clone()));
    }

    #[test]
    fn git_root_checks_the_worktree_links() {
        let (_t, root) = tmp();
        let main = root.join("main");
        fake_repo(&main);
        // The admin dir points back at another worktree: not trusted, the worktree is the root.
        let wt = root.join("wt");
        fake_worktree(&main, &wt, "wt");
        std::fs::write(
            main.join(".git/worktrees/wt/gitdir"),
            s(&root.join("elsewhere/.git")),
        )
        .unwrap();
        assert_eq!(git_root(&wt), Some(wt.clone()));
        // No commondir (a submodule's `.git` file looks like this): the submodule is the root.
        let sub = main.join("sub");
        std::fs::create_dir_all(main.join(".git/modules/sub")).unwrap();
        std::fs::create_dir_all(&sub).unwrap();
        std::fs::write(sub.join(".git"), "gitdir: ../.git/modules/sub\n").unwrap();
        assert_eq!(git_root(&sub), Some(sub.clone()));
        // Not a gitdir line at all.
        let odd = root.join("odd");
        std::fs::create_dir_all(&odd).unwrap();
        std::fs::write(odd.join(".git"), "hello").unwrap();
        assert_eq!(git_root(&odd), Some(odd.clone()));
    }

    #[test]
    fn git_root_of_a_bare_repositorys_worktree() {
        let (_t, root) = tmp();
        let bare = root.join("repo.git");
        std::fs::create_dir_all(bare.join("worktrees/w")).unwrap();
        let wt = root.join("w");
        std::fs::create_dir_all(&wt).unwrap();
        let admin = bare.join("worktrees/w");
        std::fs::write(admin.join("commondir"), "../..\n").unwrap();
        std::fs::write(admin.join("gitdir"), s(&wt.join(".git"))).unwrap();
        std::fs::write(wt.join(".git"), format!("gitdir: {}", s(&admin))).unwrap();
        assert_eq!(git_root(&wt), Some(bare));
    }

    #[test]
    fn memory_is_per_main_worktree_root() {
        let (_t, root) = tmp();
        let claude = ClaudeDir::new(root.join(".claude"));
        let settings = no_settings(&claude);
        let main = root.join("main");
        fake_repo(&main);
        let wt = root.join("wt");
        fake_worktree(&main, &wt, "wt");
        let sub = wt.join("sub");
        std::fs::create_dir_all(&sub).unwrap();
        let want = claude
            .projects()
            .join(encode_project_dir(&s(&main)))
            .join("memory");
        assert_eq!(memory_dir(&claude, &s(&main), &settings), want);
        assert_eq!(memory_dir(&claude, &s(&wt), &settings), want);
        assert_eq!(memory_dir(&claude, &s(&sub), &settings), want);
        // Outside a repository (or for a missing dir): the cwd's own folder.
        let missing = root.join("missing");
        assert_eq!(
            memory_dir(&claude, &s(&missing), &settings),
            claude
                .projects()
                .join(encode_project_dir(&s(&missing)))
                .join("memory")
        );
    }

    #[test]
    fn memory_follows_auto_memory_directory() {
        let (_t, root) = tmp();
        let claude = ClaudeDir::new(root.join(".claude"));
        std::fs::create_dir_all(&claude.root).unwrap();
        let target = root.join("mem");
        let json = serde_json::json!({ "autoMemoryDirectory": s(&target) });
        std::fs::write(claude.settings(), json.to_string()).unwrap();
        let settings = no_settings(&claude);
        assert_eq!(memory_dir(&claude, "/any/where", &settings), target);
    }
}
