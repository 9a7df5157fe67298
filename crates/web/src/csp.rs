//! The Content-Security-Policy of pages that run one of this crate's inline scripts: the site's
//! policy ([`CONTENT_SECURITY_POLICY`](crate::router::CONTENT_SECURITY_POLICY), no script at
//! all), plus that one script by its SHA-256 and requests back to this site (`connect-src
//! 'self'`: the scripts fetch pages, log parts and the event stream).

use base64::Engine as _;
use sha2::Digest as _;

/// `sha256-<base64>` of `script`, as a CSP source.
pub(crate) fn script_hash(script: &str) -> String {
    let digest = sha2::Sha256::digest(script.as_bytes());
    format!(
        "sha256-{}",
        base64::engine::general_purpose::STANDARD.encode(digest)
    )
}

/// The policy of a page whose only script is `script`, inlined.
pub(crate) fn policy_with_script(script: &str) -> String {
    format!(
        "{}; script-src '{}'; connect-src 'self'",
        crate::router::CONTENT_SECURITY_POLICY,
        script_hash(script)
    )
}

#[cfg(test)]
mod tests {
    #[test]
    fn policies_allow_the_script_by_hash() {
        // printf 'x' | openssl dgst -sha256 -binary | base64
        assert_eq!(
            super::script_hash("x"),
            "sha256-LXEWQrcmsEQBYnyp+6wy9chTD7GQPMTbAiWHF5IaSIE="
        );
        let policy = super::policy_with_script("x");
        assert!(policy.starts_with("default-src 'none';"), "{policy}");
        assert!(
            policy.ends_with("; script-src 'sha256-LXEWQrcmsEQBYnyp+6wy9chTD7GQPMTbAiWHF5IaSIE='; connect-src 'self'"),
            "{policy}"
        );
    }
}
