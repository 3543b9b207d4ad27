//! The command line: parsing ([`parse`]; every bad flag or value is one line of error
//! and exit status 2) and the whole program as one call ([`main_with`], [`Cli`]), so a
//! binary with handlers of its own is `cli::main_with(registry)`.

use std::net::{IpAddr, SocketAddr};
use std::path::PathBuf;
use std::time::Duration;

use crate::config::ServerConfig;
pub use crate::launch::{main_with, Cli};

/// The usage text for `--help`.
pub const USAGE: &str = "\
configurapi-runner-ws: a WebSocket runner for Configurapi

USAGE:
    configurapi-runner-ws [OPTIONS]
    configurapi-runner-ws post URL [--status N] [--header K:V]... BODY
    configurapi-runner-ws healthcheck [--url URL]   (exit 0 when /healthz answers 200)

OPTIONS:
    --port N                  WebSocket port [default: 8000; 0 picks a free port]
    --host ADDR               address or host name to listen on; :: listens on IPv6
                              and, where the system allows, IPv4 too [default: 0.0.0.0]
    --key PATH                TLS private key (PEM: PKCS#8, PKCS#1 or SEC1); with --cert
                              turns on the WSS listener beside the plain one
    --cert PATH               TLS certificate chain (PEM, leaf first)
    --secure-port N           WSS port [default: 8443; 0 picks a free port]
    --config PATH             config.yaml to serve [default: ./config.yaml, else built-in]
    --echo                    raw echo mode: every text/binary message is sent back as is
    --max-connections N       past it, upgrades get 503 + Retry-After [default: 50000]
    --workers N               handler threads [default: number of cores]
    --job-queue N             jobs waiting for a worker before reading pauses [default: 1024]
    --max-waiting N           suspended handlers (timers, replies) held before reading
                              pauses [default: 10000]
    --postback-base URL       base of the postback-url header, e.g. http://node-a:9100
    --no-inline               run every handler on the workers, even routes that never block
    --management-port N       management HTTP API port; 0 turns it off
                              [default: 9100; off with --echo unless given]
    --management-tls          serve the management API over HTTPS with --key/--cert
    --management-host ADDR    management address [default: 127.0.0.1]
    --management-token TOKEN  require Authorization: Bearer TOKEN on the management API
    --max-message-size SIZE   largest message, e.g. 16MiB [default: 16MiB]
    --max-frame-size SIZE     largest single frame [default: the message size]
    --deflate MODE            permessage-deflate: off, shared (no context takeover, no
                              per-connection memory) or takeover [default: shared]
    --deflate-threshold SIZE  messages shorter than this go uncompressed [default: 1KiB]
    --handshake-timeout DUR   time to finish the upgrade, e.g. 10s [default: 10s]
    --idle-timeout DUR        ping after half of it, close 1001 after all of it; 0 = off [default: 120s]
    --close-timeout DUR       time allowed for the close handshake [default: 5s]
    --high-water SIZE         stop reading a peer with this much queued for it [default: 1MiB]
    --low-water SIZE          resume reading below this [default: 256KiB]
    --max-queued SIZE         close a peer with 1008 when this much stays queued for it
                              longer than --queued-grace, or twice it at once [default: 16MiB]
    --queued-grace DUR        see --max-queued [default: 10s]
    --max-handshake-size SIZE largest upgrade request head [default: 16KiB]
    --max-handshake-headers N most header lines in an upgrade request [default: 100]
    --max-management-connections N
                              management connections at once; past it 503 [default: 64]
    --shutdown-timeout DUR    longest drain on SIGINT/SIGTERM: requests under way are
                              answered, then 1001; a second signal exits at once [default: 5s]
                              (SIGHUP reloads the config and TLS files)
    --log-level LEVEL         error, warn, info, debug or trace [default: info]; RUST_LOG
                              directives refine it per target (mio=warn,rustls=off)
    --log-format FORMAT       text or json (one object a line) [default: text]
    --access-log WHETHER      on or off: one info line per handled message [default: on]
    --cluster URL             act as one with the other runners on this Redis, e.g.
                              redis://127.0.0.1:6379/0 (docs/cluster.md)
    --node-id ID              this runner's name in the cluster [default: host:port of
                              --postback-base, else of the management API]
    --cluster-ttl DUR         heartbeat lifetime: a runner silent this long leaves the
                              cluster's listings [default: 5s]
    --cluster-timeout DUR     how long a request forwarded to another runner waits for
                              it before 504 [default: 2s]
    --reuse-port              SO_REUSEPORT on the WebSocket port: several runners share it
    --node PATH               the node program for JS handlers (handlers/*.js beside the
                              config) [default: node on PATH]
    --handler-timeout DUR     a JS handler call's deadline; past it the call answers 504
                              [default: 30s]
    -h, --help                print this help
    -V, --version             print the version

SIZE is bytes, or a number with KiB, MiB or GiB (K, M, G also work).
DUR is seconds, or a number with ms, s or m.

ENVIRONMENT:
    Every option above can be set as CONFIGURAPI_<OPTION>: upper case, dashes as
    underscores, e.g. CONFIGURAPI_MAX_CONNECTIONS=100 for --max-connections 100,
    CONFIGURAPI_MANAGEMENT_TOKEN for --management-token. Switches (--echo, --no-inline,
    --management-tls, --reuse-port) take 1, true, yes, on or 0, false, no, off. PORT sets --port too
    (CONFIGURAPI_PORT wins over it). An empty variable counts as unset. Options on the
    command line win over the environment.
";

/// What the command line asks for.
#[derive(Debug)]
pub enum Command {
    /// Print the usage text.
    Help,
    /// Print the version.
    Version,
    /// Run the server.
    Run(Box<RunArgs>),
    /// `post URL BODY`: send a message to a connection through the management API.
    Post(Box<crate::postback::PostArgs>),
    /// `post --help`.
    PostHelp,
    /// `healthcheck`: GET `/healthz`, exit 0 on 200 (a container's `HEALTHCHECK`).
    Healthcheck(Box<crate::healthcheck::HealthArgs>),
    /// `healthcheck --help`.
    HealthcheckHelp,
}

/// Settings for a server run.
#[derive(Debug)]
pub struct RunArgs {
    /// The reactor's settings.
    pub server: ServerConfig,
    /// `--config`, when given.
    pub config_path: Option<PathBuf>,
    /// `--echo`: raw echo mode instead of Configurapi.
    pub echo: bool,
    /// `--postback-base`.
    pub postback_base: Option<String>,
    /// Not `--no-inline`.
    pub inline: bool,
    /// `--management-port`, when given.
    pub management_port: Option<u16>,
    /// `--management-host`.
    pub management_host: IpAddr,
    /// `--management-token`.
    pub management_token: Option<String>,
    /// Log level.
    pub log_level: log::LevelFilter,
    /// `--log-format`.
    pub log_format: crate::logging::LogFormat,
    /// `--access-log` (on unless `off`).
    pub access_log: bool,
    /// `--key` and `--cert` (both or neither).
    pub tls_files: Option<(PathBuf, PathBuf)>,
    /// `--management-tls`: HTTPS on the management listener.
    pub management_tls: bool,
    /// `--secure-port` (default 8443), on the `--host` address.
    pub secure_listen: SocketAddr,
    /// `--node`: the node program for JS handlers.
    pub node: Option<PathBuf>,
    /// `--handler-timeout`: a JS handler call's deadline.
    pub handler_timeout: Duration,
    /// `--cluster` and its settings.
    pub cluster: Option<ClusterArgs>,
}

/// `--cluster URL` with `--node-id`, `--cluster-ttl` and `--cluster-timeout`.
#[derive(Debug, Clone)]
pub struct ClusterArgs {
    /// `redis://host:port[/db]`.
    pub url: String,
    /// `--node-id`, when given.
    pub node_id: Option<String>,
    /// `--cluster-ttl` (default 5 s).
    pub ttl: Duration,
    /// `--cluster-timeout` (default 2 s).
    pub timeout: Duration,
}

/// Parse the arguments after the program name, with the process environment
/// supplying what the flags leave out (see [`parse_with_env`]).
pub fn parse<I>(args: I) -> Result<Command, String>
where
    I: IntoIterator,
    I::Item: Into<std::ffi::OsString>,
{
    parse_with_env(args, |name| std::env::var_os(name))
}

/// Parse the arguments after the program name. Every option in [`USAGE`] may also
/// come from `env(CONFIGURAPI_<OPTION>)` ([`env_var`]), and the WS port from `PORT`;
/// the command line wins over both, and `CONFIGURAPI_PORT` over `PORT`. A bad value in
/// a variable is the same one-line error as in the flag, naming the variable.
pub fn parse_with_env<I, E>(args: I, env: E) -> Result<Command, String>
where
    I: IntoIterator,
    I::Item: Into<std::ffi::OsString>,
    E: Fn(&str) -> Option<std::ffi::OsString>,
{
    use lexopt::prelude::*;
    let mut p = lexopt::Parser::from_args(args);
    let mut server = ServerConfig::default();
    let mut host: IpAddr = server.listen.ip();
    let mut port: u16 = server.listen.port();
    let mut config_path = None;
    let mut echo = false;
    let mut postback_base = None;
    let mut inline = true;
    let mut management_port = None;
    let mut management_host: IpAddr = [127, 0, 0, 1].into();
    let mut management_token = None;
    let mut max_frame = None;
    let mut log_level = log::LevelFilter::Info;
    let mut log_format = crate::logging::LogFormat::Text;
    let mut access_log = true;
    let mut key = None;
    let mut cert = None;
    let mut secure_port: u16 = 8443;
    let mut management_tls = false;
    let mut node = None;
    let mut handler_timeout = crate::jshost::DEFAULT_TIMEOUT;
    let mut cluster_url: Option<String> = None;
    let mut node_id: Option<String> = None;
    let mut cluster_ttl = Duration::from_secs(5);
    let mut cluster_timeout = Duration::from_secs(2);
    // Applies one option: `flag` is its name, `label` what errors call it (the flag,
    // or the variable it came from).
    let mut apply = |flag: &str,
                     label: &str,
                     value: &mut dyn FnMut() -> Result<String, String>|
     -> Result<(), String> {
        match flag {
            "--port" => {
                let v = value()?;
                port = v
                    .parse()
                    .map_err(|_| format!("{label}: '{v}' is not a port number (0-65535)"))?;
            }
            "--host" => {
                let v = value()?;
                host = resolve_host(label, &v)?;
            }
            "--config" => config_path = Some(PathBuf::from(value()?)),
            "--key" => key = Some(PathBuf::from(value()?)),
            "--cert" => cert = Some(PathBuf::from(value()?)),
            "--secure-port" => {
                let v = value()?;
                secure_port = v
                    .parse()
                    .map_err(|_| format!("{label}: '{v}' is not a port number (0-65535)"))?;
            }
            "--echo" => echo = true,
            "--no-inline" => inline = false,
            "--management-tls" => management_tls = true,
            "--reuse-port" => server.reuse_port = true,
            "--cluster" => {
                let v = value()?;
                if !v.starts_with("redis://") {
                    return Err(format!(
                        "{label}: '{v}' is not a redis://host:port[/db] URL"
                    ));
                }
                cluster_url = Some(v);
            }
            "--node-id" => {
                let v = value()?;
                if v.is_empty() || v.contains(char::is_whitespace) {
                    return Err(format!("{label}: '{v}' is not a node id (no spaces)"));
                }
                node_id = Some(v);
            }
            "--cluster-ttl" => {
                cluster_ttl = parse_duration(label, &value()?)?;
                if cluster_ttl < Duration::from_millis(100) {
                    return Err(format!("{label} must be at least 100ms"));
                }
            }
            "--cluster-timeout" => {
                cluster_timeout = parse_duration(label, &value()?)?;
                if cluster_timeout.is_zero() {
                    return Err(format!("{label} must be greater than 0"));
                }
            }
            "--management-port" => {
                let v = value()?;
                management_port = Some(
                    v.parse()
                        .map_err(|_| format!("{label}: '{v}' is not a port number (0-65535)"))?,
                );
            }
            "--management-host" => {
                let v = value()?;
                management_host = resolve_host(label, &v)?;
            }
            "--management-token" => {
                let v = value()?;
                if v.is_empty() {
                    return Err(format!("{label}: the token must not be empty"));
                }
                management_token = Some(v);
            }
            "--max-connections" => {
                let v = value()?;
                server.max_connections = v
                    .parse()
                    .ok()
                    .filter(|&n: &usize| n >= 1)
                    .ok_or_else(|| format!("{label}: '{v}' is not a positive number"))?;
            }
            "--workers" => {
                let v = value()?;
                server.workers = v
                    .parse()
                    .ok()
                    .filter(|&n: &usize| (1..=1024).contains(&n))
                    .ok_or_else(|| format!("{label}: '{v}' is not a number from 1 to 1024"))?;
            }
            "--job-queue" => {
                let v = value()?;
                server.job_queue = v
                    .parse()
                    .ok()
                    .filter(|&n: &usize| n >= 1)
                    .ok_or_else(|| format!("{label}: '{v}' is not a positive number"))?;
            }
            "--max-waiting" => {
                let v = value()?;
                server.max_waiting = v
                    .parse()
                    .ok()
                    .filter(|&n: &usize| n >= 1)
                    .ok_or_else(|| format!("{label}: '{v}' is not a positive number"))?;
            }
            "--postback-base" => {
                let v = value()?;
                if !(v.starts_with("http://") || v.starts_with("https://")) {
                    return Err(format!("{label}: '{v}' is not an http:// or https:// URL"));
                }
                postback_base = Some(v.trim_end_matches('/').to_string());
            }
            "--shutdown-timeout" => server.shutdown_timeout = parse_duration(label, &value()?)?,
            "--max-message-size" => server.limits.max_message = parse_size(label, &value()?)?,
            "--max-frame-size" => max_frame = Some(parse_size(label, &value()?)? as u64),
            "--deflate" => {
                let v = value()?;
                server.deflate.mode = crate::ws::extension::DeflateMode::parse(&v)
                    .ok_or_else(|| format!("{label}: '{v}' is not one of off, shared, takeover"))?;
            }
            "--deflate-threshold" => server.deflate.threshold = parse_size(label, &value()?)?,
            "--handshake-timeout" => server.handshake_timeout = parse_duration(label, &value()?)?,
            "--idle-timeout" => server.idle_timeout = parse_duration(label, &value()?)?,
            "--close-timeout" => server.close_timeout = parse_duration(label, &value()?)?,
            "--high-water" => server.high_water = parse_size(label, &value()?)?,
            "--low-water" => server.low_water = parse_size(label, &value()?)?,
            "--max-queued" => server.max_queued = parse_size(label, &value()?)?,
            "--queued-grace" => server.queued_grace = parse_duration(label, &value()?)?,
            "--max-handshake-size" => {
                server.handshake_limits.max_bytes = parse_size(label, &value()?)?
            }
            "--max-handshake-headers" => {
                server.handshake_limits.max_headers = parse_count(label, &value()?)?
            }
            "--max-management-connections" => {
                server.max_management_connections = parse_count(label, &value()?)?
            }
            "--node" => node = Some(PathBuf::from(value()?)),
            "--handler-timeout" => {
                handler_timeout = parse_duration(label, &value()?)?;
                if handler_timeout.is_zero() {
                    return Err(format!("{label} must be greater than 0"));
                }
            }
            "--log-level" => {
                let v = value()?;
                log_level = v.parse().map_err(|_| {
                    format!("{label}: '{v}' is not one of error, warn, info, debug, trace, off")
                })?;
            }
            "--log-format" => {
                let v = value()?;
                log_format = match v.as_str() {
                    "text" => crate::logging::LogFormat::Text,
                    "json" => crate::logging::LogFormat::Json,
                    _ => return Err(format!("{label}: '{v}' is not one of text, json")),
                }
            }
            "--access-log" => {
                let v = value()?;
                access_log = match v.as_str() {
                    "on" => true,
                    "off" => false,
                    _ => return Err(format!("{label}: '{v}' is not on or off")),
                }
            }
            _ => return Err(format!("unknown option '{label}' (see --help)")),
        }
        Ok(())
    };
    // Each option given, with what set it (the flag, or the variable), so an error
    // about two options names where each came from.
    let mut given = std::collections::HashMap::<String, String>::new();
    let mut first = true;
    while let Some(arg) = p.next().map_err(|e| e.to_string())? {
        let flag = match arg {
            Long(name) => format!("--{name}"),
            Short(c) => format!("-{c}"),
            // The `post` subcommand comes first and has flags of its own.
            Value(v) if first && v == "post" => {
                let rest: Vec<std::ffi::OsString> =
                    p.raw_args().map_err(|e| e.to_string())?.collect();
                return match crate::postback::parse_post_args(rest) {
                    Ok(Some(args)) => Ok(Command::Post(Box::new(args))),
                    Ok(None) => Ok(Command::PostHelp),
                    Err(e) => Err(format!("post: {e}")),
                };
            }
            Value(v) if first && v == "healthcheck" => {
                let rest: Vec<std::ffi::OsString> =
                    p.raw_args().map_err(|e| e.to_string())?.collect();
                let env = |name: &str| env(name).and_then(|v| v.into_string().ok());
                return match crate::healthcheck::parse_args(rest, env) {
                    Ok(Some(args)) => Ok(Command::Healthcheck(Box::new(args))),
                    Ok(None) => Ok(Command::HealthcheckHelp),
                    Err(e) => Err(format!("healthcheck: {e}")),
                };
            }
            Value(v) => return Err(format!("unexpected argument '{}'", v.to_string_lossy())),
        };
        first = false;
        let mut value = || -> Result<String, String> {
            p.value()
                .map_err(|_| format!("{flag} needs a value"))?
                .into_string()
                .map_err(|_| format!("{flag}: the value is not valid UTF-8"))
        };
        match flag.as_str() {
            "-h" | "--help" => return Ok(Command::Help),
            "-V" | "--version" => return Ok(Command::Version),
            f => {
                apply(f, f, &mut value)?;
                given.insert(f.to_string(), f.to_string());
            }
        }
    }
    // Then the environment, for the options the command line left out (so `--help` and
    // `post` never read it, and a flag given makes its variable irrelevant).
    let from_env = |name: &str| -> Result<Option<String>, String> {
        match env(name) {
            None => Ok(None),
            Some(v) => v
                .into_string()
                .map(|v| Some(v).filter(|v| !v.is_empty()))
                .map_err(|_| format!("{name}: the value is not valid UTF-8")),
        }
    };
    for (flag, takes_value) in usage_options() {
        if given.contains_key(flag) {
            continue;
        }
        let name = env_var(flag);
        let Some(v) = from_env(&name)? else { continue };
        given.insert(flag.to_string(), name.clone());
        if takes_value {
            apply(flag, &name, &mut || Ok(v.clone()))?;
        } else if parse_switch(&name, &v)? {
            apply(flag, &name, &mut || Err(format!("{name} takes no value")))?;
        }
    }
    if !given.contains_key("--port") {
        if let Some(v) = from_env("PORT")? {
            apply("--port", "PORT", &mut || Ok(v.clone()))?;
        }
    }
    // What set an option: the flag, its variable, or (not given) the flag's default.
    let by = |flag: &'static str| -> String { given.get(flag).map_or(flag, String::as_str).into() };
    server.limits.max_frame = max_frame.unwrap_or(server.limits.max_message as u64);
    if server.limits.max_frame > server.limits.max_message as u64 {
        return Err(format!(
            "{} must not exceed {}",
            by("--max-frame-size"),
            by("--max-message-size")
        ));
    }
    if server.low_water > server.high_water {
        return Err(format!(
            "{} must not exceed {}",
            by("--low-water"),
            by("--high-water")
        ));
    }
    if server.max_queued < server.high_water {
        return Err(format!(
            "{} must not be below {}",
            by("--max-queued"),
            by("--high-water")
        ));
    }
    for (flag, d) in [
        ("--handshake-timeout", server.handshake_timeout),
        ("--close-timeout", server.close_timeout),
    ] {
        if d.is_zero() {
            return Err(format!("{} must be greater than 0", by(flag)));
        }
    }
    let tls_files = match (key, cert) {
        (Some(k), Some(c)) => Some((k, c)),
        (None, None) => None,
        (Some(_), None) => {
            return Err(format!(
                "{} needs --cert as well (TLS needs both)",
                by("--key")
            ))
        }
        (None, Some(_)) => {
            return Err(format!(
                "{} needs --key as well (TLS needs both)",
                by("--cert")
            ))
        }
    };
    if management_tls && tls_files.is_none() {
        return Err(format!("{} needs --key and --cert", by("--management-tls")));
    }
    server.listen = SocketAddr::new(host, port);
    if node_id.is_some() && cluster_url.is_none() {
        return Err("--node-id needs --cluster".into());
    }
    let cluster = cluster_url.map(|url| ClusterArgs {
        url,
        node_id,
        ttl: cluster_ttl,
        timeout: cluster_timeout,
    });
    Ok(Command::Run(Box::new(RunArgs {
        server,
        config_path,
        echo,
        postback_base,
        inline,
        management_port,
        management_host,
        management_token,
        log_level,
        log_format,
        access_log,
        tls_files,
        management_tls,
        secure_listen: SocketAddr::new(host, secure_port),
        node,
        handler_timeout,
        cluster,
    })))
}

/// The options [`USAGE`] lists, each with whether it takes a value (a word in capitals
/// after it), so the environment knows every option without a second list to keep.
pub fn usage_options() -> impl Iterator<Item = (&'static str, bool)> {
    USAGE.lines().filter_map(|line| {
        let mut words = line.split_whitespace();
        // Only option lines: `--name` alone, not prose that happens to start with one.
        let flag = words.next().filter(|w| {
            w.starts_with("--") && w[2..].chars().all(|c| c.is_ascii_lowercase() || c == '-')
        })?;
        let takes_value = words
            .next()
            .is_some_and(|w| w.chars().all(|c| c.is_ascii_uppercase()));
        Some((flag, takes_value))
    })
}

/// The variable that sets `flag`: `--max-connections` is `CONFIGURAPI_MAX_CONNECTIONS`.
pub fn env_var(flag: &str) -> String {
    format!(
        "CONFIGURAPI_{}",
        flag.trim_start_matches('-')
            .replace('-', "_")
            .to_ascii_uppercase()
    )
}

/// A switch's value in the environment: on or off, anything else is an error.
fn parse_switch(name: &str, v: &str) -> Result<bool, String> {
    match v.trim().to_ascii_lowercase().as_str() {
        "1" | "true" | "yes" | "on" => Ok(true),
        "0" | "false" | "no" | "off" => Ok(false),
        _ => Err(format!(
            "{name}: '{v}' is not one of 1, true, yes, on, 0, false, no, off"
        )),
    }
}

/// An IP address, or a host name resolved now (`localhost`). A name with addresses of
/// both families listens on its first IPv4 one, the family the default `0.0.0.0` uses.
fn resolve_host(label: &str, v: &str) -> Result<IpAddr, String> {
    use std::net::ToSocketAddrs;
    if let Ok(ip) = v.parse() {
        return Ok(ip);
    }
    let addrs: Vec<IpAddr> = (v, 0)
        .to_socket_addrs()
        .map_err(|e| {
            format!("{label}: '{v}' is not an IP address or a host name that resolves ({e})")
        })?
        .map(|a| a.ip())
        .collect();
    addrs
        .iter()
        .find(|ip| ip.is_ipv4())
        .or(addrs.first())
        .copied()
        .ok_or_else(|| format!("{label}: '{v}' resolves to no address"))
}

/// `16MiB`, `64KiB`, `1024`, `2M` (the `units` crate's sizes), more than 0.
pub fn parse_size(flag: &str, v: &str) -> Result<usize, String> {
    let size = units::size(v)
        .and_then(|n| usize::try_from(n).ok())
        .ok_or_else(|| {
            format!("{flag}: '{v}' is not a size (bytes, or a number with KiB, MiB, GiB)")
        })?;
    if size == 0 {
        return Err(format!("{flag}: must be greater than 0"));
    }
    Ok(size)
}

/// A positive whole number.
pub fn parse_count(flag: &str, v: &str) -> Result<usize, String> {
    v.trim()
        .parse()
        .ok()
        .filter(|&n: &usize| n >= 1)
        .ok_or_else(|| format!("{flag}: '{v}' is not a positive number"))
}

/// `10`, `10s`, `500ms`, `2m`, `1.5s` (the `units` crate's durations).
pub fn parse_duration(flag: &str, v: &str) -> Result<Duration, String> {
    units::duration(v).ok_or_else(|| {
        format!("{flag}: '{v}' is not a duration (seconds, or a number with ms, s, m)")
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn run(args: &[&str]) -> Result<RunArgs, String> {
        match parse(args.iter().copied())? {
            Command::Run(r) => Ok(*r),
            other => Err(format!("{other:?}")),
        }
    }

    #[test]
    fn defaults_listen_on_8000() {
        let r = run(&[]).unwrap();
        assert_eq!(r.server.listen.port(), 8000);
        assert_eq!(r.server.limits.max_message, 16 << 20);
    }

    #[test]
    fn max_waiting_sets_the_cap_on_suspended_pipelines() {
        assert_eq!(run(&[]).unwrap().server.max_waiting, 10_000);
        let r = run(&["--max-waiting", "64"]).unwrap();
        assert_eq!(r.server.max_waiting, 64);
    }

    #[test]
    fn sizes_and_durations_parse_with_units() {
        let r = run(&[
            "--max-message-size",
            "64KiB",
            "--idle-timeout",
            "500ms",
            "--port",
            "0",
        ])
        .unwrap();
        assert_eq!(r.server.limits.max_message, 64 << 10);
        assert_eq!(r.server.limits.max_frame, 64 << 10);
        assert_eq!(r.server.idle_timeout, Duration::from_millis(500));
        assert_eq!(r.server.listen.port(), 0);
    }

    #[test]
    fn post_is_a_subcommand_only_in_first_place() {
        assert!(matches!(
            parse(["post", "http://h:1/@connections/x", "{}"]),
            Ok(Command::Post(_))
        ));
        assert!(matches!(parse(["post", "--help"]), Ok(Command::PostHelp)));
        let err = parse(["post", "http://h/"]).unwrap_err();
        assert!(err.starts_with("post: "), "{err}");
        assert!(parse(["--port", "0", "post", "http://h/", "{}"]).is_err());
    }

    fn env_run(args: &[&str], vars: &[(&str, &str)]) -> Result<RunArgs, String> {
        let vars: Vec<(String, String)> = vars
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect();
        let env = |name: &str| vars.iter().find(|(k, _)| k == name).map(|(_, v)| v.into());
        match parse_with_env(args.iter().copied(), env)? {
            Command::Run(r) => Ok(*r),
            other => Err(format!("{other:?}")),
        }
    }

    #[test]
    fn every_option_in_the_usage_is_settable_from_the_environment() {
        let opts: Vec<_> = usage_options().collect();
        assert!(opts.contains(&("--max-connections", true)), "{opts:?}");
        assert!(opts.contains(&("--max-management-connections", true)));
        assert!(opts.contains(&("--echo", false)));
        assert!(opts.contains(&("--management-tls", false)));
        assert!(!opts
            .iter()
            .any(|(f, _)| *f == "--help" || *f == "--version"));
        // Each option once, and no prose line read as one.
        let mut names: Vec<_> = opts.iter().map(|(f, _)| *f).collect();
        names.sort_unstable();
        names.dedup();
        assert_eq!(names.len(), opts.len(), "{opts:?}");
        assert!(!names.contains(&"--management-tls)"), "{names:?}");
        assert_eq!(env_var("--max-connections"), "CONFIGURAPI_MAX_CONNECTIONS");
        let r = env_run(
            &[],
            &[
                ("CONFIGURAPI_MAX_CONNECTIONS", "7"),
                ("CONFIGURAPI_IDLE_TIMEOUT", "2s"),
                ("CONFIGURAPI_NO_INLINE", "true"),
                ("CONFIGURAPI_ECHO", "0"),
                ("CONFIGURAPI_MANAGEMENT_TOKEN", "sekrit"),
                ("CONFIGURAPI_HOST", "127.0.0.1"),
            ],
        )
        .unwrap();
        assert_eq!(r.server.max_connections, 7);
        assert_eq!(r.server.idle_timeout, Duration::from_secs(2));
        assert!(!r.inline);
        assert!(!r.echo);
        assert_eq!(r.management_token.as_deref(), Some("sekrit"));
        assert_eq!(r.server.listen.ip(), IpAddr::from([127, 0, 0, 1]));
    }

    #[test]
    fn flags_win_over_configurapi_vars_which_win_over_port() {
        let port = |args: &[&str], vars: &[(&str, &str)]| {
            env_run(args, vars).unwrap().server.listen.port()
        };
        assert_eq!(port(&[], &[("PORT", "3000")]), 3000);
        assert_eq!(
            port(&[], &[("PORT", "3000"), ("CONFIGURAPI_PORT", "4000")]),
            4000
        );
        assert_eq!(
            port(
                &["--port", "5000"],
                &[("PORT", "3000"), ("CONFIGURAPI_PORT", "4000")]
            ),
            5000
        );
        assert_eq!(port(&[], &[("PORT", "")]), 8000);
    }

    #[test]
    fn a_bad_variable_is_a_one_line_error_naming_the_variable() {
        for (var, value) in [
            ("PORT", "http"),
            ("CONFIGURAPI_PORT", "70000"),
            ("CONFIGURAPI_MAX_MESSAGE_SIZE", "lots"),
            ("CONFIGURAPI_IDLE_TIMEOUT", "3h"),
            ("CONFIGURAPI_ECHO", "maybe"),
            ("CONFIGURAPI_WORKERS", "0"),
            ("CONFIGURAPI_LOG_LEVEL", "loud"),
            ("CONFIGURAPI_HOST", "no such host.invalid"),
        ] {
            let err = env_run(&[], &[(var, value)]).unwrap_err();
            assert!(err.starts_with(&format!("{var}:")), "{var}: {err}");
            assert!(!err.contains('\n'), "{err}");
        }
        // The flag's own error still names the flag.
        let err = env_run(&["--port", "x"], &[]).unwrap_err();
        assert!(err.starts_with("--port:"), "{err}");
        // A variable whose flag is given is not read, and --help and `post` read none.
        let bad = [("CONFIGURAPI_PORT", "x"), ("PORT", "y")];
        assert_eq!(
            env_run(&["--port", "1"], &bad)
                .unwrap()
                .server
                .listen
                .port(),
            1
        );
        let env = |name: &str| (name == "CONFIGURAPI_WORKERS").then(|| "0".into());
        assert!(matches!(parse_with_env(["--help"], env), Ok(Command::Help)));
        assert!(matches!(
            parse_with_env(["post", "http://h/@connections/x", "{}"], env),
            Ok(Command::Post(_))
        ));
    }

    #[test]
    fn errors_about_two_options_name_the_variables_that_set_them() {
        let err = |args: &[&str], vars: &[(&str, &str)]| env_run(args, vars).unwrap_err();
        assert_eq!(
            err(
                &["--max-message-size", "1MiB"],
                &[("CONFIGURAPI_MAX_FRAME_SIZE", "2MiB")]
            ),
            "CONFIGURAPI_MAX_FRAME_SIZE must not exceed --max-message-size"
        );
        assert_eq!(
            err(&[], &[("CONFIGURAPI_LOW_WATER", "4MiB")]),
            "CONFIGURAPI_LOW_WATER must not exceed --high-water"
        );
        assert_eq!(
            err(
                &["--max-queued", "1MiB"],
                &[("CONFIGURAPI_HIGH_WATER", "2MiB")]
            ),
            "--max-queued must not be below CONFIGURAPI_HIGH_WATER"
        );
        assert_eq!(
            err(&[], &[("CONFIGURAPI_CLOSE_TIMEOUT", "0")]),
            "CONFIGURAPI_CLOSE_TIMEOUT must be greater than 0"
        );
        assert_eq!(
            err(&["--handshake-timeout", "0"], &[]),
            "--handshake-timeout must be greater than 0"
        );
        assert_eq!(
            err(&[], &[("CONFIGURAPI_KEY", "k.pem")]),
            "CONFIGURAPI_KEY needs --cert as well (TLS needs both)"
        );
        assert_eq!(
            err(&["--cert", "c.pem"], &[]),
            "--cert needs --key as well (TLS needs both)"
        );
        assert_eq!(
            err(&[], &[("CONFIGURAPI_MANAGEMENT_TLS", "on")]),
            "CONFIGURAPI_MANAGEMENT_TLS needs --key and --cert"
        );
    }

    #[test]
    fn host_names_resolve_and_ipv6_parses() {
        let r = run(&["--host", "localhost"]).unwrap();
        assert!(r.server.listen.ip().is_loopback(), "{:?}", r.server.listen);
        let r = run(&["--host", "::", "--management-host", "localhost"]).unwrap();
        assert!(r.server.listen.ip().is_unspecified() && r.server.listen.is_ipv6());
        assert!(r.management_host.is_loopback());
    }

    #[test]
    fn bad_flags_and_values_are_one_line_errors() {
        for args in [
            &["--nope"][..],
            &["--port", "70000"],
            &["--port"],
            &["--max-message-size", "lots"],
            &["--idle-timeout", "3h"],
            &["stray"],
            &["--host", "not an ip"],
            &["--key", "k.pem"],
            &["--cert", "c.pem"],
            &["--secure-port", "x"],
            &["--management-tls"],
            &["--max-frame-size", "2MiB", "--max-message-size", "1MiB"],
            &["--max-queued", "64KiB"],
            &["--max-handshake-headers", "0"],
            &["--max-management-connections", "many"],
            &["--handler-timeout", "0"],
            &["--node"],
            &["--max-waiting", "0"],
            &["--max-waiting", "lots"],
        ] {
            let err = run(args).unwrap_err();
            assert!(!err.contains('\n'), "{err}");
            assert!(!err.is_empty());
        }
    }
}
