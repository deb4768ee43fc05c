//! OCI images built without Docker: each layer an uncompressed tar written here, the image pushed by
//! [`crate::node::Registry::push`]. The test images are one static binary each; the hotsync image is
//! a distroless-style root filesystem taken from a Debian bookworm rootfs that debootstrap made
//! (`scripts/build-rootfs.sh`): the binary's shared libraries and loader, the CA bundle, the time zones,
//! a `nonroot` user (65532), and nothing else, not even a shell.

use crate::node::NodeError;
use std::collections::BTreeSet;
use std::path::{Path, PathBuf};

/// The user the hotsync image runs as (as distroless's `nonroot`, and deploy/'s `runAsUser`).
pub const NONROOT: u64 = 65532;

/// An image: its layers, bottom first, and the config the runtime reads.
#[derive(Debug, Clone, Default)]
pub struct Image {
    pub layers: Vec<Vec<u8>>,
    pub entrypoint: Vec<String>,
    pub env: Vec<String>,
    /// `uid:gid`, or empty for root.
    pub user: String,
}

/// Builds one layer: an uncompressed tar whose entries have fixed times, so that the same inputs make
/// the same digest.
pub struct Layer {
    tar: tar::Builder<Vec<u8>>,
    dirs: BTreeSet<PathBuf>,
}

fn io(what: &str) -> impl Fn(std::io::Error) -> NodeError + '_ {
    move |e| NodeError::Command {
        what: format!("building an image layer: {what}"),
        output: e.to_string(),
    }
}

impl Default for Layer {
    fn default() -> Self {
        Self::new()
    }
}

impl Layer {
    pub fn new() -> Layer {
        let mut tar = tar::Builder::new(Vec::new());
        tar.mode(tar::HeaderMode::Deterministic);
        Layer {
            tar,
            dirs: BTreeSet::new(),
        }
    }

    fn header(kind: tar::EntryType, mode: u32, owner: u64, size: u64) -> tar::Header {
        let mut h = tar::Header::new_ustar();
        h.set_entry_type(kind);
        h.set_mode(mode);
        h.set_uid(owner);
        h.set_gid(owner);
        h.set_mtime(0);
        h.set_size(size);
        h
    }

    /// A directory (and its parents, root-owned 0755, when not added yet).
    pub fn dir(&mut self, path: &str, mode: u32, owner: u64) -> Result<&mut Self, NodeError> {
        let p = PathBuf::from(path.trim_matches('/'));
        if let Some(parent) = p.parent().filter(|p| !p.as_os_str().is_empty()) {
            if !self.dirs.contains(parent) {
                self.dir(&parent.display().to_string(), 0o755, 0)?;
            }
        }
        if self.dirs.insert(p.clone()) {
            let mut h = Self::header(tar::EntryType::Directory, mode, owner, 0);
            self.tar
                .append_data(&mut h, format!("{}/", p.display()), std::io::empty())
                .map_err(io(path))?;
        }
        Ok(self)
    }

    fn parent_of(&mut self, path: &str) -> Result<(), NodeError> {
        if let Some(parent) = Path::new(path.trim_matches('/'))
            .parent()
            .filter(|p| !p.as_os_str().is_empty())
        {
            self.dir(&parent.display().to_string(), 0o755, 0)?;
        }
        Ok(())
    }

    /// A regular file, root-owned.
    pub fn file(&mut self, path: &str, data: &[u8], mode: u32) -> Result<&mut Self, NodeError> {
        self.parent_of(path)?;
        let size = u64::try_from(data.len()).unwrap_or(u64::MAX);
        let mut h = Self::header(tar::EntryType::Regular, mode, 0, size);
        self.tar
            .append_data(&mut h, path.trim_matches('/'), data)
            .map_err(io(path))?;
        Ok(self)
    }

    /// A symbolic link at `path` to `target`.
    pub fn symlink(&mut self, path: &str, target: &str) -> Result<&mut Self, NodeError> {
        self.parent_of(path)?;
        let mut h = Self::header(tar::EntryType::Symlink, 0o777, 0, 0);
        self.tar
            .append_link(&mut h, path.trim_matches('/'), target)
            .map_err(io(path))?;
        Ok(self)
    }

    /// A file read from `from`, following symbolic links, with its mode.
    pub fn host_file(&mut self, path: &str, from: &Path) -> Result<&mut Self, NodeError> {
        use std::os::unix::fs::PermissionsExt as _;
        let data = std::fs::read(from).map_err(|source| NodeError::Io {
            path: from.to_path_buf(),
            source,
        })?;
        let mode = std::fs::metadata(from)
            .map(|m| m.permissions().mode() & 0o7777)
            .unwrap_or(0o644);
        self.file(path, &data, mode)
    }

    /// A directory tree read from `from`: its directories, files and symbolic links (kept as links).
    pub fn host_tree(&mut self, path: &str, from: &Path) -> Result<&mut Self, NodeError> {
        let io_at = |p: &Path| {
            let p = p.to_path_buf();
            move |source| NodeError::Io { path: p, source }
        };
        self.dir(path, 0o755, 0)?;
        let mut entries: Vec<_> = std::fs::read_dir(from)
            .map_err(io_at(from))?
            .collect::<Result<_, _>>()
            .map_err(io_at(from))?;
        entries.sort_by_key(std::fs::DirEntry::file_name);
        for e in entries {
            let name = format!(
                "{}/{}",
                path.trim_end_matches('/'),
                e.file_name().to_string_lossy()
            );
            let kind = e.file_type().map_err(io_at(&e.path()))?;
            if kind.is_symlink() {
                let target = std::fs::read_link(e.path()).map_err(io_at(&e.path()))?;
                self.symlink(&name, &target.display().to_string())?;
            } else if kind.is_dir() {
                self.host_tree(&name, &e.path())?;
            } else {
                self.host_file(&name, &e.path())?;
            }
        }
        Ok(self)
    }

    pub fn finish(self) -> Result<Vec<u8>, NodeError> {
        self.tar.into_inner().map_err(io("finish"))
    }
}

/// `path` inside `rootfs`, with every symbolic link on the way resolved inside `rootfs` too (an
/// absolute link target is relative to the rootfs, not to this machine).
pub fn resolve_in(rootfs: &Path, path: &str) -> Result<PathBuf, NodeError> {
    let mut current = PathBuf::from("/");
    let mut pending: Vec<String> = path
        .split('/')
        .filter(|c| !c.is_empty())
        .rev()
        .map(str::to_string)
        .collect();
    let mut hops = 0;
    while let Some(c) = pending.pop() {
        match c.as_str() {
            "." => {}
            ".." => {
                current.pop();
            }
            _ => {
                let next = current.join(&c);
                let on_disk = rootfs.join(next.strip_prefix("/").unwrap_or(&next));
                match std::fs::read_link(&on_disk) {
                    Ok(target) => {
                        hops += 1;
                        if hops > 40 {
                            return Err(NodeError::Missing(format!(
                                "{path} in {}: too many symbolic links",
                                rootfs.display()
                            )));
                        }
                        let t = target.display().to_string();
                        if t.starts_with('/') {
                            current = PathBuf::from("/");
                        }
                        pending.extend(
                            t.split('/')
                                .filter(|c| !c.is_empty())
                                .rev()
                                .map(str::to_string),
                        );
                    }
                    Err(_) => current = next,
                }
            }
        }
    }
    let on_disk = rootfs.join(current.strip_prefix("/").unwrap_or(&current));
    if on_disk.exists() {
        Ok(on_disk)
    } else {
        Err(NodeError::Missing(format!(
            "{path} in the rootfs {} (scripts/build-rootfs.sh)",
            rootfs.display()
        )))
    }
}

/// The shared objects `binary` needs, as the dynamic loader finds them on this machine (`ldd`):
/// `(name, path)`, the loader included. The image takes each from the rootfs by the same path.
fn needed_libraries(binary: &Path) -> Result<Vec<(String, String)>, NodeError> {
    let out = std::process::Command::new("ldd")
        .arg(binary)
        .output()
        .map_err(|e| NodeError::Missing(format!("ldd (libc-bin): {e}")))?;
    if !out.status.success() {
        return Err(NodeError::Command {
            what: format!("ldd {}", binary.display()),
            output: String::from_utf8_lossy(&out.stderr).into_owned(),
        });
    }
    let mut libs = Vec::new();
    for line in String::from_utf8_lossy(&out.stdout).lines() {
        let line = line.trim();
        // `libssl.so.3 => /lib/x86_64-linux-gnu/libssl.so.3 (0x...)`, or the loader's own line.
        let path = match line.split_once("=>") {
            Some((_, rest)) => rest.split_whitespace().next(),
            None => line
                .split_whitespace()
                .next()
                .filter(|p| p.starts_with('/')),
        };
        if let Some(p) = path.filter(|p| p.starts_with('/')) {
            let name = Path::new(p)
                .file_name()
                .map(|n| n.to_string_lossy().into_owned())
                .unwrap_or_default();
            libs.push((name, p.to_string()));
        } else if line.contains("not found") {
            return Err(NodeError::Missing(format!(
                "{line} (a library of {})",
                binary.display()
            )));
        }
    }
    Ok(libs)
}

/// The hotsync image: a base layer from the bookworm `rootfs` (loader and shared libraries at their
/// merged-/usr paths, `/lib` and `/lib64` as links, `/etc/ssl/certs/ca-certificates.crt`,
/// `/usr/share/zoneinfo`, `/etc/passwd` and `/etc/group` with `nonroot`, `/tmp`, `/var/cache/hotsync`
/// owned by `nonroot`) and a layer with `binary` at `/usr/local/bin/hotsync`. It runs as 65532.
pub fn hotsync_image(rootfs: &Path, binary: &Path) -> Result<Image, NodeError> {
    let mut base = Layer::new();
    base.symlink("lib", "usr/lib")?
        .symlink("lib64", "usr/lib64")?
        .symlink("bin", "usr/bin")?
        .dir("usr/bin", 0o755, 0)?
        .dir("tmp", 0o1777, 0)?
        .dir("home/nonroot", 0o700, NONROOT)?
        .dir("var/cache/hotsync", 0o755, NONROOT)?;
    let mut placed = BTreeSet::new();
    for (name, path) in needed_libraries(binary)? {
        // The loader's path is written into the binary (`/lib64/ld-linux-x86-64.so.2`); a link to
        // the file under /usr/lib, as bookworm has it.
        let in_image = format!("usr/lib/x86_64-linux-gnu/{name}");
        if placed.insert(in_image.clone()) {
            base.host_file(&in_image, &resolve_in(rootfs, &path)?)?;
        }
        if path.starts_with("/lib64/") {
            base.symlink(
                &format!("usr/lib64/{name}"),
                &format!("/lib/x86_64-linux-gnu/{name}"),
            )?;
        }
    }
    base.host_file(
        "etc/ssl/certs/ca-certificates.crt",
        &resolve_in(rootfs, "/etc/ssl/certs/ca-certificates.crt")?,
    )?
    .host_tree(
        "usr/share/zoneinfo",
        &resolve_in(rootfs, "/usr/share/zoneinfo")?,
    )?
    .host_file("etc/os-release", &resolve_in(rootfs, "/etc/os-release")?)?
    .file(
        "etc/passwd",
        format!(
            "root:x:0:0:root:/root:/sbin/nologin\nnonroot:x:{NONROOT}:{NONROOT}:nonroot:/home/nonroot:/sbin/nologin\n"
        )
        .as_bytes(),
        0o644,
    )?
    .file(
        "etc/group",
        format!("root:x:0:\nnonroot:x:{NONROOT}:\n").as_bytes(),
        0o644,
    )?;
    let mut app = Layer::new();
    app.host_file("usr/local/bin/hotsync", binary)?;
    Ok(Image {
        layers: vec![base.finish()?, app.finish()?],
        entrypoint: vec!["/usr/local/bin/hotsync".into()],
        env: vec![
            "PATH=/usr/local/bin:/usr/bin".into(),
            "SSL_CERT_FILE=/etc/ssl/certs/ca-certificates.crt".into(),
        ],
        user: format!("{NONROOT}:{NONROOT}"),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_link_in_a_rootfs_resolves_inside_it_not_on_this_machine() {
        let root = tempfile::tempdir().expect("tempdir");
        let r = root.path();
        std::fs::create_dir_all(r.join("usr/lib/x86_64-linux-gnu")).expect("dirs");
        std::fs::create_dir_all(r.join("usr/lib64")).expect("dirs");
        std::fs::write(r.join("usr/lib/x86_64-linux-gnu/ld.so"), b"loader").expect("file");
        std::os::unix::fs::symlink("usr/lib", r.join("lib")).expect("link");
        std::os::unix::fs::symlink("usr/lib64", r.join("lib64")).expect("link");
        std::os::unix::fs::symlink("/lib/x86_64-linux-gnu/ld.so", r.join("usr/lib64/ld.so"))
            .expect("link");
        assert_eq!(
            resolve_in(r, "/lib64/ld.so").expect("resolves"),
            r.join("usr/lib/x86_64-linux-gnu/ld.so")
        );
        assert!(resolve_in(r, "/lib64/missing.so").is_err());
    }

    #[test]
    fn a_layer_lists_parents_before_children_once() {
        let mut l = Layer::new();
        l.file("a/b/c", b"x", 0o644)
            .and_then(|l| l.file("a/b/d", b"y", 0o600))
            .and_then(|l| l.dir("a", 0o755, 0))
            .expect("entries");
        let bytes = l.finish().expect("tar");
        let mut a = tar::Archive::new(bytes.as_slice());
        let names: Vec<String> = a
            .entries()
            .expect("entries")
            .map(|e| {
                e.expect("entry")
                    .path()
                    .expect("path")
                    .display()
                    .to_string()
            })
            .collect();
        assert_eq!(names, ["a/", "a/b/", "a/b/c", "a/b/d"]);
    }
}
