//! Handler registry (5.0): named handlers, grouped in packs.
//!
//! Resolution order, later overriding earlier: always-on packs, then the
//! config's `import:` packs in order, then handlers registered by name with
//! [`HandlerRegistry::register`] (Node loads its `./handlers` directory after
//! the imports, so user handlers win there too).

use std::collections::HashMap;
use std::sync::Arc;

use super::config::{Config, ConfigError, ConfigErrorKind};
use super::handler::Handler;

/// A named group of handlers, the port's stand-in for an npm handler package.
#[derive(Clone)]
pub struct HandlerPack {
    name: String,
    handlers: Vec<(String, Arc<dyn Handler>)>,
}

impl HandlerPack {
    /// An empty pack called `name` (e.g. `configurapi-handler-http`).
    pub fn new(name: impl Into<String>) -> HandlerPack {
        HandlerPack {
            name: name.into(),
            handlers: Vec::new(),
        }
    }

    /// Adds a handler, builder style.
    pub fn with(mut self, name: &str, handler: impl Handler + 'static) -> HandlerPack {
        self.add(name, Arc::new(handler));
        self
    }

    /// Adds a handler that never blocks (see
    /// [`Handler::is_nonblocking`](super::handler::Handler::is_nonblocking)).
    pub fn with_nonblocking(self, name: &str, handler: impl Handler + 'static) -> HandlerPack {
        self.with(name, super::handler::NonBlocking(handler))
    }

    /// Adds a handler that blocks on I/O (see
    /// [`Handler::is_blocking`]).
    pub fn with_blocking(self, name: &str, handler: impl Handler + 'static) -> HandlerPack {
        self.with(name, super::handler::Blocking(handler))
    }

    /// Adds a handler.
    pub fn add(&mut self, name: &str, handler: Arc<dyn Handler>) {
        self.handlers.push((name.to_string(), handler));
    }

    /// The pack's name.
    pub fn name(&self) -> &str {
        &self.name
    }

    /// The handler names, in registration order.
    pub fn handler_names(&self) -> impl Iterator<Item = &str> {
        self.handlers.iter().map(|(n, _)| n.as_str())
    }
}

/// All handlers a service may use, by name. Build it before loading the
/// config so that user handlers are known when policies are resolved.
#[derive(Clone, Default)]
pub struct HandlerRegistry {
    importable: Vec<HandlerPack>,
    always_on: Vec<HandlerPack>,
    user: Vec<(String, Arc<dyn Handler>)>,
}

/// The resolved name -> handler table of one service.
pub type HandlerTable = HashMap<String, Arc<dyn Handler>>;

/// A handler a config names that its imports and registrations do not provide (1.3.12).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MissingHandler {
    /// The handler name.
    pub name: String,
    /// The routes whose policies name it, in config order.
    pub routes: Vec<String>,
    /// A known pack that provides it but is not imported: the `import:` to add.
    pub pack: Option<String>,
}

impl MissingHandler {
    /// The start-up error for these (every one at once, in config order), one line:
    /// `Handler 'a' could not be found (route 'x', in configurapi-handler-logging). Add
    /// to import: configurapi-handler-logging.` or, for several,
    /// `3 handlers could not be found: 'a' (route 'x'), ... .`
    pub fn error(missing: &[MissingHandler], file: &str) -> ConfigError {
        // Where the name is used, and the pack that has it: `route 'x', in pack`.
        let context = |m: &MissingHandler| {
            let noun = if m.routes.len() == 1 {
                "route"
            } else {
                "routes"
            };
            let routes: Vec<String> = m.routes.iter().map(|r| format!("'{r}'")).collect();
            let pack = m
                .pack
                .as_ref()
                .map(|p| format!(", in {p}"))
                .unwrap_or_default();
            format!("{noun} {}{pack}", routes.join(", "))
        };
        let mut message = match missing {
            [one] => format!(
                "Handler '{}' could not be found ({}).",
                one.name,
                context(one)
            ),
            many => format!(
                "{} handlers could not be found: {}.",
                many.len(),
                many.iter()
                    .map(|m| format!("'{}' ({})", m.name, context(m)))
                    .collect::<Vec<_>>()
                    .join(", ")
            ),
        };
        let mut packs: Vec<&str> = missing.iter().filter_map(|m| m.pack.as_deref()).collect();
        packs.sort_unstable();
        packs.dedup();
        if !packs.is_empty() {
            message.push_str(&format!(" Add to import: {}.", packs.join(", ")));
        }
        ConfigError::new(ConfigErrorKind::UnknownHandler, file, message)
    }
}

impl HandlerRegistry {
    /// An empty registry: no packs, no handlers.
    pub fn new() -> HandlerRegistry {
        HandlerRegistry::default()
    }

    /// The registry every service starts from: the importable packs
    /// `configurapi-handler-http`, `configurapi-handler-json` and
    /// `configurapi-handler-logging`. A runner adds its own always-on packs
    /// with [`HandlerRegistry::add_always_on_pack`].
    pub fn with_builtins() -> HandlerRegistry {
        let mut registry = HandlerRegistry::new();
        for pack in crate::handlers::builtin_packs() {
            registry.add_importable_pack(pack);
        }
        registry
    }

    /// Registers a handler by name; a later registration of the same name
    /// overrides an earlier one and any pack's handler of that name.
    pub fn register(&mut self, name: &str, handler: impl Handler + 'static) -> &mut Self {
        self.register_arc(name, Arc::new(handler))
    }

    /// Registers a handler that blocks its thread on I/O: it runs on the service's
    /// bounded blocking pool, never on a worker (see
    /// [`Handler::is_blocking`]).
    pub fn register_blocking(&mut self, name: &str, handler: impl Handler + 'static) -> &mut Self {
        self.register_arc(name, Arc::new(super::handler::Blocking(handler)))
    }

    /// [`HandlerRegistry::register`] for a handler already in an `Arc`.
    pub fn register_arc(&mut self, name: &str, handler: Arc<dyn Handler>) -> &mut Self {
        self.user.push((name.to_string(), handler));
        self
    }

    /// Makes a pack available to `import:` under its name.
    pub fn add_importable_pack(&mut self, pack: HandlerPack) -> &mut Self {
        self.importable.retain(|p| p.name != pack.name);
        self.importable.push(pack);
        self
    }

    /// Adds a pack whose handlers are available without `import:` (8.7).
    /// Importing it by name is allowed and changes nothing.
    pub fn add_always_on_pack(&mut self, pack: HandlerPack) -> &mut Self {
        self.always_on.retain(|p| p.name != pack.name);
        self.always_on.push(pack);
        self
    }

    /// Names accepted by `import:`, sorted.
    pub fn known_packs(&self) -> Vec<String> {
        let mut names: Vec<String> = self
            .importable
            .iter()
            .chain(&self.always_on)
            .map(|p| p.name.clone())
            .collect();
        names.sort();
        names.dedup();
        names
    }

    /// Every handler `config` names that its imports and this registry's registrations
    /// do not provide, each with the routes that name it and the pack to import when
    /// a known one has it. Empty when the config can be served.
    pub fn missing_handlers(
        &self,
        config: &Config,
        file: &str,
    ) -> Result<Vec<MissingHandler>, ConfigError> {
        let table = self.resolve(&config.imports, file)?;
        Ok(self.missing_in(&table, config))
    }

    /// [`HandlerRegistry::missing_handlers`] against a resolved table.
    pub(crate) fn missing_in(&self, table: &HandlerTable, config: &Config) -> Vec<MissingHandler> {
        let mut missing: Vec<MissingHandler> = Vec::new();
        for route in &config.routes {
            for policy in &route.policies {
                if table.contains_key(&policy.handler) {
                    continue;
                }
                match missing.iter_mut().find(|m| m.name == policy.handler) {
                    Some(m) => {
                        if !m.routes.contains(&route.name) {
                            m.routes.push(route.name.clone());
                        }
                    }
                    None => missing.push(MissingHandler {
                        name: policy.handler.clone(),
                        routes: vec![route.name.clone()],
                        pack: self
                            .importable
                            .iter()
                            .find(|p| p.handler_names().any(|n| n == policy.handler))
                            .map(|p| p.name.clone()),
                    }),
                }
            }
        }
        missing
    }

    /// The name -> handler table for a config's imports. An unknown import
    /// is an error listing the known packs.
    pub fn resolve(&self, imports: &[String], file: &str) -> Result<HandlerTable, ConfigError> {
        let mut table = HandlerTable::new();
        let mut add = |pack: &HandlerPack| {
            for (name, handler) in &pack.handlers {
                table.insert(name.clone(), handler.clone());
            }
        };
        for pack in &self.always_on {
            add(pack);
        }
        for import in imports {
            if self.always_on.iter().any(|p| &p.name == import) {
                continue;
            }
            let pack = self
                .importable
                .iter()
                .find(|p| &p.name == import)
                .ok_or_else(|| {
                    ConfigError::new(
                        ConfigErrorKind::UnknownImport,
                        file,
                        format!(
                            "Could not load 'import.{import}' in the config document: no handler pack of that name (known packs: {})",
                            self.known_packs().join(", ")
                        ),
                    )
                })?;
            add(pack);
        }
        for (name, handler) in &self.user {
            table.insert(name.clone(), handler.clone());
        }
        Ok(table)
    }
}
