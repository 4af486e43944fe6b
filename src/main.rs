//! The `attestgate` command: parses the command line and runs one command.

use std::process::ExitCode;

use clap::Parser as _;

fn main() -> ExitCode {
    let cli = attestgate::cli::Cli::parse();
    attestgate::cli::init_tracing(cli.verbose);
    attestgate::cli::run(cli)
}
