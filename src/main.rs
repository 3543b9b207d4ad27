//! The `configurapi-runner-ws` binary: parse the command line, load the config, start
//! the reactor, and shut down gracefully on SIGINT/SIGTERM.

use std::io::Write;
use std::path::Path;
use std::process::ExitCode;
use std::sync::Arc;

use configurapi_runner_ws::cli::{self, Command};
use configurapi_runner_ws::configurapi::Service;
use configurapi_runner_ws::reactor::MgmtConfig;
use configurapi_runner_ws::runner::{self, Runner, RunnerOptions};
use configurapi_runner_ws::{Mode, Server};

fn main() -> ExitCode {
    let mut argv: Vec<std::ffi::OsString> = std::env::args_os().skip(1).collect();
    if argv.first().is_some_and(|a| a == "post") {
        argv.remove(0);
        return match configurapi_runner_ws::postback::run_post_command(argv) {
            Ok(()) => ExitCode::SUCCESS,
            Err(e) => {
                eprintln!("error: {e}");
                ExitCode::from(e.exit_code)
            }
        };
    }
    let cmd = match cli::parse(argv) {
        Ok(c) => c,
        Err(e) => {
            eprintln!("error: {e}");
            return ExitCode::from(2);
        }
    };
    let mut args = match cmd {
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

    if let Some((key, cert)) = &args.tls_files {
        match configurapi_runner_ws::tls::load(cert, key) {
            Ok(files) => {
                if let Some(w) = files.expired_warning {
                    log::warn!("{w}");
                }
                args.server.tls = Some(configurapi_runner_ws::TlsSettings {
                    listen: args.secure_listen,
                    server_config: files.server_config,
                });
            }
            Err(e) => {
                eprintln!("error: {e}");
                return ExitCode::from(2);
            }
        }
    }

    let mut js_host = None;
    let what = if args.echo {
        args.server.mode = Mode::Echo;
        "raw echo".to_string()
    } else {
        let (service, source) = match load_service(
            args.config_path.as_deref(),
            args.node.as_deref(),
            args.handler_timeout,
            &mut js_host,
        ) {
            Ok(s) => s,
            Err(e) => {
                eprintln!("error: {e}");
                return ExitCode::from(2);
            }
        };
        let opts = RunnerOptions {
            postback_base: args.postback_base.clone(),
            inline: args.inline,
        };
        args.server.mode = Mode::App(Arc::new(Runner::new(service, opts)));
        format!("Configurapi, {source}")
    };

    // The management API: on at 127.0.0.1:9100 in Configurapi mode, off in echo mode
    // unless a port is given (benchmarks run several echo servers side by side).
    let mgmt_port = match args.management_port {
        Some(p) => p,
        None if args.echo => 0,
        None => configurapi_runner_ws::mgmt::DEFAULT_PORT,
    };
    if mgmt_port != 0 {
        let token = args.management_token.clone().or_else(|| {
            std::env::var(configurapi_runner_ws::mgmt::TOKEN_ENV)
                .ok()
                .filter(|t| !t.is_empty())
        });
        if let Some(t) = &args.management_token {
            // Handlers' postbacks (postback::postback) read the token from the
            // variable; set it before Server::bind starts the worker threads.
            std::env::set_var(configurapi_runner_ws::mgmt::TOKEN_ENV, t);
        }
        let tls = match (&args.server.tls, args.management_tls) {
            (Some(t), true) => Some(t.server_config.clone()),
            _ => None,
        };
        args.server.management = Some(MgmtConfig {
            listen: std::net::SocketAddr::new(args.management_host, mgmt_port),
            token,
            tls,
            ..MgmtConfig::default()
        });
    }
    let args_management_tls = args.management_tls;
    let args_handler_timeout = args.handler_timeout;
    let server = match Server::bind(args.server) {
        Ok(s) => s,
        Err(e) => {
            eprintln!("error: {e}");
            return ExitCode::from(2);
        }
    };
    if let Err(e) = shutdown_on_signals(server.handle()) {
        eprintln!("error: cannot install signal handlers: {e}");
        return ExitCode::from(2);
    }
    log::info!(
        "configurapi-runner-ws listening on ws://{} ({what})",
        server.local_addr()
    );
    if let Some(addr) = server.secure_addr() {
        log::info!("secure listener on wss://{addr}");
    }
    if let Some(addr) = server.management_addr() {
        let scheme = if args_management_tls { "https" } else { "http" };
        log::info!("management API on {scheme}://{addr}");
    }
    let ran = server.run();
    if let Some(host) = js_host {
        // In-flight JS calls finish before the host stops (the reactor has drained).
        host.shutdown(args_handler_timeout);
    }
    match ran {
        Ok(()) => {
            log::info!("stopped");
            ExitCode::SUCCESS
        }
        Err(e) => {
            eprintln!("error: reactor stopped: {e}");
            ExitCode::FAILURE
        }
    }
}

/// `--config PATH`, else `./config.yaml` when it exists, else the embedded default.
/// A config whose folder has `handlers/*.js` may start the JS host (`js_host`).
fn load_service(
    path: Option<&Path>,
    node: Option<&Path>,
    handler_timeout: std::time::Duration,
    js_host: &mut Option<configurapi_runner_ws::jshost::JsHost>,
) -> Result<(Service, String), String> {
    let registry = runner::registry();
    let local = Path::new("config.yaml");
    let path = match path {
        Some(p) => Some(p),
        None if local.exists() => Some(local),
        None => None,
    };
    match path {
        Some(p) => configurapi_runner_ws::jshost::load_service(p, registry, node, handler_timeout)
            .map(|loaded| {
                *js_host = loaded.host;
                (loaded.service, format!("config {}", p.display()))
            }),
        None => Service::from_str(runner::DEFAULT_CONFIG, "<built-in config>", registry)
            .map(|s| {
                (
                    s,
                    "built-in default config (no --config and no ./config.yaml)".to_string(),
                )
            })
            .map_err(|e| e.to_string()),
    }
}

/// SIGINT/SIGTERM start a graceful shutdown: stop accepting, close every connection
/// with 1001, let handlers finish, run on_disconnect, exit 0.
fn shutdown_on_signals(handle: configurapi_runner_ws::Handle) -> std::io::Result<()> {
    use signal_hook::consts::{SIGINT, SIGTERM};
    let mut signals = signal_hook::iterator::Signals::new([SIGINT, SIGTERM])?;
    std::thread::Builder::new()
        .name("signals".into())
        .spawn(move || {
            if let Some(sig) = signals.forever().next() {
                log::info!("signal {sig}: shutting down");
                let _ = handle.shutdown();
            }
        })?;
    Ok(())
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
