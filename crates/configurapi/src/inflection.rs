//! English singular/plural rules equivalent to the npm `inflection` package.
//!
//! Configurapi builds event names from URL paths with `inflection.singularize`
//! (2.2.3), so the management API and any HTTP front end must agree with it
//! word for word. The tables below follow that package's rule order: first a
//! list of patterns meaning "already in the wanted form, leave it", then the
//! replacement rules; the first pattern that matches decides. Matching ignores
//! case and the replacement keeps the captured text as written.

use regex::Regex;
use std::sync::LazyLock;

/// Words with one form for singular and plural (compared in lower case).
const UNCOUNTABLE: &[&str] = &[
    "accommodation",
    "adulthood",
    "advertising",
    "advice",
    "aggression",
    "aid",
    "air",
    "aircraft",
    "alcohol",
    "anger",
    "applause",
    "arithmetic",
    "assistance",
    "athletics",
    "bacon",
    "baggage",
    "beef",
    "biology",
    "blood",
    "botany",
    "bread",
    "butter",
    "carbon",
    "cardboard",
    "cash",
    "chalk",
    "chaos",
    "chess",
    "crossroads",
    "countryside",
    "dancing",
    "deer",
    "dignity",
    "dirt",
    "dust",
    "economics",
    "education",
    "electricity",
    "engineering",
    "enjoyment",
    "envy",
    "equipment",
    "ethics",
    "evidence",
    "evolution",
    "fame",
    "fiction",
    "flour",
    "flu",
    "food",
    "fuel",
    "fun",
    "furniture",
    "gallows",
    "garbage",
    "garlic",
    "genetics",
    "gold",
    "golf",
    "gossip",
    "gratitude",
    "grief",
    "guilt",
    "gymnastics",
    "happiness",
    "hardware",
    "harm",
    "hate",
    "hatred",
    "health",
    "heat",
    "help",
    "homework",
    "honesty",
    "honey",
    "hospitality",
    "housework",
    "humour",
    "hunger",
    "hydrogen",
    "ice",
    "importance",
    "inflation",
    "information",
    "innocence",
    "iron",
    "irony",
    "jam",
    "jewelry",
    "judo",
    "karate",
    "knowledge",
    "lack",
    "laughter",
    "lava",
    "leather",
    "leisure",
    "lightning",
    "linguine",
    "linguini",
    "linguistics",
    "literature",
    "litter",
    "livestock",
    "logic",
    "loneliness",
    "luck",
    "luggage",
    "macaroni",
    "machinery",
    "magic",
    "management",
    "mankind",
    "marble",
    "mathematics",
    "mayonnaise",
    "measles",
    "methane",
    "milk",
    "minus",
    "money",
    "mud",
    "music",
    "mumps",
    "nature",
    "news",
    "nitrogen",
    "nonsense",
    "nurture",
    "nutrition",
    "obedience",
    "obesity",
    "oxygen",
    "pasta",
    "patience",
    "physics",
    "poetry",
    "pollution",
    "poverty",
    "pride",
    "psychology",
    "publicity",
    "punctuation",
    "quartz",
    "racism",
    "relaxation",
    "reliability",
    "research",
    "respect",
    "revenge",
    "rice",
    "rubbish",
    "rum",
    "safety",
    "scenery",
    "seafood",
    "seaside",
    "series",
    "shame",
    "sheep",
    "shopping",
    "sleep",
    "smoke",
    "smoking",
    "snow",
    "soap",
    "software",
    "soil",
    "spaghetti",
    "species",
    "steam",
    "stuff",
    "stupidity",
    "sunshine",
    "symmetry",
    "tennis",
    "thirst",
    "thunder",
    "timber",
    "traffic",
    "transportation",
    "trust",
    "underwear",
    "unemployment",
    "unity",
    "validity",
    "veal",
    "vegetation",
    "vegetarianism",
    "vengeance",
    "violence",
    "vitality",
    "warmth",
    "wealth",
    "weather",
    "welfare",
    "wheat",
    "wildlife",
    "wisdom",
    "yoga",
    "zinc",
    "zoology",
];

/// Patterns of singular words; used to skip singular input in
/// [`singularize`] and as the singular-to-plural rules of [`pluralize`].
const SINGULAR_FORMS: &[(&str, &str)] = &[
    (r"^(m|wom)an$", "${1}en"),
    (r"(pe)rson$", "${1}ople"),
    (r"(child)$", "${1}ren"),
    (r"(drive)$", "${1}s"),
    (r"^(ox)$", "${1}en"),
    (r"(ax|test)is$", "${1}es"),
    (r"(octop|vir)us$", "${1}uses"),
    (r"(alias|status|canvas|campus)$", "${1}es"),
    (r"^(summons|bonus)$", "${1}es"),
    (r"(bu)s$", "${1}ses"),
    (r"(buffal|tomat|potat)o$", "${1}oes"),
    (r"([ti])um$", "${1}a"),
    (r"sis$", "ses"),
    (r"(?:([^f])fe|([lr])f)$", "${1}${2}ves"),
    (r"(hi|ti)ve$", "${1}ves"),
    (r"([^aeiouy]|qu)y$", "${1}ies"),
    // matrix and vertex come before the generic `x` rule so they win.
    (r"(matr)ix$", "${1}ices"),
    (r"(vert|ind)ex$", "${1}ices"),
    (r"(x|ch|ss|sh)$", "${1}es"),
    (r"([m|l])ouse$", "${1}ice"),
    (r"^foot$", "feet"),
    (r"^tooth$", "teeth"),
    (r"^goose$", "geese"),
    (r"(quiz)$", "${1}zes"),
    (r"^(whereas)$", "${1}es"),
    (r"^(criteri)on$", "${1}a"),
    (r"^genus$", "genera"),
];

/// Singular patterns that `singularize` treats as "already singular"
/// (every one of [`SINGULAR_FORMS`] except `vertex`, as in the npm package).
const SINGULAR_SKIP_EXCLUDES: &[&str] = &[r"(vert|ind)ex$"];

/// Plural patterns with their plural-to-singular replacement, in rule order.
const PLURAL_TO_SINGULAR: &[(&str, &str)] = &[
    (r"^(m|wom)en$", "${1}an"),
    (r"(pe)ople$", "${1}rson"),
    (r"(child)ren$", "${1}"),
    (r"(database)s$", "${1}"),
    (r"(drive)s$", "${1}"),
    (r"^genera$", "genus"),
    (r"^(criteri)a$", "${1}on"),
    (r"([ti])a$", "${1}um"),
    (
        r"((a)naly|(b)a|(d)iagno|(p)arenthe|(p)rogno|(s)ynop|(t)he)ses$",
        "${1}${2}sis",
    ),
    (r"(hi|ti)ves$", "${1}ve"),
    (r"(curve)s$", "${1}"),
    (r"([lr])ves$", "${1}f"),
    (r"([a])ves$", "${1}ve"),
    (r"([^fo])ves$", "${1}fe"),
    (r"(m)ovies$", "${1}ovie"),
    (r"([^aeiouy]|qu)ies$", "${1}y"),
    (r"(s)eries$", "${1}eries"),
    (r"(x|ch|ss|sh)es$", "${1}"),
    (r"([m|l])ice$", "${1}ouse"),
    (r"(bus)es$", "${1}"),
    (r"(o)es$", "${1}"),
    (r"(shoe)s$", "${1}"),
    (r"(cris|ax|test)es$", "${1}is"),
    (r"(octop|vir)uses$", "${1}us"),
    (r"(alias|canvas|status|campus)es$", "${1}"),
    (r"^(summons|bonus)es$", "${1}"),
    (r"^(ox)en", "${1}"),
    (r"(matr)ices$", "${1}ix"),
    (r"(vert|ind)ices$", "${1}ex"),
    (r"^feet$", "foot"),
    (r"^teeth$", "tooth"),
    (r"^geese$", "goose"),
    (r"(quiz)zes$", "${1}"),
    (r"^(whereas)es$", "${1}"),
    (r"ss$", "ss"),
    (r"s$", ""),
];

/// Plural patterns that `pluralize` treats as "already plural".
const PLURAL_SKIP: &[&str] = &[
    r"^(m|wom)en$",
    r"(pe)ople$",
    r"(child)ren$",
    r"([ti])a$",
    r"((a)naly|(b)a|(d)iagno|(p)arenthe|(p)rogno|(s)ynop|(t)he)ses$",
    r"(database)s$",
    r"(drive)s$",
    r"(hi|ti)ves$",
    r"(curve)s$",
    r"([lr])ves$",
    r"([^fo])ves$",
    r"([^aeiouy]|qu)ies$",
    r"(s)eries$",
    r"(m)ovies$",
    r"(x|ch|ss|sh)es$",
    r"([m|l])ice$",
    r"(bus)es$",
    r"(o)es$",
    r"(shoe)s$",
    r"(cris|ax|test)es$",
    r"(octop|vir)uses$",
    r"(alias|canvas|status|campus)es$",
    r"^(summons|bonus)es$",
    r"^(ox)en",
    r"(matr)ices$",
    r"^feet$",
    r"^teeth$",
    r"^geese$",
    r"(quiz)zes$",
    r"^(whereas)es$",
    r"^(criteri)a$",
    r"^genera$",
];

/// One compiled rule: a pattern and, unless it only means "leave as is", a replacement.
struct Rule {
    pattern: Regex,
    replacement: Option<&'static str>,
}

fn compile(pattern: &str) -> Regex {
    // The tables are constants checked by the unit tests below, so a failure
    // here is a programming error caught before release, never user input.
    Regex::new(&format!("(?i){pattern}")).expect("inflection table pattern")
}

static SINGULAR_RULES: LazyLock<Vec<Rule>> = LazyLock::new(|| {
    let skip = SINGULAR_FORMS
        .iter()
        .filter(|(p, _)| !SINGULAR_SKIP_EXCLUDES.contains(p))
        .map(|(p, _)| Rule {
            pattern: compile(p),
            replacement: None,
        });
    let replace = PLURAL_TO_SINGULAR.iter().map(|(p, r)| Rule {
        pattern: compile(p),
        replacement: Some(*r),
    });
    skip.chain(replace).collect()
});

static PLURAL_RULES: LazyLock<Vec<Rule>> = LazyLock::new(|| {
    let skip = PLURAL_SKIP.iter().map(|p| Rule {
        pattern: compile(p),
        replacement: None,
    });
    let replace = SINGULAR_FORMS
        .iter()
        .chain([(r"s$", "s"), (r"$", "s")].iter())
        .map(|(p, r)| Rule {
            pattern: compile(p),
            replacement: Some(*r),
        });
    skip.chain(replace).collect()
});

fn apply(word: &str, rules: &[Rule]) -> String {
    if UNCOUNTABLE.contains(&word.to_lowercase().as_str()) {
        return word.to_string();
    }
    for rule in rules {
        if rule.pattern.is_match(word) {
            return match rule.replacement {
                Some(replacement) => rule.pattern.replace(word, replacement).into_owned(),
                None => word.to_string(),
            };
        }
    }
    word.to_string()
}

/// The singular of an English noun: `people` -> `person`, `data` -> `datum`,
/// `statuses` -> `status`, `news` -> `news`, `@connections` -> `@connection`.
pub fn singularize(word: &str) -> String {
    // Every message with a path singularizes its resource names, and trying the ~100
    // rules costs microseconds per word, while an app has a handful of resource names:
    // remember the answers, per thread (no lock on the message path).
    if word.len() > CACHED_WORD_MAX {
        return apply(word, &SINGULAR_RULES);
    }
    SINGULAR_CACHE.with(|cache| {
        let mut cache = cache.borrow_mut();
        if let Some(hit) = cache.get(word) {
            return hit.to_string();
        }
        let singular = apply(word, &SINGULAR_RULES);
        // Bounded: a client sending endless new words only empties it now and then.
        if cache.len() >= CACHED_WORDS {
            cache.clear();
        }
        cache.insert(word.into(), singular.as_str().into());
        singular
    })
}

/// How many words each thread remembers, and the longest it keeps.
const CACHED_WORDS: usize = 256;
const CACHED_WORD_MAX: usize = 64;

thread_local! {
    static SINGULAR_CACHE: std::cell::RefCell<std::collections::HashMap<Box<str>, Box<str>>> =
        std::cell::RefCell::new(std::collections::HashMap::new());
}

/// The plural of an English noun: `person` -> `people`, `status` -> `statuses`.
pub fn pluralize(word: &str) -> String {
    apply(word, &PLURAL_RULES)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn remembered_answers_are_the_rules_answers_and_the_memory_stays_bounded() {
        for word in [
            "users",
            "people",
            "Data",
            "statuses",
            "news",
            "@connections",
            "x",
        ] {
            let first = singularize(word);
            assert_eq!(first, apply(word, &SINGULAR_RULES), "{word}");
            assert_eq!(singularize(word), first, "{word}, remembered");
        }
        for i in 0..3 * CACHED_WORDS {
            assert_eq!(singularize(&format!("thing{i}s")), format!("thing{i}"));
        }
        SINGULAR_CACHE.with(|c| assert!(c.borrow().len() <= CACHED_WORDS));
        let long = format!("{}s", "a".repeat(CACHED_WORD_MAX));
        assert_eq!(singularize(&long), "a".repeat(CACHED_WORD_MAX));
        SINGULAR_CACHE.with(|c| assert!(!c.borrow().contains_key(long.as_str())));
    }

    #[test]
    fn singular_table() {
        for (plural, singular) in [
            ("users", "user"),
            ("phones", "phone"),
            ("people", "person"),
            ("data", "datum"),
            ("news", "news"),
            ("statuses", "status"),
            ("@connections", "@connection"),
            ("list_@connections", "list_@connection"),
            ("status", "status"),
            ("person", "person"),
            ("wives", "wife"),
            ("bases", "basis"),
            ("matrices", "matrix"),
            ("vertices", "vertex"),
            ("quizzes", "quiz"),
            ("buses", "bus"),
            ("mice", "mouse"),
            ("Octopuses", "Octopus"),
            ("classes", "class"),
            ("class", "class"),
            ("categories", "category"),
            ("movies", "movie"),
            ("event-details", "event-detail"),
            ("Sheep", "Sheep"),
        ] {
            assert_eq!(singularize(plural), singular, "singularize({plural})");
        }
    }

    #[test]
    fn plural_table() {
        for (singular, plural) in [
            ("user", "users"),
            ("person", "people"),
            ("status", "statuses"),
            ("datum", "data"),
            ("news", "news"),
            ("wife", "wives"),
            ("category", "categories"),
            ("box", "boxes"),
            ("users", "users"),
            ("quiz", "quizzes"),
            ("Hat", "Hats"),
            ("matrix", "matrices"),
        ] {
            assert_eq!(pluralize(singular), plural, "pluralize({singular})");
        }
    }
}
