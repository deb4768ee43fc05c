//! Image references as a containerd node reports them, for the simulated kubelet.
//!
//! Follows containerd's `reference/docker` (`ParseDockerRef`: `docker.io` and `library/` spelled out,
//! `:latest` when there is no tag or digest) and its CRI image store (`pkg/cri/store/image`,
//! `toCRIContainerStatus` in `container_status.go`): a container's `image` is the first tag the node holds
//! for the image it runs, so that of two tags of one digest the other one may be reported; its `imageID`
//! is the first `repository@digest`; an image pulled by digest only reports its config's id.

use std::collections::{BTreeMap, BTreeSet};

/// A parsed reference: `domain/path`, with a tag and/or a digest.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Reference {
    pub repository: String,
    pub tag: Option<String>,
    pub digest: Option<String>,
}

impl Reference {
    /// `ParseDockerRef`: the normalised form of a reference as written in a pod spec.
    pub fn parse(s: &str) -> Reference {
        let (rest, digest) = match s.split_once('@') {
            Some((r, d)) => (r, Some(d.to_string())),
            None => (s, None),
        };
        // A tag is after the last ':' that follows the last '/'.
        let slash = rest.rfind('/').map_or(0, |i| i + 1);
        let (name, tag) = match rest[slash..].rfind(':') {
            Some(i) => (&rest[..slash + i], Some(rest[slash + i + 1..].to_string())),
            None => (rest, None),
        };
        let (domain, path) = match name.split_once('/') {
            Some((d, p)) if d.contains('.') || d.contains(':') || d == "localhost" => {
                (d.to_string(), p.to_string())
            }
            _ => ("docker.io".to_string(), name.to_string()),
        };
        let path = if domain == "docker.io" && !path.contains('/') {
            format!("library/{path}")
        } else {
            path
        };
        let tag = match (&tag, &digest) {
            (None, None) => Some("latest".to_string()),
            _ => tag,
        };
        Reference {
            repository: format!("{domain}/{path}"),
            tag,
            digest,
        }
    }

    /// The tagged form `repository:tag`, when there is a tag.
    pub fn tagged(&self) -> Option<String> {
        self.tag
            .as_ref()
            .map(|t| format!("{}:{t}", self.repository))
    }
}

/// A digest standing for an image the table does not name: derived from the reference, so that every
/// tag is an image of its own unless the table says two are one.
pub fn derived_digest(tagged: &str) -> String {
    use sha2::{Digest as _, Sha256};
    format!("sha256:{}", hex::encode(Sha256::digest(tagged.as_bytes())))
}

/// What a node holds: per image digest, the references it was pulled by.
#[derive(Debug, Default)]
pub struct ImageStore {
    by_digest: BTreeMap<String, BTreeSet<String>>,
}

/// What the kubelet reports for a running container.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Reported {
    pub image: String,
    pub image_id: String,
}

impl ImageStore {
    /// Pulls `spec_image` (its digest from `digests`, keyed by normalised tagged references) and returns
    /// what the kubelet then reports for a container running it.
    pub fn pull(&mut self, spec_image: &str, digests: &BTreeMap<String, String>) -> Reported {
        let r = Reference::parse(spec_image);
        let digest = r.digest.clone().unwrap_or_else(|| {
            let tagged = r.tagged().unwrap_or_default();
            digests
                .iter()
                .find(|(k, _)| Reference::parse(k).tagged().as_deref() == Some(tagged.as_str()))
                .map(|(_, d)| d.clone())
                .unwrap_or_else(|| derived_digest(&tagged))
        });
        let refs = self.by_digest.entry(digest.clone()).or_default();
        if let Some(t) = r.tagged() {
            refs.insert(t);
        }
        refs.insert(format!("{}@{digest}", r.repository));
        let tags: BTreeSet<&String> = refs.iter().filter(|x| !x.contains('@')).collect();
        let image = match tags.iter().next() {
            Some(t) => (*t).clone(),
            // Pulled by digest only: the config's id (here derived from the manifest digest).
            None => derived_digest(&digest),
        };
        let image_id = refs
            .iter()
            .find(|x| x.contains('@'))
            .cloned()
            .unwrap_or_else(|| format!("{}@{digest}", r.repository));
        Reported { image, image_id }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn short_names_are_spelled_out_as_containerd_does() {
        assert_eq!(
            Reference::parse("sidecar:v1").tagged().as_deref(),
            Some("docker.io/library/sidecar:v1")
        );
        assert_eq!(
            Reference::parse("nginx").tagged().as_deref(),
            Some("docker.io/library/nginx:latest")
        );
        assert_eq!(
            Reference::parse("team/app:2").tagged().as_deref(),
            Some("docker.io/team/app:2")
        );
        assert_eq!(
            Reference::parse("localhost:5000/app").tagged().as_deref(),
            Some("localhost:5000/app:latest")
        );
        let d = Reference::parse("registry.example.com/sidecar@sha256:abc");
        assert_eq!(d.repository, "registry.example.com/sidecar");
        assert_eq!(d.tag, None);
    }

    #[test]
    fn two_tags_of_one_digest_report_the_first_tag_and_one_image_id() {
        let digests = BTreeMap::from([
            (
                "registry.example.com/sidecar:v0.1".to_string(),
                "sha256:aa".to_string(),
            ),
            (
                "registry.example.com/sidecar:v0.1-same".to_string(),
                "sha256:aa".to_string(),
            ),
        ]);
        let mut store = ImageStore::default();
        let a = store.pull("registry.example.com/sidecar:v0.1", &digests);
        let b = store.pull("registry.example.com/sidecar:v0.1-same", &digests);
        assert_eq!(b.image, "registry.example.com/sidecar:v0.1");
        assert_eq!(a.image_id, b.image_id);
        assert_eq!(b.image_id, "registry.example.com/sidecar@sha256:aa");
        let short = store.pull("sidecar:v1", &digests);
        assert_eq!(short.image, "docker.io/library/sidecar:v1");
    }
}
