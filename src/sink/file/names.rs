//! File names by the 15-character rule — resource classification code (5) + year (4) +
//! GB/T 2260 region code (6) — then a 6-digit sequence and the extension, and the
//! reservations that give a batch sent again the name it had.
//!
//! A table's batch reserves its name before anything is written: the sequence counter of
//! its prefix is moved first, then the reservation (batch id, name, creation time) is
//! recorded, each written under a temporary name, synced and renamed. A crash between the
//! two leaves a gap in the sequence, never two batches under one name; a batch sent again
//! finds its reservation and is written under the same name with the same manifest. A
//! table's batches are written one after another, but a batch may be written before the
//! one before it was committed in the state store, so a few of them can be sent again after
//! a crash: each table keeps its last [`KEPT`] reservations.

use std::collections::HashMap;
use std::io;
use std::path::{Path, PathBuf};
use std::sync::Mutex;

use serde::{Deserialize, Serialize};

use super::write;

/// The highest sequence number a name can carry.
pub const MAX_SEQ: u32 = 999_999;

/// Reservations kept per table: far more than the batches of a table in flight at once.
pub const KEPT: usize = 64;

/// The suffix of a data file's manifest.
pub const MANIFEST: &str = ".manifest.json";

/// The 15-character prefix of a table's names in a year.
pub fn prefix(class: &str, year: i32, region: &str) -> String {
    format!("{class}{year:04}{region}")
}

/// A data file's name.
pub fn name(prefix: &str, seq: u32, ext: &str) -> String {
    format!("{prefix}{seq:06}.{ext}")
}

/// The manifest's name of a data file.
pub fn manifest_of(data: &str) -> String {
    format!("{data}{MANIFEST}")
}

/// The prefix and sequence of a data file's name (not of a manifest or anything else).
pub fn parse(name: &str) -> Option<(&str, u32)> {
    let (stem, ext) = name.split_once('.')?;
    if stem.len() != 21 || !matches!(ext, "csv" | "jsonl") || !stem.is_ascii() {
        return None;
    }
    let (prefix, seq) = stem.split_at(15);
    let ok = prefix[..5].bytes().all(|b| b.is_ascii_alphanumeric())
        && prefix[5..].bytes().all(|b| b.is_ascii_digit())
        && seq.bytes().all(|b| b.is_ascii_digit());
    Some((prefix, seq.parse().ok()?)).filter(|_| ok)
}

/// Remove the temporary files a crash left in `dir`; returns how many.
pub fn remove_temps(dir: &Path) -> io::Result<usize> {
    let mut n = 0;
    for entry in std::fs::read_dir(dir)? {
        let entry = entry?;
        let name = entry.file_name();
        let Some(name) = name.to_str() else { continue };
        let ours = name
            .strip_prefix('.')
            .and_then(|n| n.strip_suffix(".tmp"))
            .and_then(|n| n.strip_suffix(MANIFEST).or(Some(n)))
            .and_then(parse)
            .is_some();
        if ours && entry.file_type()?.is_file() {
            std::fs::remove_file(entry.path())?;
            n += 1;
        }
    }
    if n > 0 {
        write::sync_dir(dir)?;
    }
    Ok(n)
}

/// The highest sequence of `prefix` among the data files in `dir` (0 when none).
pub fn highest_in(dir: &Path, prefix: &str) -> io::Result<u32> {
    let mut high = 0;
    for entry in std::fs::read_dir(dir)? {
        let name = entry?.file_name();
        if let Some((p, seq)) = name.to_str().and_then(parse)
            && p == prefix
        {
            high = high.max(seq);
        }
    }
    Ok(high)
}

/// A batch's name, kept until the table's next batch.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Reservation {
    pub batch: String,
    pub name: String,
    /// RFC 3339; the manifest's `created_at`.
    pub created_at: String,
}

/// The reservations and sequence counters of one exchange directory.
pub struct Names {
    /// Where the counters and reservations are kept (in the agent's state directory).
    root: PathBuf,
    /// The exchange directory, looked at once per prefix for names already there.
    dir: PathBuf,
    /// Last sequence given, by prefix.
    counters: Mutex<HashMap<String, u32>>,
}

impl Names {
    pub fn new(root: PathBuf, dir: PathBuf) -> Names {
        Names {
            root,
            dir,
            counters: Mutex::new(HashMap::new()),
        }
    }

    fn reservation_path(&self, table: &str) -> PathBuf {
        use sha2::Digest as _;
        let h = hex::encode(sha2::Sha256::digest(table.as_bytes()));
        self.root
            .join("reserved")
            .join(format!("{}.json", &h[..24]))
    }

    /// The table's reservations, oldest first.
    fn journal(&self, table: &str) -> io::Result<Vec<Reservation>> {
        match std::fs::read(self.reservation_path(table)) {
            Ok(b) => serde_json::from_slice(&b).map_err(|e| {
                io::Error::new(
                    io::ErrorKind::InvalidData,
                    format!("the name reservations of table {table} are unreadable: {e}"),
                )
            }),
            Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(Vec::new()),
            Err(e) => Err(e),
        }
    }

    /// The table's last reservation, where it has one.
    pub fn reserved(&self, table: &str) -> io::Result<Option<Reservation>> {
        Ok(self.journal(table)?.pop())
    }

    /// The name of batch `batch` of `table`: the one it reserved before (unless `fresh`),
    /// or a new one with the next sequence of `prefix` (recorded before it is returned), and
    /// whether it is new. `ext` is the files' extension; `now` the creation time of a new
    /// reservation.
    pub fn reserve(
        &self,
        table: &str,
        batch: &str,
        (prefix, ext): (&str, &str),
        now: &str,
        fresh: bool,
    ) -> io::Result<(Reservation, bool)> {
        let mut journal = self.journal(table)?;
        // The batch keeps its name even where the prefix has changed since (a new year).
        if let Some(r) = journal
            .iter()
            .rev()
            .find(|r| r.batch == batch && r.name.ends_with(&format!(".{ext}")))
            .filter(|_| !fresh)
        {
            return Ok((r.clone(), false));
        }
        let seq = self.next(prefix)?;
        let r = Reservation {
            batch: batch.to_owned(),
            name: name(prefix, seq, ext),
            created_at: now.to_owned(),
        };
        journal.push(r.clone());
        let drop = journal.len().saturating_sub(KEPT);
        journal.drain(..drop);
        let path = self.reservation_path(table);
        let bytes = serde_json::to_vec(&journal).map_err(io::Error::other)?;
        write::atomic(
            path.parent().unwrap_or(&self.root),
            &file_name(&path),
            &bytes,
        )?;
        Ok((r, true))
    }

    /// Take the next sequence of `prefix`, recorded before it is used.
    fn next(&self, prefix: &str) -> io::Result<u32> {
        let mut counters = self.counters.lock().unwrap_or_else(|e| e.into_inner());
        let last = match counters.get(prefix) {
            Some(&n) => n,
            None => self.counted(prefix)?.max(highest_in(&self.dir, prefix)?),
        };
        let seq = last + 1;
        if seq > MAX_SEQ {
            return Err(io::Error::other(format!(
                "every sequence number of {prefix} (000001-999999) was used this year"
            )));
        }
        let counter = format!("{prefix}.seq");
        write::atomic(
            &self.root.join("counters"),
            &counter,
            seq.to_string().as_bytes(),
        )?;
        counters.insert(prefix.to_owned(), seq);
        Ok(seq)
    }

    /// The last sequence of `prefix` recorded by the counter (0 when none).
    fn counted(&self, prefix: &str) -> io::Result<u32> {
        let path = self.root.join("counters").join(format!("{prefix}.seq"));
        match std::fs::read_to_string(&path) {
            Ok(s) => s.trim().parse().map_err(|_| {
                io::Error::new(
                    io::ErrorKind::InvalidData,
                    format!("{} does not hold a sequence number", path.display()),
                )
            }),
            Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(0),
            Err(e) => Err(e),
        }
    }
}

fn file_name(p: &Path) -> String {
    p.file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_follow_the_rule_and_parse_back() {
        let p = prefix("A0101", 2026, "230100");
        assert_eq!(p.len(), 15);
        let n = name(&p, 17, "csv");
        assert_eq!(n, "A01012026230100000017.csv");
        assert_eq!(parse(&n), Some((p.as_str(), 17)));
        assert_eq!(parse(&manifest_of(&n)), None);
        assert_eq!(parse("A01012026230100000017.txt"), None);
        assert_eq!(parse(".A01012026230100000017.csv.tmp"), None);
        assert_eq!(parse("A0101202623010000001.csv"), None);
    }

    #[test]
    fn a_batch_sent_again_keeps_its_name_and_the_next_takes_the_next_sequence() {
        let state = tempfile::tempdir().expect("tmp");
        let dir = tempfile::tempdir().expect("tmp");
        // A file of the prefix already in the directory (a state directory lost).
        std::fs::write(dir.path().join("A01012026230100000041.csv"), b"x").expect("write");
        let names = Names::new(state.path().to_owned(), dir.path().to_owned());
        let p = prefix("A0101", 2026, "230100");
        let a = names
            .reserve("t", "b1", (&p, "csv"), "t0", false)
            .map(|r| r.0)
            .expect("reserve");
        assert_eq!(a.name, "A01012026230100000042.csv");
        let again = names
            .reserve("t", "b1", (&p, "csv"), "t1", false)
            .map(|r| r.0)
            .expect("reserve");
        assert_eq!(again, a, "the same batch keeps its name and creation time");
        let b = names
            .reserve("t", "b2", (&p, "csv"), "t2", false)
            .map(|r| r.0)
            .expect("reserve");
        assert_eq!(b.name, "A01012026230100000043.csv");
        // The batch before, sent again after it (it was written, not yet committed).
        assert_eq!(
            names
                .reserve("t", "b1", (&p, "csv"), "t5", false)
                .map(|r| r.0)
                .expect("r"),
            a
        );
        let other = names
            .reserve("u", "c1", (&p, "csv"), "t3", false)
            .map(|r| r.0)
            .expect("reserve");
        assert_eq!(other.name, "A01012026230100000044.csv");
        // A new process reads the counter and the reservations back.
        let names = Names::new(state.path().to_owned(), dir.path().to_owned());
        assert_eq!(
            names
                .reserve("t", "b2", (&p, "csv"), "x", false)
                .map(|r| r.0)
                .expect("r"),
            b
        );
        let c = names
            .reserve("t", "b3", (&p, "csv"), "t4", false)
            .map(|r| r.0)
            .expect("reserve");
        assert_eq!(c.name, "A01012026230100000045.csv");
    }

    #[test]
    fn the_temporaries_a_crash_left_are_swept_and_no_others() {
        let dir = tempfile::tempdir().expect("tmp");
        let name = "A01012026230100000001.csv";
        std::fs::write(dir.path().join(name), b"id\r\n1\r\n").expect("w");
        // What a crash leaves: a temporary data file and manifest, and a stranger's file.
        std::fs::write(dir.path().join(write::temp_name(name)), b"half").expect("w");
        let m = manifest_of(name);
        std::fs::write(dir.path().join(write::temp_name(&m)), b"half").expect("w");
        std::fs::write(dir.path().join(".other.tmp"), b"x").expect("w");
        assert_eq!(remove_temps(dir.path()).expect("sweep"), 2);
        assert!(
            dir.path().join(".other.tmp").exists(),
            "not ours: left alone"
        );
        assert!(dir.path().join(name).exists());
    }
}
