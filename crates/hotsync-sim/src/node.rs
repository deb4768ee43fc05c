//! The real node's side of the test bed: what `scripts/start-node.sh` reports, the images it serves from
//! its local registry, and the wait for the node to be Ready.
//!
//! Images are built without Docker: one static program (`testbed/agent.c`, compiled with gcc, cached by
//! its hash) or the pause binary of the Kubernetes tree, as the only layer of an OCI image (uncompressed
//! tar), pushed with the registry's HTTP API. Every image is pushed under each repository path that a
//! registry host of the examples and tests maps to (containerd's mirrors send `registry.example.com/x`,
//! `registry.cn-hangzhou.aliyuncs.com/acs/x` and `docker.io/library/x` to the same local registry), so
//! that no pull ever leaves the machine.

use sha2::{Digest as _, Sha256};
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

/// Why the real node could not start or be used.
#[derive(Debug, thiserror::Error)]
pub enum NodeError {
    /// Something the node needs is missing on this machine.
    #[error("the real node cannot start: {0}")]
    Missing(String),
    /// A file could not be read or written.
    #[error("could not use {}", path.display())]
    Io {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    /// A command failed.
    #[error("{what} failed: {output}")]
    Command { what: String, output: String },
    /// The registry refused or did not answer.
    #[error("the local registry {registry}: {what}")]
    Registry { registry: String, what: String },
    /// The node did not become Ready in time.
    #[error("the node {node} was not Ready within {seconds} s: {seen}")]
    NotReady {
        node: String,
        seconds: u64,
        seen: String,
    },
}

/// What `start-node.sh` wrote in `node/env`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NodeEnv {
    pub node_dir: PathBuf,
    pub node_name: String,
    /// The node's address: the bridge's, on a subnet of the test bed's own.
    pub node_ip: String,
    pub bridge: String,
    pub pod_subnet: String,
    /// `NODE_IP:port` (the bridge's address): images pushed there can be pulled by the node, and pods
    /// can reach it.
    pub registry: String,
    /// The registry hosts containerd resolves to [`NodeEnv::registry`] (docker.io for short names,
    /// `registry.example.com`, `registry.cn-hangzhou.aliyuncs.com`): no pull leaves the machine.
    pub registry_hosts: Vec<String>,
    pub containerd_sock: PathBuf,
}

impl NodeEnv {
    /// Each mirrored registry host with the local registry's base URL, as `hotsync --registry-mirror`
    /// takes them (`HOST=URL`), so that hotsync asks the registry the node pulls from.
    pub fn registry_mirrors(&self) -> Vec<(String, String)> {
        self.registry_hosts
            .iter()
            .map(|h| (h.clone(), format!("http://{}", self.registry)))
            .collect()
    }
}

/// Reads a shell-sourceable `export K=V` file.
pub(crate) fn read_exports(path: &Path) -> Result<BTreeMap<String, String>, NodeError> {
    let text = std::fs::read_to_string(path).map_err(|source| NodeError::Io {
        path: path.to_path_buf(),
        source,
    })?;
    Ok(text
        .lines()
        .filter_map(|l| l.trim().strip_prefix("export "))
        .filter_map(|l| l.split_once('='))
        .map(|(k, v)| (k.to_string(), unquote(v)))
        .collect())
}

/// A value as bash's `printf %q` or plain quotes wrote it: quotes trimmed, backslash escapes undone
/// (`docker.io\ registry.example.com` is two words).
fn unquote(v: &str) -> String {
    let v = v.trim_matches(['\'', '"']);
    let mut out = String::with_capacity(v.len());
    let mut chars = v.chars();
    while let Some(c) = chars.next() {
        match c {
            '\\' => out.extend(chars.next()),
            c => out.push(c),
        }
    }
    out
}

impl NodeEnv {
    pub(crate) fn read(path: &Path) -> Result<NodeEnv, NodeError> {
        let vars = read_exports(path)?;
        let get = |k: &str| {
            vars.get(k)
                .cloned()
                .ok_or_else(|| NodeError::Missing(format!("{} does not set {k}", path.display())))
        };
        Ok(NodeEnv {
            node_dir: PathBuf::from(get("NODE_DIR")?),
            node_name: get("NODE_NAME")?,
            node_ip: get("NODE_IP")?,
            bridge: get("BRIDGE")?,
            pod_subnet: get("POD_SUBNET")?,
            registry: get("REGISTRY")?,
            registry_hosts: get("REGISTRY_HOSTS")?
                .split_whitespace()
                .map(str::to_string)
                .collect(),
            containerd_sock: PathBuf::from(get("CONTAINERD_SOCK")?),
        })
    }
}

/// One image of the catalogue.
struct CatalogueImage {
    /// Repository names, each pushed under every prefix of [`REPO_PREFIXES`].
    names: &'static [&'static str],
    tag: &'static str,
    /// The agent's arguments (`None`: the pause image).
    args: Option<&'static [&'static str]>,
    /// Another tag of the same manifest (one digest, two tags).
    also: &'static [&'static str],
}

/// Where each registry host's images land in the one local registry: `registry.example.com/x` is `x`,
/// `registry.cn-hangzhou.aliyuncs.com/acs/x` is `acs/x`, `docker.io/library/x` (short names) is `library/x`.
pub const REPO_PREFIXES: &[&str] = &["", "acs/", "library/"];

/// The sandbox image containerd is configured with.
pub const SANDBOX_IMAGE: &str = "docker.io/hotsync/pause:3.2";

const CATALOGUE: &[CatalogueImage] = &[
    CatalogueImage {
        names: &["minecraft-demo"],
        tag: "1.12.2",
        args: Some(&["engine", "7777"]),
        also: &[],
    },
    CatalogueImage {
        names: &["sidecar"],
        tag: "v0.1",
        args: Some(&["sidecar", "v0.1"]),
        also: &["v0.1-same"],
    },
    CatalogueImage {
        names: &["sidecar"],
        tag: "v0.2",
        args: Some(&["sidecar", "v0.2"]),
        also: &["v0.2-same"],
    },
    CatalogueImage {
        names: &["sidecar"],
        tag: "v0.3",
        args: Some(&["sidecar", "v0.3"]),
        also: &[],
    },
    CatalogueImage {
        names: &["sidecar"],
        tag: "v1",
        args: Some(&["sidecar", "v1"]),
        also: &[],
    },
    CatalogueImage {
        names: &["sidecar"],
        tag: "v2",
        args: Some(&["sidecar", "v2"]),
        also: &["v2-same"],
    },
    CatalogueImage {
        names: &["sidecar"],
        tag: "crash",
        args: Some(&["crash"]),
        also: &[],
    },
    CatalogueImage {
        names: &["sidecar"],
        tag: "flaky",
        args: Some(&["flaky", "6"]),
        also: &[],
    },
    CatalogueImage {
        names: &["sidecar"],
        tag: "unready",
        args: Some(&["unready", "30", "8080"]),
        also: &[],
    },
    CatalogueImage {
        names: &["sidecar"],
        tag: "slow-ready",
        args: Some(&["slow-ready", "4", "8080"]),
        also: &["slow-ready-b"],
    },
    CatalogueImage {
        names: &["games/arena"],
        tag: "2.3.0",
        args: Some(&["engine", "7777"]),
        also: &[],
    },
    CatalogueImage {
        names: &["games/arena-agent"],
        tag: "1.0.0",
        args: Some(&["sidecar", "1.0.0"]),
        also: &["1.1.0"],
    },
    CatalogueImage {
        names: &["games/lobby"],
        tag: "5.1",
        args: Some(&["engine", "7777"]),
        also: &[],
    },
    CatalogueImage {
        names: &["games/metrics-agent"],
        tag: "0.9",
        args: Some(&["sidecar", "0.9"]),
        also: &["1.0"],
    },
];

/// The digests of what was pushed, by `repository:tag` as pushed (without a registry host).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct PushedImages {
    pub digests: BTreeMap<String, String>,
}

/// The agent binary for the images, built static from `testbed/agent.c` once per source (cached).
fn agent_binary(cache: &Path) -> Result<PathBuf, NodeError> {
    const SOURCE: &str = include_str!("../testbed/agent.c");
    let hash = hex::encode(&Sha256::digest(SOURCE.as_bytes())[..8]);
    let dir = cache.join("testbed");
    let bin = dir.join(format!("agent-{hash}"));
    if bin.is_file() {
        return Ok(bin);
    }
    std::fs::create_dir_all(&dir).map_err(|source| NodeError::Io {
        path: dir.clone(),
        source,
    })?;
    let src = dir.join(format!("agent-{hash}.c"));
    std::fs::write(&src, SOURCE).map_err(|source| NodeError::Io {
        path: src.clone(),
        source,
    })?;
    let tmp = dir.join(format!("agent-{hash}.tmp"));
    let out = std::process::Command::new("gcc")
        .args(["-static", "-O2", "-Wall", "-o"])
        .arg(&tmp)
        .arg(&src)
        .output()
        .map_err(|e| NodeError::Missing(format!("gcc (to build the test images): {e}")))?;
    if !out.status.success() {
        return Err(NodeError::Command {
            what: "gcc -static testbed/agent.c".into(),
            output: String::from_utf8_lossy(&out.stderr).into_owned(),
        });
    }
    std::fs::rename(&tmp, &bin).map_err(|source| NodeError::Io {
        path: bin.clone(),
        source,
    })?;
    Ok(bin)
}

/// An uncompressed tar of one executable file at the root.
fn layer(name: &str, data: &[u8]) -> Result<Vec<u8>, NodeError> {
    let mut l = crate::oci::Layer::new();
    l.file(name, data, 0o755)?;
    l.finish()
}

fn digest(data: &[u8]) -> String {
    format!("sha256:{}", hex::encode(Sha256::digest(data)))
}

/// A registry client for the test bed's registry: monolithic blob uploads and manifest puts.
pub struct Registry {
    addr: String,
}

impl Registry {
    pub fn new(addr: &str) -> Registry {
        Registry {
            addr: addr.to_string(),
        }
    }

    fn err(&self, what: impl Into<String>) -> NodeError {
        NodeError::Registry {
            registry: self.addr.clone(),
            what: what.into(),
        }
    }

    async fn request(
        &self,
        method: &str,
        path: &str,
        content_type: Option<&str>,
        body: Vec<u8>,
    ) -> Result<(u16, hyper::HeaderMap), NodeError> {
        use http_body_util::BodyExt as _;
        let stream = tokio::net::TcpStream::connect(&self.addr)
            .await
            .map_err(|e| self.err(format!("connect: {e}")))?;
        let (mut sender, conn) =
            hyper::client::conn::http1::handshake(hyper_util::rt::TokioIo::new(stream))
                .await
                .map_err(|e| self.err(format!("handshake: {e}")))?;
        let driver = tokio::spawn(conn);
        let mut req = hyper::Request::builder()
            .method(method)
            .uri(path)
            .header(hyper::header::HOST, &self.addr);
        if let Some(ct) = content_type {
            req = req.header(hyper::header::CONTENT_TYPE, ct);
        }
        let req = req
            .body(http_body_util::Full::new(hyper::body::Bytes::from(body)))
            .map_err(|e| self.err(format!("request: {e}")))?;
        let res = sender
            .send_request(req)
            .await
            .map_err(|e| self.err(format!("{method} {path}: {e}")))?;
        let status = res.status().as_u16();
        let headers = res.headers().clone();
        let _ = res.into_body().collect().await;
        drop(sender);
        let _ = driver.await;
        Ok((status, headers))
    }

    async fn put_blob(&self, repo: &str, data: &[u8]) -> Result<String, NodeError> {
        let d = digest(data);
        let (status, _) = self
            .request("HEAD", &format!("/v2/{repo}/blobs/{d}"), None, Vec::new())
            .await?;
        if status == 200 {
            return Ok(d);
        }
        let (status, headers) = self
            .request(
                "POST",
                &format!("/v2/{repo}/blobs/uploads/"),
                None,
                Vec::new(),
            )
            .await?;
        let location = headers
            .get(hyper::header::LOCATION)
            .and_then(|v| v.to_str().ok())
            .filter(|_| status == 202)
            .ok_or_else(|| self.err(format!("upload to {repo} not started (HTTP {status})")))?;
        let path = location
            .strip_prefix(&format!("http://{}", self.addr))
            .unwrap_or(location);
        let sep = if path.contains('?') { '&' } else { '?' };
        let (status, _) = self
            .request(
                "PUT",
                &format!("{path}{sep}digest={d}"),
                Some("application/octet-stream"),
                data.to_vec(),
            )
            .await?;
        if status != 201 {
            return Err(self.err(format!("blob {d} to {repo}: HTTP {status}")));
        }
        Ok(d)
    }

    /// Pushes a one-layer image under `repo:tags`; returns the manifest's digest.
    pub async fn push_image(
        &self,
        repo: &str,
        tags: &[&str],
        file: (&str, &[u8]),
        entrypoint: Vec<String>,
    ) -> Result<String, NodeError> {
        let image = crate::oci::Image {
            layers: vec![layer(file.0, file.1)?],
            entrypoint,
            env: vec!["PATH=/".into()],
            user: String::new(),
        };
        self.push(repo, tags, &image).await
    }

    /// Pushes `image` under `repo:tags`; returns the manifest's digest.
    pub async fn push(
        &self,
        repo: &str,
        tags: &[&str],
        image: &crate::oci::Image,
    ) -> Result<String, NodeError> {
        let mut layers = Vec::new();
        for l in &image.layers {
            layers.push((self.put_blob(repo, l).await?, l.len()));
        }
        let mut config = serde_json::json!({
            "Entrypoint": image.entrypoint,
            "Env": image.env,
        });
        if !image.user.is_empty() {
            config["User"] = serde_json::json!(image.user);
        }
        // Uncompressed layers: each diff ID is the layer's digest.
        let config = serde_json::json!({
            "architecture": "amd64",
            "os": "linux",
            "config": config,
            "rootfs": {"type": "layers", "diff_ids": layers.iter().map(|(d, _)| d).collect::<Vec<_>>()},
        })
        .to_string()
        .into_bytes();
        let config_digest = self.put_blob(repo, &config).await?;
        let manifest = serde_json::json!({
            "schemaVersion": 2,
            "mediaType": "application/vnd.oci.image.manifest.v1+json",
            "config": {"mediaType": "application/vnd.oci.image.config.v1+json", "digest": config_digest, "size": config.len()},
            "layers": layers.iter().map(|(d, size)| serde_json::json!({
                "mediaType": "application/vnd.oci.image.layer.v1.tar", "digest": d, "size": size,
            })).collect::<Vec<_>>(),
        })
        .to_string()
        .into_bytes();
        for tag in tags {
            let (status, _) = self
                .request(
                    "PUT",
                    &format!("/v2/{repo}/manifests/{tag}"),
                    Some("application/vnd.oci.image.manifest.v1+json"),
                    manifest.clone(),
                )
                .await?;
            if status != 201 {
                return Err(self.err(format!("manifest {repo}:{tag}: HTTP {status}")));
            }
        }
        Ok(digest(&manifest))
    }
}

/// Pushes the pause image and the catalogue of test images; returns their digests.
pub async fn push_test_images(
    registry: &str,
    cache: &Path,
    kube_bin_dir: &Path,
) -> Result<PushedImages, NodeError> {
    let reg = Registry::new(registry);
    let pause_path = kube_bin_dir.join("pause");
    let pause = std::fs::read(&pause_path).map_err(|source| NodeError::Io {
        path: pause_path,
        source,
    })?;
    let mut out = PushedImages::default();
    let d = reg
        .push_image(
            "hotsync/pause",
            &["3.2"],
            ("pause", &pause),
            vec!["/pause".into()],
        )
        .await?;
    out.digests.insert("hotsync/pause:3.2".into(), d);
    let agent_path = agent_binary(cache)?;
    let agent = std::fs::read(&agent_path).map_err(|source| NodeError::Io {
        path: agent_path,
        source,
    })?;
    for img in CATALOGUE {
        let mut tags = vec![img.tag];
        tags.extend_from_slice(img.also);
        let args = img.args.unwrap_or_default();
        let entrypoint: Vec<String> = std::iter::once("/agent".to_string())
            .chain(args.iter().map(|a| a.to_string()))
            .collect();
        for name in img.names {
            for prefix in REPO_PREFIXES {
                let repo = format!("{prefix}{name}");
                let d = reg
                    .push_image(&repo, &tags, ("agent", &agent), entrypoint.clone())
                    .await?;
                for t in &tags {
                    out.digests.insert(format!("{repo}:{t}"), d.clone());
                }
            }
        }
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_layer_is_a_tar_of_one_executable() {
        let l = layer("agent", b"#!x").expect("layer");
        let mut a = tar::Archive::new(l.as_slice());
        let entries: Vec<(String, u32)> = a
            .entries()
            .expect("entries")
            .map(|e| {
                let e = e.expect("entry");
                (
                    e.path().expect("path").display().to_string(),
                    e.header().mode().expect("mode"),
                )
            })
            .collect();
        assert_eq!(entries, vec![("agent".to_string(), 0o755)]);
    }

    #[test]
    fn an_env_file_written_with_printf_q_reads_back_word_for_word() {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("env");
        std::fs::write(
            &path,
            "# comment\nexport REGISTRY_HOSTS=docker.io\\ registry.example.com\nexport NODE_IP='10.213.0.1'\n",
        )
        .expect("write");
        let vars = read_exports(&path).expect("read");
        assert_eq!(vars["REGISTRY_HOSTS"], "docker.io registry.example.com");
        assert_eq!(vars["NODE_IP"], "10.213.0.1");
    }
}
