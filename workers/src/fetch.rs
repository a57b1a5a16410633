//! App files over HTTP(S) (apps-workers.md §3.3): `GET {app_files_base_url}/{path}
//! ?use_proxy=true` with `Authorization: Bearer {token}`, through one shared `reqwest`
//! client (rustls; redirects followed, the token dropped on a redirect to another host).

use crate::error::{WorkerError, WorkerResult};
use std::time::Duration;

/// The longest a single file download may take.
const FETCH_TIMEOUT: Duration = Duration::from_secs(120);

/// Fetches app files; cheap to clone.
#[derive(Debug, Clone)]
pub(crate) struct AppFiles {
    http: reqwest::Client,
}

/// An entry of a directory listing (`GET {base}/{dir}/`): a file or a directory name.
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct DirEntry {
    pub(crate) name: String,
    pub(crate) is_dir: bool,
}

impl AppFiles {
    /// Errors: the TLS backend could not be set up.
    pub(crate) fn new() -> anyhow::Result<Self> {
        let http = reqwest::Client::builder()
            .timeout(FETCH_TIMEOUT)
            .user_agent(concat!("rhizo-workers/", env!("CARGO_PKG_VERSION")))
            .build()?;
        Ok(AppFiles { http })
    }

    /// The body of `{base}/{path}?use_proxy=true`.
    ///
    /// Errors: [`WorkerError::Fetch`] with the status (and the start of the server's
    /// message) or the transport error.
    pub(crate) async fn get(
        &self,
        base: &str,
        path: &str,
        token: Option<&str>,
    ) -> WorkerResult<Vec<u8>> {
        let url = format!(
            "{}/{}?use_proxy=true",
            base.trim_end_matches('/'),
            path.trim_start_matches('/')
        );
        let mut req = self.http.get(&url);
        if let Some(t) = token.filter(|t| !t.is_empty()) {
            req = req.bearer_auth(t);
        }
        let fail = |reason: String| WorkerError::Fetch {
            url: url.clone(),
            reason,
        };
        let resp = req.send().await.map_err(|e| fail(e.to_string()))?;
        let status = resp.status();
        let body = resp.bytes().await.map_err(|e| fail(e.to_string()))?;
        if !status.is_success() {
            let text = String::from_utf8_lossy(&body[..body.len().min(300)]).into_owned();
            return Err(fail(format!("HTTP {status}: {text}")));
        }
        Ok(body.to_vec())
    }

    /// The entries of directory `dir` of the app (`GET {base}/{dir}/`, which the artifact
    /// routes answer with a JSON list of `{name, type: "file"|"directory"}`).
    ///
    /// Errors: [`WorkerError::Fetch`] for a failed request or a body that is not such a list.
    pub(crate) async fn list(
        &self,
        base: &str,
        dir: &str,
        token: Option<&str>,
    ) -> WorkerResult<Vec<DirEntry>> {
        let path = format!("{}/", dir.trim_end_matches('/'));
        let body = self.get(base, &path, token).await?;
        parse_listing(&body).ok_or_else(|| WorkerError::Fetch {
            url: format!("{}/{path}", base.trim_end_matches('/')),
            reason: "the answer is not a directory listing".into(),
        })
    }
}

/// Reads a JSON directory listing: a list of `{name, type}`, or `{items: [...]}`.
pub(crate) fn parse_listing(body: &[u8]) -> Option<Vec<DirEntry>> {
    let v: serde_json::Value = serde_json::from_slice(body).ok()?;
    let items = v.as_array().or_else(|| v.get("items")?.as_array())?;
    items
        .iter()
        .map(|i| {
            Some(DirEntry {
                name: i.get("name")?.as_str()?.to_owned(),
                is_dir: i.get("type").and_then(|t| t.as_str()) == Some("directory"),
            })
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn listings_in_both_shapes() {
        let l =
            parse_listing(br#"[{"name":"a.txt","type":"file"},{"name":"d","type":"directory"}]"#)
                .unwrap();
        assert_eq!(
            l,
            [
                DirEntry {
                    name: "a.txt".into(),
                    is_dir: false
                },
                DirEntry {
                    name: "d".into(),
                    is_dir: true
                }
            ]
        );
        assert_eq!(
            parse_listing(br#"{"items":[{"name":"x"}]}"#).unwrap().len(),
            1
        );
        assert!(parse_listing(b"hello").is_none());
    }
}
