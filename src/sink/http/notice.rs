//! A full resync's notice posted to the province's interface.

use super::{Answer, HttpSink};
use crate::sink::SinkError;

impl HttpSink {
    /// The notice is posted as a JSON object (its fields as the notice table's columns,
    /// with the envelope's token field where it has one); the answer is read as a batch's.
    pub(super) async fn post_notice(
        &self,
        to: &crate::config::Notice,
        event: &crate::sink::ResyncEvent<'_>,
    ) -> Result<(), SinkError> {
        let crate::config::Notice::Http(url) = to else {
            return Err(Self::fatal(
                &self.cfg.url,
                "an http exchange takes resync notices over http",
            ));
        };
        let body = |token: Option<&str>| {
            let mut j = event.json();
            if let (Some(f), Some(t), serde_json::Value::Object(m)) =
                (&self.cfg.envelope.token_field, token, &mut j)
            {
                m.insert(f.clone(), serde_json::Value::from(t));
            }
            serde_json::to_vec(&j).unwrap_or_default()
        };
        match self.post(url, body).await? {
            Answer::Accepted(_) => Ok(()),
            Answer::Refused { code, message } => Err(Self::fatal(
                url,
                format!("the exchange refused the resync notice: [{code}] {message}"),
            )),
            other => Err(Self::fatal(url, format!("unexpected answer {other:?}"))),
        }
    }
}
