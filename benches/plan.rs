//! Benchmark: `hotsync plan` beside `git diff --stat` on the same two commits of a generated repository.
//!
//! Run with `cargo bench --bench plan` (optionally `-- 2000 20000` to choose the sizes). For each size N
//! it makes a repository of N GameServerSets in N/100 folders, commits, bumps the sidecar of 200 sets,
//! commits again, and times both commands (best of 5 runs each). The goal: at most 3x git's time, and a
//! cost that follows the 200 changed files, not N.

use std::path::Path;
use std::process::Command;
use std::time::{Duration, Instant};

fn set(i: usize, tag: &str) -> String {
    format!(
        "apiVersion: game.kruise.io/v1alpha1
kind: GameServerSet
metadata:
  name: game-{i}
  namespace: ns-{ns}
spec:
  replicas: 3
  updateStrategy:
    rollingUpdate:
      podUpdatePolicy: InPlaceIfPossible
  gameServerTemplate:
    spec:
      containers:
        - name: engine
          image: registry.example.com/engine:1.0.{i}
          resources:
            requests: {{cpu: 500m, memory: 1Gi}}
        - name: sidecar
          image: registry.example.com/sidecar:{tag}
",
        ns = i % 10
    )
}

fn git(dir: &Path, args: &[&str]) {
    let ok = Command::new("git")
        .args([
            "-c",
            "user.name=bench",
            "-c",
            "user.email=bench@example.com",
        ])
        .args(args)
        .current_dir(dir)
        .output()
        .expect("git")
        .status
        .success();
    assert!(ok, "git {args:?} failed");
}

fn best_of(n: usize, mut f: impl FnMut()) -> Duration {
    (0..n)
        .map(|_| {
            let t = Instant::now();
            f();
            t.elapsed()
        })
        .min()
        .unwrap_or_default()
}

fn main() {
    let sizes: Vec<usize> = std::env::args()
        .skip(1)
        .filter_map(|a| a.parse().ok())
        .collect();
    let sizes = if sizes.is_empty() {
        vec![2_000, 20_000]
    } else {
        sizes
    };
    let changed = 200;
    println!(
        "{:>8} {:>8} {:>14} {:>14} {:>7}",
        "sets", "changed", "hotsync plan", "git diff --stat", "ratio"
    );
    for n in sizes {
        let dir = tempfile::tempdir().expect("tempdir");
        let root = dir.path();
        git(root, &["init", "-q"]);
        for i in 0..n {
            let folder = root.join(format!("sets/group-{}", i / 100));
            std::fs::create_dir_all(&folder).expect("mkdir");
            std::fs::write(folder.join(format!("game-{i}.yaml")), set(i, "v0.1")).expect("write");
        }
        git(root, &["add", "-A"]);
        git(root, &["commit", "-qm", "base"]);
        for i in (0..n).step_by(n / changed) {
            let path = root.join(format!("sets/group-{}/game-{i}.yaml", i / 100));
            std::fs::write(path, set(i, "v0.2")).expect("write");
        }
        git(root, &["commit", "-qam", "bump 200 sidecars"]);
        let hotsync = env!("CARGO_BIN_EXE_hotsync");
        let plan = best_of(5, || {
            let out = Command::new(hotsync)
                .args(["plan", "--base", "HEAD~1", "--head", "HEAD", "-o", "json"])
                .current_dir(root)
                .output()
                .expect("hotsync plan");
            assert_eq!(
                out.status.code(),
                Some(1),
                "{}",
                String::from_utf8_lossy(&out.stderr)
            );
            let v: serde_json::Value = serde_json::from_slice(&out.stdout).expect("json");
            assert_eq!(v["sets"].as_array().map(Vec::len), Some(changed));
        });
        let diff = best_of(5, || {
            let out = Command::new("git")
                .args(["diff", "--stat", "HEAD~1", "HEAD"])
                .current_dir(root)
                .output()
                .expect("git diff");
            assert!(out.status.success());
        });
        println!(
            "{:>8} {:>8} {:>12.1}ms {:>13.1}ms {:>6.2}x",
            n,
            changed,
            plan.as_secs_f64() * 1e3,
            diff.as_secs_f64() * 1e3,
            plan.as_secs_f64() / diff.as_secs_f64()
        );
    }
}
