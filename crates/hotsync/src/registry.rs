//! Whether an image reference exists in its registry, asked before any container restarts into it.
//!
//! The manifest endpoint of the Docker registry API (`HEAD /v2/<path>/manifests/<tag or digest>`), over
//! HTTPS with the system's roots, anonymously or with the credentials of the pods' `imagePullSecrets`
//! (Basic, or the Bearer token flow a `401` with `WWW-Authenticate` asks for, as Docker Hub does). A
//! mirror (`--registry-mirror HOST=URL`) answers for a host: a pull-through cache, or the local registry
//! of a test bed; an `http://` mirror is spoken to in plain HTTP.

use crate::images::ImageRef;
use base64::Engine as _;
use http_body_util::BodyExt as _;
use std::collections::BTreeMap;
use std::time::Duration;

/// Why a reference could not be checked.
#[derive(Debug, thiserror::Error)]
pub enum RegistryError {
    /// The registry could not be reached or answered what a registry does not.
    #[error("cannot check {image} at {url}: {why} (pass --no-image-check for a registry hotsync cannot reach)")]
    Unreachable {
        image: String,
        url: String,
        why: String,
    },
}

impl RegistryError {
    pub fn category(&self) -> &'static str {
        "registry"
    }
}

/// Credentials for one registry host.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Credentials {
    pub username: String,
    pub password: String,
}

/// Credentials from a `kubernetes.io/dockerconfigjson` (or `.dockercfg`) document, by registry host.
pub fn credentials_from_docker_config(json: &[u8]) -> BTreeMap<String, Credentials> {
    let Ok(v) = serde_json::from_slice::<serde_json::Value>(json) else {
        return BTreeMap::new();
    };
    let auths = v.get("auths").unwrap_or(&v);
    let mut out = BTreeMap::new();
    for (host, entry) in auths.as_object().into_iter().flatten() {
        let host = host
            .trim_start_matches("https://")
            .trim_start_matches("http://")
            .split('/')
            .next()
            .unwrap_or_default()
            .to_string();
        let host = if host == "index.docker.io" {
            "docker.io".to_string()
        } else {
            host
        };
        let from_auth = entry
            .get("auth")
            .and_then(|a| a.as_str())
            .and_then(|a| base64::engine::general_purpose::STANDARD.decode(a).ok())
            .and_then(|b| String::from_utf8(b).ok())
            .and_then(|s| {
                s.split_once(':')
                    .map(|(u, p)| (u.to_string(), p.to_string()))
            });
        let (username, password) = match from_auth {
            Some(up) => up,
            None => (
                entry
                    .get("username")
                    .and_then(|u| u.as_str())
                    .unwrap_or_default()
                    .to_string(),
                entry
                    .get("password")
                    .and_then(|p| p.as_str())
                    .unwrap_or_default()
                    .to_string(),
            ),
        };
        if !username.is_empty() {
            out.insert(host, Credentials { username, password });
        }
    }
    out
}

type Client = hyper_util::client::legacy::Client<
    hyper_rustls::HttpsConnector<hyper_util::client::legacy::connect::HttpConnector>,
    http_body_util::Empty<hyper::body::Bytes>,
>;

/// Asks registries whether references exist.
#[derive(Clone)]
pub struct Registries {
    client: Client,
    mirrors: BTreeMap<String, String>,
    timeout: Duration,
}

impl std::fmt::Debug for Registries {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Registries")
            .field("mirrors", &self.mirrors)
            .finish()
    }
}

impl Registries {
    /// A checker; `mirrors` maps registry hosts to base URLs that answer for them.
    ///
    /// # Errors
    /// When the system's root certificates cannot be loaded.
    pub fn new(mirrors: BTreeMap<String, String>) -> Result<Registries, std::io::Error> {
        let tls = hyper_rustls::HttpsConnectorBuilder::new()
            .with_native_roots()?
            .https_or_http()
            .enable_http1()
            .build();
        let client =
            hyper_util::client::legacy::Client::builder(hyper_util::rt::TokioExecutor::new())
                .build(tls);
        Ok(Registries {
            client,
            mirrors,
            timeout: Duration::from_secs(20),
        })
    }

    /// The base URL for a registry host.
    fn base(&self, host: &str) -> String {
        if let Some(m) = self.mirrors.get(host) {
            return m.trim_end_matches('/').to_string();
        }
        match host {
            "docker.io" => "https://registry-1.docker.io".to_string(),
            h => format!("https://{h}"),
        }
    }

    async fn head(&self, url: &str, auth: Option<String>) -> Result<(u16, Option<String>), String> {
        let mut req = hyper::Request::builder().method("HEAD").uri(url).header(
            hyper::header::ACCEPT,
            "application/vnd.oci.image.index.v1+json, application/vnd.oci.image.manifest.v1+json, \
             application/vnd.docker.distribution.manifest.list.v2+json, \
             application/vnd.docker.distribution.manifest.v2+json",
        );
        if let Some(a) = auth {
            req = req.header(hyper::header::AUTHORIZATION, a);
        }
        let req = req
            .body(http_body_util::Empty::new())
            .map_err(|e| e.to_string())?;
        let res = tokio::time::timeout(self.timeout, self.client.request(req))
            .await
            .map_err(|_| format!("no answer within {}s", self.timeout.as_secs()))?
            .map_err(|e| format!("{e}"))?;
        let challenge = res
            .headers()
            .get(hyper::header::WWW_AUTHENTICATE)
            .and_then(|v| v.to_str().ok())
            .map(str::to_string);
        Ok((res.status().as_u16(), challenge))
    }

    /// A Bearer token for the challenge `Bearer realm="...",service="...",scope="..."`.
    async fn token(&self, challenge: &str, creds: Option<&Credentials>) -> Result<String, String> {
        let params: BTreeMap<String, String> = challenge
            .trim_start_matches("Bearer ")
            .split(',')
            .filter_map(|kv| kv.split_once('='))
            .map(|(k, v)| (k.trim().to_string(), v.trim().trim_matches('"').to_string()))
            .collect();
        let realm = params.get("realm").ok_or("a challenge without realm")?;
        let mut url = realm.clone();
        let mut sep = if url.contains('?') { '&' } else { '?' };
        for k in ["service", "scope"] {
            if let Some(v) = params.get(k) {
                url.push(sep);
                url.push_str(k);
                url.push('=');
                url.push_str(&v.replace(' ', "%20"));
                sep = '&';
            }
        }
        let mut req = hyper::Request::builder().method("GET").uri(&url);
        if let Some(c) = creds {
            req = req.header(hyper::header::AUTHORIZATION, basic(c));
        }
        let req = req
            .body(http_body_util::Empty::new())
            .map_err(|e| e.to_string())?;
        let res = tokio::time::timeout(self.timeout, self.client.request(req))
            .await
            .map_err(|_| "the token service did not answer".to_string())?
            .map_err(|e| e.to_string())?;
        let status = res.status().as_u16();
        let body = res
            .into_body()
            .collect()
            .await
            .map_err(|e| e.to_string())?
            .to_bytes();
        if status != 200 {
            return Err(format!("the token service answered {status}"));
        }
        let v: serde_json::Value = serde_json::from_slice(&body).map_err(|e| e.to_string())?;
        v.get("token")
            .or_else(|| v.get("access_token"))
            .and_then(|t| t.as_str())
            .map(|t| format!("Bearer {t}"))
            .ok_or_else(|| "the token service gave no token".to_string())
    }

    /// Whether `image` exists: `Ok(true)` found, `Ok(false)` the registry says it does not exist.
    ///
    /// # Errors
    /// [`RegistryError::Unreachable`] when the registry cannot be asked or answers neither.
    pub async fn exists(
        &self,
        image: &str,
        creds: &BTreeMap<String, Credentials>,
    ) -> Result<bool, RegistryError> {
        let r = ImageRef::parse(image);
        let url = format!(
            "{}/v2/{}/manifests/{}",
            self.base(r.registry()),
            r.path(),
            r.reference()
        );
        let err = |why: String| RegistryError::Unreachable {
            image: image.to_string(),
            url: url.clone(),
            why,
        };
        let cred = creds.get(r.registry());
        let (mut status, challenge) = self.head(&url, cred.map(basic)).await.map_err(err)?;
        if status == 401 {
            if let Some(ch) = challenge.filter(|c| c.starts_with("Bearer")) {
                let token = self.token(&ch, cred).await.map_err(err)?;
                status = self.head(&url, Some(token)).await.map_err(err)?.0;
            }
        }
        match status {
            200 => Ok(true),
            404 => Ok(false),
            other => Err(err(format!("HTTP {other}"))),
        }
    }
}

fn basic(c: &Credentials) -> String {
    format!(
        "Basic {}",
        base64::engine::general_purpose::STANDARD.encode(format!("{}:{}", c.username, c.password))
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn docker_config_credentials_are_read_by_host() {
        let auth = base64::engine::general_purpose::STANDARD.encode("robot:s3cret");
        let json = format!(
            r#"{{"auths": {{"https://index.docker.io/v1/": {{"auth": "{auth}"}},
                "registry.example.com": {{"username": "u", "password": "p"}}}}}}"#
        );
        let c = credentials_from_docker_config(json.as_bytes());
        assert_eq!(
            c.get("docker.io").map(|c| c.username.as_str()),
            Some("robot")
        );
        assert_eq!(
            c.get("docker.io").map(|c| c.password.as_str()),
            Some("s3cret")
        );
        assert_eq!(
            c.get("registry.example.com").map(|c| c.password.as_str()),
            Some("p")
        );
    }
}
