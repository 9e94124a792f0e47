//! The sandbox's wire format on the child's stdin and stdout: a frame is a
//! u32 big-endian length and that many bytes of JSON. Both sides refuse a
//! frame longer than the limit for its direction before reading it.

use std::io::{self, Read, Write};

use serde::{Deserialize, Serialize};

use crate::core::Secrets;
use crate::core::template::{Error, Evaluated, Request, TEMPLATE_OUTPUT_BYTES_MAX};

/// Largest request frame (the template, its scope and the secrets), in bytes.
pub const SANDBOX_REQUEST_BYTES_MAX: usize = 64 * 1024 * 1024;
/// Largest answer frame, in bytes: a rendered value is bounded by
/// [`TEMPLATE_OUTPUT_BYTES_MAX`] as JSON; the rest is room for tainted
/// pointers and the envelope.
pub const SANDBOX_ANSWER_BYTES_MAX: usize = 4 * TEMPLATE_OUTPUT_BYTES_MAX;

const _: () = assert!(SANDBOX_ANSWER_BYTES_MAX > TEMPLATE_OUTPUT_BYTES_MAX);
const _: () = assert!(SANDBOX_REQUEST_BYTES_MAX <= u32::MAX as usize);

/// What the child reads: one evaluation and the node's secrets (the parent
/// writes the same fields from borrowed values).
#[derive(Debug, Deserialize)]
pub struct Envelope {
    pub request: Request<'static>,
    pub secrets: Secrets,
}

/// What the child answers.
pub type Answer = Result<Evaluated, Error>;

/// Writes one frame of `value` as JSON, refusing one over `bytes_max`.
pub fn write_frame<T: Serialize>(
    out: &mut impl Write,
    value: &T,
    bytes_max: usize,
) -> io::Result<()> {
    let body = serde_json::to_vec(value).map_err(io::Error::other)?;
    if body.len() > bytes_max {
        return Err(io::Error::new(
            io::ErrorKind::InvalidData,
            format!(
                "a frame of {} bytes is over the limit of {bytes_max} bytes",
                body.len()
            ),
        ));
    }
    let length = u32::try_from(body.len()).map_err(io::Error::other)?;
    out.write_all(&length.to_be_bytes())?;
    out.write_all(&body)?;
    out.flush()
}

/// Reads one frame's bytes; `Ok(None)` at a clean end of the stream.
pub fn read_frame(input: &mut impl Read, bytes_max: usize) -> io::Result<Option<Vec<u8>>> {
    let mut length = [0u8; 4];
    match input.read_exact(&mut length) {
        Ok(()) => {}
        Err(error) if error.kind() == io::ErrorKind::UnexpectedEof => return Ok(None),
        Err(error) => return Err(error),
    }
    let length = u32::from_be_bytes(length) as usize;
    if length > bytes_max {
        return Err(io::Error::new(
            io::ErrorKind::InvalidData,
            format!("a frame of {length} bytes is over the limit of {bytes_max} bytes"),
        ));
    }
    let mut body = vec![0u8; length];
    input.read_exact(&mut body)?;
    Ok(Some(body))
}
