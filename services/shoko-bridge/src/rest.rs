//! Shoko's REST API (`/api/v3/…`): authenticated GETs that answer JSON, for the import
//! folders and for the catch-up after a reconnection.

use reqwest::Url;
use serde_json::Value;
use shared::settings::Secret;

use crate::signalr::{HubError, check_status, redact};

/// Where Shoko's REST API is and how to authenticate to it.
#[derive(Debug, Clone)]
pub struct ShokoApi {
    http: reqwest::Client,
    base: Url,
    api_key: Option<Secret>,
}

impl ShokoApi {
    pub fn new(http: reqwest::Client, base: &Url, api_key: Option<Secret>) -> Self {
        Self { http, base: base.clone(), api_key }
    }

    /// `GET <base>/api/v3/<path>?<query>` with the key in the `apikey` header; the JSON body.
    /// `step` names the call in errors (which never carry the key).
    pub async fn get(&self, step: &'static str, path: &str, query: &[(&str, &str)]) -> Result<Value, HubError> {
        let mut url = self.base.clone();
        let prefix = url.path().trim_end_matches('/').to_owned();
        url.set_path(&format!("{prefix}/api/v3/{path}"));
        if !query.is_empty() {
            url.query_pairs_mut().extend_pairs(query);
        }
        let mut request = self.http.get(url);
        if let Some(key) = &self.api_key {
            request = request.header("apikey", key.expose());
        }
        let transport = |e: reqwest::Error| HubError::Transport {
            step,
            message: redact(e.without_url().to_string(), self.api_key.as_ref()),
        };
        let response = request.send().await.map_err(transport)?;
        check_status(step, response.status().as_u16())?;
        response.json().await.map_err(transport)
    }
}
