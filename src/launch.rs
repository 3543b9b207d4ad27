//! The whole command line as one call (re-exported as [`crate::cli::main_with`] and
//! [`crate::cli::Cli`]): flags, logging, the config with the caller's handlers, TLS,
//! the management API, signals and the exit status. The `configurapi-runner-ws`
//! binary is `main_with(runner::registry())`; a binary with Rust handlers of its own
//! registers them on that registry first and gets the same program.

use std::borrow::Cow;
use std::ffi::OsString;
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::sync::{Arc, Mutex};
use std::time::Instant;

use crate::cli::{self, Command, RunArgs};
use crate::config::MgmtConfig;
use crate::configurapi::{HandlerRegistry, Service};
use crate::jshost::JsHost;
use crate::runner::{self, Runner, RunnerOptions};
use crate::{Mode, Server};

/// Runs the command line of `std::env::args` with these handlers: what the
/// `configurapi-runner-ws` binary does (it calls this with [`runner::registry`]).
/// Returns the exit status: 0 after a clean stop, 2 for a bad flag or config, 1 when
/// the reactor fails.
///
/// ```no_run
/// use configurapi_runner_ws::configurapi::{Context, Event, HandlerError};
/// use configurapi_runner_ws::{cli, runner};
/// use serde_json::Value;
///
/// fn ok(event: &mut Event, _: &[Value], _: &mut Context) -> Result<(), HandlerError> {
///     event.response.status_code = 204;
///     Ok(())
/// }
///
/// fn main() -> std::process::ExitCode {
///     let mut registry = runner::registry();
///     registry.register("okHandler", ok);
///     cli::main_with(registry)
/// }
/// ```
pub fn main_with(registry: HandlerRegistry) -> ExitCode {
    Cli::new(registry).run()
}

/// The command line with settings a program may change before running it.
pub struct Cli {
    registry: HandlerRegistry,
    default_config: Cow<'static, str>,
}

impl Cli {
    /// The command line with these handlers, serving [`runner::DEFAULT_CONFIG`] when
    /// there is no `--config` and no `./config.yaml`.
    pub fn new(registry: HandlerRegistry) -> Cli {
        Cli {
            registry,
            default_config: Cow::Borrowed(runner::DEFAULT_CONFIG),
        }
    }

    /// The config served when there is no `--config` and no `./config.yaml`.
    pub fn default_config(mut self, yaml: impl Into<Cow<'static, str>>) -> Cli {
        self.default_config = yaml.into();
        self
    }

    /// Runs with `std::env::args` (the program name skipped).
    pub fn run(self) -> ExitCode {
        self.run_args(std::env::args_os().skip(1))
    }

    /// Runs with these arguments (the program name not included).
    pub fn run_args<I>(self, args: I) -> ExitCode
    where
        I: IntoIterator,
        I::Item: Into<OsString>,
    {
        let args = match cli::parse(args) {
            Ok(Command::Run(args)) => args,
            Ok(Command::Help) => {
                print!("{}", cli::USAGE);
                return ExitCode::SUCCESS;
            }
            Ok(Command::Version) => {
                println!("configurapi-runner-ws {}", env!("CARGO_PKG_VERSION"));
                return ExitCode::SUCCESS;
            }
            Ok(Command::PostHelp) => {
                print!("{}", crate::postback::POST_USAGE);
                return ExitCode::SUCCESS;
            }
            Ok(Command::Post(post)) => {
                return match crate::postback::run_post(&post) {
                    Ok(()) => ExitCode::SUCCESS,
                    Err(e) => fail(e.exit_code, &e.to_string()),
                };
            }
            Ok(Command::HealthcheckHelp) => {
                print!("{}", crate::healthcheck::HEALTHCHECK_USAGE);
                return ExitCode::SUCCESS;
            }
            Ok(Command::Healthcheck(h)) => {
                return match crate::healthcheck::run(&h) {
                    Ok(()) => ExitCode::SUCCESS,
                    Err((code, e)) => fail(code, &format!("healthcheck: {e}")),
                };
            }
            Err(e) => return fail(2, &e),
        };
        let filter = match crate::logging::Filter::new(
            args.log_level,
            std::env::var("RUST_LOG").ok().as_deref(),
        ) {
            Ok(f) => f,
            Err(e) => return fail(2, &e),
        };
        crate::logging::install(filter, args.log_format, args.access_log);
        match self.serve(*args) {
            Ok(()) => {
                log::info!("stopped");
                // Every queued line reaches stderr before the process ends.
                crate::logging::flush();
                ExitCode::SUCCESS
            }
            Err((code, message)) => fail(code, &message),
        }
    }

    /// Builds the server from the flags and runs it until a signal stops it. An error
    /// is an exit status and a one-line message.
    fn serve(self, mut args: RunArgs) -> Result<(), (u8, String)> {
        let usage = |e: String| (2, e);
        if let Some((key, cert)) = &args.tls_files {
            let files = crate::tls::load(cert, key).map_err(|e| usage(e.to_string()))?;
            if let Some(w) = files.expired_warning {
                log::warn!("{w}");
            }
            args.server.tls = Some(crate::TlsSettings {
                listen: args.secure_listen,
                server_config: files.server_config,
            });
        }

        if let (true, Some((_, cert))) = (args.management_tls, &args.tls_files) {
            // The postback-urls are https:// to the management listener: handlers'
            // postbacks (Rust and JS, whose host starts below) trust what it serves.
            crate::postback::set_cacert(cert.clone());
        }
        // cluster: the link goes in before the runner and the bind; the thread starts once the
        // management address (the default node id) is known.
        let cluster = match &args.cluster {
            Some(c) => {
                let (link, rx) = crate::cluster::link(&c.url).map_err(usage)?;
                args.server.cluster = Some(Arc::clone(&link));
                Some((c.clone(), link, rx))
            }
            None => None,
        };
        let js_host: Arc<Mutex<Option<JsHost>>> = Arc::default();
        let mut runner = None;
        let registry = self.registry.clone();
        let what = if args.echo {
            args.server.mode = Mode::Echo;
            "raw echo".to_string()
        } else {
            let (service, source, host) = self.load_service(&args)?;
            *lock(&js_host) = host;
            let opts = RunnerOptions {
                postback_base: args.postback_base.clone(),
                inline: args.inline,
                directory: args.server.cluster.clone(),
            };
            let app = Arc::new(Runner::new(service, opts));
            runner = Some(Arc::clone(&app));
            args.server.mode = Mode::App(app);
            format!("Configurapi, {source}")
        };
        args.server.reload = Some(reloader(&args, registry, runner, Arc::clone(&js_host)));

        // The management API: on at 127.0.0.1:9100 in Configurapi mode, off in echo mode
        // unless a port is given (benchmarks run several echo servers side by side).
        let mgmt_port = match args.management_port {
            Some(p) => p,
            None if args.echo => 0,
            None => crate::mgmt::DEFAULT_PORT,
        };
        if mgmt_port != 0 {
            if let Some(t) = &args.management_token {
                // Handlers' postbacks (postback::postback) send it.
                crate::postback::set_token(t.clone());
            }
            let tls = match (&args.server.tls, args.management_tls) {
                (Some(t), true) => Some(t.server_config.clone()),
                _ => None,
            };
            args.server.management = Some(MgmtConfig {
                listen: std::net::SocketAddr::new(args.management_host, mgmt_port),
                token: management_token(&args),
                tls,
                ..MgmtConfig::default()
            });
        }
        let management_scheme = if args.management_tls { "https" } else { "http" };
        let shutdown_timeout = args.server.shutdown_timeout;
        let postback_base = args.postback_base.clone();
        let server = Server::bind(args.server).map_err(|e| usage(e.to_string()))?;
        if let Some((c, link, rx)) = cluster {
            crate::cluster::join(
                &c,
                postback_base.as_deref(),
                &server,
                management_scheme,
                link,
                rx,
            )
            .map_err(usage)?;
        }
        let signalled = Arc::new(std::sync::OnceLock::new());
        shutdown_on_signals(server.handle(), Arc::clone(&signalled))
            .map_err(|e| usage(format!("cannot install signal handlers: {e}")))?;
        log::info!(
            "configurapi-runner-ws listening on ws://{} ({what})",
            server.local_addr()
        );
        if let Some(addr) = server.secure_addr() {
            log::info!("secure listener on wss://{addr}");
        }
        if let Some(addr) = server.management_addr() {
            log::info!("management API on {management_scheme}://{addr}");
        }
        // Every listener is bound and listening: connections queue until the loop runs.
        crate::sdnotify::notify("READY=1\nSTATUS=serving");
        let handler_timeout = args.handler_timeout;
        let ran = server.run();
        if let Some(host) = lock(&js_host).take() {
            // In-flight JS calls finish before the host is stopped (the drain has
            // waited for them already), within what is left of the shutdown timeout.
            let grace = match signalled.get() {
                Some(&at) => (at + shutdown_timeout).saturating_duration_since(Instant::now()),
                None => handler_timeout,
            };
            host.shutdown(grace);
        }
        ran.map_err(|e| (1, format!("reactor stopped: {e}")))
    }

    /// `--config PATH`, else `./config.yaml` when it exists, else the default config.
    /// A config whose folder has `handlers/*.js` may start the JS handler host.
    fn load_service(
        self,
        args: &RunArgs,
    ) -> Result<(Service, String, Option<JsHost>), (u8, String)> {
        let loaded = match config_file(args) {
            Some(p) => {
                return crate::jshost::load_service(&p, self.registry, &js_options(args))
                    .map(|l| (l.service, format!("config {}", p.display()), l.host))
                    .map_err(|e| (2, e));
            }
            None => Service::from_str(&self.default_config, "<built-in config>", self.registry)
                .map(|s| {
                    (
                        s,
                        "built-in default config (no --config and no ./config.yaml)".to_string(),
                    )
                }),
        };
        loaded
            .map(|(s, source)| (s, source, None))
            .map_err(|e| (2, e.to_string()))
    }
}

/// The config file served: `--config`, else `./config.yaml` when it exists, else none
/// (the built-in config).
fn config_file(args: &RunArgs) -> Option<PathBuf> {
    let local = Path::new(crate::configurapi::config::DEFAULT_CONFIG_PATH);
    match &args.config_path {
        Some(p) => Some(p.clone()),
        None if local.exists() => Some(local.to_path_buf()),
        None => None,
    }
}

/// The management token: `--management-token`, else the environment's.
fn management_token(args: &RunArgs) -> Option<String> {
    args.management_token
        .clone()
        .or_else(crate::postback::token)
}

/// How the JS host is started (it hands the token to `wsPostbackFunction`).
fn js_options(args: &RunArgs) -> crate::jshost::JsOptions {
    crate::jshost::JsOptions {
        node: args.node.clone(),
        timeout: args.handler_timeout,
        token: management_token(args),
        postback_ca: crate::postback::cacert(),
    }
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|e| e.into_inner())
}

/// SIGHUP and `POST /@reload` (#14): read the TLS files and the config again; only
/// when both load does the runner switch to the new config (and JS host, whose
/// predecessor stops once its calls in flight have finished) and the listener to the
/// new certificate. The built-in default config has no file to read again.
fn reloader(
    args: &RunArgs,
    registry: HandlerRegistry,
    runner: Option<Arc<Runner>>,
    js_host: Arc<Mutex<Option<JsHost>>>,
) -> crate::Reloader {
    let tls_files = args.tls_files.clone();
    let config = config_file(args);
    let js = js_options(args);
    let grace = args.handler_timeout;
    crate::Reloader(Arc::new(move || {
        let mut done = Vec::new();
        let tls = match &tls_files {
            Some((key, cert)) => {
                let files = crate::tls::load(cert, key)?;
                if let Some(w) = files.expired_warning {
                    log::warn!("{w}");
                }
                done.push(format!("certificate {}", cert.display()));
                Some(files.server_config)
            }
            None => None,
        };
        if let (Some(runner), Some(path)) = (&runner, &config) {
            let loaded = crate::jshost::load_service(path, registry.clone(), &js)?;
            runner.reload(loaded.service);
            let old = std::mem::replace(&mut *lock(&js_host), loaded.host);
            if let Some(old) = old {
                // Calls already made finish on the host they started on.
                let _ = std::thread::Builder::new()
                    .name("js-host-stop".into())
                    .spawn(move || old.shutdown(grace));
            }
            done.push(format!("config {}", path.display()));
        }
        if done.is_empty() {
            return Err("nothing to reload: no config file and no TLS files".to_string());
        }
        Ok(crate::Reloaded {
            tls,
            summary: done.join(", "),
        })
    }))
}

/// Prints `error: <message>` and returns the exit status.
fn fail(code: u8, message: &str) -> ExitCode {
    // The log lines before it come first (a no-op before the logger is installed).
    crate::logging::flush();
    eprintln!("error: {message}");
    ExitCode::from(code)
}

/// The first SIGINT/SIGTERM starts the drain (9.5; the time goes in `signalled`); a
/// second one ends the process at once, with status 128 + its number as a shell
/// reports a process killed by it. SIGHUP reloads the config and TLS files.
fn shutdown_on_signals(
    handle: crate::Handle,
    signalled: Arc<std::sync::OnceLock<Instant>>,
) -> std::io::Result<()> {
    use signal_hook::consts::{SIGHUP, SIGINT, SIGTERM};
    let mut signals = signal_hook::iterator::Signals::new([SIGINT, SIGTERM, SIGHUP])?;
    std::thread::Builder::new()
        .name("signals".into())
        .spawn(move || {
            for sig in signals.forever() {
                if sig == SIGHUP {
                    // The reactor logs the outcome (one line either way).
                    log::info!("signal {sig}: reloading");
                    crate::sdnotify::reloading();
                    let status = match handle.reload() {
                        Ok(Ok(_)) => "serving",
                        _ => "serving (the last reload failed: see the log)",
                    };
                    crate::sdnotify::notify(&format!("READY=1\nSTATUS={status}"));
                } else if signalled.set(Instant::now()).is_ok() {
                    log::info!("signal {sig}: draining (a second signal exits at once)");
                    crate::sdnotify::notify("STOPPING=1\nSTATUS=draining");
                    let _ = handle.shutdown();
                } else {
                    log::warn!("signal {sig} again: exiting now, without draining");
                    crate::logging::flush();
                    std::process::exit(128 + sig);
                }
            }
        })?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The exit statuses that need no server: usage, version, and a config that does
    /// not load (each without binding a port).
    #[test]
    fn exit_statuses_of_runs_that_stop_before_serving() {
        let cli = || Cli::new(runner::registry());
        assert_eq!(cli().run_args(["--version"]), ExitCode::SUCCESS);
        assert_eq!(cli().run_args(["post", "--help"]), ExitCode::SUCCESS);
        assert_eq!(cli().run_args(["--bogus"]), ExitCode::from(2));
        assert_eq!(cli().run_args(["post", "only-a-url"]), ExitCode::from(2));
        // A config that does not load is exit status 2 before anything binds: the
        // caller's default config (the package root, where unit tests run, has no
        // ./config.yaml) and a --config that does not exist.
        assert!(!Path::new(crate::configurapi::config::DEFAULT_CONFIG_PATH).exists());
        let bad = "api:\n  events:\n    - name: x\n      policies: [nopeHandler]\n";
        assert_eq!(
            cli().default_config(bad).run_args(["--port", "0"]),
            ExitCode::from(2)
        );
        let missing = std::env::temp_dir().join(format!("launch-{}.yaml", std::process::id()));
        let missing = missing.to_str().unwrap();
        assert_eq!(
            cli().run_args(["--config", missing, "--port", "0"]),
            ExitCode::from(2)
        );
    }
}
