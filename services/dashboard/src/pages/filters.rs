//! The filters of the list pages (`?q=`, `?user=`, `?state=`, `?media_type=`, `?page=`), the
//! remembered "My requests" user, and the pager.
//!
//! The user filter is remembered in a cookie: `?user=alice` sets it, `?user=` clears it, and a
//! page without `user` in its query uses it. It works without JavaScript and on every page.

use axum::http::{HeaderMap, HeaderValue, header};
use serde::Deserialize;
use shared::events::MediaType;
use shared::model::{ListQuery, State};

/// Cards per page.
pub const PAGE_SIZE: u32 = 24;
const USER_COOKIE: &str = "tracker_user";

/// The query string of `/`, `/history` and their list fragments. Every field is text, so a
/// malformed value is ignored rather than refused.
#[derive(Debug, Default, Deserialize)]
pub(crate) struct PageParams {
    pub page: Option<String>,
    pub q: Option<String>,
    pub user: Option<String>,
    pub state: Option<String>,
    pub media_type: Option<String>,
}

/// Which requests a list page may show.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum ListKind {
    /// Everything not archived, declined or cancelled: in progress, just available, or failed
    /// (waiting for a retry).
    Active,
    /// Finished requests.
    History,
}

impl ListKind {
    pub fn states(self) -> Vec<State> {
        match self {
            Self::Active => State::ALL
                .into_iter()
                .filter(|s| !matches!(s, State::Completed | State::Declined | State::Cancelled))
                .collect(),
            Self::History => {
                vec![State::Available, State::Completed, State::Failed, State::Declined, State::Cancelled]
            }
        }
    }

    pub fn path(self) -> &'static str {
        match self {
            Self::Active => "/",
            Self::History => "/history",
        }
    }

    pub fn fragment(self) -> &'static str {
        match self {
            Self::Active => "/fragments/active",
            Self::History => "/fragments/history",
        }
    }
}

/// One `<option>` of a filter select.
#[derive(Debug, Clone)]
pub(crate) struct Opt {
    pub value: &'static str,
    pub label: &'static str,
    pub selected: bool,
}

/// The filters as understood, ready for the query, the form and the links.
#[derive(Debug, Clone)]
pub(crate) struct Filters {
    pub kind: ListKind,
    pub page: u32,
    pub q: String,
    pub user: String,
    pub state: Option<State>,
    pub media_type: Option<MediaType>,
    /// `Some` when the page's query named a user: the cookie to set (empty = forget).
    pub remember: Option<String>,
}

impl Filters {
    pub fn new(kind: ListKind, p: &PageParams, headers: &HeaderMap) -> Self {
        let remember = p.user.as_deref().map(|u| u.trim().to_owned());
        let user = remember.clone().or_else(|| cookie_user(headers)).unwrap_or_default();
        let state = p.state.as_deref().and_then(State::parse).filter(|s| kind.states().contains(s));
        Self {
            kind,
            page: p.page.as_deref().and_then(|n| n.trim().parse().ok()).filter(|n| *n >= 1).unwrap_or(1),
            q: p.q.as_deref().unwrap_or_default().trim().to_owned(),
            user,
            state,
            media_type: p.media_type.as_deref().and_then(MediaType::parse),
            remember,
        }
    }

    pub fn query(&self) -> ListQuery {
        ListQuery {
            states: self.state.map_or_else(|| self.kind.states(), |s| vec![s]),
            user: Some(self.user.clone()).filter(|u| !u.is_empty()),
            media_type: self.media_type,
            q: Some(self.q.clone()).filter(|q| !q.is_empty()),
            limit: Some(PAGE_SIZE),
            offset: Some((self.page - 1).saturating_mul(PAGE_SIZE)),
        }
    }

    /// Whether anything narrows the list (the empty state then says so).
    pub fn narrowed(&self) -> bool {
        !self.q.is_empty() || !self.user.is_empty() || self.state.is_some() || self.media_type.is_some()
    }

    /// The query string for `page` with the same filters (the user always explicit).
    pub fn query_string(&self, page: u32) -> String {
        let mut s = form_urlencoded::Serializer::new(String::new());
        for (k, v) in [("q", self.q.as_str()), ("user", self.user.as_str())] {
            if !v.is_empty() {
                s.append_pair(k, v);
            }
        }
        if let Some(st) = self.state {
            s.append_pair("state", st.as_str());
        }
        if let Some(m) = self.media_type {
            s.append_pair("media_type", m.as_str());
        }
        if page > 1 {
            s.append_pair("page", &page.to_string());
        }
        s.finish()
    }

    pub fn state_options(&self) -> Vec<Opt> {
        let all = match self.kind {
            ListKind::Active => "All active",
            ListKind::History => "All finished",
        };
        let mut opts = vec![Opt { value: "", label: all, selected: self.state.is_none() }];
        opts.extend(self.kind.states().into_iter().map(|s| Opt {
            value: s.as_str(),
            label: s.label(),
            selected: self.state == Some(s),
        }));
        opts
    }

    pub fn media_options(&self) -> Vec<Opt> {
        [
            ("", "Films and series", None),
            ("movie", "Films", Some(MediaType::Movie)),
            ("tv", "Series", Some(MediaType::Tv)),
        ]
        .into_iter()
        .map(|(value, label, m)| Opt { value, label, selected: self.media_type == m })
        .collect()
    }

    /// The `Set-Cookie` header remembering (or forgetting) the user, if the query named one.
    pub fn cookie(&self) -> Option<HeaderValue> {
        let user = self.remember.as_ref()?;
        let value = if user.is_empty() {
            format!("{USER_COOKIE}=; Path=/; Max-Age=0; SameSite=Lax; HttpOnly")
        } else {
            let encoded: String = form_urlencoded::byte_serialize(user.as_bytes()).collect();
            format!("{USER_COOKIE}={encoded}; Path=/; Max-Age=31536000; SameSite=Lax; HttpOnly")
        };
        HeaderValue::from_str(&value).ok()
    }
}

fn cookie_user(headers: &HeaderMap) -> Option<String> {
    headers
        .get_all(header::COOKIE)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(';'))
        .filter_map(|kv| kv.trim().split_once('='))
        .find(|(k, _)| *k == USER_COOKIE)
        .map(|(_, v)| form_urlencoded::parse(format!("u={v}").as_bytes()).map(|(_, v)| v.into_owned()).collect())
        .filter(|u: &String| !u.is_empty())
}

/// Previous/next links of a list.
#[derive(Debug, Clone)]
pub(crate) struct Pager {
    pub page: u32,
    pub pages: u32,
    pub prev: Option<String>,
    pub next: Option<String>,
}

impl Pager {
    pub fn new(f: &Filters, total: u64) -> Self {
        let pages = (total.div_ceil(u64::from(PAGE_SIZE)).max(1)).min(u64::from(u32::MAX)) as u32;
        let link = |page: u32| format!("{}?{}", f.kind.path(), f.query_string(page));
        Self {
            page: f.page,
            pages,
            prev: (f.page > 1).then(|| link((f.page - 1).min(pages))),
            next: (f.page < pages).then(|| link(f.page + 1)),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Parses a query string into the params, as axum's `Query` would.
    fn params(q: &str) -> PageParams {
        let map: serde_json::Map<String, serde_json::Value> =
            form_urlencoded::parse(q.as_bytes()).map(|(k, v)| (k.into_owned(), v.into_owned().into())).collect();
        serde_json::from_value(map.into()).unwrap()
    }

    #[test]
    fn the_user_comes_from_the_query_or_else_the_cookie() {
        let mut headers = HeaderMap::new();
        headers.insert(header::COOKIE, HeaderValue::from_static("a=b; tracker_user=b%C3%B6b%20x"));
        let f = Filters::new(ListKind::Active, &params(""), &headers);
        assert_eq!(f.user, "böb x");
        assert!(f.cookie().is_none(), "nothing to remember");
        let f = Filters::new(ListKind::Active, &params("user=alice"), &headers);
        assert_eq!(f.user, "alice");
        assert!(f.cookie().unwrap().to_str().unwrap().starts_with("tracker_user=alice;"));
        let f = Filters::new(ListKind::Active, &params("user="), &headers);
        assert_eq!(f.user, "");
        assert!(f.cookie().unwrap().to_str().unwrap().contains("Max-Age=0"));
    }

    #[test]
    fn states_outside_the_page_and_bad_pages_are_ignored() {
        let f = Filters::new(ListKind::Active, &params("state=cancelled&page=x"), &HeaderMap::new());
        assert_eq!((f.state, f.page), (None, 1));
        assert!(!f.query().states.contains(&State::Cancelled));
        let f = Filters::new(ListKind::History, &params("state=cancelled&page=3&media_type=tv"), &HeaderMap::new());
        assert_eq!(f.query().states, [State::Cancelled]);
        assert_eq!(f.query().offset, Some(2 * PAGE_SIZE));
        assert_eq!(f.query().media_type, Some(MediaType::Tv));
    }

    #[test]
    fn pager_links_keep_the_filters() {
        let f = Filters::new(ListKind::Active, &params("q=a%26b&page=2"), &HeaderMap::new());
        let p = Pager::new(&f, 100);
        assert_eq!(p.pages, 5);
        assert_eq!(p.prev.as_deref(), Some("/?q=a%26b"));
        assert_eq!(p.next.as_deref(), Some("/?q=a%26b&page=3"));
        assert!(Pager::new(&f, 0).next.is_none());
    }
}
