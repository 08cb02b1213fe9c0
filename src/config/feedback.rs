//! Validation of `[feedback]`: how the province's rejections come back.

use std::time::Duration;

use super::schema::{RawFeedback, RawFeedbackColumns};
use super::validate::V;
use super::{Feedback, FeedbackColumns, FeedbackKind, HttpFeedback};
use crate::schedule::Schedule;

impl V<'_> {
    pub(super) fn feedback(&mut self, f: Option<RawFeedback>) -> Option<Feedback> {
        let f = f.unwrap_or(RawFeedback {
            kind: None,
            schedule: None,
            confirm: None,
            table: None,
            columns: RawFeedbackColumns::default(),
            error_column: None,
            time_column: None,
            flag_column: None,
            failed: None,
            pending: None,
            mirror_table: None,
            url: None,
            items: None,
            next: None,
            cursor_param: None,
            database: None,
        });
        let kind = match f.kind.as_deref() {
            None | Some("none") => FeedbackKind::None,
            Some("table") => FeedbackKind::Table,
            Some("error_table") => FeedbackKind::ErrorTable,
            Some("flag") => FeedbackKind::Flag,
            Some("http") => FeedbackKind::Http,
            Some(k) => {
                self.err(
                    "feedback.kind",
                    format!(
                        "`{k}` is not a feedback kind: use none, table, error_table, flag or http"
                    ),
                );
                FeedbackKind::None
            }
        };
        let sched_text = f.schedule.as_deref().unwrap_or("every:5m");
        let schedule = Schedule::parse(sched_text)
            .map_err(|e| self.err("feedback.schedule", e))
            .ok();
        let confirm = self.duration(
            "feedback.confirm",
            f.confirm.as_deref(),
            Duration::from_secs(86_400),
        );
        let table = self.table_name(
            "feedback.table",
            f.table.as_deref().unwrap_or("exchange_reject"),
        );
        let c = &f.columns;
        let mut col = |key: &str, v: &Option<String>| {
            self.ident(
                &format!("feedback.columns.{key}"),
                v.as_deref().unwrap_or(key),
            )
        };
        let columns = (|| {
            Some(FeedbackColumns {
                id: col("id", &c.id)?,
                table_name: col("table_name", &c.table_name)?,
                record_key: col("record_key", &c.record_key)?,
                batch_id: col("batch_id", &c.batch_id)?,
                error_code: col("error_code", &c.error_code)?,
                error_message: col("error_message", &c.error_message)?,
                rejected_at: col("rejected_at", &c.rejected_at)?,
            })
        })();
        let default_error = if kind == FeedbackKind::Flag {
            "sync_error_desc"
        } else {
            "error_remark"
        };
        let error_column = self.ident(
            "feedback.error_column",
            f.error_column.as_deref().unwrap_or(default_error),
        );
        let time_column = self.ident(
            "feedback.time_column",
            f.time_column.as_deref().unwrap_or("cd_time"),
        );
        let flag_column = self.ident(
            "feedback.flag_column",
            f.flag_column.as_deref().unwrap_or("sync_sign"),
        );
        let http = self.http_feedback(kind, &f);
        let database = self.feedback_db(kind, f.database.as_deref());
        let failed = self.flag_value("feedback.failed", f.failed, 9);
        let pending = self.flag_value("feedback.pending", f.pending, 0);
        let mirror_table = match &f.mirror_table {
            Some(t) => Some(self.table_name("feedback.mirror_table", t)?),
            None => None,
        };
        Some(Feedback {
            kind,
            schedule: schedule?,
            confirm,
            table: table?,
            columns: columns?,
            error_column: error_column?,
            time_column: time_column?,
            flag_column: flag_column?,
            failed: failed?,
            pending: pending?,
            mirror_table,
            http,
            database,
        })
    }

    /// The keys of `kind = "http"`; refused with any other kind.
    fn http_feedback(&mut self, kind: FeedbackKind, f: &RawFeedback) -> Option<HttpFeedback> {
        if kind != FeedbackKind::Http {
            for (key, set) in [
                ("url", f.url.is_some()),
                ("items", f.items.is_some()),
                ("next", f.next.is_some()),
                ("cursor_param", f.cursor_param.is_some()),
            ] {
                if set {
                    self.err(format!("feedback.{key}"), "applies only to kind = \"http\"");
                }
            }
            return None;
        }
        let url = match &f.url {
            Some(u) => super::secret::resolve(u, self.base, self.env)
                .map_err(|m| self.err("feedback.url", m))
                .ok()?,
            None => {
                self.err("feedback.url", "is required by kind = \"http\"");
                return None;
            }
        };
        if !url.starts_with("http://") && !url.starts_with("https://") {
            self.err("feedback.url", "must be an http:// or https:// URL");
        }
        let mut pointer = |key: &str, v: &Option<String>, default: &str| {
            let p = v.clone().unwrap_or_else(|| default.to_owned());
            if !p.starts_with('/') {
                self.err(
                    format!("feedback.{key}"),
                    format!("`{p}` is not a JSON pointer: write e.g. /data/items"),
                );
            }
            p
        };
        Some(HttpFeedback {
            url,
            items: pointer("items", &f.items, "/items"),
            next: pointer("next", &f.next, "/next"),
            param: f.cursor_param.clone().unwrap_or_else(|| "after".into()),
        })
    }
}
