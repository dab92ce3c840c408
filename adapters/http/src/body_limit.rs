use crate::error::{ApiError, ErrorCode, Status};
use poem::{error::ReadBodyError, http::Method, Endpoint, IntoResponse, Request, Response, Result};

/// Caps request bodies, with or without a `Content-Length`, so an oversized or endless body
/// gets a 413 instead of filling memory. (poem's own `SizeLimit` refuses requests that have no
/// `Content-Length` at all, which includes ordinary GETs.)
///
/// The body must also arrive within `read_timeout`: a client trickling a body one byte at a time
/// would otherwise hold its connection and task for as long as it likes.
pub(crate) async fn limit_body<E: Endpoint>(
    next: E,
    mut req: Request,
    max_bytes: usize,
    read_timeout: std::time::Duration,
) -> Result<Response> {
    // Nothing reads a GET or HEAD body, so none is buffered or waited for: those operations
    // answer (and document) no body errors.
    if matches!(*req.method(), Method::GET | Method::HEAD) {
        return next.call(req).await.map(IntoResponse::into_response);
    }
    let declared = req
        .headers()
        .get(poem::http::header::CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse::<u64>().ok());
    if declared.is_some_and(|len| len > max_bytes as u64) {
        return Err(too_large(max_bytes));
    }
    let body = tokio::time::timeout(read_timeout, req.take_body().into_bytes_limit(max_bytes))
        .await
        .map_err(|_| too_slow(read_timeout))?
        .map_err(|e| match e {
            ReadBodyError::PayloadTooLarge => too_large(max_bytes),
            other => poem::Error::from(other),
        })?;
    req.set_body(body);
    next.call(req).await.map(IntoResponse::into_response)
}

fn too_slow(read_timeout: std::time::Duration) -> poem::Error {
    let error = ApiError::new(
        Status::RequestTimeout,
        ErrorCode::RequestTimeout,
        format!(
            "the request body did not arrive within {} seconds",
            read_timeout.as_secs()
        ),
    );
    let mut response = error.into_response();
    // The rest of a trickled body may still be on its way; the connection cannot be reused.
    response.headers_mut().insert(
        poem::http::header::CONNECTION,
        poem::http::HeaderValue::from_static("close"),
    );
    poem::Error::from_response(response)
}

fn too_large(max_bytes: usize) -> poem::Error {
    ApiError::new(
        Status::PayloadTooLarge,
        ErrorCode::PayloadTooLarge,
        format!("request body must be at most {max_bytes} bytes"),
    )
    .into()
}
