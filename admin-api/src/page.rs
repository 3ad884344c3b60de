//! Keyset pagination: every list is newest first (or, for tenants, by id), at most `limit` items
//! (1 to 500, default 50), and `next_cursor` names where the next page starts; there is no
//! offset. A cursor is the last item's id, opaque to callers; a malformed one is a 400.

use mongodb::bson::oid::ObjectId;
use serde::Serialize;
use utoipa::ToSchema;

use crate::error::ApiError;

pub(crate) const DEFAULT_LIMIT: u32 = 50;
pub(crate) const MAX_LIMIT: u32 = 500;

/// One page of a list.
#[derive(Debug, Serialize, ToSchema)]
pub struct Page<T> {
    pub items: Vec<T>,
    /// Pass as `cursor` for the next page; absent on the last page.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub next_cursor: Option<String>,
}

/// The limit asked for, checked; the store is asked for one more, to know whether a next page
/// exists.
pub(crate) fn limit(asked: Option<u32>) -> Result<u32, ApiError> {
    match asked.unwrap_or(DEFAULT_LIMIT) {
        n @ 1..=MAX_LIMIT => Ok(n),
        _ => Err(ApiError::invalid(
            "limit",
            format!("must be 1 to {MAX_LIMIT}"),
        )),
    }
}

pub(crate) fn object_id_cursor(cursor: Option<&str>) -> Result<Option<ObjectId>, ApiError> {
    cursor
        .map(|c| {
            ObjectId::parse_str(c)
                .map_err(|_| ApiError::invalid("cursor", "not a cursor this API returned"))
        })
        .transpose()
}

/// Cuts the store's `limit + 1` items to a page, its cursor the last item's key.
pub(crate) fn page<T, V>(
    mut items: Vec<T>,
    limit: u32,
    key: impl Fn(&T) -> String,
    view: impl Fn(T) -> V,
) -> Page<V> {
    let more = items.len() > limit as usize;
    items.truncate(limit as usize);
    let next_cursor = if more { items.last().map(&key) } else { None };
    Page {
        items: items.into_iter().map(view).collect(),
        next_cursor,
    }
}
