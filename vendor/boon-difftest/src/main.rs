// Differential check of vendor/boon against the crates.io release (Cargo.toml).
// Differential check: the patched boon (vendor/boon) against the crates.io release,
// same schemas and instances, same answers (compile errors and validation errors as text).
use serde_json::{json, Value};

macro_rules! run {
    ($krate:ident, $loc:expr, $schema:expr, $insts:expr, $default7:expr) => {{
        let mut out = Vec::new();
        let mut c = $krate::Compiler::new();
        if $default7 {
            c.set_default_draft($krate::Draft::V7);
        }
        let mut s = $krate::Schemas::new();
        match c
            .add_resource($loc, $schema.clone())
            .and_then(|_| c.compile($loc, &mut s))
        {
            Err(e) => out.push(format!("compile error: {e:#}")),
            Ok(i) => {
                for inst in $insts.iter() {
                    match s.validate(inst, i) {
                        Ok(()) => out.push("ok".to_string()),
                        Err(e) => out.push(format!("{e:#} | {}", e.basic_output())),
                    }
                }
            }
        }
        out
    }};
}

fn main() {
    let drafts = [
        None,
        Some("http://json-schema.org/draft-04/schema#"),
        Some("http://json-schema.org/draft-06/schema#"),
        Some("http://json-schema.org/draft-07/schema#"),
        Some("https://json-schema.org/draft/2019-09/schema"),
        Some("https://json-schema.org/draft/2020-12/schema"),
    ];
    let bodies: Vec<Value> = serde_json::from_str(include_str!("../bodies.json")).unwrap();
    let insts: Vec<Value> = serde_json::from_str(include_str!("../instances.json")).unwrap();
    // extra instances: every body as an instance too (schemas validated as data)
    let mut all_insts = insts.clone();
    all_insts.extend(bodies.iter().cloned());
    let mut n = 0;
    let mut bad = 0;
    for (bi, body) in bodies.iter().enumerate() {
        for d in drafts {
            for default7 in [false, true] {
                let mut schema = body.clone();
                if let (Some(d), Value::Object(m)) = (d, &mut schema) {
                    m.insert("$schema".into(), json!(d));
                }
                let loc = format!("/tmp/boon-difftest/s{bi}.json");
                // SELF=1: the release against itself (shows which answers are unstable upstream).
                let a = if std::env::var("SELF").is_ok() {
                    run!(boon_orig, loc.as_str(), schema, all_insts, default7)
                } else {
                    run!(boon, loc.as_str(), schema, all_insts, default7)
                };
                let b = run!(boon_orig, loc.as_str(), schema, all_insts, default7);
                n += a.len();
                if a != b {
                    bad += 1;
                    for (x, y) in a.iter().zip(b.iter()) {
                        if x != y {
                            println!("DIFF body {bi} draft {d:?} d7={default7}:\n  patched: {x}\n  orig:    {y}");
                            break;
                        }
                    }
                    if a.len() != b.len() {
                        println!("DIFF len {} {}", a.len(), b.len());
                    }
                }
            }
        }
    }
    // the metaschemas themselves, compiled as user schemas, validating every body
    for d in drafts.iter().flatten() {
        let loc = d.trim_end_matches('#');
        let mut c = boon::Compiler::new();
        let mut s = boon::Schemas::new();
        let mut c2 = boon_orig::Compiler::new();
        let mut s2 = boon_orig::Schemas::new();
        let i = c.compile(loc, &mut s).unwrap();
        let i2 = c2.compile(loc, &mut s2).unwrap();
        for inst in all_insts.iter() {
            let a = s.validate(inst, i).map_err(|e| format!("{e:#}")).err();
            let b = s2.validate(inst, i2).map_err(|e| format!("{e:#}")).err();
            n += 1;
            if a != b {
                bad += 1;
                println!("DIFF meta {loc}: {a:?} vs {b:?}");
            }
        }
    }
    println!("{n} answers compared, {bad} differ");
    if bad > 0 {
        std::process::exit(1);
    }
}
