//! Reading a response body under a cap: a `Content-Length` above it is refused before
//! anything is read, and the bytes are counted as the chunks arrive (after decompression),
//! so a huge, endless or decompression-bomb body never fills the memory.
//!
//! Touches only the response it is given.

/// How much of a refused body is kept, for the quarantine file and messages.
pub(crate) const EXCERPT_BYTES: usize = 4096;

/// Why a body was not read whole.
pub(crate) enum BodyError {
    /// More than the cap. `start` is the first [`EXCERPT_BYTES`] received (empty when the
    /// `Content-Length` alone was too large).
    TooLarge {
        content_length: Option<u64>,
        start: Vec<u8>,
    },
    /// The connection failed while the body arrived.
    Transport(reqwest::Error),
}

/// The whole body of `response`, if it is at most `limit` bytes.
pub(crate) async fn read_capped(
    mut response: reqwest::Response,
    limit: u64,
) -> Result<Vec<u8>, BodyError> {
    let content_length = response.content_length();
    if content_length.is_some_and(|length| length > limit) {
        return Err(BodyError::TooLarge {
            content_length,
            start: Vec::new(),
        });
    }
    // The declared length is trusted only up to the cap.
    let expected = content_length.unwrap_or(0).min(limit);
    let mut body = Vec::with_capacity(usize::try_from(expected).unwrap_or(0));
    while let Some(chunk) = response.chunk().await.map_err(BodyError::Transport)? {
        if (body.len() + chunk.len()) as u64 > limit {
            body.extend_from_slice(&chunk[..chunk.len().min(EXCERPT_BYTES)]);
            body.truncate(EXCERPT_BYTES);
            body.shrink_to_fit();
            return Err(BodyError::TooLarge {
                content_length,
                start: body,
            });
        }
        body.extend_from_slice(&chunk);
    }
    Ok(body)
}

/// The start of `bytes` as text, at most [`EXCERPT_BYTES`], cut on a character boundary.
pub(crate) fn excerpt(bytes: &[u8]) -> String {
    let text = String::from_utf8_lossy(&bytes[..bytes.len().min(EXCERPT_BYTES)]);
    text.trim_end_matches(char::REPLACEMENT_CHARACTER)
        .to_owned()
}
