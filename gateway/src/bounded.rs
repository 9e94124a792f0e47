//! Reads of files the `imx` commands are given, never more than a limit:
//! the size a file's metadata reports is not trusted (`/dev/zero`, a FIFO
//! and `/proc` files report 0), so every read goes through
//! `Read::take(limit + 1)` and one byte past the limit is the refusal.

use std::io::Read;
use std::path::Path;

/// Why a bounded read failed.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    #[error("{0}")]
    Io(#[from] std::io::Error),
    #[error("more than the limit of {limit} bytes")]
    TooLarge { limit: u64 },
}

/// The whole of `reader`, or [`Error::TooLarge`] as soon as it holds more
/// than `limit` bytes (nothing past `limit + 1` is read).
pub fn read_to_limit(reader: impl Read, limit: u64) -> Result<Vec<u8>, Error> {
    let mut bytes = Vec::new();
    reader
        .take(limit.saturating_add(1))
        .read_to_end(&mut bytes)?;
    if bytes.len() as u64 > limit {
        return Err(Error::TooLarge { limit });
    }
    Ok(bytes)
}

/// The file at `path`, at most `limit` bytes of it.
pub fn read_file(path: &Path, limit: u64) -> Result<Vec<u8>, Error> {
    read_to_limit(std::fs::File::open(path)?, limit)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_endless_reader_is_refused_one_byte_past_the_limit() {
        let endless = std::io::repeat(0);
        let error = read_to_limit(endless, 1024).expect_err("refused");
        assert!(matches!(error, Error::TooLarge { limit: 1024 }), "{error}");
    }

    #[test]
    fn a_reader_of_exactly_the_limit_is_read_whole() {
        let bytes = read_to_limit(&[7u8; 16][..], 16).expect("read");
        assert_eq!(bytes, vec![7u8; 16]);
    }
}
