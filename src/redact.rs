//! [`redact`]: removes secrets from text before it is logged, printed, returned in an error
//! or written to a file (the quarantine, the manifest). Servers and proxies sometimes echo
//! what they received, so an error body or a URL can hold an access token, a client
//! secret or assertion, an `Authorization` header or a signed URL's signature.
//!
//! Recognised, case-insensitively, wherever they appear in the text:
//! - JSON Web Tokens (`eyJ…​.…`), and the token after `Bearer `;
//! - the value of `Authorization`, `access_token`, `refresh_token`, `id_token`,
//!   `client_secret`, `client_assertion`, `password` and `X-Amz-Security-Token` written as
//!   a JSON member, a header or a query parameter (`"key": "v"`, `key: v`, `key=v`);
//! - the query or form parameters `code`, `sig` (Azure SAS), `X-Amz-Signature` and
//!   `X-Amz-Credential` (`key=v` only: `"code": "NotFound"` in a Graph error stays);
//! - any secret the caller knows (the token it sent), wherever it appears, and its start
//!   when the text ends with it (an excerpt cut in the middle of the secret).
//!
//! Pure: no I/O, no state.

use std::borrow::Cow;
use std::ops::Range;

/// What a secret is replaced with.
pub const REDACTED: &str = "[redacted]";

/// Known secrets shorter than this are not searched for: replacing every `t` of a text
/// would hide everything and protect nothing.
const MIN_KNOWN_LEN: usize = 8;

/// Keys whose value is a secret in any form: JSON member, header, query parameter.
const FIELD_KEYS: [&str; 8] = [
    "authorization",
    "access_token",
    "refresh_token",
    "id_token",
    "client_secret",
    "client_assertion",
    "password",
    "x-amz-security-token",
];

/// Keys whose value is a secret only as a query or form parameter (`key=value`).
const QUERY_KEYS: [&str; 4] = ["code", "sig", "x-amz-signature", "x-amz-credential"];

/// `text` with every secret it holds replaced by [`REDACTED`]; `known` are secrets the
/// caller holds (the access token, the client secret), replaced wherever they appear.
pub fn redact(text: &str, known: &[&str]) -> String {
    let mut text = Cow::Borrowed(text);
    for secret in known.iter().filter(|s| s.len() >= MIN_KNOWN_LEN) {
        if text.contains(secret) {
            text = Cow::Owned(text.replace(secret, REDACTED));
        }
        if let Some(cut) = cut_secret(&text, secret) {
            text = Cow::Owned(format!("{}{REDACTED}", &text[..cut]));
        }
    }
    let bytes = text.as_bytes();
    let mut out = String::with_capacity(text.len());
    let (mut copied, mut at) = (0, 0);
    while at < bytes.len() {
        match secret_at(bytes, at) {
            // Every pattern starts and ends on ASCII, so the ranges are char boundaries.
            Some(secret) => {
                out.push_str(&text[copied..secret.start]);
                out.push_str(REDACTED);
                (copied, at) = (secret.end, secret.end);
            }
            None => at += 1,
        }
    }
    out.push_str(&text[copied..]);
    out
}

/// Where `text` ends with the first [`MIN_KNOWN_LEN`] or more bytes of `secret`.
fn cut_secret(text: &str, secret: &str) -> Option<usize> {
    (MIN_KNOWN_LEN..secret.len())
        .rev()
        .filter(|len| secret.is_char_boundary(*len))
        .map(|len| &secret[..len])
        .find(|start| text.ends_with(start))
        .map(|start| text.len() - start.len())
}

/// The secret value of a pattern that starts at `at`, if one does.
fn secret_at(bytes: &[u8], at: usize) -> Option<Range<usize>> {
    if !bytes[at].is_ascii_alphabetic() || (at > 0 && is_word(bytes[at - 1])) {
        return None;
    }
    jwt_at(bytes, at)
        .or_else(|| bearer_at(bytes, at))
        .or_else(|| keyed_value_at(bytes, at))
}

fn is_word(byte: u8) -> bool {
    byte.is_ascii_alphanumeric() || byte == b'_' || byte == b'-'
}

fn is_base64url(byte: u8) -> bool {
    byte.is_ascii_alphanumeric() || byte == b'_' || byte == b'-'
}

/// Bytes from `from` while `accept` holds: the end of the run.
fn run(bytes: &[u8], from: usize, accept: impl Fn(u8) -> bool) -> usize {
    from + bytes[from..].iter().take_while(|b| accept(**b)).count()
}

fn starts_with_ignore_case(bytes: &[u8], at: usize, word: &str) -> bool {
    bytes
        .get(at..at + word.len())
        .is_some_and(|part| part.eq_ignore_ascii_case(word.as_bytes()))
}

/// `eyJ<header>.<payload>[.<signature>…]`: a JWT (JWS or JWE), whole.
fn jwt_at(bytes: &[u8], at: usize) -> Option<Range<usize>> {
    if !bytes[at..].starts_with(b"eyJ") {
        return None;
    }
    let header_end = run(bytes, at, is_base64url);
    let payload_end = run(bytes, header_end + 1, is_base64url);
    if bytes.get(header_end) != Some(&b'.') || payload_end == header_end + 1 {
        return None;
    }
    Some(at..run(bytes, payload_end, |b| is_base64url(b) || b == b'.'))
}

/// `Bearer <token68>`: the token.
fn bearer_at(bytes: &[u8], at: usize) -> Option<Range<usize>> {
    if !starts_with_ignore_case(bytes, at, "bearer") {
        return None;
    }
    let token = run(bytes, at + "bearer".len(), |b| b == b' ' || b == b'\t');
    let end = run(bytes, token, |b| {
        b.is_ascii_alphanumeric() || b"-._~+/=".contains(&b)
    });
    (token > at + "bearer".len() && end > token).then_some(token..end)
}

/// `key=value`, and for [`FIELD_KEYS`] also `"key": "value"` and `key: value`.
fn keyed_value_at(bytes: &[u8], at: usize) -> Option<Range<usize>> {
    let (key, field) = FIELD_KEYS
        .iter()
        .map(|key| (key, true))
        .chain(QUERY_KEYS.iter().map(|key| (key, false)))
        .find(|(key, _)| starts_with_ignore_case(bytes, at, key))?;
    let after = at + key.len();
    match bytes.get(after) {
        Some(b'=') => {
            let end = run(bytes, after + 1, |b| !b" \t\r\n&#\"'<>,;\\".contains(&b));
            (end > after + 1).then_some(after + 1..end)
        }
        Some(byte) if field && !is_word(*byte) => {
            field_value(bytes, after, *key == "authorization")
        }
        _ => None,
    }
}

/// The value after a key in `"key": "value"`, `\"key\": \"value\"` or `key: value` form.
/// An unquoted `Authorization` value runs to the end of the line (`Bearer x`, `Basic y`).
fn field_value(bytes: &[u8], after_key: usize, to_line_end: bool) -> Option<Range<usize>> {
    let skip_quote = |at: usize| run(bytes, at, |b| b == b'\\' || b == b'"' || b == b'\'');
    let colon = run(bytes, skip_quote(after_key), |b| b == b' ' || b == b'\t');
    if bytes.get(colon) != Some(&b':') {
        return None;
    }
    let open = run(bytes, colon + 1, |b| b == b' ' || b == b'\t');
    let start = skip_quote(open);
    let end = if start > open {
        run(bytes, start, |b| !b"\"'\\\r\n".contains(&b))
    } else if to_line_end {
        run(bytes, start, |b| !b"\"'\\\r\n".contains(&b))
    } else {
        run(bytes, start, |b| !b" \t\r\n,;&}]\"'\\".contains(&b))
    };
    (end > start).then_some(start..end)
}

#[cfg(test)]
mod tests {
    use super::*;

    const JWT: &str = "eyJhbGciOiJSUzI1NiJ9.eyJzdWIiOiJhcHAifQ.c2lnbmF0dXJl-_x";

    #[test]
    fn tokens_in_every_form_are_redacted() {
        let cases = [
            (
                format!("Authorization: Bearer {JWT}\r\nHost: x"),
                "Authorization: [redacted]\r\nHost: x",
            ),
            (
                "authorization: Basic dXNlcjpwdw==".into(),
                "authorization: [redacted]",
            ),
            (
                "the header was bearer opaque.token-1~ and more".into(),
                "the header was bearer [redacted] and more",
            ),
            (
                format!(r#"{{"access_token": "{JWT}", "expires_in": 3599}}"#),
                r#"{"access_token": "[redacted]", "expires_in": 3599}"#,
            ),
            (
                r#"{"message": "{\"client_secret\":\"s3cr3t~value\"}"}"#.into(),
                r#"{"message": "{\"client_secret\":\"[redacted]\"}"}"#,
            ),
            (
                format!("token {JWT} is expired"),
                "token [redacted] is expired",
            ),
            (
                "client_assertion_type=urn%3Ajwt&client_assertion=abc.def&scope=x".into(),
                "client_assertion_type=urn%3Ajwt&client_assertion=[redacted]&scope=x",
            ),
        ];
        for (text, expected) in cases {
            assert_eq!(redact(&text, &[]), expected, "{text}");
        }
    }

    #[test]
    fn signed_url_parameters_are_redacted_and_the_rest_of_the_url_kept() {
        let sas =
            "https://acct.blob.core.windows.net/c/x?sv=2024-01-01&se=2026&sig=AbC%2Bd%3D&sp=r";
        assert_eq!(
            redact(sas, &[]),
            "https://acct.blob.core.windows.net/c/x?sv=2024-01-01&se=2026&sig=[redacted]&sp=r"
        );
        let s3 = "https://b.s3.amazonaws.com/k?X-Amz-Credential=AKIA%2F2026&X-Amz-Signature=f00d&x-amz-security-token=T0k";
        assert_eq!(
            redact(s3, &[]),
            "https://b.s3.amazonaws.com/k?X-Amz-Credential=[redacted]&X-Amz-Signature=[redacted]\
             &x-amz-security-token=[redacted]"
        );
        let login = "https://login.example/cb?code=0.AAA-xyz&state=1#access_token=abc";
        assert_eq!(
            redact(login, &[]),
            "https://login.example/cb?code=[redacted]&state=1#access_token=[redacted]"
        );
    }

    #[test]
    fn graph_error_codes_and_ordinary_words_are_kept() {
        let texts = [
            r#"{"error": {"code": "InvalidAuthenticationToken", "message": "Access token is empty."}}"#,
            "the access token expired; the client secret is wrong; sign-in code 7000215",
            "$skiptoken=abc&$filter=startDateTime ge 2026-11-20T00:00:00Z",
            "errorcode=5 unicode=é barcode=1 signature=ok",
            "Bearer [redacted]",
            "",
        ];
        for text in texts {
            assert_eq!(redact(text, &[]), text);
        }
    }

    #[test]
    fn known_secrets_are_redacted_anywhere_but_short_ones_are_ignored() {
        let text = "échec: token emu.0123456789abcdef was refused (t)";
        assert_eq!(
            redact(text, &["emu.0123456789abcdef", "t"]),
            "échec: token [redacted] was refused (t)"
        );
        let cut = "an excerpt that ends in emu.01234567";
        assert_eq!(
            redact(cut, &["emu.0123456789abcdef"]),
            "an excerpt that ends in [redacted]"
        );
        let short = "ends in emu.012";
        assert_eq!(redact(short, &["emu.0123456789abcdef"]), short);
    }

    #[test]
    fn redaction_is_idempotent() {
        let text = format!("Authorization: Bearer {JWT} ?sig=x&code=y \"password\": \"p\"");
        let once = redact(&text, &[]);
        assert_eq!(redact(&once, &[]), once);
        assert!(!once.contains(JWT) && !once.contains("=x") && !once.contains("\"p\""));
    }
}
