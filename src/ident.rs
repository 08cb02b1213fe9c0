//! Identifiers from the configuration, validated before they can reach any SQL text.

use std::fmt;

use crate::value::ColType;

/// A validated identifier: letters (any script, so Chinese column names are fine), digits,
/// `_` and `$`, starting with a letter or `_`, at most 128 characters. Quoting is the
/// dialect's job; a validated identifier can never break out of its quotes.
#[derive(Clone, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Ident(String);

impl Ident {
    pub fn new(s: &str) -> Result<Self, String> {
        let mut chars = s.chars();
        let Some(first) = chars.next() else {
            return Err("an identifier cannot be empty".into());
        };
        if s.chars().count() > 128 {
            return Err(format!("identifier `{s}` is longer than 128 characters"));
        }
        if !(first.is_alphabetic() || first == '_') {
            return Err(format!(
                "`{s}` is not a valid identifier: it must start with a letter or `_`"
            ));
        }
        if let Some(bad) = chars.find(|c| !(c.is_alphanumeric() || *c == '_' || *c == '$')) {
            return Err(format!(
                "`{s}` is not a valid identifier: {bad:?} is not allowed (letters, digits, `_` and `$` only)"
            ));
        }
        Ok(Ident(s.to_owned()))
    }

    /// An identifier the program itself spells (never one from configuration).
    pub(crate) fn fixed(s: &'static str) -> Self {
        debug_assert!(Ident::new(s).is_ok(), "{s}");
        Ident(s.to_owned())
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl fmt::Display for Ident {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

/// A table name, optionally qualified by its schema (`schema.table`).
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct TableName {
    pub schema: Option<Ident>,
    pub name: Ident,
}

impl TableName {
    pub fn parse(s: &str) -> Result<Self, String> {
        match s.split_once('.') {
            Some((schema, name)) => Ok(TableName {
                schema: Some(Ident::new(schema)?),
                name: Ident::new(name)?,
            }),
            None => Ok(TableName {
                schema: None,
                name: Ident::new(s)?,
            }),
        }
    }
}

impl fmt::Display for TableName {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match &self.schema {
            Some(s) => write!(f, "{s}.{}", self.name),
            None => write!(f, "{}", self.name),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn accepts_ordinary_and_chinese_names() {
        for ok in ["supervision_action", "_x", "cd_id", "监管行为", "T$1", "A1"] {
            assert!(Ident::new(ok).is_ok(), "{ok}");
        }
    }

    #[test]
    fn refuses_anything_that_could_escape_quotes() {
        for bad in [
            "t; drop table x",
            "a\"b",
            "a`b",
            "a]b",
            "a'b",
            "1abc",
            "",
            "a b",
            "a-b",
            "a\nb",
            "a/*",
        ] {
            assert!(Ident::new(bad).is_err(), "{bad:?} must be refused");
        }
        let err = Ident::new("t; drop table x").expect_err("refused");
        assert!(err.contains("t; drop table x"), "{err}");
    }

    #[test]
    fn table_names_may_carry_a_schema() {
        let t = TableName::parse("public.up_action").expect("parse");
        assert_eq!(t.schema.as_ref().map(Ident::as_str), Some("public"));
        assert_eq!(t.name.as_str(), "up_action");
        assert!(TableName::parse("a.b.c").is_err());
        assert!(TableName::parse("a.").is_err());
    }
}

/// A column as statements need it: its name, its kind and the engine's native type name.
#[derive(Clone, Debug, PartialEq)]
pub struct Col {
    pub name: Ident,
    pub ty: ColType,
    /// The engine's type name from its catalog (`numeric(12,2)`, `varchar(50)`, ...).
    pub native: String,
}
