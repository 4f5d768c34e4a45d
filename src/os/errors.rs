//! I/O errors that say which path they concern and, where there is one, what to do about it.
//!
//! A bare `File exists (os error 17)` or `No space left on device (os error 28)` leaves the user
//! guessing. Every file-system call of push, pull and discovery goes through [`IoAt::at`] (or
//! names the path in a context of its own), which keeps the error's kind (so `NotFound` checks
//! still work) and turns the message into
//! `cannot write /x/y: No space left on device (os error 28). The file system mounted at /x is
//! full: free some space on it, then run the command again.`

use std::fmt;
use std::io;
use std::path::{Path, PathBuf};

/// An I/O error with the path it concerns and the action that failed.
#[derive(Debug)]
pub struct PathError {
    doing: String,
    path: PathBuf,
    source: io::Error,
}

impl PathError {
    pub fn path(&self) -> &Path {
        &self.path
    }
}

impl fmt::Display for PathError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "cannot {} {}: {}",
            self.doing,
            self.path.display(),
            self.source
        )?;
        if let Some(a) = advice(self.source.kind(), &self.path) {
            write!(f, ". {a}")?;
        }
        Ok(())
    }
}

impl std::error::Error for PathError {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        Some(&self.source)
    }
}

/// Wrap `e` so that it names `path` and what was being done (`"read"`, `"write"`, `"list"`,
/// `"create"`, …). An error that already names its path is returned as it is.
pub fn path_error(e: io::Error, doing: &str, path: &Path) -> io::Error {
    if e.get_ref().is_some_and(|inner| inner.is::<PathError>()) {
        return e;
    }
    io::Error::new(
        e.kind(),
        PathError {
            doing: doing.to_string(),
            path: path.to_path_buf(),
            source: e,
        },
    )
}

/// `.at("write", path)` on an `io::Result`: the error names the path and says what to do.
pub trait IoAt<T> {
    fn at(self, doing: &str, path: &Path) -> io::Result<T>;
}

impl<T> IoAt<T> for io::Result<T> {
    fn at(self, doing: &str, path: &Path) -> io::Result<T> {
        self.map_err(|e| path_error(e, doing, path))
    }
}

/// What to do about an error of `kind` at `path`, when something can be said.
pub fn advice(kind: io::ErrorKind, path: &Path) -> Option<String> {
    use io::ErrorKind as K;
    Some(match kind {
        K::StorageFull => format!(
            "The file system {} is full: free some space on it, then run the command again \
             (files are only replaced once written in full, so nothing was damaged)",
            file_system_of(path)
        ),
        K::QuotaExceeded => format!(
            "Your disk quota on the file system {} is used up: free some space on it, then run \
             the command again",
            file_system_of(path)
        ),
        K::ReadOnlyFilesystem => format!(
            "The file system {} is read-only: make it writable, then run the command again",
            file_system_of(path)
        ),
        K::AlreadyExists => format!(
            "Something is in the way: {} already exists (a file where a folder is needed, or \
             the other way round); move it aside, then run the command again",
            path.display()
        ),
        K::NotADirectory => match path
            .ancestors()
            .skip(1)
            .find(|p| std::fs::metadata(p).is_ok_and(|m| !m.is_dir()))
        {
            Some(file) => format!(
                "{} is a file where a folder is needed: move it aside, then run the command \
                 again",
                file.display()
            ),
            None => format!(
                "A part of {} is a file where a folder is needed: move that file aside, then \
                 run the command again",
                path.display()
            ),
        },
        K::IsADirectory => format!(
            "{} is a folder where a file is needed: move it aside, then run the command again",
            path.display()
        ),
        K::PermissionDenied => format!(
            "Check that your user may read and write {} and the folders above it",
            path.display()
        ),
        _ => return None,
    })
}

/// `mounted at /home (holding /home/a/.claude)`: the mount point of the file system holding
/// `path` where it can be found (Unix), else `holding /home/a/.claude`.
pub fn file_system_of(path: &Path) -> String {
    // The nearest existing folder: the path itself may be what could not be written.
    let Some(existing) = path
        .ancestors()
        .find(|p| !p.as_os_str().is_empty() && std::fs::metadata(p).is_ok())
    else {
        return format!("holding {}", path.display());
    };
    match mount_point(existing) {
        Some(m) if m != existing => {
            format!(
                "mounted at {} (holding {})",
                m.display(),
                existing.display()
            )
        }
        Some(m) => format!("mounted at {}", m.display()),
        None => format!("holding {}", existing.display()),
    }
}

#[cfg(unix)]
fn mount_point(existing: &Path) -> Option<PathBuf> {
    use std::os::unix::fs::MetadataExt;
    let real = std::fs::canonicalize(existing).ok()?;
    let dev = std::fs::metadata(&real).ok()?.dev();
    let mut top = real.as_path();
    while let Some(parent) = top.parent() {
        match std::fs::metadata(parent) {
            Ok(m) if m.dev() == dev => top = parent,
            _ => break,
        }
    }
    Some(top.to_path_buf())
}

#[cfg(not(unix))]
fn mount_point(existing: &Path) -> Option<PathBuf> {
    // The drive or share: the first component of the real path, spelled without the `\\?\`
    // that canonicalize puts in front (`C:\`, `\\server\share\`).
    let real = std::fs::canonicalize(existing).ok()?;
    let top = real.ancestors().last()?.to_string_lossy().into_owned();
    Some(PathBuf::from(match top.strip_prefix(r"\\?\") {
        Some(rest) => match rest.strip_prefix(r"UNC\") {
            Some(share) => format!(r"\\{share}"),
            None => rest.to_string(),
        },
        None => top,
    }))
}

/// A full disk (or an exhausted quota) anywhere in an error chain, for a last-resort hint
/// where the failing call did not go through [`IoAt::at`].
pub fn disk_full_in(e: &anyhow::Error) -> bool {
    e.chain().any(|c| {
        c.downcast_ref::<io::Error>().is_some_and(|io| {
            matches!(
                io.kind(),
                io::ErrorKind::StorageFull | io::ErrorKind::QuotaExceeded
            )
        }) || c.to_string().contains("No space left on device")
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn errors_name_their_path_and_the_fix() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("x.jsonl");
        let full = io::Error::from(io::ErrorKind::StorageFull);
        let e = Err::<(), _>(full).at("write", &p).unwrap_err();
        assert_eq!(e.kind(), io::ErrorKind::StorageFull, "the kind is kept");
        let s = e.to_string();
        assert!(
            s.starts_with(&format!("cannot write {}: ", p.display())),
            "{s}"
        );
        assert!(s.contains("free some space"), "{s}");
        assert!(s.contains("mounted at"), "{s}");
        #[cfg(windows)]
        assert!(!s.contains(r"\\?\"), "the drive is named plainly: {s}");
        // Wrapping twice does not repeat the path.
        let twice = path_error(e, "copy", Path::new("/other"));
        assert_eq!(twice.to_string(), s);
        // EEXIST; ERROR_ALREADY_EXISTS on Windows.
        let exists = io::Error::from_raw_os_error(if cfg!(windows) { 183 } else { 17 });
        let s = path_error(exists, "create", &p).to_string();
        assert!(
            s.contains(&p.display().to_string()) && s.contains("move it aside"),
            "{s}"
        );
        let plain = path_error(io::Error::other("odd"), "read", &p).to_string();
        assert_eq!(plain, format!("cannot read {}: odd", p.display()));
        // ENOSPC; ERROR_DISK_FULL on Windows.
        assert!(disk_full_in(&anyhow::Error::from(
            io::Error::from_raw_os_error(if cfg!(windows) { 112 } else { 28 })
        )));
    }
}
