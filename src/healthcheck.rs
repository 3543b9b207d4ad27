//! `configurapi-runner-ws healthcheck`: GET the management API's `/healthz` and exit 0
//! on 200, 1 otherwise. A container image has no curl; its `HEALTHCHECK` runs this
//! (docs/operations.md#the-container). With no `--url` the address comes from the same
//! variables the server reads (`CONFIGURAPI_MANAGEMENT_PORT`, `_HOST`, `_TLS`,
//! `_TOKEN`, and `CONFIGURAPI_CERT` as the CA for https), so one image setting serves
//! both.

use std::ffi::OsString;
use std::net::IpAddr;
use std::time::Duration;

use crate::postback::{PostbackError, PostbackOptions};

/// Usage of the `healthcheck` subcommand.
pub const HEALTHCHECK_USAGE: &str = "\
configurapi-runner-ws healthcheck: is the runner on this host serving? (GET /healthz)

USAGE:
    configurapi-runner-ws healthcheck [--url URL] [--timeout SECS] [--token TOKEN] [--cacert PATH]

OPTIONS:
    --url URL        [default: http://127.0.0.1:9100/healthz, from CONFIGURAPI_MANAGEMENT_HOST
                     (0.0.0.0 and :: mean loopback), _PORT and _TLS (https)]
    --timeout SECS   connect and read timeout [default: 3]
    --token TOKEN    the management token [default: $CONFIGURAPI_MANAGEMENT_TOKEN]
    --cacert PATH    CA for an https:// URL [default: $CONFIGURAPI_CERT]
    -h, --help       print this help

EXIT STATUS: 0 healthy (200); 1 not (503 while draining, other answers, no answer); 2 usage error.
";

/// A parsed `healthcheck` command line.
#[derive(Debug, Clone, PartialEq)]
pub struct HealthArgs {
    /// The `/healthz` URL.
    pub url: String,
    /// Timeouts, token and CA.
    pub options: PostbackOptions,
}

/// Parse the arguments after `healthcheck` (`Ok(None)` for `--help`), with `env`
/// for the defaults.
pub fn parse_args<E>(args: Vec<OsString>, env: E) -> Result<Option<HealthArgs>, String>
where
    E: Fn(&str) -> Option<String>,
{
    use lexopt::prelude::*;
    let env = |name: &str| env(name).filter(|v| !v.is_empty());
    let mut p = lexopt::Parser::from_args(args);
    let mut url = None;
    let mut options = PostbackOptions {
        token: env(crate::mgmt::TOKEN_ENV),
        connect_timeout: Duration::from_secs(3),
        io_timeout: Duration::from_secs(3),
        max_error_body: 1024,
        cacert: None,
    };
    let mut cacert = None;
    while let Some(arg) = p.next().map_err(|e| e.to_string())? {
        let name = match arg {
            Short('h') => "help".to_string(),
            Long(name) => name.to_string(),
            other => return Err(other.unexpected().to_string()),
        };
        let mut value = || -> Result<String, String> {
            p.value()
                .map_err(|e| e.to_string())?
                .into_string()
                .map_err(|_| "arguments must be UTF-8".to_string())
        };
        match name.as_str() {
            "help" => return Ok(None),
            "url" => url = Some(value()?),
            "token" => options.token = Some(value()?).filter(|t| !t.is_empty()),
            "cacert" => cacert = Some(value()?),
            "timeout" => {
                let v = value()?;
                let secs = v
                    .parse::<f64>()
                    .ok()
                    .filter(|s| s.is_finite() && *s > 0.0 && *s <= 3600.0)
                    .ok_or_else(|| format!("--timeout needs a number of seconds, not '{v}'"))?;
                options.connect_timeout = Duration::from_secs_f64(secs);
                options.io_timeout = options.connect_timeout;
            }
            _ => return Err(format!("unknown option '--{name}' (see --help)")),
        }
    }
    let url = match url {
        Some(u) => u,
        None => default_url(&env)?,
    };
    if url.starts_with("https://") {
        options.cacert = cacert.or_else(|| env("CONFIGURAPI_CERT")).map(Into::into);
    }
    Ok(Some(HealthArgs { url, options }))
}

/// `/healthz` on the management address the server's variables give.
fn default_url(env: &dyn Fn(&str) -> Option<String>) -> Result<String, String> {
    let port = match env("CONFIGURAPI_MANAGEMENT_PORT") {
        Some(p) => p.parse::<u16>().ok().filter(|&p| p != 0).ok_or_else(|| {
            format!("CONFIGURAPI_MANAGEMENT_PORT: '{p}' is not a port for the management API")
        })?,
        None => crate::mgmt::DEFAULT_PORT,
    };
    let host = match env("CONFIGURAPI_MANAGEMENT_HOST") {
        // A wildcard listener answers on loopback.
        Some(h) => match h.parse::<IpAddr>() {
            Ok(IpAddr::V4(a)) if a.is_unspecified() => "127.0.0.1".to_string(),
            Ok(IpAddr::V6(a)) if a.is_unspecified() => "[::1]".to_string(),
            Ok(IpAddr::V6(a)) => format!("[{a}]"),
            _ => h,
        },
        None => "127.0.0.1".to_string(),
    };
    let tls = env("CONFIGURAPI_MANAGEMENT_TLS").is_some_and(|v| {
        matches!(
            v.trim().to_ascii_lowercase().as_str(),
            "1" | "true" | "yes" | "on"
        )
    });
    let scheme = if tls { "https" } else { "http" };
    Ok(format!("{scheme}://{host}:{port}/healthz"))
}

/// Run the check: `Ok` when `/healthz` answered 200, else why not (one line) and the
/// exit status (1 unhealthy, 2 usage).
pub fn run(args: &HealthArgs) -> Result<(), (u8, String)> {
    match crate::postback::get(&args.url, &args.options) {
        Ok((200, _)) => Ok(()),
        Ok((status, body)) => {
            let body = body.trim();
            let sep = if body.is_empty() { "" } else { ": " };
            Err((1, format!("{}: answered {status}{sep}{body}", args.url)))
        }
        Err(e) => {
            let code = match e {
                PostbackError::InvalidUrl(_) | PostbackError::UnsupportedScheme(_) => 2,
                PostbackError::Tls(_) if args.options.cacert.is_none() => 2,
                _ => 1,
            };
            Err((code, format!("{}: {e}", args.url)))
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(args: &[&str], vars: &[(&str, &str)]) -> Result<Option<HealthArgs>, String> {
        let vars: Vec<(String, String)> = vars
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect();
        parse_args(args.iter().map(OsString::from).collect(), |n: &str| {
            vars.iter().find(|(k, _)| k == n).map(|(_, v)| v.clone())
        })
    }

    #[test]
    fn the_default_url_follows_the_servers_variables() {
        let url = |vars: &[(&str, &str)]| parse(&[], vars).unwrap().unwrap().url;
        assert_eq!(url(&[]), "http://127.0.0.1:9100/healthz");
        assert_eq!(
            url(&[
                ("CONFIGURAPI_MANAGEMENT_PORT", "9200"),
                ("CONFIGURAPI_MANAGEMENT_HOST", "0.0.0.0")
            ]),
            "http://127.0.0.1:9200/healthz"
        );
        assert_eq!(
            url(&[("CONFIGURAPI_MANAGEMENT_HOST", "::")]),
            "http://[::1]:9100/healthz"
        );
        let a = parse(
            &[],
            &[
                ("CONFIGURAPI_MANAGEMENT_TLS", "true"),
                ("CONFIGURAPI_CERT", "/etc/c.pem"),
                ("CONFIGURAPI_MANAGEMENT_TOKEN", "t"),
            ],
        )
        .unwrap()
        .unwrap();
        assert_eq!(a.url, "https://127.0.0.1:9100/healthz");
        assert_eq!(a.options.cacert.as_deref(), Some("/etc/c.pem".as_ref()));
        assert_eq!(a.options.token.as_deref(), Some("t"));
        // --url wins; the port variable is not read then.
        let a = parse(
            &["--url", "http://h:1/healthz"],
            &[("CONFIGURAPI_MANAGEMENT_PORT", "x")],
        )
        .unwrap()
        .unwrap();
        assert_eq!(a.url, "http://h:1/healthz");
        assert!(parse(&[], &[("CONFIGURAPI_MANAGEMENT_PORT", "0")])
            .unwrap_err()
            .starts_with("CONFIGURAPI_MANAGEMENT_PORT:"));
        assert!(parse(&["--timeout", "soon"], &[]).is_err());
        assert!(parse(&["--bogus"], &[]).is_err());
        assert_eq!(parse(&["--help"], &[]), Ok(None));
    }
}
