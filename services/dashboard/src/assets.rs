//! The stylesheet, the script and htmx, embedded in the binary and served from `/static/`.
//!
//! Each URL carries a hash of the file's content (`/static/app.css?v=1a2b3c4d5e`), so a
//! browser may keep a file for a year: a new build changes the hash and so the URL. A request
//! with another (or no) version gets the file too, but with `no-cache`, so a page cached from an
//! older build still works. Nothing is fetched from a CDN: the dashboard works offline.

use std::sync::LazyLock;

use axum::extract::{Path, Query};
use axum::http::{StatusCode, header};
use axum::response::{IntoResponse, Response};
use serde::Deserialize;

struct Asset {
    name: &'static str,
    content_type: &'static str,
    body: &'static [u8],
}

const FILES: [Asset; 3] = [
    Asset { name: "app.css", content_type: "text/css; charset=utf-8", body: include_bytes!("../static/app.css") },
    Asset { name: "app.js", content_type: "text/javascript; charset=utf-8", body: include_bytes!("../static/app.js") },
    // htmx 2.0.11 from the npm registry (htmx.org), BSD-0 licence: see static/vendor/README.md.
    Asset {
        name: "htmx.min.js",
        content_type: "text/javascript; charset=utf-8",
        body: include_bytes!("../static/vendor/htmx-2.0.11.min.js"),
    },
];

/// The content hash of each file, in the order of [`FILES`].
static VERSIONS: LazyLock<Vec<String>> = LazyLock::new(|| FILES.iter().map(|a| version(a.body)).collect());

/// FNV-1a over the bytes, 40 bits in hex: enough to tell builds apart, short in a URL.
fn version(bytes: &[u8]) -> String {
    let hash = bytes.iter().fold(0xcbf2_9ce4_8422_2325_u64, |h, b| (h ^ u64::from(*b)).wrapping_mul(0x0100_0000_01b3));
    format!("{:010x}", hash >> 24)
}

/// The versioned URL of an embedded file, for templates: `/static/app.css?v=…`.
pub fn url(name: &str) -> String {
    let i = FILES.iter().position(|a| a.name == name).unwrap_or_else(|| panic!("no embedded asset {name}"));
    format!("/static/{}?v={}", name, VERSIONS[i])
}

#[derive(Debug, Deserialize)]
pub(crate) struct VersionParam {
    v: Option<String>,
}

/// `GET /static/{name}`.
pub(crate) async fn serve(Path(name): Path<String>, Query(p): Query<VersionParam>) -> Response {
    let Some(i) = FILES.iter().position(|a| a.name == name) else {
        return (StatusCode::NOT_FOUND, "no such file").into_response();
    };
    let asset = &FILES[i];
    let cache =
        if p.v.as_deref() == Some(VERSIONS[i].as_str()) { "public, max-age=31536000, immutable" } else { "no-cache" };
    let headers = [
        (header::CONTENT_TYPE, asset.content_type),
        (header::CACHE_CONTROL, cache),
        (header::X_CONTENT_TYPE_OPTIONS, "nosniff"),
    ];
    (headers, asset.body).into_response()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn urls_carry_a_content_hash() {
        let u = url("app.css");
        assert!(u.starts_with("/static/app.css?v="), "{u}");
        assert_eq!(u.len(), "/static/app.css?v=".len() + 10);
        assert_ne!(version(b"a"), version(b"b"));
    }
}
