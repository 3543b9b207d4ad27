//! The Configurapi core: config.yaml, events, responses, placeholders and the
//! Service pipeline, with no networking (runners build on it).
//!
//! ```
//! use configurapi::{Event, HandlerRegistry, Request, Service};
//!
//! let yaml = r#"
//! import: [configurapi-handler-http]
//! api:
//!   events:
//!     - name: get_v1_hello
//!       policies:
//!         - setResponseHandler: [200, "Hello"]
//! "#;
//! let service = Service::from_str(yaml, "config.yaml", HandlerRegistry::with_builtins()).unwrap();
//! // GET /v1/hello/world is get_v1_hello with params.hello = "world".
//! let mut event = Event::new(Request::new("GET", "/v1/hello/world"));
//! service.process(&mut event).unwrap();
//! assert_eq!(event.response.status_code, 200);
//! assert_eq!(event.response.body, "Hello".into());
//! ```

mod blocking;
pub mod config;
pub mod event;
pub mod handler;
pub mod handlers;
pub mod headers;
pub mod http;
pub mod identity;
pub mod inflection;
pub mod js;
pub mod path;
mod placeholders;
pub mod registry;
pub mod response;
pub mod service;

pub use compact_str::CompactString;
pub use config::{Config, ConfigError, ConfigErrorKind, LogLevel, PolicyConfig, RouteConfig};
pub use event::{CorrelationId, Event, EventId, Payload, Request};
pub use handler::{
    handler_fn, Binding, Blocking, Completion, Context, Handler, HandlerError, NonBlocking, Outcome,
};
pub use headers::{Headers, HeadersBuilder};
pub use http::SyntaxError;
pub use identity::{Claim, Identity, Scope};
pub use inflection::{pluralize, singularize};
pub use path::{map_path, RouteKey};
pub use registry::{HandlerPack, HandlerRegistry, HandlerTable, MissingHandler};
pub use response::{
    Body, Chunk, ChunkStream, ErrorResponse, PushDone, PushError, PushSink, ReadyJob, ReadySignal,
    Response,
};
pub use service::{Finish, RouteId, RunHere, Schedule, Service, ServiceOptions, Started};
