//! Handler registry (5.0): named handlers, grouped in packs.
//!
//! Resolution order, later overriding earlier: always-on packs, then the
//! config's `import:` packs in order, then handlers registered by name with
//! [`HandlerRegistry::register`] (Node loads its `./handlers` directory after
//! the imports, so user handlers win there too).

use std::collections::HashMap;
use std::sync::Arc;

use super::config::{ConfigError, ConfigErrorKind};
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

impl HandlerRegistry {
    /// An empty registry: no packs, no handlers.
    pub fn new() -> HandlerRegistry {
        HandlerRegistry::default()
    }

    /// The registry every service starts from: the importable packs
    /// `configurapi-handler-http` and `configurapi-handler-json`, plus every
    /// always-on pack registered with
    /// [`crate::handlers::register_always_on_pack`].
    pub fn with_builtins() -> HandlerRegistry {
        let mut registry = HandlerRegistry::new();
        for pack in crate::handlers::builtin_packs() {
            registry.add_importable_pack(pack);
        }
        for pack in crate::handlers::always_on_packs() {
            registry.add_always_on_pack(pack);
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
