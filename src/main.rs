//! The `configurapi-runner-ws` binary: the command line ([`cli::main_with`]) with the
//! built-in handler packs and `configurapi-handler-ws`.

use std::process::ExitCode;

use configurapi_runner_ws::{cli, runner};

fn main() -> ExitCode {
    cli::main_with(runner::registry())
}
