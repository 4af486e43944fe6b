//! The `attestgate` command: parses the command line and runs one command.

use std::process::ExitCode;

use clap::Parser as _;

fn main() -> ExitCode {
    // regorus backtracks through `anyhow` errors while parsing Rego; with RUST_BACKTRACE set,
    // each of those would capture a backtrace and parsing becomes 20-50 times slower. Panics
    // keep their backtraces; errors stop paying for them. This runs before any thread starts.
    if std::env::var_os("RUST_LIB_BACKTRACE").is_none() {
        std::env::set_var("RUST_LIB_BACKTRACE", "0");
    }
    let cli = attestgate::cli::Cli::parse();
    attestgate::cli::init_tracing(&cli);
    attestgate::cli::run(cli)
}
