//! Every behaviour-contract number the code cites has an entry in docs/contract.md, so a
//! reader who meets `(6.5.3)` in a comment or `s6_3_2_...` as a test name can look it up.
//!
//! What counts as a citation (the crate has no regex dependency, so the scanner below is
//! written out by hand; as a regex it would be roughly
//! `fn s(\d+(?:_\d+)*)_\D` for test names and
//! `(?<![\w./:$])[1-9]\.\d{1,2}(?:\.\d{1,2})*(?![\w/%])` for numbers in comments):
//! - a test function named `s<d>_<d>..._<words>`: `fn s6_3_2_message_id...` cites 6.3.2,
//!   `fn s5_set_response_handler` cites section 5;
//! - in a `//`, `///` or `//!` comment, a dotted number whose first part is 1 to 9 (`6.8`,
//!   `(3.1.2)`, `8.4-8.6`, `3.3.1 step 4`), and a single or dotted number right after
//!   `semantics`, `contract` or `section(s)` (`semantics section 6`, `Section 2 of the
//!   contract`, `contract 9.1`).
//!
//! Not citations: numbers glued to a word, a path, a dot or a colon (`v1.2`, `HTTP/1.1`,
//! `127.0.0.1`, `0.23`), numbers before a unit (`1.5 MiB`), `version 0.0.4`, and every bare
//! number on a line that names an RFC or an Autobahn case (`RFC 6455 5.5.3`, `Autobahn
//! 6.4.*`). Comments in `src/ws/` and `src/http/`, the RFC 6455 codec and the HTTP/1.1
//! parser, number RFC sections throughout (`(5.2)`, `(7.4)`), so only an explicit
//! `semantics N` or `contract N` counts there.

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};

/// The Rust sources whose comments and test names are checked.
const ROOTS: &[&str] = &[
    "src",
    "crates/configurapi/src",
    "crates/runner-cold/src",
    "tests",
    "crates/configurapi/tests",
];

/// This file: its string literals are examples of what is and is not a citation.
const SELF: &str = "tests/contract_refs.rs";

/// Folders whose comments cite RFC section numbers, not the contract's.
const RFC_FOLDERS: &[&str] = &["src/ws/", "src/http/"];

/// Words after which a number is a unit quantity, not a section (`1.5 MiB`).
const UNITS: &[&str] = &[
    "b", "kb", "mb", "gb", "kib", "mib", "gib", "bytes", "ms", "s", "us", "µs", "x", "%",
];

/// One citation: the number and where it was found.
#[derive(Debug, Clone, PartialEq, Eq)]
struct Citation {
    number: String,
    at: String,
}

fn root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

/// The numbers docs/contract.md defines: section headings (`## 6. ...`, `### 6.5 ...`) and
/// entries (`**6.5.3** ...`, `- **3.3.1.4** ...`). A number defined twice is an error.
fn defined(contract: &str) -> Result<BTreeSet<String>, String> {
    let mut numbers = BTreeSet::new();
    let mut twice = Vec::new();
    for line in contract.lines() {
        let found = if let Some(rest) = line.strip_prefix('#') {
            let rest = rest.trim_start_matches('#');
            rest.strip_prefix(' ')
                .and_then(|r| leading_number(r).map(|(n, _)| n))
        } else {
            let t = line.trim_start();
            let t = t.strip_prefix("- ").unwrap_or(t);
            t.strip_prefix("**")
                .and_then(leading_number)
                .filter(|(_, rest)| rest.starts_with("**"))
                .map(|(n, _)| n)
        };
        if let Some(n) = found {
            if !numbers.insert(n.clone()) {
                twice.push(n);
            }
        }
    }
    if twice.is_empty() {
        Ok(numbers)
    } else {
        Err(format!(
            "docs/contract.md defines these numbers twice: {twice:?}"
        ))
    }
}

/// `6.5.3` at the start of `s` (a trailing `.` as in `## 6.` is dropped), and the rest.
fn leading_number(s: &str) -> Option<(String, &str)> {
    let end = s
        .find(|c: char| !(c.is_ascii_digit() || c == '.'))
        .unwrap_or(s.len());
    let number = s[..end].trim_end_matches('.');
    let valid = !number.is_empty() && number.split('.').all(|p| !p.is_empty());
    valid.then(|| (number.to_string(), &s[end..]))
}

/// The contract numbers a test function name cites: `s6_3_2_echo` is 6.3.2, `s5_x` is 5.
fn test_name_citation(line: &str) -> Option<String> {
    let at = line.find("fn s")?;
    let name = &line[at + 4..];
    let name = &name[..name
        .find(|c: char| !(c.is_ascii_alphanumeric() || c == '_'))
        .unwrap_or(name.len())];
    let mut parts = Vec::new();
    for part in name.split('_') {
        if !part.is_empty() && part.bytes().all(|b| b.is_ascii_digit()) {
            parts.push(part);
        } else {
            break;
        }
    }
    // A name that is all digits (`fn s1_2`) is not the `s<number>_<words>` form.
    (!parts.is_empty() && parts.len() < name.split('_').count()).then(|| parts.join("."))
}

/// Where the comment starts in a line of code, if it has one: the first `//` that is not
/// the `://` of a URL.
fn comment(line: &str) -> Option<&str> {
    let mut from = 0;
    while let Some(i) = line[from..].find("//") {
        let at = from + i;
        if at == 0 || line.as_bytes()[at - 1] != b':' {
            return Some(&line[at..]);
        }
        from = at + 2;
    }
    None
}

/// A number token starting at byte `i` of `text`: digits and inner dots.
fn number_at(text: &str, i: usize) -> (&str, usize) {
    let bytes = text.as_bytes();
    let mut end = i;
    while end < bytes.len()
        && (bytes[end].is_ascii_digit()
            || (bytes[end] == b'.' && bytes.get(end + 1).is_some_and(u8::is_ascii_digit)))
    {
        end += 1;
    }
    (&text[i..end], end)
}

/// Whether `number` has the shape of a contract number: parts of one or two digits, the
/// first from 1 to 9.
fn contract_shaped(number: &str) -> bool {
    let parts: Vec<&str> = number.split('.').collect();
    parts[0].len() == 1 && parts[0] != "0" && parts.iter().all(|p| !p.is_empty() && p.len() <= 2)
}

/// The contract numbers one comment cites. `bare` says whether plain dotted numbers count,
/// or only numbers after `semantics`/`contract`.
fn comment_citations(text: &str, bare: bool) -> Vec<String> {
    let lower = text.to_ascii_lowercase();
    let bare = bare && !text.contains("RFC") && !text.contains("Autobahn");
    let bytes = text.as_bytes();
    let mut out = Vec::new();
    let mut i = 0;
    while i < bytes.len() {
        let glued =
            i > 0 && (bytes[i - 1].is_ascii_alphanumeric() || b"_./:$".contains(&bytes[i - 1]));
        if !bytes[i].is_ascii_digit() || glued {
            i += 1;
            continue;
        }
        let (number, end) = number_at(text, i);
        i = end;
        let next = bytes.get(end).copied();
        if next.is_some_and(|b| b.is_ascii_alphanumeric() || b"_/%".contains(&b)) {
            continue; // `1.5x`, `8.6/`, `12%`
        }
        let after = lower[end..].trim_start();
        let unit = after
            .split(|c: char| !(c.is_alphanumeric() || c == '%'))
            .next()
            .unwrap_or("");
        if end < lower.len() && UNITS.contains(&unit) && lower[end..].starts_with(' ') {
            continue; // `1.5 MiB`
        }
        let before = lower[..i - number.len()].trim_end();
        let explicit = ["semantics", "contract"]
            .iter()
            .any(|w| before.ends_with(w) || before.ends_with(&format!("{w} section")));
        let section = before.ends_with("section") || before.ends_with("sections");
        if before.ends_with("version") || !contract_shaped(number) {
            continue;
        }
        let dotted = number.contains('.');
        if explicit || (bare && (dotted || section)) {
            out.push(number.to_string());
        }
    }
    out
}

/// Every citation in one source file.
fn citations_in(rel: &str, text: &str) -> Vec<Citation> {
    let bare = !RFC_FOLDERS.iter().any(|f| rel.starts_with(f));
    let mut out = Vec::new();
    for (n, line) in text.lines().enumerate() {
        let at = format!("{rel}:{}", n + 1);
        if let Some(number) = test_name_citation(line) {
            out.push(Citation {
                number,
                at: at.clone(),
            });
        }
        if let Some(c) = comment(line) {
            for number in comment_citations(c, bare) {
                out.push(Citation {
                    number,
                    at: at.clone(),
                });
            }
        }
    }
    out
}

fn rust_files(dir: &Path, out: &mut Vec<PathBuf>) {
    let entries = std::fs::read_dir(dir).unwrap_or_else(|e| panic!("{}: {e}", dir.display()));
    for entry in entries {
        let path = entry.unwrap().path();
        if path.is_dir() {
            rust_files(&path, out);
        } else if path.extension().is_some_and(|e| e == "rs") {
            out.push(path);
        }
    }
}

fn all_citations() -> Vec<Citation> {
    let root = root();
    let mut files = Vec::new();
    for r in ROOTS {
        rust_files(&root.join(r), &mut files);
    }
    files.sort();
    let mut out = Vec::new();
    for file in files {
        let rel = file
            .strip_prefix(&root)
            .unwrap()
            .to_string_lossy()
            .replace('\\', "/");
        if rel == SELF {
            continue;
        }
        let text = std::fs::read_to_string(&file).unwrap();
        out.extend(citations_in(&rel, &text));
    }
    out
}

#[test]
fn every_cited_contract_number_has_an_entry_in_docs_contract_md() {
    let contract = std::fs::read_to_string(root().join("docs/contract.md")).unwrap();
    let defined = defined(&contract).unwrap_or_else(|e| panic!("{e}"));
    let citations = all_citations();
    // The scan itself must be finding the codebase's citations, or this test proves nothing.
    assert!(
        citations.len() > 200,
        "only {} citations found: has the scanner stopped recognising them?",
        citations.len()
    );
    let mut missing: BTreeMap<&str, Vec<&str>> = BTreeMap::new();
    for c in &citations {
        if !defined.contains(&c.number) {
            missing.entry(&c.number).or_default().push(&c.at);
        }
    }
    let report: Vec<String> = missing
        .iter()
        .map(|(n, at)| format!("  {n}: cited at {}", at.join(", ")))
        .collect();
    assert!(
        missing.is_empty(),
        "{} contract numbers are cited but have no entry in docs/contract.md \
         (add the entry, fix the citation, or write `RFC NNNN` before an RFC section):\n{}",
        missing.len(),
        report.join("\n")
    );
}

#[test]
fn contract_md_defines_headings_and_entries() {
    let defined = defined(
        "## 6. Runner\n### 6.5 Lifecycle\n**6.5.3** text\n- **3.3.1.4** step\n\
         **7.1 is not an entry\n1.2 prose is not a definition\n",
    )
    .unwrap();
    let want: BTreeSet<String> = ["6", "6.5", "6.5.3", "3.3.1.4"]
        .iter()
        .map(|s| s.to_string())
        .collect();
    assert_eq!(defined, want);
    assert!(defined_twice_is_an_error());
}

fn defined_twice_is_an_error() -> bool {
    defined("**1.1** a\n**1.1** b\n").is_err()
}

#[test]
fn the_scanner_finds_each_citation_style_and_nothing_else() {
    let found = |line: &str| {
        citations_in("src/x.rs", line)
            .into_iter()
            .map(|c| c.number)
            .collect::<Vec<_>>()
    };
    // Citation styles of this codebase.
    assert_eq!(found("    fn s6_3_2_message_id_is_echoed() {"), ["6.3.2"]);
    assert_eq!(found("fn s8_10_section_8_wins() {"), ["8.10"]);
    assert_eq!(found("fn s5_set_response_handler() {"), ["5"]);
    assert_eq!(found("/// The postback client (semantics 6.8)."), ["6.8"]);
    assert_eq!(found("return None; // 6.5.3: accepted"), ["6.5.3"]);
    assert_eq!(found("// (3.1.2) and 8.11."), ["3.1.2", "8.11"]);
    assert_eq!(
        found("//! semantics 6.7, 6.8, 8.4-8.6, 8.14"),
        ["6.7", "6.8", "8.4", "8.6", "8.14"]
    );
    assert_eq!(found("/// step 3.3.1.4 of the pipeline"), ["3.3.1.4"]);
    assert_eq!(found("//! Section 2 of the contract: events"), ["2"]);
    assert_eq!(found("//! worker pool (semantics section 6)."), ["6"]);
    assert_eq!(found("// contract 9.1: handlers/"), ["9.1"]);
    assert_eq!(found("// --------------- 6.4.5 backpressure"), ["6.4.5"]);
    // Not citations.
    assert!(found("// RFC 6455 5.5.3: pongs coalesce").is_empty());
    assert!(found("// (RFC 9112 section 7.1)").is_empty());
    assert!(found("// a burst of pings (Autobahn 2.10)").is_empty());
    assert!(found("//! exposition format (version 0.0.4).").is_empty());
    assert!(found("// HTTP/1.1 on 127.0.0.1:9100, v1.2, rustls 0.23").is_empty());
    assert!(found("// costs 1.5 MiB, 2.5 s, 3.5x").is_empty());
    assert!(found("let x = 6.5; // no citation here").is_empty());
    assert!(found("let url = \"http://h/6.5.3\";").is_empty());
    assert!(found("fn s1_2() {}").is_empty());
    // In the RFC codec, bare numbers are RFC sections; explicit ones still count.
    let ws = |line: &str| {
        citations_in("src/ws/error.rs", line)
            .into_iter()
            .map(|c| c.number)
            .collect::<Vec<_>>()
    };
    assert!(ws("/// A close code that may not be sent (7.4). Close 1002.").is_empty());
    assert_eq!(ws("/// the envelope of semantics 6.3"), ["6.3"]);
}
