//! Progressive hot updates: the steps a set's rollout pauses at, declared in Git next to the set, and
//! the promotions recorded on the live set.
//!
//! `hotsync.dev/steps: "1,25%,100%"` on a GameServerSet: the rollout updates that many pods in total
//! (a count, or a percentage of `spec.replicas` rounded up, at least one), highest update priority
//! first as always, then pauses. A list that does not end at every pod ends there anyway: after the
//! last step is promoted, the rest of the pods follow. `hotsync.dev/step-pause: 10m` promotes a step by
//! itself that long after it completed; without it a step waits for `hotsync promote`.
//!
//! Data: the set's annotations from Git in ([`Steps::of`]), and the live set's annotations, written by
//! `hotsync promote` ([`ANNOTATION_STEP`]) and by the rollout when a step completes
//! ([`ANNOTATION_STEP_REACHED`]), both naming the template fingerprint they are about, so that a new
//! commit starts at the first step again. Pure: the executor reads and writes them.

use std::time::Duration;

/// The steps, on the set in Git.
pub const ANNOTATION_STEPS: &str = "hotsync.dev/steps";
/// How long after a step completed it is promoted by itself.
pub const ANNOTATION_STEP_PAUSE: &str = "hotsync.dev/step-pause";
/// On the live set: `FINGERPRINT K`, the step (0-based) the rollout of that template may go to,
/// written by `hotsync promote`.
pub const ANNOTATION_STEP: &str = "hotsync.dev/step";
/// On the live set: `FINGERPRINT K RFC3339`, when step K of that template's rollout completed.
pub const ANNOTATION_STEP_REACHED: &str = "hotsync.dev/step-reached";
/// On the live set: `FINGERPRINT RFC3339`, written by `hotsync abort`: the rollout of that template is
/// rolled back and stays so, whatever syncs come, until Git holds another template.
pub const ANNOTATION_ABORTED: &str = "hotsync.dev/aborted";

/// On the live set: `FINGERPRINT K`, written when step K's gate first passed during its pause: from
/// then on a game server of the step going `NotReady` fails the gate instead of making it wait.
pub const ANNOTATION_STEP_HEALTHY: &str = "hotsync.dev/step-healthy";

/// On the live set: `FINGERPRINT MESSAGE`, written by the rollout when a step's gate failed: the rollout
/// of that template stops there (its step's pods rolled back with `--on-failure rollback`) and stays
/// stopped, whatever syncs come, until Git holds another template.
pub const ANNOTATION_GATE_FAILED: &str = "hotsync.dev/gate-failed";

/// Why the rollout of `fingerprint` stopped at a gate, from [`ANNOTATION_GATE_FAILED`]'s value.
pub fn gate_failed_for(value: Option<&str>, fingerprint: &str) -> Option<String> {
    let (fp, why) = value?.trim().split_once(' ')?;
    (fp == fingerprint).then(|| why.trim().to_string())
}

/// When the rollout of `fingerprint` was aborted, from [`ANNOTATION_ABORTED`]'s value.
pub fn aborted_for(value: Option<&str>, fingerprint: &str) -> Option<String> {
    let mut parts = value?.split_whitespace();
    if parts.next()? != fingerprint {
        return None;
    }
    Some(parts.next().unwrap_or("an unknown time").to_string())
}

/// One step: how many pods in total are on the new template once it is done.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum StepSize {
    Count(u32),
    /// 1 to 100.
    Percent(u32),
}

impl StepSize {
    /// The pods in total at this step, of `replicas`: a percentage rounded up, at least one, at most
    /// every pod.
    pub fn pods(self, replicas: usize) -> usize {
        let n = match self {
            StepSize::Count(n) => usize::try_from(n).unwrap_or(usize::MAX),
            StepSize::Percent(p) => (replicas * usize::try_from(p).unwrap_or(100)).div_ceil(100),
        };
        n.clamp(1, replicas.max(1))
    }
}

impl std::fmt::Display for StepSize {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            StepSize::Count(n) => write!(f, "{n}"),
            StepSize::Percent(p) => write!(f, "{p}%"),
        }
    }
}

/// A set's steps and pause.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Steps {
    pub sizes: Vec<StepSize>,
    pub pause: Option<Duration>,
}

/// Parses `hotsync.dev/steps`: comma-separated counts (at least 1) or percentages (1% to 100%), each
/// larger than the one before when both are of the same kind.
///
/// # Errors
/// A message saying which entry is wrong and why.
pub fn parse_steps(s: &str) -> Result<Vec<StepSize>, String> {
    let mut out = Vec::new();
    for (i, part) in s.split(',').enumerate() {
        let p = part.trim();
        let size = if let Some(pct) = p.strip_suffix('%') {
            match pct.trim().parse::<u32>() {
                Ok(n) if (1..=100).contains(&n) => StepSize::Percent(n),
                _ => {
                    return Err(format!(
                        "step {} ({p:?}) is not a percentage from 1% to 100%",
                        i + 1
                    ))
                }
            }
        } else {
            match p.parse::<u32>() {
                Ok(n) if n >= 1 => StepSize::Count(n),
                _ => {
                    return Err(format!(
                    "step {} ({p:?}) is not a pod count (at least 1) or a percentage such as 25%",
                    i + 1
                ))
                }
            }
        };
        if let Some(prev) = out.last() {
            let grows = match (prev, &size) {
                (StepSize::Count(a), StepSize::Count(b))
                | (StepSize::Percent(a), StepSize::Percent(b)) => b > a,
                _ => true,
            };
            if !grows {
                return Err(format!(
                    "step {} ({size}) is not larger than the step before it ({prev})",
                    i + 1
                ));
            }
        }
        out.push(size);
    }
    Ok(out)
}

/// Parses a duration such as `90s`, `10m`, `1h30m`.
///
/// # Errors
/// A message naming the value.
pub fn parse_pause(s: &str) -> Result<Duration, String> {
    let t = s.trim();
    let bad = || format!("{s:?} is not a duration such as 30s, 10m or 1h30m");
    if t.is_empty() {
        return Err(bad());
    }
    let mut total = 0u64;
    let mut digits = String::new();
    for c in t.chars() {
        if c.is_ascii_digit() {
            digits.push(c);
            continue;
        }
        let n: u64 = digits.parse().map_err(|_| bad())?;
        digits.clear();
        let unit = match c {
            's' => 1,
            'm' => 60,
            'h' => 3600,
            _ => return Err(bad()),
        };
        total = n
            .checked_mul(unit)
            .and_then(|v| total.checked_add(v))
            .ok_or_else(|| format!("{s:?} is too long a duration"))?;
    }
    if !digits.is_empty() {
        return Err(bad());
    }
    Ok(Duration::from_secs(total))
}

impl Steps {
    /// The steps a set declares; `Ok(None)` without `hotsync.dev/steps`.
    ///
    /// # Errors
    /// The annotation it cannot read, and why.
    pub fn of(
        annotations: Option<&std::collections::BTreeMap<String, String>>,
    ) -> Result<Option<Steps>, (&'static str, String)> {
        let Some(a) = annotations else {
            return Ok(None);
        };
        let Some(s) = a.get(ANNOTATION_STEPS) else {
            if a.contains_key(ANNOTATION_STEP_PAUSE) {
                return Err((
                    ANNOTATION_STEP_PAUSE,
                    format!("{ANNOTATION_STEP_PAUSE} without {ANNOTATION_STEPS}: there is no step to pause at"),
                ));
            }
            return Ok(None);
        };
        let sizes =
            parse_steps(s).map_err(|e| (ANNOTATION_STEPS, format!("{ANNOTATION_STEPS}: {e}")))?;
        let pause = a
            .get(ANNOTATION_STEP_PAUSE)
            .map(|p| parse_pause(p))
            .transpose()
            .map_err(|e| {
                (
                    ANNOTATION_STEP_PAUSE,
                    format!("{ANNOTATION_STEP_PAUSE}: {e}"),
                )
            })?;
        Ok(Some(Steps { sizes, pause }))
    }

    /// How many steps there are, counting the final one to every pod when the list stops short.
    pub fn count(&self, replicas: usize) -> usize {
        let last = self.sizes.last().map(|s| s.pods(replicas)).unwrap_or(0);
        self.sizes.len() + usize::from(last < replicas)
    }

    /// The pods in total at step `k` (0-based); past the list, every pod. Never fewer than at an
    /// earlier step (counts and percentages mixed may name fewer at some replicas; validation refuses
    /// such a list for the set's own replicas, and a set scaled since gets no step that goes back).
    pub fn pods_at(&self, k: usize, replicas: usize) -> usize {
        if k >= self.sizes.len() {
            return replicas;
        }
        self.sizes
            .iter()
            .take(k + 1)
            .map(|s| s.pods(replicas))
            .max()
            .unwrap_or(replicas)
    }

    /// Each step names more pods than the one before at `replicas` (a list of one kind always does;
    /// counts and percentages mixed may not).
    ///
    /// # Errors
    /// The first step that does not, and why.
    pub fn grows_at(&self, replicas: usize) -> Result<(), String> {
        for (i, pair) in self.sizes.windows(2).enumerate() {
            let (a, b) = (pair[0].pods(replicas), pair[1].pods(replicas));
            if b <= a {
                return Err(format!(
                    "step {} ({}) is {b} of {replicas} pods, not more than step {} ({}) with {a}",
                    i + 2,
                    pair[1],
                    i + 1,
                    pair[0]
                ));
            }
        }
        Ok(())
    }

    /// Which of the `pending` pods a rollout takes, in its order, fall to each step, when `done` pods
    /// are on the new template already: step k takes those that bring the total from step k-1's size
    /// to its own; the last step takes what is left (a partition or a deferring opsState may leave
    /// fewer pods than the steps name, and a step already behind the rollout takes none).
    pub fn split(
        &self,
        replicas: usize,
        done: usize,
        pending: usize,
    ) -> Vec<std::ops::Range<usize>> {
        let of = self.count(replicas);
        let mut from = 0;
        (0..of)
            .map(|k| {
                let to = if k + 1 == of {
                    pending
                } else {
                    self.pods_at(k, replicas).saturating_sub(done).min(pending)
                };
                let to = to.max(from);
                let r = from..to;
                from = to;
                r
            })
            .collect()
    }

    /// The steps as declared, with the last step to every pod when the list stops short.
    pub fn declared(&self, replicas: usize) -> Vec<String> {
        let mut out: Vec<String> = self.sizes.iter().map(ToString::to_string).collect();
        if out.len() < self.count(replicas) {
            out.push("all".to_string());
        }
        out
    }
}

/// A `FINGERPRINT K [...]` annotation's step, when it is about `fingerprint`.
pub fn step_for(value: Option<&str>, fingerprint: &str) -> Option<(usize, Option<String>)> {
    let mut parts = value?.split_whitespace();
    if parts.next()? != fingerprint {
        return None;
    }
    let k = parts.next()?.parse().ok()?;
    Some((k, parts.next().map(str::to_string)))
}

/// The value of [`ANNOTATION_STEP`] or [`ANNOTATION_STEP_REACHED`].
pub fn step_value(fingerprint: &str, k: usize, at: Option<&str>) -> String {
    match at {
        Some(t) => format!("{fingerprint} {k} {t}"),
        None => format!("{fingerprint} {k}"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_gate_failure_is_about_one_template_and_keeps_its_whole_message() {
        let v = "abc123 step 2 of 3 did not pass its gate: pod p-1 container sidecar restarted";
        assert_eq!(
            gate_failed_for(Some(v), "abc123").as_deref(),
            Some("step 2 of 3 did not pass its gate: pod p-1 container sidecar restarted")
        );
        assert_eq!(gate_failed_for(Some(v), "def456"), None);
        assert_eq!(gate_failed_for(Some("abc123"), "abc123"), None);
        assert_eq!(gate_failed_for(None, "abc123"), None);
    }

    #[test]
    fn each_step_takes_the_pods_that_bring_the_total_to_its_size_and_the_last_takes_the_rest() {
        let s = Steps {
            sizes: parse_steps("1,50%,100%").expect("ok"),
            pause: None,
        };
        // 10 pods, none on the new template: 1, then 4 more to 5, then the other 5.
        assert_eq!(s.split(10, 0, 10), [0..1, 1..5, 5..10]);
        // 3 already on it (a rollout under way): the first step is behind it, the second takes 2.
        assert_eq!(s.split(10, 3, 7), [0..0, 0..2, 2..7]);
        // A partition leaves 6 to take: the last step takes the 1 left after the second.
        assert_eq!(s.split(10, 0, 6), [0..1, 1..5, 5..6]);
        // A list that stops short gets a last step to every pod.
        let short = Steps {
            sizes: parse_steps("2").expect("ok"),
            pause: None,
        };
        assert_eq!(short.split(4, 0, 4), [0..2, 2..4]);
        assert_eq!(short.declared(4), ["2", "all"]);
        assert_eq!(s.declared(10), ["1", "50%", "100%"]);
        // Counts and percentages mixed that shrink at these replicas: refused, and never overlapping.
        let mixed = Steps {
            sizes: parse_steps("5,10%").expect("parses"),
            pause: None,
        };
        assert!(mixed
            .grows_at(10)
            .is_err_and(|e| e.contains("step 2 (10%) is 1 of 10 pods")));
        assert!(mixed.grows_at(100).is_ok());
        assert_eq!(mixed.pods_at(1, 10), 5);
        assert_eq!(mixed.split(10, 0, 10), [0..5, 5..5, 5..10]);
    }

    #[test]
    fn steps_are_counts_or_percentages_that_grow() {
        assert_eq!(
            parse_steps("1, 25%,100%").expect("ok"),
            [
                StepSize::Count(1),
                StepSize::Percent(25),
                StepSize::Percent(100)
            ]
        );
        for bad in ["", "0", "1,1", "50%,25%", "101%", "one", "1,,2", "-1"] {
            assert!(parse_steps(bad).is_err(), "{bad:?}");
        }
    }

    #[test]
    fn a_percentage_is_rounded_up_and_a_step_is_at_least_one_pod_and_at_most_all() {
        assert_eq!(StepSize::Percent(50).pods(10), 5);
        assert_eq!(StepSize::Percent(25).pods(10), 3);
        assert_eq!(StepSize::Percent(1).pods(10), 1);
        assert_eq!(StepSize::Count(40).pods(10), 10);
    }

    #[test]
    fn a_list_that_stops_short_gets_a_last_step_to_every_pod() {
        let s = Steps {
            sizes: parse_steps("1,50%").expect("ok"),
            pause: None,
        };
        assert_eq!(s.count(10), 3);
        assert_eq!(s.pods_at(0, 10), 1);
        assert_eq!(s.pods_at(1, 10), 5);
        assert_eq!(s.pods_at(2, 10), 10);
        let full = Steps {
            sizes: parse_steps("1,50%,100%").expect("ok"),
            pause: None,
        };
        assert_eq!(full.count(10), 3);
    }

    #[test]
    fn pauses_read_as_durations() {
        assert_eq!(parse_pause("10m"), Ok(Duration::from_secs(600)));
        assert_eq!(parse_pause("1h30m"), Ok(Duration::from_secs(5400)));
        assert_eq!(parse_pause("0s"), Ok(Duration::ZERO));
        assert!(parse_pause("10").is_err());
        assert!(parse_pause("9999999999999999h").is_err_and(|e| e.contains("too long")));
        assert!(parse_pause("ten minutes").is_err());
    }

    #[test]
    fn a_recorded_step_counts_only_for_its_template() {
        assert_eq!(step_for(Some("abc 2"), "abc"), Some((2, None)));
        assert_eq!(
            step_for(Some("abc 1 2026-12-03T07:00:00Z"), "abc"),
            Some((1, Some("2026-12-03T07:00:00Z".to_string())))
        );
        assert_eq!(step_for(Some("old 2"), "abc"), None);
        assert_eq!(step_for(None, "abc"), None);
    }
}
