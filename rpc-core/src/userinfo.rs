//! What HTTP and WebSocket backends share when they are built: a URL's
//! `user:password@` moved to basic auth, and extra headers.

use std::sync::Arc;

use http::header::{HeaderName, HeaderValue};
use http::{HeaderMap, Uri};

use crate::BuildError;

/// Appends header `name: value` (marked sensitive: it may be an API key)
/// for backend `backend`.
pub(crate) fn add_header(
    headers: &mut HeaderMap,
    backend: &Arc<str>,
    name: &str,
    value: &str,
) -> Result<(), BuildError> {
    let invalid = || BuildError::InvalidHeader {
        backend: backend.clone(),
        header: name.to_owned(),
    };
    let header_name = HeaderName::from_bytes(name.as_bytes()).map_err(|_| invalid())?;
    let mut header_value = HeaderValue::from_str(value).map_err(|_| invalid())?;
    header_value.set_sensitive(true);
    headers.append(header_name, header_value);
    Ok(())
}

/// `uri` without its userinfo, and the (percent-decoded) user and password
/// it held.
pub(crate) fn split(uri: &Uri) -> Result<(Uri, Option<(String, String)>), http::Error> {
    let Some(authority) = uri.authority() else {
        return Ok((uri.clone(), None));
    };
    let Some((userinfo, host)) = authority.as_str().rsplit_once('@') else {
        return Ok((uri.clone(), None));
    };
    let (user, password) = userinfo.split_once(':').unwrap_or((userinfo, ""));
    let mut parts = uri.clone().into_parts();
    parts.authority = Some(host.parse()?);
    Ok((
        Uri::from_parts(parts)?,
        Some((percent_decode(user), percent_decode(password))),
    ))
}

/// The `Authorization` value for basic auth.
pub(crate) fn basic(user: &str, password: &str) -> String {
    format!(
        "Basic {}",
        base64_encode(format!("{user}:{password}").as_bytes())
    )
}

fn percent_decode(s: &str) -> String {
    percent_encoding::percent_decode_str(s)
        .decode_utf8_lossy()
        .into_owned()
}

fn base64_encode(input: &[u8]) -> String {
    use base64::Engine as _;
    base64::engine::general_purpose::STANDARD.encode(input)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn base64_matches_rfc4648_vectors() {
        for (input, expected) in [
            ("", ""),
            ("f", "Zg=="),
            ("fo", "Zm8="),
            ("foo", "Zm9v"),
            ("foob", "Zm9vYg=="),
            ("fooba", "Zm9vYmE="),
            ("foobar", "Zm9vYmFy"),
        ] {
            assert_eq!(base64_encode(input.as_bytes()), expected);
        }
    }

    #[test]
    fn percent_decoding() {
        assert_eq!(percent_decode("p%40ss%3Aword"), "p@ss:word");
        assert_eq!(percent_decode("100%"), "100%");
    }

    #[test]
    fn userinfo_is_split_off() {
        let uri: Uri = "ws://alice:p%40ss@127.0.0.1:9/x".parse().expect("uri");
        let (bare, auth) = split(&uri).expect("split");
        assert_eq!(bare.to_string(), "ws://127.0.0.1:9/x");
        assert_eq!(auth, Some(("alice".to_owned(), "p@ss".to_owned())));
        let plain: Uri = "ws://h/".parse().expect("uri");
        assert_eq!(split(&plain).expect("split"), (plain.clone(), None));
    }
}
