//! What wakes the sync loop, and what a sync asks of it next.
//!
//! Every source of work sends a [`Trigger`] on one channel: the webhook, the watch of a local
//! repository and drift from their tasks; the poll, a requeue, a retry and a change of leadership from
//! the loop's own timers and the lease. The loop takes every trigger waiting at once into one [`Wake`]
//! (so a burst of them costs one sync), logs their reasons, and runs what the wake asks for: a look at the
//! branch's tip, and the sets to sync again at the commit already synced. A sync answers with [`Next`]
//! values: sets to look at again soon (OKG still rolling them out, game servers deferred, a failure to
//! retry), or a backoff; the loop turns them into timers. No flag is shared between tasks.

use crate::manifest::SetKey;
use std::collections::BTreeSet;
use std::time::Duration;

/// One reason to wake the sync loop.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Trigger {
    /// The poll interval passed.
    Poll,
    /// A push to the tracked branch was announced on `/webhook`.
    Webhook,
    /// A ref of the local repository moved.
    LocalWatch,
    /// Pods of this set differ from Git, and `--self-heal` is on.
    Drift(SetKey),
    /// The backoff after a failed sync ended.
    Retry,
    /// These sets are due another look (their rollout was not finished, or it failed).
    Requeue(BTreeSet<SetKey>),
    /// This replica gained (`true`) or lost the lease.
    Leadership(bool),
}

impl Trigger {
    /// The reason as logs and metrics name it.
    pub fn reason(&self) -> &'static str {
        match self {
            Trigger::Poll => "poll",
            Trigger::Webhook => "webhook",
            Trigger::LocalWatch => "local-watch",
            Trigger::Drift(_) => "drift",
            Trigger::Retry => "retry",
            Trigger::Requeue(_) => "requeue",
            Trigger::Leadership(_) => "leadership",
        }
    }
}

/// Where triggers are sent. Unbounded: the loop drains every waiting trigger at each wake-up, and
/// triggers coalesce there, so the queue never holds more than one burst.
pub type Sender = tokio::sync::mpsc::UnboundedSender<Trigger>;
pub type Receiver = tokio::sync::mpsc::UnboundedReceiver<Trigger>;

/// The triggers one wake-up of the loop took together.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Wake {
    /// Ask the branch for its tip (poll, webhook, local watch, retry, leadership).
    pub check_tip: bool,
    /// The backoff after a failed sync is over: sync the same tip again.
    pub retry: bool,
    /// Sets to sync again, whether or not the tip moved (drift, requeue).
    pub sets: BTreeSet<SetKey>,
    /// Why the loop woke.
    pub reasons: BTreeSet<&'static str>,
}

impl Wake {
    /// Adds one trigger to the wake-up.
    pub fn add(&mut self, t: Trigger) {
        self.reasons.insert(t.reason());
        match t {
            Trigger::Poll | Trigger::Webhook | Trigger::LocalWatch | Trigger::Leadership(_) => {
                self.check_tip = true;
            }
            Trigger::Retry => {
                self.check_tip = true;
                self.retry = true;
            }
            Trigger::Drift(set) => {
                self.sets.insert(set);
            }
            Trigger::Requeue(sets) => self.sets.extend(sets),
        }
    }
}

/// What a sync asks of the loop.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Next {
    /// Look at these sets again after `after`: OKG still rolls them out, game servers wait for their
    /// players, or their rollout failed and is retried.
    Requeue {
        sets: BTreeSet<SetKey>,
        after: Duration,
    },
    /// Git or the cluster could not be read: sync again after `after` (a new commit syncs at once).
    Backoff { after: Duration },
}

#[cfg(test)]
mod tests {
    use super::*;

    fn key(name: &str) -> SetKey {
        SetKey {
            namespace: "games".into(),
            name: name.into(),
        }
    }

    #[test]
    fn a_burst_of_triggers_is_one_wake_that_looks_at_the_tip_once_and_syncs_each_named_set() {
        let mut w = Wake::default();
        for t in [
            Trigger::Webhook,
            Trigger::Poll,
            Trigger::Drift(key("arena")),
            Trigger::Requeue([key("lobby"), key("arena")].into()),
            Trigger::LocalWatch,
        ] {
            w.add(t);
        }
        assert!(w.check_tip);
        assert!(!w.retry, "only the end of a backoff retries a failed tip");
        assert_eq!(w.sets, [key("arena"), key("lobby")].into());
        assert_eq!(
            w.reasons,
            ["drift", "local-watch", "poll", "requeue", "webhook"].into()
        );
    }

    #[test]
    fn drift_and_requeue_alone_do_not_ask_for_the_tip() {
        let mut w = Wake::default();
        w.add(Trigger::Drift(key("arena")));
        w.add(Trigger::Requeue([key("lobby")].into()));
        assert!(!w.check_tip);
        let mut r = Wake::default();
        r.add(Trigger::Retry);
        assert!(r.check_tip && r.retry);
    }
}
