//! `hotsync demo`, run as a user runs it: the story ends with every seed pod restarted once, in place,
//! as the real kubectl shows it, and the status commit in Git. On the simulated kubelet here; on the
//! real node in `real_node.rs`.

use std::time::Duration;

/// What one `$ kubectl ...` block of the demo's output printed: its command and its rows, split into
/// columns.
pub(crate) struct KubectlBlock {
    pub command: String,
    pub header: Vec<String>,
    pub rows: Vec<Vec<String>>,
}

impl KubectlBlock {
    /// The value of `column` in the row whose first column is `name`.
    pub fn cell(&self, name: &str, column: &str) -> Option<&str> {
        let i = self.header.iter().position(|h| h == column)?;
        let row = self
            .rows
            .iter()
            .find(|r| r.first().map(String::as_str) == Some(name))?;
        row.get(i).map(String::as_str)
    }
}

/// The `$ kubectl` blocks of the demo's output, in order.
pub(crate) fn kubectl_blocks(out: &str) -> Vec<KubectlBlock> {
    let mut blocks: Vec<KubectlBlock> = Vec::new();
    let mut current: Option<KubectlBlock> = None;
    for line in out.lines() {
        if let Some(cmd) = line.strip_prefix("$ kubectl ") {
            blocks.extend(current.take());
            current = Some(KubectlBlock {
                command: cmd.to_string(),
                header: Vec::new(),
                rows: Vec::new(),
            });
        } else if line.trim().is_empty() || line.starts_with("\u{1b}[") {
            blocks.extend(current.take());
        } else if let Some(b) = current.as_mut() {
            let cols: Vec<String> = line.split_whitespace().map(str::to_string).collect();
            if b.header.is_empty() {
                b.header = cols;
            } else {
                b.rows.push(cols);
            }
        }
    }
    blocks.extend(current);
    blocks
}

/// Runs `hotsync demo ARGS` to its end (at most `limit`), returning its exit code and output.
pub(crate) async fn run_demo(args: &[&str], limit: Duration) -> (i32, String) {
    let child = tokio::process::Command::new(env!("CARGO_BIN_EXE_hotsync"))
        .arg("demo")
        .args(args)
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .kill_on_drop(true)
        .output();
    let out = tokio::time::timeout(limit, child)
        .await
        .unwrap_or_else(|_| panic!("hotsync demo did not finish in {limit:?}"))
        .unwrap_or_else(|e| panic!("hotsync demo could not run: {e}"));
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    (out.status.code().unwrap_or(-1), text)
}

/// The story every demo tells, whatever its node: three seed pods listed before and after the bump, each
/// restarted once, on the same IP, and the status commit saying so; then the canary: the plan against
/// the cluster names the one game server of step 1, the sync updates it alone and pauses (Paused, step
/// 1/2 in the status in Git), and after `hotsync promote` the other two follow, still the same pods.
pub(crate) fn assert_the_story(out: &str) {
    let pods: Vec<KubectlBlock> = kubectl_blocks(out)
        .into_iter()
        .filter(|b| b.command.starts_with("get pod"))
        .collect();
    assert_eq!(
        pods.len(),
        4,
        "pod listings before and after the bump, at the canary's step, after the promote:\n{out}"
    );
    let (before, after, canary, promoted) = (&pods[0], &pods[1], &pods[2], &pods[3]);
    for pod in ["minecraft-0", "minecraft-1", "minecraft-2"] {
        assert_eq!(
            before.cell(pod, "RESTARTS"),
            Some("0"),
            "{pod} before:\n{out}"
        );
        assert_eq!(
            after.cell(pod, "RESTARTS"),
            Some("1"),
            "{pod} after:\n{out}"
        );
        assert_eq!(
            canary.cell(pod, "RESTARTS"),
            Some(if pod == "minecraft-2" { "2" } else { "1" }),
            "{pod} at the canary's step: only the highest ordinal is updated:\n{out}"
        );
        assert_eq!(
            promoted.cell(pod, "RESTARTS"),
            Some("2"),
            "{pod} after the promote:\n{out}"
        );
        for (when, b) in [("after", after), ("promoted", promoted)] {
            assert_eq!(b.cell(pod, "READY"), Some("2/2"), "{pod} {when}:\n{out}");
            assert_eq!(
                b.cell(pod, "STATUS"),
                Some("Running"),
                "{pod} {when}:\n{out}"
            );
            assert_eq!(
                b.cell(pod, "IP"),
                before.cell(pod, "IP"),
                "{pod} keeps its IP {when}:\n{out}"
            );
        }
    }
    assert_eq!(
        out.matches("+    sidecar: 1").count(),
        3,
        "the status commit counts one sidecar restart per pod:\n{out}"
    );
    assert!(
        out.contains(
            "step 1 of 2 (1 on the new template): restarts 1 game server(s) in place (minecraft-2), none Allocated"
        ),
        "the plan names the canary's game server:\n{out}"
    );
    assert!(
        out.contains("step: 1/2"),
        "the status in Git says the set is paused at step 1 of 2:\n{out}"
    );
    assert_eq!(
        out.matches("  waiting: \"the rollout is paused at step 1 of 2")
            .count(),
        2,
        "the two pods left for step 2 are waiting, not in error:\n{out}"
    );
    assert!(!out.contains("lastError"), "no pod failed:\n{out}");
}

#[tokio::test]
async fn the_demo_on_the_simulated_kubelet_restarts_each_sidecar_once_as_kubectl_shows() {
    let (code, out) = run_demo(&["--node", "simulated"], Duration::from_secs(300)).await;
    assert_eq!(code, 0, "hotsync demo failed:\n{out}");
    assert!(out.contains("a simulated kubelet"), "{out}");
    assert_the_story(&out);
}
