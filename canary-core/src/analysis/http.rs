//! What the HTTP clients share: answers read up to a size, and what of a foreign answer may be
//! quoted in a status or an event.

use crate::error::describe;

/// Reads the body of `response`, of at most `limit` bytes: one announced longer
/// (`Content-Length`) is refused before it is read, one streamed longer as soon as it passes the
/// limit.
pub(crate) async fn read_capped(
    mut response: reqwest::Response,
    limit: usize,
) -> Result<Vec<u8>, String> {
    let too_long = || format!("the answer is longer than {limit} bytes");
    if response
        .content_length()
        .is_some_and(|length| length > u64::try_from(limit).unwrap_or(u64::MAX))
    {
        return Err(too_long());
    }
    let mut body = Vec::new();
    while let Some(chunk) = response.chunk().await.map_err(|e| describe(&e))? {
        if body.len().saturating_add(chunk.len()) > limit {
            return Err(too_long());
        }
        body.extend_from_slice(&chunk);
    }
    Ok(body)
}

/// At most `chars` characters of `text` fit to quote in a status or an event: control
/// characters (newlines, escapes) become spaces, runs of spaces one, and a cut is marked `…`.
pub(crate) fn excerpt(text: &str, chars: usize) -> String {
    let mut out = String::new();
    let mut taken = 0;
    let mut space = false;
    for c in text.trim().chars() {
        let c = if c.is_control() || c.is_whitespace() {
            ' '
        } else {
            c
        };
        if c == ' ' && space {
            continue;
        }
        space = c == ' ';
        if taken == chars {
            out.push('…');
            break;
        }
        out.push(c);
        taken += 1;
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_excerpt_is_short_and_on_one_line() {
        assert_eq!(excerpt("  no\r\n\tway \u{1b}[31m ", 100), "no way [31m");
        assert_eq!(excerpt("abcdef", 3), "abc…");
        assert_eq!(excerpt("abc", 3), "abc");
        assert_eq!(excerpt("", 3), "");
    }
}
