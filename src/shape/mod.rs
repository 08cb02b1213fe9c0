//! Outbound shaping: what of a table may leave the department. Masks hide a column's values
//! (kept in part, replaced, hashed or nulled) in everything the agent writes outside the
//! front-end database's own rows; a sharing class says whether the table may be shared at
//! all; a scope (`filter`) keeps the rows outside the department's jurisdiction from ever
//! being read for the exchange.

mod mask;
mod scope;

pub use mask::{HashAlgo, Mask};
pub use scope::Scope;

use std::collections::BTreeMap;
use std::fmt;

use crate::ident::Ident;

/// How a table may be shared beyond the department (Chengdu specification: unconditional,
/// conditional, not shared).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum Sharing {
    #[default]
    Unconditional,
    /// Shared under conditions: only some columns, or masked ones.
    Conditional,
    /// Not shared: the agent refuses to exchange it.
    None,
}

impl Sharing {
    pub fn parse(s: &str) -> Option<Sharing> {
        match s {
            "unconditional" => Some(Sharing::Unconditional),
            "conditional" => Some(Sharing::Conditional),
            "none" => Some(Sharing::None),
            _ => None,
        }
    }

    pub fn as_str(self) -> &'static str {
        match self {
            Sharing::Unconditional => "unconditional",
            Sharing::Conditional => "conditional",
            Sharing::None => "none",
        }
    }
}

impl fmt::Display for Sharing {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// Each masked column and its mask, for `check` and `status` (never a salt).
pub fn describe_masks(masks: &BTreeMap<Ident, Mask>) -> Vec<String> {
    masks.iter().map(|(c, m)| format!("{c}: {m}")).collect()
}

/// What `check` and `status` say of a table's shaping; nothing for a table shared as it is.
pub fn notes(sharing: &str, masked: &[String], filter: Option<&str>) -> Vec<String> {
    let mut out = Vec::new();
    if sharing == Sharing::Conditional.as_str() {
        out.push("sharing: conditional".to_owned());
    }
    if !masked.is_empty() {
        out.push(format!("masked: {}", masked.join(", ")));
    }
    if let Some(f) = filter {
        out.push(format!("only rows where {f} leave"));
    }
    out
}
