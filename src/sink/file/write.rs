//! Files that appear whole or not at all: written under a hidden temporary name in the same
//! directory, synced, renamed to their final name, and the directory synced so that the
//! rename survives a power cut. A crash leaves at most a temporary file, which the next
//! start removes; never a partial file under a final name.

use std::fs::File;
use std::io::{self, BufWriter, Write};
use std::path::{Path, PathBuf};

use sha2::{Digest, Sha256};

/// The temporary name of `name` while it is written.
pub fn temp_name(name: &str) -> String {
    format!(".{name}.tmp")
}

/// Sync a directory, so that the names created or renamed in it are durable.
pub fn sync_dir(dir: &Path) -> io::Result<()> {
    File::open(dir)?.sync_all()
}

/// Write `bytes` to `dir/name` atomically (creating `dir` when needed).
pub fn atomic(dir: &Path, name: &str, bytes: &[u8]) -> io::Result<()> {
    std::fs::create_dir_all(dir)?;
    let mut f = Pending::create(dir, name)?;
    f.write_all(bytes)?;
    f.finish().map(drop)
}

/// Created readable and writable by the agent's user only (exchange files carry the
/// department's records): what reads them runs as that user, or takes them over SFTP.
fn owner_only() -> std::fs::OpenOptions {
    let mut o = std::fs::OpenOptions::new();
    o.write(true).create(true).truncate(true);
    #[cfg(unix)]
    std::os::unix::fs::OpenOptionsExt::mode(&mut o, 0o600);
    o
}

/// A file being written under its temporary name, hashed as it is written.
pub struct Pending {
    dir: PathBuf,
    name: String,
    temp: PathBuf,
    out: BufWriter<File>,
    hash: Sha256,
    bytes: u64,
}

impl Pending {
    /// Begin `dir/name` (under its temporary name, replacing one left by a crash).
    pub fn create(dir: &Path, name: &str) -> io::Result<Pending> {
        let temp = dir.join(temp_name(name));
        let file = owner_only().open(&temp)?;
        Ok(Pending {
            dir: dir.to_owned(),
            name: name.to_owned(),
            temp,
            out: BufWriter::with_capacity(1 << 16, file),
            hash: Sha256::new(),
            bytes: 0,
        })
    }

    /// Sync the file, give it its final name, sync the directory; returns its SHA-256
    /// (hex) and size.
    pub fn finish(mut self) -> io::Result<(String, u64)> {
        self.out.flush()?;
        let file = self
            .out
            .into_inner()
            .map_err(|e| io::Error::other(e.to_string()))?;
        file.sync_all()?;
        drop(file);
        std::fs::rename(&self.temp, self.dir.join(&self.name))?;
        sync_dir(&self.dir)?;
        Ok((hex::encode(self.hash.finalize()), self.bytes))
    }
}

impl Write for Pending {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        let n = self.out.write(buf)?;
        self.hash.update(&buf[..n]);
        self.bytes += n as u64;
        Ok(n)
    }

    fn flush(&mut self) -> io::Result<()> {
        self.out.flush()
    }
}

/// The SHA-256 (hex) of a file, read in pieces.
pub fn sha256_of(path: &Path) -> io::Result<String> {
    use io::Read as _;
    let mut f = File::open(path)?;
    let mut h = Sha256::new();
    let mut buf = vec![0u8; 1 << 16];
    loop {
        let n = f.read(&mut buf)?;
        if n == 0 {
            return Ok(hex::encode(h.finalize()));
        }
        h.update(&buf[..n]);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[cfg(unix)]
    #[test]
    fn files_are_the_agents_user_s_alone() {
        use std::os::unix::fs::PermissionsExt;
        let dir = tempfile::tempdir().expect("tmp");
        atomic(dir.path(), "A01012026230100000001.csv", b"id\r\n1\r\n").expect("write");
        let mode = std::fs::metadata(dir.path().join("A01012026230100000001.csv"))
            .expect("stat")
            .permissions()
            .mode();
        assert_eq!(mode & 0o777, 0o600, "{mode:o}");
    }

    #[test]
    fn a_file_appears_whole_under_its_name_and_temporaries_are_swept() {
        let dir = tempfile::tempdir().expect("tmp");
        let name = "A01012026230100000001.csv";
        let mut p = Pending::create(dir.path(), name).expect("create");
        p.write_all(b"id\r\n1\r\n").expect("write");
        assert!(
            !dir.path().join(name).exists(),
            "nothing under the final name yet"
        );
        assert!(dir.path().join(temp_name(name)).exists());
        let (sha, len) = p.finish().expect("finish");
        assert_eq!(len, 7);
        assert_eq!(sha, sha256_of(&dir.path().join(name)).expect("sha"));
        assert!(!dir.path().join(temp_name(name)).exists());
        assert!(dir.path().join(name).exists());
    }
}
