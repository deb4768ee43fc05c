use clap::Parser as _;

mod cli;

fn main() {
    let args = cli::Cli::parse();
    // Before any thread and any other use of libgit2: a command that reads a local repository only
    // does not pay for loading the CA bundle.
    if args.command.local_only() {
        hotsync::git::tls::defer_ca_bundle();
    }
    let code = match cli::run(args) {
        Ok(code) => code,
        Err(e) => {
            eprintln!("error: {e:#}");
            2
        }
    };
    std::process::exit(code);
}

#[cfg(test)]
mod tests {
    #[test]
    fn the_command_line_is_consistent() {
        use clap::CommandFactory as _;
        super::cli::Cli::command().debug_assert();
    }
}
