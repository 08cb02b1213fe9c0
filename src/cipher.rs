//! Encryption at rest of the row values the state store keeps (a reject's row copy, its
//! reasons and its history, which quote values): AES-256-GCM, or SM4-GCM where the national
//! algorithms are required. A stored value names its algorithm and its key (by the first
//! bytes of the key's SHA-256), so that a store is read with the key it was written with,
//! and a rotation can find what to encrypt again.

use aes_gcm::aead::{Aead, AeadCore, KeyInit, OsRng};
use aes_gcm::{Aes256Gcm, AesGcm};
use base64::Engine as _;
use base64::engine::general_purpose::STANDARD as B64;
use sha2::Digest;

type Sm4Gcm = AesGcm<sm4::Sm4, aes_gcm::aead::consts::U12>;

const PREFIX: &str = "enc1:";

/// The algorithm of `state_cipher`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Algorithm {
    Aes256Gcm,
    Sm4Gcm,
}

impl Algorithm {
    pub fn parse(s: &str) -> Option<Algorithm> {
        match s {
            "aes-256-gcm" => Some(Algorithm::Aes256Gcm),
            "sm4-gcm" => Some(Algorithm::Sm4Gcm),
            _ => None,
        }
    }

    pub fn as_str(self) -> &'static str {
        match self {
            Algorithm::Aes256Gcm => "aes-256-gcm",
            Algorithm::Sm4Gcm => "sm4-gcm",
        }
    }

    /// Key length in bytes.
    pub fn key_len(self) -> usize {
        match self {
            Algorithm::Aes256Gcm => 32,
            Algorithm::Sm4Gcm => 16,
        }
    }
}

/// One key: its algorithm, its bytes and its id.
#[derive(Clone)]
pub struct Key {
    alg: Algorithm,
    bytes: Vec<u8>,
    id: String,
}

impl std::fmt::Debug for Key {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "Key({} {})", self.alg.as_str(), self.id)
    }
}

impl Key {
    /// A key written as hex digits (`openssl rand -hex 32`).
    pub fn from_hex(alg: Algorithm, text: &str) -> Result<Key, String> {
        let bytes = hex::decode(text.trim())
            .ok()
            .filter(|b| b.len() == alg.key_len());
        let Some(bytes) = bytes else {
            return Err(format!(
                "the key for {} must be {} hex digits ({} bytes), e.g. from `openssl rand -hex {}`",
                alg.as_str(),
                alg.key_len() * 2,
                alg.key_len(),
                alg.key_len()
            ));
        };
        let id = hex::encode(&sha2::Sha256::digest(&bytes)[..4]);
        Ok(Key { alg, bytes, id })
    }

    pub fn id(&self) -> &str {
        &self.id
    }

    fn seal(&self, plain: &[u8]) -> Result<Vec<u8>, CipherError> {
        let fail = |_| CipherError::Failed;
        let (nonce, ct) = match self.alg {
            Algorithm::Aes256Gcm => {
                let c = Aes256Gcm::new_from_slice(&self.bytes).map_err(|_| CipherError::Failed)?;
                let n = Aes256Gcm::generate_nonce(&mut OsRng);
                (n.to_vec(), c.encrypt(&n, plain).map_err(fail)?)
            }
            Algorithm::Sm4Gcm => {
                let c = Sm4Gcm::new_from_slice(&self.bytes).map_err(|_| CipherError::Failed)?;
                let n = Sm4Gcm::generate_nonce(&mut OsRng);
                (n.to_vec(), c.encrypt(&n, plain).map_err(fail)?)
            }
        };
        Ok([nonce, ct].concat())
    }

    fn open(&self, sealed: &[u8]) -> Option<Vec<u8>> {
        if sealed.len() < 12 {
            return None;
        }
        let (n, ct) = sealed.split_at(12);
        match self.alg {
            Algorithm::Aes256Gcm => Aes256Gcm::new_from_slice(&self.bytes)
                .ok()?
                .decrypt(n.into(), ct)
                .ok(),
            Algorithm::Sm4Gcm => Sm4Gcm::new_from_slice(&self.bytes)
                .ok()?
                .decrypt(n.into(), ct)
                .ok(),
        }
    }
}

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum CipherError {
    #[error("the stored row values are encrypted (state_cipher) and no state_key is configured")]
    NoKey,
    #[error(
        "the stored row values were encrypted with key {stored}, and the configured key is \
         {current}: configure the key they were encrypted with as state_key (or as \
         state_key_previous while rotating)"
    )]
    WrongKey { stored: String, current: String },
    #[error("a stored value encrypted with key {0} does not decrypt: it was altered or damaged")]
    Damaged(String),
    #[error("encryption failed")]
    Failed,
}

/// The configured keys: the current one encrypts; the previous one (while rotating) still
/// decrypts.
#[derive(Clone, Debug)]
pub struct Cipher {
    pub current: Key,
    pub previous: Option<Key>,
}

/// Whether a stored value is encrypted.
pub fn is_sealed(s: &str) -> bool {
    s.starts_with(PREFIX)
}

impl Cipher {
    /// `enc1:<algorithm>:<key id>:<base64 of nonce and ciphertext>`.
    pub fn seal(&self, plain: &str) -> Result<String, CipherError> {
        let k = &self.current;
        let body = B64.encode(k.seal(plain.as_bytes())?);
        Ok(format!("{PREFIX}{}:{}:{body}", k.alg.as_str(), k.id))
    }

    /// The plain text of a stored value (one that is not encrypted is returned as it is).
    pub fn open(cipher: Option<&Cipher>, stored: &str) -> Result<String, CipherError> {
        let Some(rest) = stored.strip_prefix(PREFIX) else {
            return Ok(stored.to_owned());
        };
        let Some(c) = cipher else {
            return Err(CipherError::NoKey);
        };
        let mut parts = rest.splitn(3, ':');
        let (alg, kid, body) = (parts.next(), parts.next(), parts.next());
        let (Some(alg), Some(kid), Some(body)) = (alg, kid, body) else {
            return Err(CipherError::Damaged("?".into()));
        };
        let key = std::iter::once(&c.current)
            .chain(c.previous.as_ref())
            .find(|k| k.id == kid && k.alg.as_str() == alg)
            .ok_or_else(|| CipherError::WrongKey {
                stored: format!("{kid} ({alg})"),
                current: format!("{} ({})", c.current.id, c.current.alg.as_str()),
            })?;
        let sealed = B64
            .decode(body)
            .map_err(|_| CipherError::Damaged(kid.into()))?;
        let plain = key
            .open(&sealed)
            .ok_or_else(|| CipherError::Damaged(kid.into()))?;
        String::from_utf8(plain).map_err(|_| CipherError::Damaged(kid.into()))
    }

    /// Whether a stored value must be encrypted again with the current key.
    pub fn stale(&self, stored: &str) -> bool {
        let current = format!("{PREFIX}{}:{}:", self.current.alg.as_str(), self.current.id);
        !stored.starts_with(&current)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn key(alg: Algorithm, byte: u8) -> Key {
        Key::from_hex(alg, &hex::encode(vec![byte; alg.key_len()])).expect("key")
    }

    #[test]
    fn both_algorithms_round_trip_and_a_wrong_key_is_named() {
        for alg in [Algorithm::Aes256Gcm, Algorithm::Sm4Gcm] {
            let c = Cipher {
                current: key(alg, 1),
                previous: None,
            };
            let sealed = c.seal("张三 340524198001010010").expect("seal");
            assert!(is_sealed(&sealed) && !sealed.contains("340524"));
            assert_eq!(
                Cipher::open(Some(&c), &sealed).expect("open"),
                "张三 340524198001010010"
            );
            assert_eq!(Cipher::open(None, &sealed), Err(CipherError::NoKey));
            let other = Cipher {
                current: key(alg, 2),
                previous: None,
            };
            assert!(matches!(
                Cipher::open(Some(&other), &sealed),
                Err(CipherError::WrongKey { .. })
            ));
            let rotating = Cipher {
                current: key(alg, 2),
                previous: Some(key(alg, 1)),
            };
            assert!(rotating.stale(&sealed) && !c.stale(&sealed));
            assert_eq!(
                Cipher::open(Some(&rotating), &sealed).expect("open"),
                "张三 340524198001010010"
            );
            let mut bad = sealed.clone();
            bad.replace_range(sealed.len() - 3.., "AAA");
            assert!(matches!(
                Cipher::open(Some(&c), &bad),
                Err(CipherError::Damaged(_))
            ));
        }
        assert!(Key::from_hex(Algorithm::Sm4Gcm, "abcd").is_err());
    }
}
