//! The secrets directory (spec §2.1): created with mode 0700; files written atomically with mode
//! 0600. Also the self-signed TLS certificate generated there on first run (`server.crt`,
//! `server.key`), and random tokens.
//!
//! Blocking file-system code, called at start-up or through `spawn_blocking`.

use std::fs;
use std::io::Write as _;
use std::os::unix::fs::{DirBuilderExt as _, OpenOptionsExt as _, PermissionsExt as _};
use std::path::Path;
use std::sync::Arc;

use base64::Engine as _;
use rustls::pki_types::pem::PemObject as _;
use rustls::pki_types::{CertificateDer, PrivateKeyDer};

use crate::Error;

/// The certificate file in the secrets directory.
pub const CERT_FILE: &str = "server.crt";
/// The private-key file in the secrets directory.
pub const KEY_FILE: &str = "server.key";

/// Creates `dir` (mode 0700) if missing; warns if an existing one is readable by others.
pub(crate) fn ensure_dir(dir: &Path) -> Result<(), Error> {
    let io = |source| Error::Secrets {
        path: dir.to_owned(),
        source,
    };
    if !dir.exists() {
        fs::DirBuilder::new()
            .recursive(true)
            .mode(0o700)
            .create(dir)
            .map_err(io)?;
        tracing::info!(dir = %dir.display(), "created the secrets directory");
    }
    let mode = fs::metadata(dir).map_err(io)?.permissions().mode();
    if mode & 0o077 != 0 {
        tracing::warn!(
            dir = %dir.display(),
            mode = format!("{:o}", mode & 0o777),
            "the secrets directory is accessible to other users; chmod 700 it"
        );
    }
    Ok(())
}

/// Writes `contents` to `path` atomically (a temporary file in the same directory, then a rename),
/// with mode 0600.
pub(crate) fn write_private_file(path: &Path, contents: &[u8]) -> Result<(), Error> {
    let io = |source| Error::Secrets {
        path: path.to_owned(),
        source,
    };
    let tmp = path.with_extension(format!("tmp-{}", std::process::id()));
    let result = (|| {
        let mut file = fs::OpenOptions::new()
            .write(true)
            .create(true)
            .truncate(true)
            .mode(0o600)
            .open(&tmp)?;
        file.write_all(contents)?;
        file.sync_all()?;
        fs::rename(&tmp, path)
    })();
    if result.is_err()
        && let Err(error) = fs::remove_file(&tmp)
        && error.kind() != std::io::ErrorKind::NotFound
    {
        tracing::warn!(path = %tmp.display(), %error, "cannot remove a temporary file");
    }
    result.map_err(io)
}

/// `n` random bytes, URL-safe base64 without padding.
pub(crate) fn random_token(n: usize) -> String {
    let mut bytes = vec![0u8; n];
    getrandom::fill(&mut bytes).expect("the operating system's random source is available");
    base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(bytes)
}

/// Loads `server.crt` and `server.key` from `dir`, generating a self-signed pair first if either
/// is missing, and returns a rustls server configuration (ring provider, HTTP/1.1).
pub(crate) fn tls_config(dir: &Path, hosts: &[String]) -> Result<Arc<rustls::ServerConfig>, Error> {
    let cert_path = dir.join(CERT_FILE);
    let key_path = dir.join(KEY_FILE);
    if !cert_path.exists() || !key_path.exists() {
        generate_self_signed(&cert_path, &key_path, hosts)?;
    }
    let tls = |reason: String| Error::Tls {
        path: dir.to_owned(),
        reason,
    };
    let certs = CertificateDer::pem_file_iter(&cert_path)
        .and_then(|certs| certs.collect::<Result<Vec<_>, _>>())
        .map_err(|e| tls(format!("{CERT_FILE}: {e}")))?;
    let key =
        PrivateKeyDer::from_pem_file(&key_path).map_err(|e| tls(format!("{KEY_FILE}: {e}")))?;
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let mut config = rustls::ServerConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .map_err(|e| tls(e.to_string()))?
        .with_no_client_auth()
        .with_single_cert(certs, key)
        .map_err(|e| tls(e.to_string()))?;
    config.alpn_protocols = vec![b"http/1.1".to_vec()];
    Ok(Arc::new(config))
}

fn generate_self_signed(cert_path: &Path, key_path: &Path, hosts: &[String]) -> Result<(), Error> {
    tracing::info!(
        cert = %cert_path.display(),
        "generating a self-signed TLS certificate for {hosts:?}"
    );
    let mut params = rcgen::CertificateParams::new(hosts.to_vec()).map_err(Error::Certificate)?;
    params
        .distinguished_name
        .push(rcgen::DnType::CommonName, "DataKitCI");
    let key = rcgen::KeyPair::generate().map_err(Error::Certificate)?;
    let cert = params.self_signed(&key).map_err(Error::Certificate)?;
    // If writing the certificate fails, the next start sees it missing and regenerates both.
    write_private_file(key_path, key.serialize_pem().as_bytes())?;
    write_private_file(cert_path, cert.pem().as_bytes())?;
    Ok(())
}
