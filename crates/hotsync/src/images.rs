//! Container image references as kubelets report them, and when a reported image is the one asked for.
//!
//! A kubelet on containerd reports `status.containerStatuses[].image` as the normalised reference
//! (`sidecar:v1` comes back as `docker.io/library/sidecar:v1`, a missing tag as `:latest`), and when two
//! tags share a digest it may report the other one; `imageID` is `repository@sha256:<digest>`. hotsync
//! judges a restarted container by those rules, never by string equality with the spec (the comparison
//! that makes Kruise's own check fail: openkruise/kruise#1493, #2297).

/// A reference split as the Docker distribution's `ParseNormalizedNamed` splits it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ImageRef {
    /// `domain/path`, with `docker.io` and `library/` spelled out.
    pub repository: String,
    pub tag: Option<String>,
    /// `sha256:...`, when the reference pins one.
    pub digest: Option<String>,
}

impl ImageRef {
    /// Normalises a reference as written in a pod spec or reported by a kubelet.
    pub fn parse(reference: &str) -> ImageRef {
        let reference = reference.trim();
        let (rest, digest) = match reference.split_once('@') {
            Some((r, d)) => (r, Some(d.to_string())),
            None => (reference, None),
        };
        let last_slash = rest.rfind('/').map_or(0, |i| i + 1);
        let (name, tag) = match rest[last_slash..].rfind(':') {
            Some(i) => (
                &rest[..last_slash + i],
                Some(rest[last_slash + i + 1..].to_string()),
            ),
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
        let tag = if tag.is_none() && digest.is_none() {
            Some("latest".to_string())
        } else {
            tag
        };
        ImageRef {
            repository: format!("{domain}/{path}"),
            tag,
            digest,
        }
    }

    /// The registry host.
    pub fn registry(&self) -> &str {
        self.repository.split('/').next().unwrap_or_default()
    }

    /// The path within the registry.
    pub fn path(&self) -> &str {
        self.repository
            .split_once('/')
            .map(|(_, p)| p)
            .unwrap_or_default()
    }

    /// What a manifest request names: the digest when pinned, else the tag.
    pub fn reference(&self) -> &str {
        self.digest
            .as_deref()
            .or(self.tag.as_deref())
            .unwrap_or("latest")
    }
}

/// The digest of an `imageID` (`repo@sha256:...`, `docker-pullable://repo@sha256:...`, or a bare
/// `sha256:...`).
pub fn digest_of_image_id(image_id: &str) -> Option<&str> {
    let d = image_id.rsplit_once('@').map_or(image_id, |(_, d)| d);
    d.starts_with("sha256:").then_some(d)
}

/// Whether a kubelet reporting `reported` (and `image_id`) runs what `wanted` asks for: the same
/// normalised name and tag, or the digest `wanted` pins.
pub fn reports(reported: &str, image_id: &str, wanted: &str) -> bool {
    let w = ImageRef::parse(wanted);
    if let Some(d) = &w.digest {
        return digest_of_image_id(image_id) == Some(d.as_str())
            || ImageRef::parse(reported).digest.as_deref() == Some(d.as_str());
    }
    let r = ImageRef::parse(reported);
    r.repository == w.repository && r.tag == w.tag
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn short_names_and_missing_tags_normalise_as_the_runtime_reports_them() {
        assert!(reports("docker.io/library/sidecar:v1", "", "sidecar:v1"));
        assert!(reports("docker.io/library/nginx:latest", "", "nginx"));
        assert!(reports("docker.io/team/app:2", "", "team/app:2"));
        assert!(reports(
            "registry.example.com/sidecar:v0.2",
            "",
            "registry.example.com/sidecar:v0.2"
        ));
        assert!(!reports("docker.io/library/sidecar:v1", "", "sidecar:v2"));
        assert!(!reports(
            "registry.example.com/sidecar:v1",
            "",
            "other.example.com/sidecar:v1"
        ));
        assert!(reports(
            "localhost:5000/app:latest",
            "",
            "localhost:5000/app"
        ));
    }

    #[test]
    fn a_digest_pin_is_judged_by_the_image_id() {
        let pin = "registry.example.com/sidecar@sha256:abc";
        assert!(reports(
            "registry.example.com/sidecar:v0.2",
            "registry.example.com/sidecar@sha256:abc",
            pin
        ));
        assert!(reports("sha256:cfg", "docker-pullable://x@sha256:abc", pin));
        assert!(!reports(
            "registry.example.com/sidecar:v0.2",
            "registry.example.com/sidecar@sha256:def",
            pin
        ));
        assert_eq!(digest_of_image_id("sha256:abc"), Some("sha256:abc"));
        assert_eq!(digest_of_image_id(""), None);
    }

    #[test]
    fn references_split_into_registry_path_and_reference() {
        let r = ImageRef::parse("registry.example.com:5000/team/app:1.2");
        assert_eq!(r.registry(), "registry.example.com:5000");
        assert_eq!(r.path(), "team/app");
        assert_eq!(r.reference(), "1.2");
        let s = ImageRef::parse("sidecar");
        assert_eq!(
            (s.registry(), s.path(), s.reference()),
            ("docker.io", "library/sidecar", "latest")
        );
    }
}
