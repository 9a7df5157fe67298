//! The fake's OAuth App endpoints: the code exchange, `GET /user` and `GET /user/orgs`.

use axum::body::Bytes;
use axum::extract::State;
use axum::http::{HeaderMap, StatusCode, header};
use axum::response::Response;
use serde_json::{Value, json};

use super::{Shared, fixture, json_response, lock, record};

pub(super) async fn post_oauth_token(
    State(data): State<Shared>,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    let sent: Value = serde_json::from_slice(&body).unwrap_or(Value::Null);
    let oauth = lock(&data).oauth.clone();
    let field = |name: &str| {
        sent.get(name)
            .and_then(Value::as_str)
            .unwrap_or("")
            .to_owned()
    };
    let answer = match oauth {
        Some((id, secret, code, login))
            if field("client_id") == id
                && field("client_secret") == secret
                && field("code") == code =>
        {
            json!({"access_token": format!("gho_{login}"), "token_type": "bearer", "scope": "read:org,repo"})
        }
        _ => json!({
            "error": "bad_verification_code",
            "error_description": "The code passed is incorrect or expired.",
        }),
    };
    // GitHub answers 200 even for a bad code.
    let response = json_response(StatusCode::OK, &answer);
    record(
        &data,
        "POST",
        "/login/oauth/access_token".to_owned(),
        &headers,
        response.status(),
    );
    response
}

/// The login whose OAuth token `headers` carry.
fn oauth_login(data: &Shared, headers: &HeaderMap) -> Option<String> {
    let data = lock(data);
    if data.oauth_revoked {
        return None;
    }
    let login = data.oauth.as_ref()?.3.clone();
    let given = headers.get(header::AUTHORIZATION)?.to_str().ok()?;
    (given == format!("Bearer gho_{login}")).then_some(login)
}

pub(super) async fn get_user(State(data): State<Shared>, headers: HeaderMap) -> Response {
    let response = match oauth_login(&data, &headers) {
        Some(login) => {
            let mut body = fixture(
                "openapi/response-examples/users.get-authenticated.200.response-with-public-profile-information.json",
            );
            body["login"] = json!(login);
            json_response(StatusCode::OK, &body)
        }
        None => json_response(
            StatusCode::UNAUTHORIZED,
            &json!({"message": "Requires authentication"}),
        ),
    };
    record(
        &data,
        "GET",
        "/user".to_owned(),
        &headers,
        response.status(),
    );
    response
}

pub(super) async fn get_user_orgs(State(data): State<Shared>, headers: HeaderMap) -> Response {
    let (failing, orgs) = {
        let data = lock(&data);
        (data.oauth_failing, data.oauth_orgs.clone())
    };
    let listed = fixture("openapi/response-examples/orgs.list-for-authenticated-user.200.json");
    let response = match oauth_login(&data, &headers) {
        _ if failing => json_response(StatusCode::BAD_GATEWAY, &json!({"message": "Server Error"})),
        Some(_) => match orgs {
            None => json_response(StatusCode::OK, &listed),
            Some(orgs) => {
                let template = listed.get(0).cloned().unwrap_or_else(|| json!({}));
                let body: Vec<Value> = orgs
                    .into_iter()
                    .map(|org| {
                        let mut entry = template.clone();
                        entry["login"] = json!(org);
                        entry
                    })
                    .collect();
                json_response(StatusCode::OK, &json!(body))
            }
        },
        None => json_response(
            StatusCode::UNAUTHORIZED,
            &json!({"message": "Requires authentication"}),
        ),
    };
    record(
        &data,
        "GET",
        "/user/orgs".to_owned(),
        &headers,
        response.status(),
    );
    response
}
