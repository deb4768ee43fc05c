//! The trailer that marks hotsync's own commits (`Hotsync-Source: <sha>`): status commits carry it,
//! and a commit that does is never a source of a sync nor a reason for one.

/// The trailer that marks hotsync's own commits; its value is the source commit the status describes.
pub const SOURCE_TRAILER: &str = "Hotsync-Source";

/// True if a commit message carries the `Hotsync-Source` trailer: the commit is hotsync's own status
/// commit, and the daemon must not sync on it.
pub fn is_hotsync_commit(message: &str) -> bool {
    hotsync_source(message).is_some()
}

/// The value of the `Hotsync-Source` trailer, when the message has one (in its trailer block).
pub fn hotsync_source(message: &str) -> Option<String> {
    let trailers = git2::message_trailers_strs(message).ok()?;
    trailers
        .iter()
        .find(|(k, _)| k.eq_ignore_ascii_case(SOURCE_TRAILER))
        .map(|(_, v)| v.trim().to_string())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn trailer_is_recognised_only_in_the_trailer_block() {
        let msg =
            "hotsync status: prod at abc\n\ngames/arena: Synced\n\nHotsync-Source: 0123abcd\n";
        assert!(is_hotsync_commit(msg));
        assert_eq!(hotsync_source(msg).as_deref(), Some("0123abcd"));
        assert!(!is_hotsync_commit(
            "Bump sidecar\n\nmentions Hotsync-Source: in prose, not as a trailer\n\nmore text"
        ));
        assert!(!is_hotsync_commit("Bump sidecar to v0.2"));
        assert!(is_hotsync_commit(
            "Bump\n\nSigned-off-by: A <a@example.com>\nhotsync-source: 0123abcd"
        ));
    }
}
