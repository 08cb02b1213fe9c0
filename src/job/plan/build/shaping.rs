//! A table's masks resolved against both catalogs: each masked column must be one of the
//! source table's, must not be its key, and must go into an exchange column that can hold
//! what the mask gives.

use super::Builder;
use crate::config::key_masked;
use crate::ident::{Col, Ident};
use crate::mapping::{Source, holds_text};
use crate::shape::{Mask, Scope};

impl Builder<'_> {
    /// The mask of a source column (names compared as the catalogs spell them).
    pub(super) fn mask_of(&self, name: &Ident) -> Option<Mask> {
        self.spec
            .shape
            .masks
            .iter()
            .find(|(c, _)| c.as_str().eq_ignore_ascii_case(name.as_str()))
            .map(|(_, m)| m.clone())
    }

    /// Every masked column: a column of the source, not a key column, and sent into a column
    /// that takes what its mask gives.
    pub(super) fn check_masks(&mut self, key: &[Option<Col>], version: Option<usize>) {
        for (name, mask) in &self.spec.shape.masks {
            if self.src.column(name).is_none() {
                self.problems.push(format!(
                    "mask: `{name}` is not a column of source table {}",
                    self.src.name
                ));
                continue;
            }
            if key
                .iter()
                .flatten()
                .any(|k| k.name.as_str().eq_ignore_ascii_case(name.as_str()))
            {
                self.problems
                    .push(key_masked(&self.spec.name, name.as_str()));
            }
            let fed: Vec<(usize, &Col)> = self
                .m_src
                .iter()
                .zip(&self.m_cols)
                .enumerate()
                .filter(|(_, (s, _))| {
                    matches!(s, Source::Column(j)
                        if self.read_cols[*j].name.as_str().eq_ignore_ascii_case(name.as_str()))
                })
                .map(|(i, (_, c))| (i, c))
                .collect();
            for (i, c) in fed {
                if version == Some(i) {
                    self.problems.push(format!(
                        "mask: `{name}` feeds exchange column {}, which tells the exchange which \
                         version of a row is newer: it cannot be masked",
                        c.name
                    ));
                }
                if let Mask::Replace(v) = mask
                    && let Err(e) = v.clone().coerce(c.ty, &self.cfg.agent.tz)
                {
                    self.problems.push(format!(
                        "mask of `{name}`: the replacement does not fit exchange column {} of {} \
                         (`{}`): {e}",
                        c.name, self.tgt.name, c.native
                    ));
                }
                if mask.gives_text() && !holds_text(c.ty) {
                    self.problems.push(format!(
                        "mask of `{name}`: `{mask}` gives text, and exchange column {} of {} \
                         is `{}`: mask it with replace or null, or exchange it into a text column",
                        c.name, self.tgt.name, c.native
                    ));
                }
            }
        }
    }

    /// The scope's column, which must hold text for a prefix.
    pub(super) fn scope(&mut self) -> Option<(Col, Scope)> {
        let scope = self.spec.shape.scope.clone()?;
        let col = self.src_col("filter column", scope.column())?;
        if matches!(scope, Scope::Prefix { .. }) && !holds_text(col.ty) {
            self.problems.push(format!(
                "filter: column `{}` of source table {} is `{}`, and a prefix needs a text column \
                 (use in = [...] for other kinds)",
                col.name, self.src.name, col.native
            ));
            return None;
        }
        Some((col, scope))
    }

    /// The mask of each column read, in their order.
    pub(super) fn read_masks(&self) -> Vec<Option<Mask>> {
        self.read_cols
            .iter()
            .map(|c| self.mask_of(&c.name))
            .collect()
    }
}
