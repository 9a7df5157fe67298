//! The fake's write side and App endpoints: status POSTs (recorded, or failed as scripted),
//! check runs (created and updated, for installation tokens only), the repository's installation
//! and installation tokens (for a JWT).

use axum::body::Bytes;
use axum::extract::{Path, State};
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::Response;
use serde_json::{Value, json};

use super::{CheckRunCall, Failure, PostedStatus, Shared, fixture, json_response, lock, record};

pub(super) async fn post_status(
    State(data): State<Shared>,
    Path((owner, repo, sha)): Path<(String, String, String)>,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    let path = format!("/repos/{owner}/{repo}/statuses/{sha}");
    let failure = lock(&data).failures.pop_front();
    let response = match failure.filter(|f| *f != Failure::Accept) {
        Some(Failure::Status(code)) => json_response(
            StatusCode::from_u16(code).expect("a valid status"),
            &json!({"message": "Server Error"}),
        ),
        Some(Failure::Accept) => unreachable!("filtered out above"),
        Some(Failure::SecondaryRateLimit(seconds)) => {
            let mut response = json_response(
                StatusCode::FORBIDDEN,
                &json!({"message": "You have exceeded a secondary rate limit. Please wait a few minutes before you try again."}),
            );
            response.headers_mut().insert(
                header::RETRY_AFTER,
                HeaderValue::from_str(&seconds.to_string()).expect("a header value"),
            );
            response
        }
        None => match serde_json::from_slice::<Value>(&body) {
            Err(e) => json_response(StatusCode::BAD_REQUEST, &json!({"message": e.to_string()})),
            Ok(sent) => {
                let field = |name: &str| sent.get(name).and_then(Value::as_str).map(str::to_owned);
                let status = PostedStatus {
                    repo: format!("{owner}/{repo}"),
                    sha: sha.clone(),
                    context: field("context").unwrap_or_else(|| "default".to_owned()),
                    state: field("state").unwrap_or_default(),
                    description: field("description").unwrap_or_default(),
                    target_url: field("target_url"),
                };
                let valid = ["pending", "success", "failure", "error"]
                    .contains(&status.state.as_str())
                    && status.description.chars().count() <= 140;
                if valid {
                    let mut answer =
                        fixture("openapi/response-examples/repos.create-commit-status.201.json");
                    answer["state"] = json!(status.state);
                    answer["context"] = json!(status.context);
                    answer["description"] = json!(status.description);
                    answer["target_url"] = json!(status.target_url);
                    lock(&data).statuses.push(status);
                    json_response(StatusCode::CREATED, &answer)
                } else {
                    // The shape of GitHub's validation errors (fixtures `api/errors`).
                    let mut answer =
                        fixture("api/errors/normalized-fixture.json")[0]["response"].clone();
                    answer["errors"][0]["resource"] = json!("Status");
                    json_response(StatusCode::UNPROCESSABLE_ENTITY, &answer)
                }
            }
        },
    };
    record(&data, "POST", path, &headers, response.status());
    response
}

pub(super) async fn post_check_run(
    State(data): State<Shared>,
    Path((owner, repo)): Path<(String, String)>,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    check_run(data, owner, repo, None, headers, body)
}

pub(super) async fn patch_check_run(
    State(data): State<Shared>,
    Path((owner, repo, id)): Path<(String, String, u64)>,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    check_run(data, owner, repo, Some(id), headers, body)
}

/// Creates (`id` = `None`) or updates a check run; only an App's installation token may.
fn check_run(
    data: Shared,
    owner: String,
    repo: String,
    id: Option<u64>,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    let is_installation = headers
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.starts_with("Bearer ghs_"));
    let response = match serde_json::from_slice::<Value>(&body) {
        _ if !is_installation => json_response(
            StatusCode::FORBIDDEN,
            &json!({"message": "You must authenticate via a GitHub App."}),
        ),
        Err(e) => json_response(StatusCode::BAD_REQUEST, &json!({"message": e.to_string()})),
        Ok(sent) => {
            let mut data_guard = lock(&data);
            let method = if id.is_some() { "PATCH" } else { "POST" };
            let id = id.unwrap_or(1000 + data_guard.check_runs.len() as u64);
            data_guard.check_runs.push(CheckRunCall {
                repo: format!("{owner}/{repo}"),
                method: method.to_owned(),
                id,
                body: sent.clone(),
            });
            drop(data_guard);
            let mut answer = fixture(
                "openapi/response-examples/checks.create.201.example-of-in-progress-conclusion.json",
            );
            answer["id"] = json!(id);
            answer["name"] = sent["name"].clone();
            answer["status"] = sent["status"].clone();
            json_response(StatusCode::CREATED, &answer)
        }
    };
    let method = if id.is_some() { "PATCH" } else { "POST" };
    record(
        &data,
        method,
        format!("/repos/{owner}/{repo}/check-runs"),
        &headers,
        response.status(),
    );
    response
}

pub(super) async fn get_installation(
    State(data): State<Shared>,
    Path((owner, repo)): Path<(String, String)>,
    headers: HeaderMap,
) -> Response {
    let is_jwt = headers
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.starts_with("Bearer ey"));
    let response = if is_jwt {
        let mut body = fixture("openapi/response-examples/apps.get-repo-installation.200.json");
        body["id"] = json!(1);
        body["account"]["login"] = json!(owner);
        json_response(StatusCode::OK, &body)
    } else {
        json_response(
            StatusCode::UNAUTHORIZED,
            &json!({"message": "A JSON web token could not be decoded"}),
        )
    };
    record(
        &data,
        "GET",
        format!("/repos/{owner}/{repo}/installation"),
        &headers,
        response.status(),
    );
    response
}

pub(super) async fn post_access_token(
    State(data): State<Shared>,
    Path(id): Path<u64>,
    headers: HeaderMap,
) -> Response {
    let is_jwt = headers
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.starts_with("Bearer ey"));
    let response = if is_jwt {
        let (n, lifetime) = {
            let mut data = lock(&data);
            data.tokens_issued += 1;
            (data.tokens_issued, data.token_lifetime_secs)
        };
        let mut body =
            fixture("openapi/response-examples/apps.create-installation-access-token.201.json");
        body["token"] = json!(format!("ghs_installation_token_{n}"));
        let expires = chrono_like_rfc3339(lifetime);
        body["expires_at"] = json!(expires);
        json_response(StatusCode::CREATED, &body)
    } else {
        json_response(
            StatusCode::UNAUTHORIZED,
            &json!({"message": "A JSON web token could not be decoded"}),
        )
    };
    record(
        &data,
        "POST",
        format!("/app/installations/{id}/access_tokens"),
        &headers,
        response.status(),
    );
    response
}

/// Now plus `seconds`, as `YYYY-MM-DDTHH:MM:SSZ` (UTC), without a date library.
fn chrono_like_rfc3339(seconds: i64) -> String {
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_secs() as i64);
    let t = now + seconds;
    let days = t.div_euclid(86_400);
    let secs = t.rem_euclid(86_400);
    // Howard Hinnant's civil_from_days.
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let y = yoe + era * 400;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = doy - (153 * mp + 2) / 5 + 1;
    let m = if mp < 10 { mp + 3 } else { mp - 9 };
    let y = if m <= 2 { y + 1 } else { y };
    format!(
        "{y:04}-{m:02}-{d:02}T{:02}:{:02}:{:02}Z",
        secs / 3600,
        (secs % 3600) / 60,
        secs % 60
    )
}
