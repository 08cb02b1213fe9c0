//! The keys of data the province sends down and of what the province is told: a table's
//! `direction` and `arrival_flag`, `[feedback] database`, and `[resync]` (the notice of a
//! full resync and the mark of its batches).

use serde::Serialize;

pub use super::schema::{RawArrivalFlag, RawPull, RawResync};

use super::validate::V;
use super::{Config, ExchangeTarget, FeedbackKind, TableSpec};
use crate::ident::{Ident, TableName};
use crate::value::Value;

/// Which way a table's rows go.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Direction {
    /// Read at the front-end database, written to the exchange.
    #[default]
    Up,
    /// Read at the exchange, written to the front-end database (the province's `dn_` tables).
    Down,
}

impl Direction {
    pub fn as_str(self) -> &'static str {
        match self {
            Direction::Up => "up",
            Direction::Down => "down",
        }
    }
}

/// A front-end column set on every row the province sends down.
#[derive(Clone, Debug)]
pub struct ArrivalFlag {
    pub column: Ident,
    pub value: Value,
}

/// A `down` table read from an http exchange: its endpoint, where the answer holds the
/// records and the next cursor, and the query parameter of the cursor.
#[derive(Clone, Debug)]
pub struct Pull {
    pub url: String,
    pub items: String,
    pub next: String,
    pub param: String,
}

/// Where the province writes its rejections.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum FeedbackDb {
    #[default]
    Exchange,
    /// The department's front-end database.
    Source,
}

/// How the province is told of a full resync.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub enum Notice {
    #[default]
    None,
    Table(TableName),
    Http(String),
}

/// `[resync]`, validated.
#[derive(Clone, Debug, Default)]
pub struct ResyncNotice {
    pub notice: Notice,
    pub full_column: Option<Ident>,
    pub full_field: Option<String>,
    pub full_value: String,
    pub increment_value: String,
}

impl ResyncNotice {
    /// The value that marks a batch: full (a resync's) or an increment.
    pub fn mark(&self, full: bool) -> &str {
        if full {
            &self.full_value
        } else {
            &self.increment_value
        }
    }
}

impl V<'_> {
    /// A table's `direction` and `arrival_flag`.
    pub(super) fn direction(
        &mut self,
        p: &str,
        direction: Option<&str>,
        arrival: Option<RawArrivalFlag>,
    ) -> (Direction, Option<ArrivalFlag>) {
        let d = match direction {
            None | Some("up") => Direction::Up,
            Some("down") => Direction::Down,
            Some(d) => {
                self.err(
                    format!("{p}.direction"),
                    format!("`{d}` is not a direction: use `up` or `down`"),
                );
                Direction::Up
            }
        };
        let flag = arrival.and_then(|a| {
            if d != Direction::Down {
                self.err(
                    format!("{p}.arrival_flag"),
                    "applies only to direction = \"down\" (rows arriving at the front-end)",
                );
            }
            let column = self.ident(&format!("{p}.arrival_flag.column"), &a.column);
            let value = self.flag_value(&format!("{p}.arrival_flag.value"), a.value, 0);
            Some(ArrivalFlag {
                column: column?,
                value: value?,
            })
        });
        (d, flag)
    }

    pub(super) fn pull(&mut self, p: &str, source: &str, r: RawPull) -> Option<Pull> {
        let url = super::secret::resolve(&r.url, self.base, self.env)
            .map_err(|m| self.err(format!("{p}.pull.url"), m))
            .ok()?
            .replace("{table}", source);
        if !url.starts_with("http://") && !url.starts_with("https://") {
            self.err(
                format!("{p}.pull.url"),
                "must be an http:// or https:// URL",
            );
        }
        let mut pointer = |key: &str, v: Option<String>, default: &str| {
            let v = v.unwrap_or_else(|| default.to_owned());
            if !v.starts_with('/') {
                self.err(
                    format!("{p}.pull.{key}"),
                    format!("`{v}` is not a JSON pointer: write e.g. /data/items"),
                );
            }
            v
        };
        Some(Pull {
            url,
            items: pointer("items", r.items, "/items"),
            next: pointer("next", r.next, "/next"),
            param: r.cursor_param.unwrap_or_else(|| "after".into()),
        })
    }

    pub(super) fn feedback_db(&mut self, kind: FeedbackKind, db: Option<&str>) -> FeedbackDb {
        let d = match db {
            None | Some("exchange") => FeedbackDb::Exchange,
            Some("source") => FeedbackDb::Source,
            Some(d) => {
                self.err(
                    "feedback.database",
                    format!("`{d}` is not `exchange` or `source`"),
                );
                FeedbackDb::Exchange
            }
        };
        if d == FeedbackDb::Source
            && !matches!(kind, FeedbackKind::Table | FeedbackKind::ErrorTable)
        {
            self.err(
                "feedback.database",
                "`source` applies to kind = \"table\" and \"error_table\" (tables the province \
                 writes into the front-end database)",
            );
        }
        d
    }

    pub(super) fn resync(&mut self, r: Option<RawResync>) -> Option<ResyncNotice> {
        let r = r.unwrap_or_default();
        let notice = match r.notice.as_deref() {
            None | Some("none") => Notice::None,
            Some("table") => Notice::Table(
                self.table_name(
                    "resync.notice_table",
                    r.notice_table
                        .as_deref()
                        .unwrap_or("exchange_resync_notice"),
                )?,
            ),
            Some("http") => match &r.notice_url {
                Some(u) if u.starts_with("http://") || u.starts_with("https://") => {
                    Notice::Http(u.clone())
                }
                Some(_) => {
                    self.err("resync.notice_url", "must be an http:// or https:// URL");
                    Notice::None
                }
                None => {
                    self.err("resync.notice_url", "is required by notice = \"http\"");
                    Notice::None
                }
            },
            Some(n) => {
                self.err(
                    "resync.notice",
                    format!("`{n}` is not a notice: use none, table or http"),
                );
                Notice::None
            }
        };
        let full_column = match &r.full_column {
            Some(c) => Some(self.ident("resync.full_column", c)?),
            None => None,
        };
        let full_value = r.full_value.unwrap_or_else(|| "full".into());
        let increment_value = r.increment_value.unwrap_or_else(|| "increment".into());
        if full_value == increment_value {
            self.err("resync.increment_value", "must differ from `full_value`");
        }
        Some(ResyncNotice {
            notice,
            full_column,
            full_field: r.full_field.filter(|f| !f.is_empty()),
            full_value,
            increment_value,
        })
    }

    /// What the exchange's kind allows of the tables' directions, the feedback's database
    /// and the resync notice.
    pub(super) fn directions_fit(
        &mut self,
        exchange: &ExchangeTarget,
        resync: &ResyncNotice,
        tables: &[(usize, &TableSpec)],
    ) {
        let http = matches!(exchange, ExchangeTarget::Http(_));
        for (i, t) in tables {
            let p = format!("table[{i}]");
            if t.pull.is_some() && (t.direction != Direction::Down || !http) {
                self.err(
                    format!("{p}.pull"),
                    "applies to direction = \"down\" with an http exchange",
                );
            }
            if t.direction != Direction::Down {
                continue;
            }
            if http && t.pull.is_none() {
                self.err(
                    format!("{p}.direction"),
                    "`down` with an http exchange reads an endpoint: set `pull = { url = \"...\" }`",
                );
            }
            if t.notify.is_some() {
                self.err(
                    format!("{p}.notify"),
                    "LISTEN/NOTIFY wakes tables read at the front-end database; a `down` table \
                     is read at the exchange",
                );
            }
            if t.feedback_table.is_some() {
                self.err(
                    format!("{p}.feedback_table"),
                    "the province does not check the rows it sends down: a `down` table has \
                     no feedback table",
                );
            }
        }
        match (&resync.notice, http) {
            (Notice::Table(_), true) => self.err(
                "resync.notice",
                "`table` writes into the exchange database; this exchange is reached over http",
            ),
            (Notice::Http(_), false) => self.err(
                "resync.notice",
                "`http` posts with the http exchange's credentials: set [exchange] kind = \"http\"",
            ),
            _ => {}
        }
        if resync.full_column.is_some() && http {
            self.err(
                "resync.full_column",
                "marks a column of an exchange database: with an http exchange use `full_field`",
            );
        }
        if resync.full_field.is_some() && !http {
            self.err(
                "resync.full_field",
                "marks the body of an http exchange: with an exchange database use `full_column`",
            );
        }
    }
}

impl Config {
    /// The tables that go in `direction`.
    pub fn tables_going(&self, direction: Direction) -> impl Iterator<Item = &TableSpec> {
        self.tables.iter().filter(move |t| t.direction == direction)
    }
}

#[cfg(test)]
mod tests {
    use std::path::Path;

    const BASE: &str = "[agent]\nid = \"a\"\nstate_dir = \"state\"\ntimezone = \"UTC\"\n\
        [source]\nurl = \"mysql://root@h/front\"\n[exchange]\nurl = \"postgres://u@h/db\"\n";

    fn problems(text: &str) -> Vec<(Option<usize>, String, String)> {
        match super::super::load_str(text, Path::new("/etc/fd/agent.toml")) {
            Ok(_) => Vec::new(),
            Err(e) => e
                .problems
                .into_iter()
                .map(|p| (p.line, p.path, p.message))
                .collect(),
        }
    }

    #[test]
    fn a_down_table_is_read_at_the_exchange_with_its_arrival_flag() {
        let cfg = super::super::load_str(
            &format!(
                "{BASE}[[table]]\nsource = \"dn_x\"\ndirection = \"down\"\n\
                 watermark = {{ kind = \"control\" }}\n\
                 arrival_flag = {{ column = \"sync_flag\", value = \"0\" }}\n\
                 [resync]\nnotice = \"table\"\nfull_column = \"cd_full\"\n"
            ),
            Path::new("/etc/fd/agent.toml"),
        )
        .expect("valid");
        let t = &cfg.tables[0];
        assert_eq!(t.direction, super::Direction::Down);
        let f = t.arrival.as_ref().expect("flag");
        assert_eq!(
            (f.column.as_str(), &f.value),
            ("sync_flag", &crate::value::Value::Text("0".into()))
        );
        assert_eq!(
            cfg.resync.notice,
            super::Notice::Table(crate::ident::TableName::parse("exchange_resync_notice").unwrap())
        );
        assert_eq!(cfg.resync.mark(true), "full");
    }

    #[test]
    fn what_does_not_fit_a_direction_is_named_with_its_line() {
        let p = problems(&format!(
            "{BASE}[[table]]\nsource = \"up_x\"\nwatermark = {{ kind = \"key\" }}\n\
             arrival_flag = {{ column = \"f\" }}\ndirection = \"sideways\"\n\
             [[table]]\nsource = \"dn_y\"\ndirection = \"down\"\nwatermark = {{ kind = \"key\" }}\n\
             feedback_table = \"dn_y_error\"\n\
             [feedback]\nkind = \"flag\"\ndatabase = \"source\"\n\
             [resync]\nnotice = \"http\"\nnotice_url = \"http://h/n\"\nfull_field = \"full\"\n"
        ));
        let got: Vec<(Option<usize>, &str)> = p.iter().map(|(l, p, _)| (*l, p.as_str())).collect();
        assert_eq!(
            got,
            vec![
                (Some(12), "table[0].arrival_flag"),
                (Some(13), "table[0].direction"),
                (Some(18), "table[1].feedback_table"),
                (Some(21), "feedback.database"),
                (Some(23), "resync.notice"),
                (Some(25), "resync.full_field"),
            ],
            "{p:?}"
        );
    }

    #[test]
    fn pulling_needs_a_down_table_and_an_http_exchange() {
        let http = BASE.replace(
            "url = \"postgres://u@h/db\"",
            "kind = \"http\"\nurl = \"http://h/x/{table}\"",
        );
        let p = problems(&format!(
            "{http}[[table]]\nsource = \"up_x\"\nwatermark = {{ kind = \"key\" }}\n\
             pull = {{ url = \"http://h/down/{{table}}\" }}\n\
             [[table]]\nsource = \"dn_y\"\ndirection = \"down\"\nwatermark = {{ kind = \"key\" }}\n"
        ));
        let got: Vec<&str> = p.iter().map(|(_, p, _)| p.as_str()).collect();
        assert_eq!(got, vec!["table[0].pull", "table[1].direction"], "{p:?}");
        let cfg = super::super::load_str(
            &format!(
                "{http}[[table]]\nsource = \"dn_y\"\ndirection = \"down\"\n\
                 watermark = {{ kind = \"key\" }}\npull = {{ url = \"http://h/down/{{table}}\" }}\n"
            ),
            Path::new("/etc/fd/agent.toml"),
        )
        .expect("valid");
        let pull = cfg.tables[0].pull.as_ref().expect("pull");
        assert_eq!(
            (pull.url.as_str(), pull.items.as_str(), pull.param.as_str()),
            ("http://h/down/dn_y", "/items", "after")
        );
    }
}
