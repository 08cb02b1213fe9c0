//! Parsing with every problem reported: serde stops at its first error, so after each error
//! the offending key is located from the error's span, recorded with its line, removed, and
//! the file is read again, until it deserializes or a problem cannot be stepped over.

use std::fmt;
use std::ops::Range;

use toml_edit::{Document, DocumentMut, Item, TableLike};

use super::Problem;
use super::schema::RawConfig;

/// One step of a key path.
#[derive(Clone, Debug, PartialEq)]
enum Seg {
    Key(String),
    Index(usize),
}

#[derive(Clone, Debug, Default, PartialEq)]
struct KeyPath(Vec<Seg>);

impl fmt::Display for KeyPath {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for (i, s) in self.0.iter().enumerate() {
            match s {
                Seg::Key(k) if i == 0 => write!(f, "{k}")?,
                Seg::Key(k) => write!(f, ".{k}")?,
                Seg::Index(n) => write!(f, "[{n}]")?,
            }
        }
        Ok(())
    }
}

impl KeyPath {
    /// Parse `table[2].watermark.column`.
    fn parse(s: &str) -> KeyPath {
        let mut segs = Vec::new();
        for part in s.split('.').filter(|p| !p.is_empty()) {
            let mut rest = part;
            if let Some(open) = rest.find('[') {
                segs.push(Seg::Key(rest[..open].to_owned()));
                rest = &rest[open..];
                while let Some(close) = rest.find(']') {
                    if let Ok(n) = rest[1..close].parse() {
                        segs.push(Seg::Index(n));
                    }
                    rest = &rest[close + 1..];
                }
            } else {
                segs.push(Seg::Key(rest.to_owned()));
            }
        }
        KeyPath(segs)
    }
}

/// Line numbers of the original file's keys.
pub struct Lines {
    doc: Option<Document<String>>,
    starts: Vec<usize>,
}

impl Lines {
    fn new(text: &str) -> Self {
        let starts = std::iter::once(0)
            .chain(text.match_indices('\n').map(|(i, _)| i + 1))
            .collect();
        Lines {
            doc: Document::parse(text.to_owned()).ok(),
            starts,
        }
    }

    fn line_at(&self, offset: usize) -> usize {
        self.starts.partition_point(|&s| s <= offset)
    }

    /// The line of a key path, or of its nearest existing parent.
    pub fn of(&self, path: &str) -> Option<usize> {
        let doc = self.doc.as_ref()?;
        let mut best = None;
        find(doc.as_table(), &KeyPath::parse(path).0, &mut best);
        best.map(|o| self.line_at(o))
    }
}

/// Walk `segs` down from `t`, remembering the start of the deepest span found.
fn find(t: &dyn TableLike, segs: &[Seg], best: &mut Option<usize>) {
    let Some((Seg::Key(k), rest)) = segs.split_first() else {
        return;
    };
    let Some((key, item)) = t.get_key_value(k) else {
        return;
    };
    if let Some(s) = key.span().or_else(|| item.span()) {
        *best = Some(s.start);
    }
    match rest.split_first() {
        Some((Seg::Index(i), rest)) => {
            if let Some(tb) = item.as_array_of_tables().and_then(|a| a.get(*i)) {
                if let Some(s) = tb.span() {
                    *best = Some(s.start);
                }
                find(tb, rest, best);
            } else if let Some(v) = item.as_array().and_then(|a| a.get(*i)) {
                if let Some(s) = v.span() {
                    *best = Some(s.start);
                }
                if let Some(it) = v.as_inline_table() {
                    find(it, rest, best);
                }
            }
        }
        Some(_) => {
            if let Some(tb) = item.as_table_like() {
                find(tb, rest, best);
            }
        }
        None => {}
    }
}

/// Every key of a document with its key path and the span from the key to its value's end.
fn entries(t: &dyn TableLike, path: &mut Vec<Seg>, out: &mut Vec<(KeyPath, Range<usize>)>) {
    for (k, item) in t.iter() {
        path.push(Seg::Key(k.to_owned()));
        let start = t
            .key(k)
            .and_then(|key| key.span())
            .or_else(|| item.span())
            .map(|s| s.start);
        if let Some(s) = start {
            let end = item.span().map_or(s + 1, |v| v.end.max(s + 1));
            out.push((KeyPath(path.clone()), s..end));
        }
        if let Some(a) = item.as_array_of_tables() {
            for (i, tb) in a.iter().enumerate() {
                path.push(Seg::Index(i));
                if let Some(sp) = tb.span() {
                    out.push((KeyPath(path.clone()), sp));
                }
                entries(tb, path, out);
                path.pop();
            }
        } else if let Some(tb) = item.as_table_like() {
            entries(tb, path, out);
        }
        path.pop();
    }
}

/// The innermost key whose span holds `offset`; failing that, the last key before it.
fn locate(text: &str, offset: usize) -> Option<KeyPath> {
    let doc = Document::parse(text.to_owned()).ok()?;
    let mut all = Vec::new();
    entries(doc.as_table(), &mut Vec::new(), &mut all);
    let inside = all
        .iter()
        .filter(|(_, r)| r.contains(&offset))
        .min_by_key(|(p, r)| (r.len(), usize::MAX - p.0.len()));
    inside
        .or_else(|| {
            all.iter()
                .filter(|(_, r)| r.start <= offset)
                .max_by_key(|(_, r)| r.start)
        })
        .map(|(p, _)| p.clone())
}

/// An error inside an inline table (an enum such as `watermark`) is located at the table;
/// when serde names the unknown field, point at that field itself.
fn refine(doc: &DocumentMut, path: KeyPath, message: &str) -> KeyPath {
    let Some(field) = message
        .strip_prefix("unknown field `")
        .and_then(|r| r.split('`').next())
    else {
        return path;
    };
    let inside = table_at(doc.as_table(), &path.0).is_some_and(|t| t.contains_key(field));
    if inside {
        let mut segs = path.0;
        segs.push(Seg::Key(field.to_owned()));
        KeyPath(segs)
    } else {
        path
    }
}

/// The table (or inline table) at a key path.
fn table_at<'a>(t: &'a dyn TableLike, segs: &[Seg]) -> Option<&'a dyn TableLike> {
    match segs {
        [] => Some(t),
        [Seg::Key(k), Seg::Index(i), rest @ ..] => {
            table_at(t.get(k)?.as_array_of_tables()?.get(*i)?, rest)
        }
        [Seg::Key(k), rest @ ..] => table_at(t.get(k)?.as_table_like()?, rest),
        _ => None,
    }
}

/// Remove a key (never a whole array element) from the document; false when impossible.
fn remove(doc: &mut DocumentMut, path: &KeyPath) -> bool {
    fn go(t: &mut dyn TableLike, segs: &[Seg]) -> bool {
        match segs {
            [Seg::Key(k)] => t.remove(k).is_some(),
            [Seg::Key(k), Seg::Index(i), rest @ ..] if !rest.is_empty() => {
                match t.get_mut(k).and_then(Item::as_array_of_tables_mut) {
                    Some(a) => a.get_mut(*i).is_some_and(|tb| go(tb, rest)),
                    None => false,
                }
            }
            [Seg::Key(k), rest @ ..] if !rest.is_empty() => t
                .get_mut(k)
                .and_then(Item::as_table_like_mut)
                .is_some_and(|tb| go(tb, rest)),
            _ => false,
        }
    }
    go(doc.as_table_mut(), &path.0)
}

/// `[[table]]` elements taken out of the document because a problem inside them could not be
/// stepped over (a required key missing), so that the other tables are still checked. Kept as
/// the file's own indices, to tell later paths in the file's numbering.
#[derive(Debug, Default)]
pub struct Dropped(Vec<usize>);

impl Dropped {
    /// An index among the elements left → its index in the file.
    fn original_index(&self, j: usize) -> usize {
        let mut sorted = self.0.clone();
        sorted.sort_unstable();
        sorted
            .into_iter()
            .fold(j, |o, d| if d <= o { o + 1 } else { o })
    }

    fn original_path(&self, p: &KeyPath) -> KeyPath {
        let mut p = p.clone();
        if let [Seg::Key(k), Seg::Index(j), ..] = p.0.as_mut_slice()
            && k == "table"
        {
            *j = self.original_index(*j);
        }
        p
    }

    /// A path such as `table[1].source` told in the file's numbering.
    pub fn original(&self, path: &str) -> String {
        if self.0.is_empty() || !path.starts_with("table[") {
            return path.to_owned();
        }
        self.original_path(&KeyPath::parse(path)).to_string()
    }

    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }
}

/// The index of the `[[table]]` element a path lies in.
fn table_element(p: &KeyPath) -> Option<usize> {
    match p.0.as_slice() {
        [Seg::Key(k), Seg::Index(i), ..] if k == "table" => Some(*i),
        _ => None,
    }
}

/// Parse the text into the raw schema, collecting every problem serde can report.
pub fn parse(text: &str) -> (Option<RawConfig>, Vec<Problem>, Lines, Dropped) {
    let lines = Lines::new(text);
    let mut problems = Vec::new();
    let mut doc: DocumentMut = match text.parse() {
        Ok(d) => d,
        Err(e) => {
            let e: toml_edit::TomlError = e;
            problems.push(Problem {
                path: String::new(),
                line: e.span().map(|s| lines.line_at(s.start)),
                message: format!("not valid TOML: {}", first_line(e.message())),
            });
            return (None, problems, lines, Dropped::default());
        }
    };
    let mut removed: Vec<KeyPath> = Vec::new();
    let mut dropped = Dropped::default();
    for _ in 0..100 {
        let current = doc.to_string();
        let err = match toml::from_str::<RawConfig>(&current) {
            Ok(raw) => return (Some(raw), problems, lines, dropped),
            Err(e) => e,
        };
        let message = first_line(err.message()).to_owned();
        let path = err
            .span()
            .and_then(|s| locate(&current, s.start))
            .map(|p| refine(&doc, p, &message));
        // A missing field that we removed ourselves is a consequence, not a new problem.
        let consequence = removed.iter().any(|r| {
            r.0.last().is_some_and(
                |l| matches!(l, Seg::Key(k) if message.contains(&format!("missing field `{k}`"))),
            )
        });
        let shown = path.as_ref().map(|p| dropped.original_path(p));
        let line = match &shown {
            Some(p) => lines.of(&p.to_string()),
            None => err.span().map(|s| lines.line_at(s.start)),
        };
        if !consequence {
            problems.push(Problem {
                path: shown.as_ref().map(ToString::to_string).unwrap_or_default(),
                line,
                message: message.clone(),
            });
        }
        match path {
            Some(p) if !removed.contains(&p) && remove(&mut doc, &p) => removed.push(p),
            // A table that cannot be mended is left out, so the others are still checked.
            Some(p)
                if let Some(i) = table_element(&p)
                    && drop_table(&mut doc, i) =>
            {
                dropped.0.push(dropped.original_index(i));
                removed.retain_mut(|r| match r.0.as_mut_slice() {
                    [Seg::Key(k), Seg::Index(j), ..] if k == "table" && *j == i => false,
                    [Seg::Key(k), Seg::Index(j), ..] if k == "table" && *j > i => {
                        *j -= 1;
                        true
                    }
                    _ => true,
                });
            }
            _ => return (None, problems, lines, dropped),
        }
    }
    (None, problems, lines, dropped)
}

fn drop_table(doc: &mut DocumentMut, i: usize) -> bool {
    match doc.get_mut("table").and_then(Item::as_array_of_tables_mut) {
        Some(a) if i < a.len() => {
            a.remove(i);
            true
        }
        _ => false,
    }
}

fn first_line(s: &str) -> &str {
    s.lines().next().unwrap_or(s).trim()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn key_paths_round_trip() {
        let p = KeyPath::parse("table[2].watermark.column");
        assert_eq!(p.to_string(), "table[2].watermark.column");
        assert_eq!(p.0.len(), 4);
    }
}
