//! The states the store records, as types: where a reject came from and where it stands,
//! where a full resync stands, how a table's run ended. Each is kept as its word.

use std::fmt;

/// An enum kept in the state store as one word per variant.
macro_rules! words {
    ($(#[$doc:meta])* $name:ident { $($(#[$vdoc:meta])* $variant:ident = $word:literal,)+ }) => {
        $(#[$doc])*
        #[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
        pub enum $name {
            $($(#[$vdoc])* $variant,)+
        }

        impl $name {
            pub const ALL: &'static [$name] = &[$($name::$variant,)+];

            pub fn as_str(self) -> &'static str {
                match self {
                    $($name::$variant => $word,)+
                }
            }

            /// The variant of a word as the store keeps it.
            pub fn parse(word: &str) -> Option<Self> {
                match word {
                    $($word => Some($name::$variant),)+
                    _ => None,
                }
            }
        }

        impl fmt::Display for $name {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str(self.as_str())
            }
        }

        impl serde::Serialize for $name {
            fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
                s.serialize_str(self.as_str())
            }
        }
    };
}

words! {
    /// Where a reject came from.
    Origin {
        /// The row could not be read (a value, or a NULL key).
        Read = "read",
        /// It could not be mapped to the exchange's columns (or its operation is unknown).
        Map = "map",
        /// It breaks a quality rule.
        Rule = "rule",
        /// The exchange refused it.
        Target = "target",
        /// The province rejected it after it was delivered.
        Province = "province",
    }
}

words! {
    /// Where a reject stands.
    RejectState {
        /// Waiting to be corrected.
        Open = "open",
        /// Sent again; cleared unless the province rejects it again in time.
        Resubmitted = "resubmitted",
        Cleared = "cleared",
    }
}

words! {
    /// Where a table's full resync stands.
    ResyncState {
        Requested = "requested",
        Running = "running",
        Done = "done",
        Failed = "failed",
    }
}

words! {
    /// How a table's run ended.
    Outcome {
        Ok = "ok",
        Failed = "failed",
        /// The agent stopped it between two batches.
        Stopped = "stopped",
    }
}

/// A word the store holds that is none of a kind's.
pub(super) fn unknown(kind: &str, word: &str) -> sqlx::Error {
    sqlx::Error::Decode(format!("`{word}` is not a {kind}").into())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_word_reads_back_as_its_variant() {
        for o in Origin::ALL {
            assert_eq!(Origin::parse(o.as_str()), Some(*o));
        }
        for s in RejectState::ALL {
            assert_eq!(RejectState::parse(s.as_str()), Some(*s));
        }
        for s in ResyncState::ALL {
            assert_eq!(ResyncState::parse(&s.to_string()), Some(*s));
        }
        for o in Outcome::ALL {
            assert_eq!(Outcome::parse(o.as_str()), Some(*o));
        }
        assert_eq!(Outcome::parse("fine"), None);
        assert_eq!(
            serde_json::to_string(&ResyncState::Running).expect("json"),
            "\"running\""
        );
    }
}
