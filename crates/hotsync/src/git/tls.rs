//! When libgit2 loads the CA bundle. libgit2 builds its OpenSSL context as it initialises, in every
//! process, and loads the whole bundle then (about 30 ms here, half the time of a `plan` of a local
//! repository), though most commands never open a TLS connection. [`defer_ca_bundle`], called first
//! thing by a binary for a command that reads a local repository only (`plan`, `validate`,
//! `set-image`, `wait` on a path), lets libgit2 initialise with an empty bundle. Loading it later
//! would take an `unsafe` call into libgit2's options, which this crate forbids, so a command that may
//! connect (a remote `--repo`, `run`, `sync`, `demo`) does not defer it. A process that never calls
//! [`defer_ca_bundle`] (a library user, a test) keeps libgit2's own loading.

use std::path::PathBuf;
use std::sync::{Mutex, OnceLock};

/// The CA bundle deferred: `Some(file)` once [`defer_ca_bundle`] ran (the file `None` when none was
/// found), and whether it is loaded yet.
static DEFERRED: OnceLock<Mutex<(Option<PathBuf>, bool)>> = OnceLock::new();

const ENV_CERT_FILE: &str = "SSL_CERT_FILE";

/// Initialises libgit2 without loading the CA bundle.
/// `SSL_CERT_FILE` is set for the duration of the initialisation only, then put back as it was (or
/// to the bundle found, as libgit2's Rust binding itself does), so that other TLS clients of the
/// process find the bundle as before.
///
/// Call it at the start of `main`, before any thread is started and before any other use of git2:
/// it changes the process's environment.
pub fn defer_ca_bundle() {
    if DEFERRED.get().is_some() {
        return;
    }
    let found = openssl_probe::probe().cert_file;
    std::env::set_var(ENV_CERT_FILE, "/dev/null");
    // Any call that initialises libgit2 (and with it OpenSSL's context) will do.
    let _ = git2::Config::new();
    match &found {
        Some(f) => std::env::set_var(ENV_CERT_FILE, f),
        None => std::env::remove_var(ENV_CERT_FILE),
    }
    let _ = DEFERRED.set(Mutex::new((found, false)));
}

/// Before a connection to a remote: when [`defer_ca_bundle`] ran, libgit2's TLS context holds no CA
/// bundle (only OpenSSL's lazily read certificate directory), so the process says so, once. Binaries
/// defer the bundle only for commands on a local repository, which never connect.
pub(crate) fn load_ca_bundle() {
    let Some(state) = DEFERRED.get() else {
        return;
    };
    let mut state = match state.lock() {
        Ok(s) => s,
        Err(poisoned) => poisoned.into_inner(),
    };
    if !state.1 {
        state.1 = true;
        tracing::warn!(
            bundle = ?state.0,
            "connecting to a Git remote from a command that deferred the CA bundle: certificates are checked against OpenSSL's certificate directory only"
        );
    }
}
