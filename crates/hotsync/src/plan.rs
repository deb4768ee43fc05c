//! The Plan: what would change, per set, between two revisions (or a revision and the cluster), and its
//! renderings as text for terminals, markdown for pull-request comments and JSON for machines. Pure: no I/O.

use crate::diff::{diff_sets, Class, Impact, PodImpact, SetDiff};
use crate::manifest::{DesiredSet, Diagnostic, SetKey, Severity};
use serde::Serialize;
use std::collections::BTreeMap;
use std::fmt::Write as _;

/// One side of the comparison.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize)]
pub struct Revision {
    /// What the user asked for (`origin/main`, a sha, `cluster`).
    pub rev: String,
    /// The commit it resolved to, when it is a commit.
    pub commit: Option<String>,
}

/// A located problem, as the JSON report carries it.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct Located {
    pub file: String,
    pub document: Option<usize>,
    pub line: Option<usize>,
    pub message: String,
}

impl From<&Diagnostic> for Located {
    fn from(d: &Diagnostic) -> Self {
        Located {
            file: d.file.clone(),
            document: d.document,
            line: d.line,
            message: d.message.clone(),
        }
    }
}

/// The plan of a change.
#[derive(Clone, Debug, Default, PartialEq, Serialize)]
pub struct Plan {
    pub base: Revision,
    pub head: Revision,
    /// Sets that change, sorted by namespace and name. Unchanged sets are counted, not listed.
    pub sets: Vec<SetDiff>,
    pub unchanged: usize,
    /// Errors in the manifests: the plan is incomplete while there are any.
    pub errors: Vec<Located>,
    /// Warnings about files (unknown fields and the like).
    pub warnings: Vec<Located>,
    /// Notes (skipped documents).
    pub notes: Vec<Located>,
}

impl Plan {
    /// Compares the sets of two sides. Sets are matched by namespace and name, wherever their files are.
    pub fn build(
        base: Revision,
        head: Revision,
        old: &[DesiredSet],
        new: &[DesiredSet],
        diagnostics: &[Diagnostic],
    ) -> Plan {
        let mut index: BTreeMap<SetKey, (Option<&DesiredSet>, Option<&DesiredSet>)> =
            BTreeMap::new();
        for s in old {
            index.entry(s.key()).or_default().0 = Some(s);
        }
        for s in new {
            index.entry(s.key()).or_default().1 = Some(s);
        }
        let mut plan = Plan {
            base,
            head,
            ..Plan::default()
        };
        // Each pair on its own, on every core (normalising and fingerprinting are most of a plan).
        let pairs: Vec<(Option<&DesiredSet>, Option<&DesiredSet>)> = index.into_values().collect();
        let diffs = crate::par::map(&pairs, 32, |(a, b)| {
            diff_sets(a.map(|s| &s.gss), b.map(|s| &s.gss))
        });
        for d in diffs {
            if d.impact == Impact::NoChange {
                plan.unchanged += 1;
            } else {
                plan.sets.push(d);
            }
        }
        plan.add_diagnostics(diagnostics);
        plan
    }

    /// Files the report's diagnostics by severity.
    pub fn add_diagnostics(&mut self, diagnostics: &[Diagnostic]) {
        for d in diagnostics {
            let list = match d.severity {
                Severity::Error => &mut self.errors,
                Severity::Warning => &mut self.warnings,
                Severity::Note => &mut self.notes,
            };
            list.push(d.into());
        }
    }

    /// True when any set changes.
    pub fn has_changes(&self) -> bool {
        !self.sets.is_empty()
    }

    /// True when some set's impact is `impact`.
    pub fn has_impact(&self, impact: Impact) -> bool {
        self.sets.iter().any(|s| s.impact == impact)
    }

    /// The report as JSON.
    pub fn to_json(&self) -> String {
        serde_json::to_string_pretty(self).unwrap_or_else(|e| format!("{{\"error\": \"{e}\"}}"))
    }

    /// The report as markdown for a pull-request comment: a summary table, then each set folded.
    pub fn to_markdown(&self) -> String {
        let mut s = String::new();
        let _ = writeln!(s, "## hotsync plan");
        let _ = writeln!(s);
        let _ = writeln!(
            s,
            "`{}` → `{}`: {} set(s) change, {} unchanged.",
            short(&self.base),
            short(&self.head),
            self.sets.len(),
            self.unchanged
        );
        let _ = writeln!(s);
        if !self.errors.is_empty() {
            let _ = writeln!(s, "> [!CAUTION]");
            let _ = writeln!(
                s,
                "> {} manifest error(s): this plan is incomplete and nothing would be applied.",
                self.errors.len()
            );
            let _ = writeln!(s);
            for e in &self.errors {
                let _ = writeln!(s, "- `{}`: {}", location(e), e.message);
            }
            let _ = writeln!(s);
        }
        if !self.sets.is_empty() {
            let _ = writeln!(s, "| Set | Impact | Containers | Pods |");
            let _ = writeln!(s, "| --- | --- | --- | --- |");
            for d in &self.sets {
                let containers: Vec<String> = d
                    .containers
                    .iter()
                    .map(|c| {
                        format!(
                            "`{}` {}",
                            c.name,
                            image_change(c.from.as_deref(), c.to.as_deref())
                        )
                    })
                    .collect();
                let _ = writeln!(
                    s,
                    "| `{}/{}` | {} {} | {} | {} |",
                    d.namespace,
                    d.name,
                    impact_icon(d.impact),
                    d.impact.as_str(),
                    if containers.is_empty() {
                        "–".to_string()
                    } else {
                        containers.join("<br>")
                    },
                    pods_cell(d)
                );
            }
            let _ = writeln!(s);
        }
        for d in &self.sets {
            let _ = writeln!(
                s,
                "<details><summary><code>{}/{}</code>: {}</summary>",
                d.namespace,
                d.name,
                d.impact.as_str()
            );
            let _ = writeln!(s);
            for w in &d.warnings {
                let _ = writeln!(s, "> [!WARNING]");
                let _ = writeln!(s, "> {w}");
                let _ = writeln!(s);
            }
            if let Some(st) = &d.steps {
                let _ = writeln!(s, "- {}", steps_line(st));
                let _ = writeln!(s);
            }
            if let Some(p) = &d.pods {
                for line in pod_lines(p) {
                    let _ = writeln!(s, "- {line}");
                }
                let _ = writeln!(s);
                if !p.steps.is_empty() {
                    let _ = writeln!(
                        s,
                        "| Step | Pods on the new template | Game servers restarted in place | Allocated (players on them) |"
                    );
                    let _ = writeln!(s, "| --- | --- | --- | --- |");
                    for st in &p.steps {
                        let _ = writeln!(
                            s,
                            "| {} of {} | {} | {} | {} |",
                            st.step,
                            st.of,
                            st.total,
                            md_names(&st.restart),
                            md_names(&st.allocated)
                        );
                    }
                    let _ = writeln!(s);
                }
            }
            if !d.changes.is_empty() {
                let _ = writeln!(s, "| Field | From | To | Class |");
                let _ = writeln!(s, "| --- | --- | --- | --- |");
                for c in &d.changes {
                    let _ = writeln!(
                        s,
                        "| `{}` | {} | {} | {} |",
                        c.path,
                        md_value(c.from.as_ref()),
                        md_value(c.to.as_ref()),
                        class_name(c.class)
                    );
                }
                let _ = writeln!(s);
            }
            let _ = writeln!(s, "</details>");
            let _ = writeln!(s);
        }
        if !self.warnings.is_empty() {
            let _ = writeln!(s, "**Warnings**");
            let _ = writeln!(s);
            for w in &self.warnings {
                let _ = writeln!(s, "- `{}`: {}", location(w), w.message);
            }
            let _ = writeln!(s);
        }
        s
    }

    /// The report as text for a terminal; `color` adds ANSI colours.
    pub fn to_text(&self, color: bool) -> String {
        use owo_colors::OwoColorize;
        let paint = |text: &str, impact: Impact| -> String {
            if !color {
                return text.to_string();
            }
            match impact {
                Impact::Recreate | Impact::Delete => text.red().bold().to_string(),
                Impact::HotUpdate => text.green().bold().to_string(),
                Impact::Create => text.cyan().bold().to_string(),
                _ => text.yellow().to_string(),
            }
        };
        let mut s = String::new();
        let _ = writeln!(s, "Plan {} → {}", short(&self.base), short(&self.head));
        for e in &self.errors {
            let _ = writeln!(s, "error: {}: {}", location(e), e.message);
        }
        for d in &self.sets {
            let _ = writeln!(s);
            let _ = writeln!(
                s,
                "{}/{}: {}",
                d.namespace,
                d.name,
                paint(d.impact.as_str(), d.impact)
            );
            for c in &d.containers {
                let how = if c.in_place {
                    "restart in place"
                } else if c.from.is_some() && c.to.is_some() {
                    "recreate"
                } else {
                    ""
                };
                let _ = writeln!(
                    s,
                    "  container {}: {} {how}",
                    c.name,
                    image_change(c.from.as_deref(), c.to.as_deref())
                );
            }
            for c in &d.changes {
                let _ = writeln!(
                    s,
                    "  {} {}: {} → {}",
                    class_name(c.class),
                    c.path,
                    text_value(c.from.as_ref()),
                    text_value(c.to.as_ref())
                );
            }
            for w in &d.warnings {
                let _ = writeln!(s, "  warning: {w}");
            }
            if let Some(st) = &d.steps {
                let _ = writeln!(s, "  {}", steps_line(st));
            }
            if let Some(p) = &d.pods {
                for line in pod_lines(p) {
                    let _ = writeln!(s, "  {line}");
                }
            }
        }
        for w in &self.warnings {
            let _ = writeln!(s, "warning: {}: {}", location(w), w.message);
        }
        let _ = writeln!(s);
        let _ = writeln!(
            s,
            "{} set(s) change, {} unchanged, {} error(s).",
            self.sets.len(),
            self.unchanged,
            self.errors.len()
        );
        s
    }
}

fn short(r: &Revision) -> String {
    match &r.commit {
        Some(c) if c.len() >= 12 && r.rev != *c => format!("{} ({})", r.rev, &c[..12]),
        Some(c) if c.len() >= 12 => c[..12].to_string(),
        _ => r.rev.clone(),
    }
}

fn location(l: &Located) -> String {
    let mut s = l.file.clone();
    if let Some(line) = l.line {
        let _ = write!(s, ":{line}");
    }
    if let Some(doc) = l.document {
        let _ = write!(s, " (document {doc})");
    }
    s
}

fn image_change(from: Option<&str>, to: Option<&str>) -> String {
    match (from, to) {
        (Some(a), Some(b)) => format!("{a} → {b}"),
        (None, Some(b)) => format!("added ({b})"),
        (Some(a), None) => format!("removed ({a})"),
        (None, None) => String::new(),
    }
}

/// What a plan against the cluster says of the pods, one line per kind.
fn pod_lines(p: &PodImpact) -> Vec<String> {
    let mut out = Vec::new();
    if !p.in_place.is_empty() {
        let pods: Vec<String> = p
            .in_place
            .iter()
            .map(|r| format!("{} ({})", r.pod, r.containers.join(", ")))
            .collect();
        out.push(format!(
            "{} pod(s) restart in place, in this order: {}",
            p.in_place.len(),
            pods.join(", ")
        ));
    }
    if !p.recreated.is_empty() {
        out.push(format!(
            "{} pod(s) recreated by OKG: {}",
            p.recreated.len(),
            p.recreated.join(", ")
        ));
    }
    if !p.allocated.is_empty() {
        out.push(format!(
            "{} Allocated game server(s) among them, players on them: {}",
            p.allocated.len(),
            p.allocated.join(", ")
        ));
    }
    for st in &p.steps {
        let allocated = if st.allocated.is_empty() {
            "none Allocated".to_string()
        } else {
            format!(
                "{} Allocated, players on them: {}",
                st.allocated.len(),
                st.allocated.join(", ")
            )
        };
        out.push(if st.restart.is_empty() {
            format!(
                "step {} of {} ({} on the new template): restarts no game server",
                st.step, st.of, st.total
            )
        } else {
            format!(
                "step {} of {} ({} on the new template): restarts {} game server(s) in place ({}), {allocated}",
                st.step,
                st.of,
                st.total,
                st.restart.len(),
                st.restart.join(", ")
            )
        });
    }
    for h in &p.held {
        out.push(format!("{} left alone: {}", h.pod, h.reason));
    }
    out
}

/// The canary steps a hot update takes, in a line.
fn steps_line(st: &crate::diff::PlannedSteps) -> String {
    let pods: Vec<String> = st.pods.iter().map(ToString::to_string).collect();
    let promote = match &st.pause {
        Some(p) => format!("each step promotes itself {p} after it completed if its gate holds"),
        None => "each step waits for `hotsync promote`".to_string(),
    };
    format!(
        "canary steps {}: {} pod(s) on the new template in total; {promote}",
        st.declared.join(", "),
        pods.join(" → ")
    )
}

/// Names for a markdown cell: `a`, `b`; `–` for none.
fn md_names(names: &[String]) -> String {
    if names.is_empty() {
        return "–".to_string();
    }
    let list: Vec<String> = names.iter().map(|n| format!("`{n}`")).collect();
    format!("{}: {}", names.len(), list.join(", "))
}

fn pods_cell(d: &SetDiff) -> String {
    if let Some(p) = &d.pods {
        let mut parts = Vec::new();
        if !p.in_place.is_empty() {
            parts.push(if p.steps.is_empty() {
                format!("{} restart in place", p.in_place.len())
            } else {
                let per: Vec<String> = p
                    .steps
                    .iter()
                    .map(|s| s.restart.len().to_string())
                    .collect();
                format!(
                    "{} restart in place in {} steps ({})",
                    p.in_place.len(),
                    p.steps.len(),
                    per.join(", ")
                )
            });
        }
        if !p.recreated.is_empty() {
            parts.push(format!("{} recreated", p.recreated.len()));
        }
        if !p.allocated.is_empty() {
            parts.push(format!("{} Allocated", p.allocated.len()));
        }
        if !p.held.is_empty() {
            parts.push(format!("{} left alone", p.held.len()));
        }
        if !parts.is_empty() {
            return parts.join(", ");
        }
    }
    match (d.impact, d.replicas.from, d.replicas.to) {
        (Impact::HotUpdate, _, Some(n)) => match &d.steps {
            Some(st) => format!("{n} restart in place in {} steps", st.pods.len()),
            None => format!("{n} restart in place"),
        },
        (Impact::Recreate, _, Some(n)) => format!("{n} recreated"),
        (Impact::Create, _, Some(n)) => format!("{n} created"),
        (Impact::Delete, Some(n), _) => format!("{n} deleted"),
        (_, Some(a), Some(b)) if a != b => format!("{a} → {b}"),
        _ => "–".to_string(),
    }
}

fn impact_icon(i: Impact) -> &'static str {
    match i {
        Impact::Recreate | Impact::Delete => "🔴",
        Impact::HotUpdate => "🟢",
        Impact::Create => "🆕",
        Impact::Scale => "↕️",
        _ => "⚙️",
    }
}

fn class_name(c: Class) -> &'static str {
    match c {
        Class::Config => "Config",
        Class::Scale => "Scale",
        Class::HotUpdate => "HotUpdate",
        Class::Recreate => "Recreate",
    }
}

fn text_value(v: Option<&serde_json::Value>) -> String {
    match v {
        None => "(absent)".to_string(),
        Some(serde_json::Value::String(s)) => s.clone(),
        Some(other) => other.to_string(),
    }
}

fn md_value(v: Option<&serde_json::Value>) -> String {
    let t = text_value(v).replace('|', "\\|");
    let t = if t.len() > 120 {
        format!(
            "{}…",
            &t[..t.char_indices().nth(117).map(|(i, _)| i).unwrap_or(t.len())]
        )
    } else {
        t
    };
    format!("`{t}`")
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::diff::{HeldPod, PodRestart};

    fn planned() -> Plan {
        let mut d = diff_sets(None, None);
        d.namespace = "games".into();
        d.name = "arena".into();
        d.impact = Impact::HotUpdate;
        d.pods = Some(PodImpact {
            in_place: vec![
                PodRestart {
                    pod: "arena-1".into(),
                    containers: vec!["agent".into()],
                },
                PodRestart {
                    pod: "arena-0".into(),
                    containers: vec!["agent".into()],
                },
            ],
            recreated: vec![],
            allocated: vec!["arena-0".into()],
            held: vec![HeldPod {
                pod: "arena-2".into(),
                reason: "opsState Allocated: updated once it changes".into(),
            }],
            steps: vec![],
        });
        Plan {
            base: Revision {
                rev: "cluster".into(),
                commit: None,
            },
            head: Revision {
                rev: "HEAD".into(),
                commit: None,
            },
            sets: vec![d],
            ..Plan::default()
        }
    }

    #[test]
    fn a_plan_against_the_cluster_lists_the_pods_in_order_and_the_players_on_them() {
        let text = planned().to_text(false);
        assert!(text.starts_with("Plan cluster → HEAD"), "{text}");
        assert!(
            text.contains(
                "  2 pod(s) restart in place, in this order: arena-1 (agent), arena-0 (agent)"
            ),
            "{text}"
        );
        assert!(
            text.contains("  1 Allocated game server(s) among them, players on them: arena-0"),
            "{text}"
        );
        assert!(
            text.contains("  arena-2 left alone: opsState Allocated"),
            "{text}"
        );
        let md = planned().to_markdown();
        assert!(
            md.contains("| 2 restart in place, 1 Allocated, 1 left alone |"),
            "{md}"
        );
    }

    #[test]
    fn a_plan_with_canary_steps_shows_each_step_and_the_players_it_reaches() {
        let mut plan = planned();
        let d = &mut plan.sets[0];
        d.steps = Some(crate::diff::PlannedSteps {
            declared: vec!["1".into(), "100%".into()],
            pods: vec![1, 3],
            pause: Some("10m".into()),
        });
        let p = d.pods.as_mut().expect("pods");
        p.steps = vec![
            crate::diff::StepImpact {
                step: 1,
                of: 2,
                total: 1,
                restart: vec!["arena-1".into()],
                allocated: vec![],
            },
            crate::diff::StepImpact {
                step: 2,
                of: 2,
                total: 2,
                restart: vec!["arena-0".into()],
                allocated: vec!["arena-0".into()],
            },
        ];
        let text = plan.to_text(false);
        assert!(
            text.contains("  canary steps 1, 100%: 1 → 3 pod(s) on the new template in total; each step promotes itself 10m after it completed if its gate holds"),
            "{text}"
        );
        assert!(
            text.contains("  step 1 of 2 (1 on the new template): restarts 1 game server(s) in place (arena-1), none Allocated"),
            "{text}"
        );
        assert!(
            text.contains("  step 2 of 2 (2 on the new template): restarts 1 game server(s) in place (arena-0), 1 Allocated, players on them: arena-0"),
            "{text}"
        );
        let md = plan.to_markdown();
        assert!(
            md.contains("| 2 restart in place in 2 steps (1, 1), 1 Allocated, 1 left alone |"),
            "{md}"
        );
        assert!(md.contains("| 1 of 2 | 1 | 1: `arena-1` | – |"), "{md}");
        assert!(
            md.contains("| 2 of 2 | 2 | 1: `arena-0` | 1: `arena-0` |"),
            "{md}"
        );
    }
}
