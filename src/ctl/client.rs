//! `sv0 ctl`'s HTTP client for the admin API: the base URL's check, the token's reading, ids and
//! query values percent-encoded so that none can leave its place in the URL, and the API's
//! refusals turned into errors that name the field.

use anyhow::{Context, bail};
use reqwest::Method;
use serde_json::Value;

use super::tables::line;

pub(super) struct Client {
    pub(super) http: reqwest::Client,
    pub(super) base: String,
    pub(super) token: String,
}

impl Client {
    pub(super) async fn call(
        &self,
        method: Method,
        path: &str,
        body: Option<Value>,
    ) -> anyhow::Result<Value> {
        let mut request = self
            .http
            .request(
                method.clone(),
                format!("{}/api/v1{path}", self.base.trim_end_matches('/')),
            )
            .bearer_auth(&self.token);
        if let Some(body) = body {
            request = request
                .header("content-type", "application/json")
                .body(body.to_string());
        }
        let response = request.send().await.with_context(|| {
            format!(
                "{method} {path}: the API at {} did not answer",
                line(&self.base)
            )
        })?;
        let status = response.status();
        let text = response.text().await.unwrap_or_default();
        let value: Value = serde_json::from_str(&text).unwrap_or(Value::Null);
        if !status.is_success() {
            let error = &value["error"];
            let message = error["message"].as_str().unwrap_or(text.as_str());
            match error["field"].as_str() {
                Some(field) => bail!(
                    "{method} {path}: {status}: field `{}`: {}",
                    line(field),
                    line(
                        message
                            .strip_prefix(&format!("{field}: "))
                            .unwrap_or(message)
                    )
                ),
                None => bail!("{method} {path}: {status}: {}", line(message)),
            }
        }
        Ok(value)
    }

    pub(super) async fn get(&self, path: &str) -> anyhow::Result<Value> {
        self.call(Method::GET, path, None).await
    }

    pub(super) async fn post(&self, path: &str, body: Value) -> anyhow::Result<Value> {
        self.call(Method::POST, path, Some(body)).await
    }
}

pub(super) fn push(query: &mut Vec<String>, key: &str, value: Option<String>) {
    if let Some(value) = value {
        query.push(format!("{key}={}", encode(&value)));
    }
}

/// Everything but the unreserved characters: in a query value or a path segment, nothing the
/// caller typed can end the value, start another, or become a `/`.
const ENCODED: &percent_encoding::AsciiSet = &percent_encoding::NON_ALPHANUMERIC
    .remove(b'-')
    .remove(b'_')
    .remove(b'.')
    .remove(b'~');

pub(super) fn encode(value: &str) -> String {
    percent_encoding::utf8_percent_encode(value, ENCODED).to_string()
}

/// One path segment, percent-encoded. `.`, `..` and the empty segment are refused: URL parsing
/// resolves them (even spelled `%2E%2E`) against the path before the request leaves, which would
/// send the caller's token to another route.
pub(super) fn segment(value: &str) -> anyhow::Result<String> {
    if matches!(value, "" | "." | "..") {
        bail!("`{}` is not an id", line(value));
    }
    Ok(encode(value))
}

/// Refuses a plain `http://` URL to anything but this machine's loopback unless
/// `--insecure-http`: the bearer token would cross the network in clear.
pub(super) fn check_api_url(api_url: &str, insecure_http: bool) -> anyhow::Result<()> {
    let url = reqwest::Url::parse(api_url)
        .with_context(|| format!("--api-url {} is not a URL", line(api_url)))?;
    // The parser has already lowercased the host and turned every spelling of an IPv4 address
    // (`127.1`, `0x7f.0.0.1`) into dotted decimal, so these comparisons see what is connected to.
    let loopback = match url.host_str() {
        Some("localhost") => true,
        Some(host) => host
            .trim_start_matches('[')
            .trim_end_matches(']')
            .parse::<std::net::IpAddr>()
            .is_ok_and(|address| address.is_loopback()),
        None => false,
    };
    match url.scheme() {
        "https" => Ok(()),
        "http" if loopback || insecure_http => Ok(()),
        "http" => bail!(
            "--api-url {}: plain http:// to a host other than loopback would send the token in \
             clear; use https://, or pass --insecure-http to send it anyway",
            line(api_url)
        ),
        other => bail!(
            "--api-url {}: the scheme is `{}`: use https:// (or http:// to loopback)",
            line(api_url),
            line(other)
        ),
    }
}

/// The token from `--api-token-file` (its first line) if given, else from `SV0_API_TOKEN`.
pub(super) fn api_token(file: Option<&std::path::Path>) -> anyhow::Result<String> {
    let token = match file {
        Some(file) => {
            let contents = std::fs::read_to_string(file)
                .with_context(|| format!("--api-token-file {}", file.display()))?;
            let token = contents.lines().next().unwrap_or("").trim().to_string();
            if token.is_empty() {
                bail!(
                    "--api-token-file {}: the first line is empty",
                    file.display()
                );
            }
            token
        }
        None => match std::env::var("SV0_API_TOKEN") {
            Ok(token) if !token.trim().is_empty() => token.trim().to_string(),
            _ => bail!("no API token: set SV0_API_TOKEN or pass --api-token-file FILE"),
        },
    };
    Ok(token)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_loopback_takes_plain_http() {
        for url in [
            "http://127.0.0.1:8080",
            "http://127.9.9.9",
            "http://127.1",
            "http://0x7f.0.0.1",
            "http://[::1]:8080",
            "http://LocalHost:1",
            "https://sv0-admin.internal",
        ] {
            assert!(check_api_url(url, false).is_ok(), "{url}");
        }
        for url in [
            "http://10.1.2.3:1",
            "http://128.0.0.1",
            "http://[::ffff:10.0.0.1]",
            "http://localhost.evil.example",
            "http://127.0.0.1.nip.io",
            "http://127.0.0.1:1@10.1.2.3",
            "ftp://127.0.0.1",
        ] {
            let refused = check_api_url(url, false).unwrap_err().to_string();
            assert!(
                refused.contains("--insecure-http") || refused.contains("scheme"),
                "{url}: {refused}"
            );
        }
        assert!(check_api_url("http://10.1.2.3:1", true).is_ok());
    }

    #[test]
    fn segments_cannot_leave_their_place_in_the_path() {
        assert_eq!(segment("../tenants").unwrap(), "..%2Ftenants");
        assert_eq!(segment("a b?c#d%").unwrap(), "a%20b%3Fc%23d%25");
        for dots in ["", ".", ".."] {
            assert!(segment(dots).is_err(), "{dots:?}");
        }
    }
}
