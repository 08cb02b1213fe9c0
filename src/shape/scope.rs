//! A table's scope (`filter`): the rows of the department's jurisdiction, the only ones read
//! for the exchange. It becomes a condition of every read of the source table (bound values,
//! never text spliced into SQL).

use std::fmt;

use crate::ident::Ident;
use crate::value::Value;

/// Which rows of a table may leave.
#[derive(Clone, Debug, PartialEq)]
pub enum Scope {
    /// The column's text begins with this (e.g. a region code under a prefecture's `2301`).
    Prefix { column: Ident, prefix: String },
    /// The column's value is one of these.
    In { column: Ident, values: Vec<Value> },
}

impl Scope {
    pub fn column(&self) -> &Ident {
        match self {
            Scope::Prefix { column, .. } | Scope::In { column, .. } => column,
        }
    }

    /// The `LIKE` pattern of a prefix, with `!` as the escape character: `%`, `_` and `!`
    /// in the prefix match themselves, and `[` too where it is a wildcard (SQL Server; Oracle
    /// refuses an escaped character that is not one).
    pub fn like_pattern(prefix: &str, bracket_wildcard: bool) -> String {
        let mut p = String::with_capacity(prefix.len() + 1);
        for c in prefix.chars() {
            if matches!(c, '%' | '_' | '!') || (bracket_wildcard && c == '[') {
                p.push('!');
            }
            p.push(c);
        }
        p.push('%');
        p
    }
}

impl fmt::Display for Scope {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Scope::Prefix { column, prefix } => write!(f, "{column} starts with `{prefix}`"),
            Scope::In { column, values } => {
                let v: Vec<String> = values.iter().map(Value::to_text).collect();
                write!(f, "{column} in ({})", v.join(", "))
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_prefix_matches_its_wildcards_literally() {
        assert_eq!(Scope::like_pattern("2301", false), "2301%");
        assert_eq!(Scope::like_pattern("a_b%c!d[e", false), "a!_b!%c!!d[e%");
        assert_eq!(Scope::like_pattern("a_b%c!d[e", true), "a!_b!%c!!d![e%");
    }
}
