//! config.yaml loading (section 1).
//!
//! Parsing goes YAML -> `serde_yaml::Value` (ordered mappings) -> JSON
//! values, so parameters keep their YAML types (1.1.1) and a policy's handler
//! name is its first key in document order (1.1.4). Every structural problem
//! is a [`ConfigError`] with the spec's exact message; nothing here panics.

use serde_json::{Map, Value};
use std::collections::HashMap;
use std::fmt;
use std::path::Path;

use super::js;

/// The config path runners use when none is given (1.1.1), relative to the
/// working directory.
pub const DEFAULT_CONFIG_PATH: &str = "config.yaml";

/// A route or policy log level (1.1.7), ranked as in 3.5.1.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Default)]
pub enum LogLevel {
    /// An unknown value or `none`: ranks lowest, silences every channel.
    Unset = 1,
    /// `error` (10).
    Error = 10,
    /// `info` (25).
    Info = 25,
    /// `trace` (75), the default.
    #[default]
    Trace = 75,
    /// `debug` (100), the most verbose.
    Debug = 100,
}

impl LogLevel {
    /// Parses a level without regard to case; unknown values are `Unset`.
    pub fn parse(text: &str) -> LogLevel {
        match text.to_ascii_lowercase().as_str() {
            "debug" => LogLevel::Debug,
            "trace" => LogLevel::Trace,
            "info" => LogLevel::Info,
            "error" => LogLevel::Error,
            _ => LogLevel::Unset,
        }
    }

    /// True when a message on `channel` fires at this configured level: the
    /// level must rank at or above the channel (3.5.1). `warn` ranks as info.
    pub fn allows(self, channel: log::Level) -> bool {
        let needed = match channel {
            log::Level::Debug => LogLevel::Debug,
            log::Level::Trace => LogLevel::Trace,
            log::Level::Info | log::Level::Warn => LogLevel::Info,
            log::Level::Error => LogLevel::Error,
        };
        self >= needed
    }
}

/// One policy of a route: a handler name, its parameters and log level.
#[derive(Debug, Clone, PartialEq)]
pub struct PolicyConfig {
    /// The handler name.
    pub handler: String,
    /// Positional parameters, exactly as configured (1.1.3).
    pub parameters: Vec<Value>,
    /// The policy's log level.
    pub log_level: LogLevel,
}

/// One enabled route.
#[derive(Debug, Clone, PartialEq)]
pub struct RouteConfig {
    /// The route (event) name.
    pub name: String,
    /// Its policies, in order.
    pub policies: Vec<PolicyConfig>,
    /// The route's log level.
    pub log_level: LogLevel,
}

/// A parsed config.yaml: imports and the enabled routes, last one winning.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct Config {
    /// `import:` entries, in order.
    pub imports: Vec<String>,
    /// Enabled routes (1.2.2), one per name (1.1.6), in first-seen order.
    pub routes: Vec<RouteConfig>,
}

/// Which rule of 1.3 a config broke.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ConfigErrorKind {
    /// 1.3.1: the file cannot be read.
    Read,
    /// 1.3.2: the document is not a mapping.
    NotMapping,
    /// 1.3.3: a YAML syntax error.
    Syntax,
    /// 1.3.4: no `api`.
    MissingApi,
    /// 1.3.5: `api` is not a mapping or has no `events`.
    MissingEvents,
    /// 1.3.6: `events` is not a sequence.
    EventsNotIterable,
    /// 1.3.7: a route that is not a mapping or has no `name`.
    MissingName,
    /// 1.3.8: a route with no `policies`.
    MissingPolicies,
    /// 1.3.8: `policies` is not a sequence.
    PoliciesNotIterable,
    /// 1.3.9: a policy that is `""`, `{}` or a number.
    BadPolicy,
    /// 1.3.10: `import` is not a sequence.
    BadImport,
    /// An import that names no known handler pack.
    UnknownImport,
    /// 1.3.12: a policy names an unregistered handler.
    UnknownHandler,
    /// A handler refused its policy at start-up ([`crate::Handler::bind`]), e.g. a
    /// schema file that `validateJsonRequestHandler` needs is missing.
    HandlerSetup,
    /// 3.2.2: the `on_start` route failed.
    OnStart,
}

/// A start-up error: the spec's message, the file, and the line when the
/// YAML parser knows it. `Display` is one line.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConfigError {
    /// Which rule was broken.
    pub kind: ConfigErrorKind,
    /// The config file, as given.
    pub file: String,
    /// The spec's message, e.g. `Could not find 'api' in the config document`.
    pub message: String,
    /// The 1-based line, when known.
    pub line: Option<usize>,
    /// The nested cause (the OS error of 1.3.1), as text.
    pub cause: Option<String>,
}

impl ConfigError {
    /// An error of `kind` with `message` about `file`.
    pub fn new(kind: ConfigErrorKind, file: &str, message: impl Into<String>) -> ConfigError {
        ConfigError {
            kind,
            file: file.to_string(),
            message: message.into(),
            line: None,
            cause: None,
        }
    }
}

impl fmt::Display for ConfigError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        // Messages quote the config (handler names, imports), which may hold line breaks:
        // they are shown escaped so the error stays one line.
        let (file, message) = (one_line(&self.file), one_line(&self.message));
        if self.kind == ConfigErrorKind::Read {
            // The message already names the file.
            f.write_str(&message)?;
        } else {
            match self.line {
                Some(line) => write!(f, "{file}:{line}: {message}")?,
                None => write!(f, "{file}: {message}")?,
            }
        }
        if let Some(cause) = &self.cause {
            write!(f, ": {}", one_line(cause))?;
        }
        Ok(())
    }
}

/// `s` with CR and LF written as `\r` and `\n`.
fn one_line(s: &str) -> std::borrow::Cow<'_, str> {
    if s.contains(['\n', '\r']) {
        s.replace('\n', "\\n").replace('\r', "\\r").into()
    } else {
        s.into()
    }
}

impl std::error::Error for ConfigError {}

/// Converts a YAML value to JSON, keeping mapping order and scalar types.
pub fn yaml_to_json(value: &serde_yaml::Value) -> Value {
    use serde_yaml::Value as Y;
    match value {
        Y::Null => Value::Null,
        Y::Bool(b) => Value::Bool(*b),
        Y::Number(n) => {
            if let Some(i) = n.as_i64() {
                Value::from(i)
            } else if let Some(u) = n.as_u64() {
                Value::from(u)
            } else {
                // JSON has no NaN or infinity; those become null.
                n.as_f64()
                    .and_then(serde_json::Number::from_f64)
                    .map(Value::Number)
                    .unwrap_or(Value::Null)
            }
        }
        Y::String(s) => Value::String(s.clone()),
        Y::Sequence(items) => Value::Array(items.iter().map(yaml_to_json).collect()),
        Y::Mapping(map) => Value::Object(
            map.iter()
                .map(|(k, v)| {
                    let key = match k {
                        Y::String(s) => s.clone(),
                        other => js::key_text(&yaml_to_json(other)),
                    };
                    (key, yaml_to_json(v))
                })
                .collect(),
        ),
        Y::Tagged(tagged) => yaml_to_json(&tagged.value),
    }
}

impl Config {
    /// Reads and parses `path` (1.3.1), with `node_env` as the value of
    /// `NODE_ENV` for `when` (`None` = unset).
    pub fn load(path: impl AsRef<Path>, node_env: Option<&str>) -> Result<Config, ConfigError> {
        let path = path.as_ref();
        let shown = path.display().to_string();
        let text = std::fs::read_to_string(path).map_err(|e| {
            let mut err = ConfigError::new(
                ConfigErrorKind::Read,
                &shown,
                format!("Failed to load '{shown}'"),
            );
            err.cause = Some(e.to_string());
            err
        })?;
        Config::parse(&text, &shown, node_env)
    }

    /// Parses config text; `file` only names the source in errors.
    pub fn parse(text: &str, file: &str, node_env: Option<&str>) -> Result<Config, ConfigError> {
        let err = |kind, message: String| ConfigError::new(kind, file, message);
        let yaml: serde_yaml::Value = serde_yaml::from_str(text).map_err(|e| {
            // One line, whatever the parser's text looks like.
            let text = e.to_string().replace(['\n', '\r'], " ");
            let mut error = err(ConfigErrorKind::Syntax, text);
            error.line = e.location().map(|l| l.line());
            error
        })?;
        let doc = match yaml_to_json(&yaml) {
            Value::Object(map) => map,
            _ => {
                return Err(err(
                    ConfigErrorKind::NotMapping,
                    "The specified config file is not an invalid yaml.".into(),
                ))
            }
        };

        let api = doc.get("api").ok_or_else(|| {
            err(
                ConfigErrorKind::MissingApi,
                "Could not find 'api' in the config document".into(),
            )
        })?;
        let events = api
            .as_object()
            .and_then(|a| a.get("events"))
            .ok_or_else(|| {
                err(
                    ConfigErrorKind::MissingEvents,
                    "Could not find 'api.events' in the config document".into(),
                )
            })?;
        // 1.3.6: null, numbers, booleans, and (unlike Node) strings and mappings.
        let events = events.as_array().ok_or_else(|| {
            err(
                ConfigErrorKind::EventsNotIterable,
                "Events could not be empty in the config document.".into(),
            )
        })?;

        let mut routes: Vec<RouteConfig> = Vec::new();
        let mut by_name: HashMap<String, usize> = HashMap::new();
        for (index, route) in events.iter().enumerate() {
            let Some((route, name)) = route
                .as_object()
                .and_then(|r| r.get("name").map(|name| (r, name)))
            else {
                return Err(err(
                    ConfigErrorKind::MissingName,
                    format!("Could not find 'api.events[{index}].name' in the config document"),
                ));
            };
            let name = js::key_text(name);
            let parsed = parse_route(route, &name, file)?;
            if !is_enabled(route.get("when"), node_env) {
                continue;
            }
            match by_name.get(&name) {
                Some(&at) => routes[at] = parsed,
                None => {
                    by_name.insert(name, routes.len());
                    routes.push(parsed);
                }
            }
        }

        let imports = match doc.get("import") {
            None | Some(Value::Null) => Vec::new(),
            Some(Value::Array(items)) => items.iter().map(js::key_text).collect(),
            // 1.3.10: Node would iterate a string's characters; reject it instead.
            Some(other) => {
                return Err(err(
                    ConfigErrorKind::BadImport,
                    format!(
                        "Could not load 'import.{}' in the config document",
                        js::key_text(other)
                    ),
                ))
            }
        };

        Ok(Config { imports, routes })
    }
}

/// 1.2.1: a JS-truthy `when` enables the route only when NODE_ENV equals it.
fn is_enabled(when: Option<&Value>, node_env: Option<&str>) -> bool {
    match when {
        None => true,
        Some(w) if !js::is_truthy(w) => true,
        Some(Value::String(w)) => node_env == Some(w.as_str()),
        // A truthy non-string never equals a string under `===`.
        Some(_) => false,
    }
}

fn log_level_of(map: &Map<String, Value>) -> LogLevel {
    match map.get("logLevel") {
        None => LogLevel::default(),
        Some(v) => LogLevel::parse(&js::key_text(v)),
    }
}

fn parse_route(
    route: &Map<String, Value>,
    name: &str,
    file: &str,
) -> Result<RouteConfig, ConfigError> {
    let policies = route.get("policies").ok_or_else(|| {
        ConfigError::new(
            ConfigErrorKind::MissingPolicies,
            file,
            format!("Could not find 'api.events[{name}].policies' in the config document"),
        )
    })?;
    let policies = policies.as_array().ok_or_else(|| {
        ConfigError::new(
            ConfigErrorKind::PoliciesNotIterable,
            file,
            format!(
                "Policies 'api.events[{name}].policies' could not be empty in the config document."
            ),
        )
    })?;
    let policies = policies
        .iter()
        .enumerate()
        .map(|(index, policy)| {
            parse_policy(policy).ok_or_else(|| {
                ConfigError::new(
                    ConfigErrorKind::BadPolicy,
                    file,
                    format!(
                        "Could not find 'api.events[{name}].policies[{index}]' in the config document"
                    ),
                )
            })
        })
        .collect::<Result<Vec<_>, _>>()?;
    Ok(RouteConfig {
        name: name.to_string(),
        policies,
        log_level: log_level_of(route),
    })
}

fn parse_policy(policy: &Value) -> Option<PolicyConfig> {
    match policy {
        Value::String(name) if !name.is_empty() => Some(PolicyConfig {
            handler: name.clone(),
            parameters: Vec::new(),
            log_level: LogLevel::default(),
        }),
        Value::Object(map) => {
            let (handler, value) = map.iter().next()?;
            if handler.is_empty() {
                return None;
            }
            let parameters = match value {
                Value::Array(items) => items.clone(),
                // 1.1.3: a scalar under the handler key is dropped.
                _ => match map.get("parameters") {
                    None | Some(Value::Null) => Vec::new(),
                    Some(Value::Array(items)) => items.clone(),
                    Some(other) => vec![other.clone()],
                },
            };
            Some(PolicyConfig {
                handler: handler.clone(),
                parameters,
                log_level: log_level_of(map),
            })
        }
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Fuzz finding (fuzz/regressions/config/handler-name-with-line-breaks): a handler or
    /// import name with line breaks, quoted in the error message, made the error (and the
    /// start-up log line) span several lines, though `Display` is documented as one line.
    #[test]
    fn errors_quoting_line_breaks_display_on_one_line() {
        let err =
            Config::parse("import: \"a\\nb\"\napi:\n  events: []\n", "c.yaml", None).unwrap_err();
        assert_eq!(err.kind, ConfigErrorKind::BadImport);
        assert!(err.message.contains('\n'), "the message itself is kept");
        assert_eq!(
            err.to_string(),
            "c.yaml: Could not load 'import.a\\nb' in the config document"
        );
        let mut err = ConfigError::new(ConfigErrorKind::Read, "x\r\ny", "Failed to load 'x\ny'");
        err.cause = Some("no\nsuch file".into());
        assert_eq!(err.to_string(), "Failed to load 'x\\ny': no\\nsuch file");
    }
}
