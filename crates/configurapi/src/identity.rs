//! `Identity` and claims (3.1.6). The core never sets an identity; handlers do.

use serde_json::{Map, Value};

/// A claim's scope: none, one string, or a list of strings.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub enum Scope {
    /// No scope (JS `undefined`); an empty string counts as none too.
    #[default]
    None,
    /// One scope string.
    One(String),
    /// Several scopes.
    Many(Vec<String>),
}

impl Scope {
    fn is_empty(&self) -> bool {
        match self {
            Scope::None => true,
            Scope::One(s) => s.is_empty(),
            Scope::Many(_) => false,
        }
    }

    /// Exact match as JS `===` would see it; `None` matches only empty scopes.
    fn matches_exactly(&self, wanted: Option<&str>) -> bool {
        match wanted {
            None | Some("") => self.is_empty(),
            Some(w) => matches!(self, Scope::One(s) if s == w),
        }
    }

    /// Equal to `wanted`, or a list containing it (`getClaims`).
    fn equals_or_contains(&self, wanted: Option<&str>) -> bool {
        match (self, wanted) {
            (Scope::Many(list), Some(w)) => list.iter().any(|s| s == w),
            _ => self.matches_exactly(wanted),
        }
    }

    fn to_value(&self) -> Value {
        match self {
            Scope::None => Value::Null,
            Scope::One(s) => Value::String(s.clone()),
            Scope::Many(list) => Value::from(list.clone()),
        }
    }
}

/// A claim `{type, value, scope}`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Claim {
    /// The claim type, e.g. `role`.
    pub claim_type: String,
    /// The claim value, e.g. `admin`.
    pub value: String,
    /// The scope.
    pub scope: Scope,
}

impl Claim {
    /// A claim.
    pub fn new(claim_type: impl Into<String>, value: impl Into<String>, scope: Scope) -> Claim {
        Claim {
            claim_type: claim_type.into(),
            value: value.into(),
            scope,
        }
    }
}

/// `Identity(id, claims = [])` with `id, issuer, name, email, claims`.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Identity {
    /// The subject id.
    pub id: String,
    /// The issuer, if known.
    pub issuer: Option<String>,
    /// A display name, if known.
    pub name: Option<String>,
    /// An email address, if known.
    pub email: Option<String>,
    /// The claims.
    pub claims: Vec<Claim>,
}

impl Identity {
    /// An identity with this id and claims.
    pub fn new(id: impl Into<String>, claims: Vec<Claim>) -> Identity {
        Identity {
            id: id.into(),
            claims,
            ..Identity::default()
        }
    }

    /// `hasClaim(type, values, scopes)`: true if any (value, scope) pair
    /// exactly matches a stored claim of that type. Pass `&[None]` for an
    /// undefined scope, which matches only claims with an empty scope.
    pub fn has_claim(&self, claim_type: &str, values: &[&str], scopes: &[Option<&str>]) -> bool {
        values.iter().any(|value| {
            scopes
                .iter()
                .any(|scope| self.get_claim(claim_type, value, *scope).is_some())
        })
    }

    /// `getClaim(type, value, scope)`: the exact match, if any.
    pub fn get_claim(&self, claim_type: &str, value: &str, scope: Option<&str>) -> Option<&Claim> {
        self.claims.iter().find(|c| {
            c.claim_type == claim_type && c.value == value && c.scope.matches_exactly(scope)
        })
    }

    /// `getClaims(type, value, scope)`: every claim of that type and value
    /// whose scope equals `scope` or is a list containing it.
    pub fn get_claims(&self, claim_type: &str, value: &str, scope: Option<&str>) -> Vec<&Claim> {
        self.claims
            .iter()
            .filter(|c| {
                c.claim_type == claim_type && c.value == value && c.scope.equals_or_contains(scope)
            })
            .collect()
    }

    /// The identity as JSON `{id, issuer, name, email, claims}` (unset fields are `null`).
    pub fn to_json(&self) -> Value {
        let opt = |v: &Option<String>| v.clone().map(Value::String).unwrap_or(Value::Null);
        let claims = self
            .claims
            .iter()
            .map(|c| {
                let mut m = Map::new();
                m.insert("type".into(), Value::String(c.claim_type.clone()));
                m.insert("value".into(), Value::String(c.value.clone()));
                m.insert("scope".into(), c.scope.to_value());
                Value::Object(m)
            })
            .collect::<Vec<_>>();
        let mut m = Map::new();
        m.insert("id".into(), Value::String(self.id.clone()));
        m.insert("issuer".into(), opt(&self.issuer));
        m.insert("name".into(), opt(&self.name));
        m.insert("email".into(), opt(&self.email));
        m.insert("claims".into(), Value::Array(claims));
        Value::Object(m)
    }
}
