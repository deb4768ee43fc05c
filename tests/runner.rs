//! All integration tests, built into one binary (one link, one API server for the whole run).

mod bad_input;
mod crash_safety;
mod daemon_run;
mod demo;
mod deploy_manifests;
mod deploy_real;
mod formatting_props;
mod git_faults;
mod gitrepo;
mod harness;
mod helm;
mod kustomize;
mod plan_cases;
mod plan_cli;
mod players;
mod real_node;
mod secrets;
mod set_image;
mod sim_cluster;
mod sim_fidelity;
mod sim_upstream;
mod status_git;
mod status_servers;
mod sync_rollout;
mod upstream_examples;
mod wait;
