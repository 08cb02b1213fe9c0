//! Column masks: what a masked column's value becomes wherever it leaves the front-end
//! database (the exchange, the rejects ledger, the mirror table, messages and logs).

use std::fmt;

use hmac::{KeyInit, Mac};
use sha2::Digest;

use crate::secret::Secret;
use crate::value::Value;

/// The digest of a `hash` mask.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum HashAlgo {
    Sm3,
    Sha256,
}

impl HashAlgo {
    pub fn parse(s: &str) -> Option<HashAlgo> {
        match s.to_ascii_lowercase().as_str() {
            "sm3" => Some(HashAlgo::Sm3),
            "sha256" | "sha-256" => Some(HashAlgo::Sha256),
            _ => None,
        }
    }
}

/// What a masked column's value becomes. NULL stays NULL whatever the mask.
#[derive(Clone, Debug)]
pub enum Mask {
    /// The first and last characters kept, every other one replaced by `*`; a value of at
    /// most `first + last` characters is starred entirely (keeping both ends would show it
    /// whole).
    Keep { first: usize, last: usize },
    /// A fixed value instead.
    Replace(Value),
    /// Lowercase hex digest of the value's text (HMAC keyed by the salt when there is one):
    /// equal values give equal hashes, so the column can still be joined on.
    Hash {
        algo: HashAlgo,
        salt: Option<Secret>,
    },
    /// NULL instead.
    Null,
}

impl Mask {
    pub fn kind(&self) -> &'static str {
        match self {
            Mask::Keep { .. } => "keep",
            Mask::Replace(_) => "replace",
            Mask::Hash { .. } => "hash",
            Mask::Null => "null",
        }
    }

    /// Whether every masked value is text (a column that takes it must hold text).
    pub fn gives_text(&self) -> bool {
        matches!(self, Mask::Keep { .. } | Mask::Hash { .. })
    }

    /// The masked value.
    pub fn apply(&self, v: &Value) -> Value {
        if v.is_null() {
            return Value::Null;
        }
        match self {
            Mask::Keep { first, last } => Value::Text(keep(&v.to_text(), *first, *last)),
            Mask::Replace(r) => r.clone(),
            Mask::Hash { algo, salt } => Value::Text(hash(*algo, salt.as_ref(), &v.to_text())),
            Mask::Null => Value::Null,
        }
    }

    /// The masked value as text, for messages (`NULL` for none).
    pub fn show(&self, v: &Value) -> String {
        match self.apply(v) {
            Value::Null => "NULL".into(),
            m => m.to_text(),
        }
    }
}

impl fmt::Display for Mask {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Mask::Keep { first, last } => write!(f, "keep [{first}, {last}]"),
            Mask::Replace(_) => f.write_str("replace"),
            Mask::Hash { algo, salt } => write!(
                f,
                "hash {}{}",
                match algo {
                    HashAlgo::Sm3 => "sm3",
                    HashAlgo::Sha256 => "sha256",
                },
                if salt.is_some() { " salted" } else { "" }
            ),
            Mask::Null => f.write_str("null"),
        }
    }
}

/// Keep `first` and `last` characters (not bytes: a Chinese name is masked by its
/// characters).
fn keep(s: &str, first: usize, last: usize) -> String {
    let n = s.chars().count();
    if n <= first + last {
        return "*".repeat(n);
    }
    let head = s.chars().take(first);
    let tail = s.chars().skip(n - last);
    head.chain(std::iter::repeat_n('*', n - first - last))
        .chain(tail)
        .collect()
}

fn hash(algo: HashAlgo, salt: Option<&Secret>, text: &str) -> String {
    let bytes = text.as_bytes();
    match (algo, salt) {
        (HashAlgo::Sm3, None) => hex::encode(sm3::Sm3::digest(bytes)),
        (HashAlgo::Sha256, None) => hex::encode(sha2::Sha256::digest(bytes)),
        // HMAC takes keys of every length: the key is never refused.
        (HashAlgo::Sm3, Some(k)) => {
            <hmac::Hmac<sm3::Sm3> as KeyInit>::new_from_slice(k.expose().as_bytes())
                .map(|mut m| {
                    m.update(bytes);
                    hex::encode(m.finalize().into_bytes())
                })
                .unwrap_or_default()
        }
        (HashAlgo::Sha256, Some(k)) => {
            <hmac::Hmac<sha2::Sha256> as KeyInit>::new_from_slice(k.expose().as_bytes())
                .map(|mut m| {
                    m.update(bytes);
                    hex::encode(m.finalize().into_bytes())
                })
                .unwrap_or_default()
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn text(s: &str) -> Value {
        Value::Text(s.into())
    }

    #[test]
    fn keep_counts_characters_not_bytes() {
        let m = Mask::Keep { first: 3, last: 4 };
        assert_eq!(
            m.apply(&text("110101199003071234")),
            text("110***********1234")
        );
        let name = Mask::Keep { first: 1, last: 0 };
        assert_eq!(name.apply(&text("欧阳娜娜")), text("欧***"));
        let both = Mask::Keep { first: 1, last: 1 };
        assert_eq!(both.apply(&text("张三丰")), text("张*丰"));
    }

    #[test]
    fn keep_stars_a_value_no_longer_than_what_it_keeps() {
        let m = Mask::Keep { first: 3, last: 4 };
        assert_eq!(m.apply(&text("1234567")), text("*******"));
        assert_eq!(m.apply(&text("李四")), text("**"));
        assert_eq!(m.apply(&text("")), text(""));
        assert_eq!(m.apply(&text("12345678")), text("123*5678"));
    }

    #[test]
    fn keep_masks_the_text_of_other_kinds() {
        let m = Mask::Keep { first: 2, last: 0 };
        assert_eq!(m.apply(&Value::Int(13_912_345_678)), text("13*********"));
    }

    #[test]
    fn null_stays_null_under_every_mask() {
        for m in [
            Mask::Keep { first: 1, last: 1 },
            Mask::Replace(text("x")),
            Mask::Hash {
                algo: HashAlgo::Sm3,
                salt: None,
            },
            Mask::Null,
        ] {
            assert_eq!(m.apply(&Value::Null), Value::Null, "{m}");
        }
        assert_eq!(Mask::Null.apply(&text("secret")), Value::Null);
        assert_eq!(Mask::Null.show(&text("secret")), "NULL");
    }

    #[test]
    fn replace_gives_the_fixed_value() {
        let m = Mask::Replace(text("***"));
        assert_eq!(m.apply(&text("13912345678")), text("***"));
        assert_eq!(
            Mask::Replace(Value::Int(0)).apply(&Value::Int(42)),
            Value::Int(0)
        );
    }

    #[test]
    fn hashes_are_the_standard_digests_and_salted_with_hmac() {
        let sm3 = Mask::Hash {
            algo: HashAlgo::Sm3,
            salt: None,
        };
        // GB/T 32905-2016, example 1.
        assert_eq!(
            sm3.apply(&text("abc")),
            text("66c7f0f462eeedd9d1f2d46bdc10e4e24167c4875cf2f7a2297da02b8f4ba8e0")
        );
        let sha = Mask::Hash {
            algo: HashAlgo::Sha256,
            salt: None,
        };
        assert_eq!(
            sha.apply(&text("abc")),
            text("ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad")
        );
        // RFC 4231 test case 2: HMAC-SHA-256 with key "Jefe".
        let salted = Mask::Hash {
            algo: HashAlgo::Sha256,
            salt: Some(Secret::new("Jefe".into())),
        };
        assert_eq!(
            salted.apply(&text("what do ya want for nothing?")),
            text("5bdcc146bf60754e6a042426089575c75a003f089d2739839dec58b964ec3843")
        );
        let salted_sm3 = Mask::Hash {
            algo: HashAlgo::Sm3,
            salt: Some(Secret::new("salt-value-xyz".into())),
        };
        let a = salted_sm3.apply(&text("张三"));
        assert_eq!(a, salted_sm3.apply(&text("张三")), "stable");
        assert_ne!(a, sm3.apply(&text("张三")), "the salt changes it");
        assert!(!format!("{salted_sm3:?} {salted_sm3}").contains("salt-value-xyz"));
    }
}
