//! The `configurapi-runner-ws` binary: parse the command line, start the reactor.

use std::io::Write;
use std::process::ExitCode;

use configurapi_runner_ws::cli::{self, Command};
use configurapi_runner_ws::Server;

fn main() -> ExitCode {
    let cmd = match cli::parse(std::env::args_os().skip(1)) {
        Ok(c) => c,
        Err(e) => {
            eprintln!("error: {e}");
            return ExitCode::from(2);
        }
    };
    let args = match cmd {
        Command::Help => {
            print!("{}", cli::USAGE);
            return ExitCode::SUCCESS;
        }
        Command::Version => {
            println!("configurapi-runner-ws {}", env!("CARGO_PKG_VERSION"));
            return ExitCode::SUCCESS;
        }
        Command::Run(args) => args,
    };
    StderrLogger::install(args.log_level);
    let listen = args.server.listen;
    let server = match Server::bind(args.server) {
        Ok(s) => s,
        Err(e) => {
            eprintln!(
                "error: cannot listen on port {} ({}): {e}",
                listen.port(),
                listen.ip()
            );
            return ExitCode::from(2);
        }
    };
    log::info!(
        "configurapi-runner-ws listening on ws://{} (mode: echo)",
        server.local_addr()
    );
    match server.run() {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("error: reactor stopped: {e}");
            ExitCode::FAILURE
        }
    }
}

/// Log lines go to stderr as `LEVEL message`; nothing more is needed here.
struct StderrLogger;

impl StderrLogger {
    fn install(level: log::LevelFilter) {
        static LOGGER: StderrLogger = StderrLogger;
        if log::set_logger(&LOGGER).is_ok() {
            log::set_max_level(level);
        }
    }
}

impl log::Log for StderrLogger {
    fn enabled(&self, meta: &log::Metadata<'_>) -> bool {
        meta.level() <= log::max_level()
    }
    fn log(&self, record: &log::Record<'_>) {
        if self.enabled(record.metadata()) {
            let _ = writeln!(
                std::io::stderr().lock(),
                "{:<5} {}",
                record.level(),
                record.args()
            );
        }
    }
    fn flush(&self) {}
}
