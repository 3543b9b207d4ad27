//! The core's path-to-event-name rule (semantics 2.2), used only to word the 501 answer
//! the way the core would (`Route for 'list_users' event could not be found.'`).
//!
//! Singularization is a small subset of the npm `inflection` rules: enough for the
//! semantics table (users, phones, people, data, news, statuses, @connections) and the
//! common English endings. A word it gets wrong only changes a 501's message text.
//! The Configurapi core (`configurapi::map_path`, on main) implements the full rule; once
//! this branch meets it, `event_name` should become a call to it.

use crate::http::percent_decode;

/// The event name the core gives `method` + `path`: lowercased method (`get` becomes
/// `list` when the last resource has no id), the version segment if any, then one part
/// per (resource, id) pair. A path with no segments gives `""`.
pub fn event_name(method: &str, path: &str) -> String {
    let segs: Vec<String> = path
        .split('/')
        .filter(|s| !s.is_empty())
        .map(|s| percent_decode(s, false))
        .collect();
    if segs.is_empty() {
        return String::new();
    }
    let mut method = method.to_ascii_lowercase();
    let mut rest = &segs[..];
    let mut version = String::new();
    if is_version(&segs[0]) {
        version = format!("_{}", segs[0]);
        rest = &segs[1..];
    }
    let mut parts = String::new();
    for pair in rest.chunks(2) {
        parts.push('_');
        if pair.len() == 1 && method == "get" {
            method = "list".to_string();
            parts.push_str(&pair[0]);
        } else {
            parts.push_str(&singularize(&pair[0]));
        }
    }
    format!("{method}{version}{parts}")
}

/// `^v\d+(\.\d+)*$`
fn is_version(s: &str) -> bool {
    s.strip_prefix('v').is_some_and(|rest| {
        rest.split('.')
            .all(|p| !p.is_empty() && p.bytes().all(|b| b.is_ascii_digit()))
    })
}

/// Singular of an English plural, after the npm `inflection` rules (subset).
fn singularize(word: &str) -> String {
    const UNCOUNTABLE: [&str; 11] = [
        "equipment",
        "information",
        "rice",
        "money",
        "species",
        "series",
        "fish",
        "sheep",
        "moose",
        "deer",
        "news",
    ];
    const IRREGULAR: [(&str, &str); 4] = [
        ("people", "person"),
        ("men", "man"),
        ("children", "child"),
        ("women", "woman"),
    ];
    let lower = word.to_ascii_lowercase();
    if UNCOUNTABLE.contains(&lower.as_str()) {
        return word.to_string();
    }
    if let Some((_, s)) = IRREGULAR.iter().find(|(p, _)| *p == lower) {
        return s.to_string();
    }
    let cut = |n: usize, add: &str| format!("{}{}", &word[..word.len() - n], add);
    if lower.ends_with("statuses") || lower.ends_with("aliases") {
        return cut(2, "");
    }
    if lower.ends_with("status") || lower.ends_with("alias") || lower.ends_with("ss") {
        return word.to_string();
    }
    for suffix in ["xes", "ches", "sses", "shes"] {
        if lower.ends_with(suffix) {
            return cut(2, "");
        }
    }
    if lower.ends_with("ies") && lower.len() > 3 {
        let before = lower.as_bytes()[lower.len() - 4];
        if !b"aeiouy".contains(&before) {
            return cut(3, "y");
        }
    }
    if lower.ends_with("ta") || lower.ends_with("ia") {
        return cut(1, "um");
    }
    if lower.ends_with('s') {
        return cut(1, "");
    }
    word.to_string()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn semantics_table() {
        let cases = [
            ("GET", "/users", "list_users"),
            ("GET", "/users/someone/phones/123", "get_user_phone"),
            ("GET", "/v1/users/someone/phones", "list_v1_user_phones"),
            ("POST", "/v1/users/", "post_v1_user"),
            ("DELETE", "/people/1", "delete_person"),
            ("GET", "/data", "list_data"),
            ("OPTIONS", "/v1/data", "options_v1_datum"),
            ("GET", "/news", "list_news"),
            ("GET", "/v1.2/statuses", "list_v1.2_statuses"),
            ("GET", "/v1", "get_v1"),
            ("GET", "/@connections", "list_@connections"),
            ("POST", "/@connections/abc", "post_@connection"),
            ("GET", "/list_@connections", "list_list_@connections"),
            ("POST", "/post_@connection", "post_post_@connection"),
            ("GET", "/", ""),
            ("GET", "//", ""),
            ("PUT", "/%40connections/x", "put_@connection"),
        ];
        for (m, p, want) in cases {
            assert_eq!(event_name(m, p), want, "{m} {p}");
        }
    }

    #[test]
    fn singular_forms() {
        for (p, s) in [
            ("statuses", "status"),
            ("boxes", "box"),
            ("churches", "church"),
            ("categories", "category"),
            ("keys", "key"),
            ("news", "news"),
            ("class", "class"),
            ("People", "person"),
            ("s", ""),
            ("ies", "ie"),
            ("é", "é"),
        ] {
            assert_eq!(singularize(p), s, "{p}");
        }
    }
}
