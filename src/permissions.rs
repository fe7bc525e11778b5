//! Owner-only files and directories: the data directory, the store file, the key directory
//! and the secrets in it.
//!
//! What sessiond creates it creates owner-only (directories 0700, files 0600), whatever the
//! umask, because the store holds every session and the key directory the signing key and the
//! pepper. What the operator provides (an existing directory, a key file) is never changed:
//! it may be a read-only mount such as a Kubernetes Secret, whose default mode is 0644, so a
//! loose mode is warned about, naming the path and its mode, rather than refused. This module
//! only creates and inspects; it never reads a secret.

use std::fs::{DirBuilder, OpenOptions, Permissions};
use std::io;
use std::os::unix::fs::{DirBuilderExt, OpenOptionsExt, PermissionsExt};
use std::path::Path;

/// Permission bits that give group or others any access.
const SHARED: u32 = 0o077;

/// Makes sure `dir` exists as a directory. Missing components are created 0700; an existing
/// directory is left as it is, with a warning when group or others may enter it. Fails when
/// the path cannot be created or is not a directory.
pub fn ensure_private_dir(dir: &Path, what: &'static str) -> io::Result<()> {
    match std::fs::metadata(dir) {
        Ok(meta) if meta.is_dir() => {
            warn_if_shared(dir, what, meta.permissions().mode());
            Ok(())
        }
        Ok(_) => Err(io::Error::new(
            io::ErrorKind::AlreadyExists,
            "exists and is not a directory",
        )),
        Err(e) if e.kind() == io::ErrorKind::NotFound => {
            DirBuilder::new().recursive(true).mode(0o700).create(dir)
        }
        Err(e) => Err(e),
    }
}

/// Makes sure `path` exists as a file that only its owner may read or write: creates it empty
/// with mode 0600, or narrows an existing file of ours to 0600 (it is sessiond's own file, so
/// nothing else can rely on a looser mode). Never truncates. When the mode cannot be narrowed
/// (another owner), the file is used as it is, with a warning.
pub fn ensure_private_file(path: &Path, what: &'static str) -> io::Result<()> {
    let file = OpenOptions::new()
        .read(true)
        .write(true)
        .create(true)
        .truncate(false)
        .mode(0o600)
        .open(path)?;
    let mode = file.metadata()?.permissions().mode();
    if mode & SHARED != 0 {
        match file.set_permissions(Permissions::from_mode(0o600)) {
            Ok(()) => tracing::warn!(
                path = %path.display(),
                was = %format_args!("{:04o}", mode & 0o7777),
                what,
                "file was readable by other users; narrowed to 0600"
            ),
            Err(error) => {
                tracing::warn!(%error, path = %path.display(), "cannot narrow the file mode");
                warn_if_shared(path, what, mode);
            }
        }
    }
    Ok(())
}

/// Warns when the file or directory at `path` (a secret the operator provided) gives group or
/// others any access. Never fails: a path that cannot be inspected is reported by whoever
/// reads it next.
pub fn warn_if_readable_by_others(path: &Path, what: &'static str) {
    if let Ok(meta) = std::fs::metadata(path) {
        warn_if_shared(path, what, meta.permissions().mode());
    }
}

/// The permission bits of `path` (following symbolic links) when they give group or others
/// any access; `None` for an owner-only path or one that cannot be inspected.
pub fn loose_mode(path: &Path) -> Option<u32> {
    let mode = std::fs::metadata(path).ok()?.permissions().mode();
    is_shared(mode).then_some(mode & 0o7777)
}

fn is_shared(mode: u32) -> bool {
    mode & SHARED != 0
}

fn warn_if_shared(path: &Path, what: &'static str, mode: u32) {
    if is_shared(mode) {
        tracing::warn!(
            path = %path.display(),
            mode = %format_args!("{:04o}", mode & 0o7777),
            what,
            "accessible by other users; make it owner-only (chmod go-rwx)"
        );
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn mode(path: &Path) -> u32 {
        std::fs::metadata(path)
            .expect("metadata")
            .permissions()
            .mode()
            & 0o7777
    }

    #[test]
    fn created_directories_are_owner_only_at_every_level() {
        let root = tempfile::tempdir().expect("tempdir");
        let dir = root.path().join("a/b");
        ensure_private_dir(&dir, "test directory").expect("create");
        assert_eq!(mode(&root.path().join("a")), 0o700);
        assert_eq!(mode(&dir), 0o700);
    }

    #[test]
    fn an_existing_directory_is_left_as_it_is() {
        let root = tempfile::tempdir().expect("tempdir");
        std::fs::set_permissions(root.path(), Permissions::from_mode(0o755)).expect("chmod");
        ensure_private_dir(root.path(), "test directory").expect("exists");
        assert_eq!(mode(root.path()), 0o755);
    }

    #[test]
    fn a_file_in_place_of_the_directory_is_an_error() {
        let root = tempfile::tempdir().expect("tempdir");
        let file = root.path().join("f");
        std::fs::write(&file, b"x").expect("write");
        assert!(ensure_private_dir(&file, "test directory").is_err());
    }

    #[test]
    fn private_files_are_created_0600_and_loose_ones_narrowed_but_kept() {
        let root = tempfile::tempdir().expect("tempdir");
        let new = root.path().join("new");
        ensure_private_file(&new, "test file").expect("create");
        assert_eq!(mode(&new), 0o600);

        let loose = root.path().join("loose");
        std::fs::write(&loose, b"contents").expect("write");
        std::fs::set_permissions(&loose, Permissions::from_mode(0o666)).expect("chmod");
        ensure_private_file(&loose, "test file").expect("narrow");
        assert_eq!(mode(&loose), 0o600);
        assert_eq!(std::fs::read(&loose).expect("read"), b"contents");
    }

    #[test]
    fn loose_modes_are_those_with_any_group_or_other_bit() {
        let root = tempfile::tempdir().expect("tempdir");
        let file = root.path().join("f");
        std::fs::write(&file, b"x").expect("write");
        for (bits, loose) in [
            (0o600, None),
            (0o400, None),
            (0o640, Some(0o640)),
            (0o604, Some(0o604)),
            (0o644, Some(0o644)),
        ] {
            std::fs::set_permissions(&file, Permissions::from_mode(bits)).expect("chmod");
            assert_eq!(loose_mode(&file), loose, "{bits:o}");
        }
        assert_eq!(loose_mode(&root.path().join("missing")), None);
    }
}
