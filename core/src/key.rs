//! Stream keys (`docs/protocol.md` §2.1).

/// Longest key, in bytes.
pub const MAX_KEY_LEN: usize = 63;

/// A validated stream key: `[A-Za-z0-9_-]{1,63}`.
///
/// Keys name the socket `<runtime dir>/<key>.sock`; anything that could walk a
/// path (`/`, `..`, NUL) is rejected before it touches the file system.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct StreamKey<'a>(&'a str);

/// Why a key was rejected.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum KeyError {
    /// The key is empty.
    #[error("stream key is empty")]
    Empty,
    /// The key is longer than 63 bytes.
    #[error("stream key is {0} bytes long; at most 63 are allowed")]
    TooLong(usize),
    /// The key holds a byte outside `[A-Za-z0-9_-]`.
    #[error("stream key holds {0:?} at byte {1}; only A-Z, a-z, 0-9, '_' and '-' are allowed")]
    BadChar(char, usize),
}

impl<'a> StreamKey<'a> {
    /// Checks `key` against `[A-Za-z0-9_-]{1,63}`.
    pub fn new(key: &'a str) -> Result<Self, KeyError> {
        if key.is_empty() {
            return Err(KeyError::Empty);
        }
        if key.len() > MAX_KEY_LEN {
            return Err(KeyError::TooLong(key.len()));
        }
        for (i, c) in key.char_indices() {
            if !(c.is_ascii_alphanumeric() || c == '_' || c == '-') {
                return Err(KeyError::BadChar(c, i));
            }
        }
        Ok(StreamKey(key))
    }

    /// The key text.
    pub fn as_str(&self) -> &'a str {
        self.0
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn accepts_the_documented_alphabet() {
        assert!(StreamKey::new("cam-1_Front").is_ok());
        assert!(StreamKey::new(&"a".repeat(63)).is_ok());
    }

    #[test]
    fn rejects_paths_and_oddities() {
        assert_eq!(StreamKey::new(""), Err(KeyError::Empty));
        assert_eq!(StreamKey::new("../x"), Err(KeyError::BadChar('.', 0)));
        assert_eq!(StreamKey::new("a/b"), Err(KeyError::BadChar('/', 1)));
        assert_eq!(StreamKey::new("a\0"), Err(KeyError::BadChar('\0', 1)));
        assert_eq!(StreamKey::new("é"), Err(KeyError::BadChar('é', 0)));
        assert_eq!(StreamKey::new(&"a".repeat(64)), Err(KeyError::TooLong(64)));
    }
}
