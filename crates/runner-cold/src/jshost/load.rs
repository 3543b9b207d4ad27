//! Start-up: a config whose folder has `handlers/*.js|ts` gets the JS host (9.1, 9.2).

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use super::{HostOptions, JsHandler, JsHost};
use configurapi::{Config, ConfigErrorKind, HandlerRegistry, Service};

/// A service loaded from a config file, with the JS host when its handlers need one.
pub struct LoadedService {
    /// The service.
    pub service: Service,
    /// The JS host, when the config uses a JS handler.
    pub host: Option<JsHost>,
}

/// True when `dir` holds a `.js` or `.ts` file (any case), as the Node core loads them.
pub fn app_has_js(dir: &Path) -> bool {
    std::fs::read_dir(dir)
        .map(|entries| {
            entries.flatten().any(|e| {
                let name = e.file_name().to_string_lossy().to_ascii_lowercase();
                (name.ends_with(".js") || name.ends_with(".ts"))
                    && e.file_type().is_ok_and(|t| t.is_file())
            })
        })
        .unwrap_or(false)
}

/// The command line's JS settings.
#[derive(Debug, Clone)]
pub struct JsOptions {
    /// `--node`, else `node` on PATH.
    pub node: Option<PathBuf>,
    /// `--handler-timeout`.
    pub timeout: Duration,
    /// The management token, for `wsPostbackFunction` in the host.
    pub token: Option<String>,
    /// The CA file the host's https:// postbacks trust (`--management-tls`).
    pub postback_ca: Option<PathBuf>,
}

impl Default for JsOptions {
    fn default() -> Self {
        JsOptions {
            node: None,
            timeout: super::DEFAULT_TIMEOUT,
            token: None,
            postback_ca: None,
        }
    }
}

/// Load `config_path` with `registry`; when `handlers/` beside it has JS, start the
/// host and register every JS handler the config names (a JS name replaces a built-in
/// one, 9.2). No Node process stays up when the config names none of them.
pub fn load_service(
    config_path: &Path,
    mut registry: HandlerRegistry,
    js: &JsOptions,
) -> Result<LoadedService, String> {
    let node = js.node.as_deref();
    let file = config_path.display().to_string();
    let node_env = std::env::var("NODE_ENV").ok();
    let config = Config::load(config_path, node_env.as_deref()).map_err(|e| e.to_string())?;
    let app_dir = match config_path.parent() {
        Some(p) if !p.as_os_str().is_empty() => p.to_path_buf(),
        _ => PathBuf::from("."),
    };
    // Absolute, so that log lines and the host's argv name the real folder.
    let app_dir = std::fs::canonicalize(&app_dir).unwrap_or(app_dir);
    let handlers_dir = app_dir.join("handlers");
    let mut host = None;
    // What handlers/ exports, for the hint when the config names something else.
    let mut js_names: Option<Vec<String>> = None;
    if app_has_js(&handlers_dir) {
        // A relative --node path means from here, not from the app's folder (the host's
        // working directory); a bare name is looked up on PATH.
        let node = match node {
            Some(p) if p.is_relative() && p.components().count() > 1 => std::env::current_dir()
                .map(|d| d.join(p))
                .unwrap_or_else(|_| p.to_path_buf()),
            Some(p) => p.to_path_buf(),
            None => "node".into(),
        };
        let (h, info) = JsHost::start(HostOptions {
            node: node.clone(),
            app_dir: app_dir.clone(),
            handlers_dir: handlers_dir.clone(),
            timeout: js.timeout,
            token: js.token.clone(),
            postback_ca: js.postback_ca.clone(),
        })
        .map_err(|e| {
            format!(
                "{file}: {} has JS handlers, but {e} (install Node, or pass --node PATH)",
                handlers_dir.display()
            )
        })?;
        if let Some(first) = info.errors.first() {
            h.shutdown(Duration::ZERO);
            let more = match info.errors.len() {
                1 => String::new(),
                n => format!(" (and {} more)", n - 1),
            };
            return Err(format!(
                "{file}: a JS handler file failed to load: {first}{more}"
            ));
        }
        js_names = Some(info.handlers.clone());
        let named: std::collections::BTreeSet<&str> = config
            .routes
            .iter()
            .flat_map(|r| r.policies.iter().map(|p| p.handler.as_str()))
            .collect();
        let used: Vec<&String> = info
            .handlers
            .iter()
            .filter(|n| named.contains(n.as_str()))
            .collect();
        if used.is_empty() {
            h.shutdown(Duration::ZERO);
            log::info!(
                "{} has JS handlers, but the config names none of them: no Node process",
                handlers_dir.display()
            );
        } else {
            let builtins = registry
                .resolve(&config.imports, &file)
                .map_err(|e| e.to_string())?;
            for name in &used {
                if builtins.contains_key(name.as_str()) {
                    log::info!("JS handler '{name}' replaces the built-in handler of that name");
                }
                registry.register_arc(name, Arc::new(JsHandler::new(h.clone(), name)));
            }
            log::info!(
                "JS handler host: node {} ({}), {} of {} JS handlers used, Configurapi classes: {}",
                info.node_version,
                node.display(),
                used.len(),
                info.handlers.len(),
                info.configurapi
            );
            host = Some(h);
        }
    }
    // Paths in the config (schema folders) are relative to the config file.
    let base = config_path.parent().unwrap_or(Path::new(""));
    match Service::from_config_in(config, &registry, &file, base) {
        Ok(service) => Ok(LoadedService { service, host }),
        Err(e) => {
            if let Some(h) = &host {
                h.shutdown(Duration::ZERO);
            }
            let mut message = e.to_string();
            if e.kind == ConfigErrorKind::UnknownHandler {
                match js_names {
                    Some(names) if names.is_empty() => message
                        .push_str(&format!(" ({} exports no handler)", handlers_dir.display())),
                    Some(mut names) => {
                        names.sort();
                        message.push_str(&format!(
                            " ({} exports: {})",
                            handlers_dir.display(),
                            names.join(", ")
                        ));
                    }
                    None => {}
                }
            }
            Err(message)
        }
    }
}
