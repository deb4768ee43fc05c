//! All integration tests, built into one binary (one link, one API server for the whole run).

mod formatting_props;
mod gitrepo;
mod plan_cases;
mod plan_cli;
mod upstream_examples;
