//! A batch as file content: the HTTP envelope's records ([`crate::sink::http::encode`]),
//! written as RFC 4180 CSV (a header row, the table's columns and the operation column, CRLF
//! line ends) or as JSON Lines (one record per line), then in the configured encoding.

use serde_json::Value as Json;

use crate::config::file::{FileEncoding, FileFormat};
use crate::sink::Target;
use crate::sink::http::encode::Record;

/// What the files of one table look like.
#[derive(Clone, Debug)]
pub struct Shape {
    pub format: FileFormat,
    pub encoding: FileEncoding,
    /// The header of a CSV file: the table's columns, then the operation column where the
    /// table has none of that name.
    pub header: Vec<String>,
    /// The operation column's name.
    pub op_column: String,
    /// Operation letters in lower case.
    pub lower_ops: bool,
}

impl Shape {
    pub fn new(
        target: &Target,
        format: FileFormat,
        encoding: FileEncoding,
        op_column: &str,
        lower_ops: bool,
    ) -> Shape {
        let mut header: Vec<String> = target
            .columns
            .iter()
            .map(|c| c.name.as_str().to_owned())
            .collect();
        if !header.iter().any(|h| h.eq_ignore_ascii_case(op_column)) {
            header.push(op_column.to_owned());
        }
        Shape {
            format,
            encoding,
            header,
            op_column: op_column.to_owned(),
            lower_ops,
        }
    }

    /// The beginning of a file: the CSV header row; nothing for JSON Lines.
    pub fn head(&self) -> Result<Vec<u8>, String> {
        match self.format {
            FileFormat::Csv => {
                let mut w = csv_writer();
                w.write_record(&self.header).map_err(|e| e.to_string())?;
                self.finish(w)
            }
            FileFormat::Jsonl => Ok(Vec::new()),
        }
    }

    /// Records as the lines of a file, in the file's encoding.
    pub fn lines(&self, records: &[Record]) -> Result<Vec<u8>, String> {
        match self.format {
            FileFormat::Csv => {
                let mut w = csv_writer();
                for r in records {
                    w.write_record(self.csv_row(&r.json))
                        .map_err(|e| e.to_string())?;
                }
                self.finish(w)
            }
            FileFormat::Jsonl => {
                let mut text = String::new();
                for r in records {
                    text.push_str(&r.json.to_string());
                    text.push('\n');
                }
                Ok(encode(&text, self.encoding))
            }
        }
    }

    fn finish(&self, w: csv::Writer<Vec<u8>>) -> Result<Vec<u8>, String> {
        let utf8 = w.into_inner().map_err(|e| e.to_string())?;
        let text = String::from_utf8(utf8).map_err(|e| e.to_string())?;
        Ok(encode(&text, self.encoding))
    }

    /// One record as a CSV row: its values by column (empty where the record has none, as a
    /// delete for the columns other than its key and version), its operation letter in the
    /// operation column.
    fn csv_row(&self, record: &Json) -> Vec<String> {
        let op = record.get("op").and_then(Json::as_str).unwrap_or("");
        let op = if self.lower_ops {
            op.to_ascii_lowercase()
        } else {
            op.to_ascii_uppercase()
        };
        let values = record.get("values");
        self.header
            .iter()
            .map(|h| {
                if h.eq_ignore_ascii_case(&self.op_column) {
                    op.clone()
                } else {
                    values.and_then(|v| v.get(h)).map_or_else(String::new, text)
                }
            })
            .collect()
    }
}

fn csv_writer() -> csv::Writer<Vec<u8>> {
    csv::WriterBuilder::new()
        .terminator(csv::Terminator::CRLF)
        .from_writer(Vec::new())
}

/// A value of the envelope as CSV text: NULL is an empty field.
fn text(v: &Json) -> String {
    match v {
        Json::Null => String::new(),
        Json::String(s) => s.clone(),
        Json::Bool(b) => b.to_string(),
        Json::Number(n) => n.to_string(),
        other => other.to_string(),
    }
}

/// Text in a file's encoding. GB 18030 maps every Unicode character, so nothing is lost.
pub fn encode(text: &str, enc: FileEncoding) -> Vec<u8> {
    match enc {
        FileEncoding::Utf8 => text.as_bytes().to_vec(),
        FileEncoding::Gb18030 => encoding_rs::GB18030.encode(text).0.into_owned(),
    }
}

/// Bytes of a file in its encoding as text; `None` where they are not text of it.
pub fn decode(bytes: &[u8], enc: FileEncoding) -> Option<String> {
    let bytes = bytes
        .strip_prefix(b"\xEF\xBB\xBF".as_slice())
        .unwrap_or(bytes);
    match enc {
        FileEncoding::Utf8 => String::from_utf8(bytes.to_vec()).ok(),
        FileEncoding::Gb18030 => {
            let (text, had_errors) = encoding_rs::GB18030.decode_without_bom_handling(bytes);
            (!had_errors).then(|| text.into_owned())
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ident::{Col, Ident, TableName};
    use crate::sink::http::encode::Origin;
    use crate::value::ColType;

    fn target() -> Target {
        let col = |n: &str| Col {
            name: Ident::new(n).expect("ident"),
            ty: ColType::Text,
            native: "x".into(),
        };
        Target {
            table: TableName::parse("jg_t").expect("name"),
            columns: vec![col("id"), col("name")],
            key: vec![0],
            version: None,
            tombstone: Vec::new(),
        }
    }

    fn rec(j: Json) -> Record {
        Record {
            origin: Origin {
                delete: false,
                index: 0,
            },
            json: j,
        }
    }

    #[test]
    fn csv_has_a_header_the_operation_and_quotes_by_rfc_4180() {
        let s = Shape::new(
            &target(),
            FileFormat::Csv,
            FileEncoding::Utf8,
            "cd_operation",
            false,
        );
        assert_eq!(s.head().expect("head"), b"id,name,cd_operation\r\n");
        let recs = [
            rec(
                serde_json::json!({"op": "U", "key": {"id": "1"}, "values": {"id": "1", "name": "a,\"b\"\nc"}}),
            ),
            rec(serde_json::json!({"op": "D", "key": {"id": "2"}, "values": {"id": "2"}})),
            rec(
                serde_json::json!({"op": "I", "key": {"id": "3"}, "values": {"id": "3", "name": null}}),
            ),
        ];
        let body = String::from_utf8(s.lines(&recs).expect("lines")).expect("utf8");
        assert_eq!(body, "1,\"a,\"\"b\"\"\nc\",U\r\n2,,D\r\n3,,I\r\n");
        let lower = Shape {
            lower_ops: true,
            ..s
        };
        assert!(
            String::from_utf8(lower.lines(&recs[1..2]).expect("l"))
                .expect("u")
                .ends_with(",d\r\n")
        );
    }

    #[test]
    fn gb18030_round_trips_chinese_text() {
        let text = "名称,地址\r\n哈尔滨市市场监督管理局,黑龙江省𠀀\r\n";
        let bytes = encode(text, FileEncoding::Gb18030);
        assert_ne!(bytes, text.as_bytes());
        assert_eq!(decode(&bytes, FileEncoding::Gb18030).as_deref(), Some(text));
        assert_eq!(decode(&bytes, FileEncoding::Utf8), None);
        let jsonl = Shape::new(
            &target(),
            FileFormat::Jsonl,
            FileEncoding::Gb18030,
            "op",
            false,
        );
        let line = jsonl
            .lines(&[rec(serde_json::json!({"op": "I", "key": {"id": "1"}, "values": {"id": "1", "name": "张三"}}))])
            .expect("lines");
        let back = decode(&line, FileEncoding::Gb18030).expect("decode");
        let j: Json = serde_json::from_str(back.trim_end()).expect("json");
        assert_eq!(j["values"]["name"], "张三");
    }
}
