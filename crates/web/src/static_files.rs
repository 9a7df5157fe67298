//! Static files embedded at build time (`crates/web/static/`), served from `/css/{name}`.

use axum::extract::Path;
use axum::http::header;
use axum::response::{IntoResponse, Response};

use crate::Error;

/// The stylesheet.
const STYLE_CSS: &str = include_str!("../static/style.css");

/// `GET /css/{name}`.
pub(crate) async fn get_css(Path(name): Path<String>) -> Result<Response, Error> {
    match name.as_str() {
        "style.css" => Ok((
            [
                (header::CONTENT_TYPE, "text/css; charset=utf-8"),
                (header::CACHE_CONTROL, "public, max-age=3600"),
            ],
            STYLE_CSS,
        )
            .into_response()),
        _ => Err(Error::NotFound("No such static resource".to_owned())),
    }
}
