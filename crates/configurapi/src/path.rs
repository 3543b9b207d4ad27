//! HTTP path to event name mapping (2.2), as a pure function so that the
//! management API and any HTTP front end can call it without an Event.

use compact_str::CompactString;
use regex::Regex;
use serde_json::{Map, Value};
use std::sync::LazyLock;

use super::inflection::singularize;

/// The result of mapping a request path: what the Event gets (2.2).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RouteKey {
    /// The event name, e.g. `list_v1_user_phones`.
    pub name: CompactString,
    /// The method, `list` for a GET on a collection.
    pub method: CompactString,
    /// The version segment (`v1`, `v1.2`), when the path has one.
    pub version: Option<String>,
    /// Path ids under singular resource keys, then the query keys (2.2.5).
    pub params: Map<String, Value>,
}

static VERSION: LazyLock<Regex> =
    LazyLock::new(|| Regex::new(r"^v\d+(\.\d+)*$").expect("version pattern"));

/// Maps `(request name, method, path, query)` to the event name, method,
/// version and params, following 2.2.1 to 2.2.5 exactly:
///
/// ```
/// use configurapi::map_path;
/// let query = serde_json::Map::new();
/// let key = map_path("", "get", "/v1/users/someone/phones", &query);
/// assert_eq!(key.name, "list_v1_user_phones");
/// assert_eq!(key.method, "list");
/// assert_eq!(key.version.as_deref(), Some("v1"));
/// ```
///
/// `method` should already be lower case (the Request lowercases it).
pub fn map_path(
    request_name: &str,
    method: &str,
    path: &str,
    query: &Map<String, Value>,
) -> RouteKey {
    let segments: Vec<&str> = path.split('/').filter(|s| !s.is_empty()).collect();
    map_segments(request_name, method, &segments, query)
}

/// [`map_path`] over segments the caller has already split (and, for an HTTP front end
/// such as the management API, percent-decoded: 6.7.2), so that a decoded `%2F` stays
/// inside its segment. Empty segments are dropped here too (2.2.1).
///
/// ```
/// use configurapi::path::map_segments;
/// let key = map_segments("", "put", &["@connections", "x"], &serde_json::Map::new());
/// assert_eq!(key.name, "put_@connection");
/// ```
pub fn map_segments<S: AsRef<str>>(
    request_name: &str,
    method: &str,
    segments: &[S],
    query: &Map<String, Value>,
) -> RouteKey {
    let mut segments: Vec<&str> = segments
        .iter()
        .map(AsRef::as_ref)
        .filter(|s| !s.is_empty())
        .collect();
    if segments.is_empty() {
        // 2.2.1: no segments means no mapping at all, and no query copy.
        return RouteKey {
            name: request_name.into(),
            method: method.into(),
            version: None,
            params: Map::new(),
        };
    }

    let mut version = None;
    if VERSION.is_match(segments[0]) {
        version = Some(segments.remove(0).to_string());
    }

    let mut method = method.to_string();
    let mut params = Map::new();
    // 2.2.4: the accumulated name starts with the request name (the getgetData quirk).
    let mut accumulated = request_name.to_string();
    for pair in segments.chunks(2) {
        let resource = pair[0];
        let key = singularize(resource);
        match pair.get(1) {
            Some(id) => {
                params.insert(key.clone(), Value::String((*id).to_string()));
                accumulated.push('_');
                accumulated.push_str(&key);
            }
            None => {
                params.insert(key.clone(), Value::String(String::new()));
                accumulated.push('_');
                if method == "get" {
                    method = "list".to_string();
                    accumulated.push_str(resource);
                } else {
                    accumulated.push_str(&key);
                }
            }
        }
    }

    let mut name = method.clone();
    if let Some(v) = &version {
        name.push('_');
        name.push_str(v);
    }
    name.push_str(&accumulated);

    for (k, v) in query {
        params.insert(k.clone(), v.clone());
    }

    RouteKey {
        name: name.into(),
        method: method.into(),
        version,
        params,
    }
}
