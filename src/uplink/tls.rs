//! Mutual TLS for the uplink: the pinned CA, our certificate chain and key → a rustls config.
//!
//! Owns loading PEM files with an error that names the file and what is wrong, and the rule
//! that only the configured CA is trusted (no system roots, no "skip verify"). Must never log or
//! display key material.

use std::path::{Path, PathBuf};
use std::sync::Arc;

use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer};
use rustls::{ClientConfig, RootCertStore};

use crate::config::read::{read_regular, PEM_MAX};

#[derive(Debug, thiserror::Error)]
pub enum TlsError {
    /// The file is missing or unreadable. Not retried: a person must fix it.
    #[error("cannot read {what} {path}: {detail}")]
    Read {
        what: &'static str,
        path: PathBuf,
        detail: String,
    },
    /// The file holds no usable PEM item of the expected kind.
    #[error("{path} holds no {what} (expected a PEM file with a \"-----BEGIN {pem}-----\" block)")]
    Empty {
        what: &'static str,
        pem: &'static str,
        path: PathBuf,
    },
    /// rustls refused the material (a CA that is not a CA, a key that does not match the cert).
    #[error("{what}: {detail}")]
    Rejected { what: &'static str, detail: String },
}

/// A PEM file: a regular file of at most [`PEM_MAX`] bytes (never a FIFO or a device).
fn read_pem(what: &'static str, path: &Path) -> Result<Vec<u8>, TlsError> {
    read_regular(path, PEM_MAX).map_err(|e| TlsError::Read {
        what,
        path: path.to_owned(),
        detail: e.to_string(),
    })
}

fn certs(what: &'static str, path: &Path) -> Result<Vec<CertificateDer<'static>>, TlsError> {
    let bytes = read_pem(what, path)?;
    let certs: Vec<_> = CertificateDer::pem_slice_iter(&bytes)
        .collect::<Result<_, _>>()
        .map_err(|e| TlsError::Read {
            what,
            path: path.to_owned(),
            detail: format!("not valid PEM: {e}"),
        })?;
    if certs.is_empty() {
        return Err(TlsError::Empty {
            what,
            pem: "CERTIFICATE",
            path: path.to_owned(),
        });
    }
    Ok(certs)
}

fn key(path: &Path) -> Result<PrivateKeyDer<'static>, TlsError> {
    let bytes = read_pem("private key", path)?;
    PrivateKeyDer::from_pem_slice(&bytes).map_err(|_| TlsError::Empty {
        what: "private key",
        pem: "PRIVATE KEY",
        path: path.to_owned(),
    })
}

/// When the first certificate in `cert_file` expires, in ms since the epoch (for the status
/// page's warning and the expiry metric).
pub fn not_after_ms(cert_file: &Path) -> Option<i64> {
    let bytes = read_regular(cert_file, PEM_MAX).ok()?;
    let der = CertificateDer::pem_slice_iter(&bytes).next()?.ok()?;
    let (_, cert) = x509_parser::parse_x509_certificate(der.as_ref()).ok()?;
    Some(cert.validity().not_after.timestamp().saturating_mul(1000))
}

/// When the first certificate in `path` may be used: (not before, not after) in seconds since
/// the epoch; `None` if the file holds no certificate x509-parser can read.
pub fn validity(path: &Path) -> Option<(i64, i64)> {
    let bytes = read_regular(path, PEM_MAX).ok()?;
    let der = CertificateDer::pem_slice_iter(&bytes).next()?.ok()?;
    let (_, cert) = x509_parser::parse_x509_certificate(der.as_ref()).ok()?;
    let v = cert.validity();
    Some((v.not_before.timestamp(), v.not_after.timestamp()))
}

/// Why the first certificate in `file` cannot be used at `now` (seconds since the epoch):
/// expired or not yet valid, with the date; `None` if it is valid (or unreadable: loading says
/// why).
pub fn out_of_date(file: &Path, now: i64) -> Option<String> {
    let (not_before, not_after) = validity(file)?;
    if now > not_after {
        Some(format!(
            "the certificate in {} expired on {}",
            file.display(),
            date(not_after)
        ))
    } else if now < not_before {
        Some(format!(
            "the certificate in {} is not valid before {}",
            file.display(),
            date(not_before)
        ))
    } else {
        None
    }
}

/// `2026-12-01 08:00 UTC`.
fn date(unix_s: i64) -> String {
    match time::OffsetDateTime::from_unix_timestamp(unix_s) {
        Ok(d) => format!("{} {:02}:{:02} UTC", d.date(), d.hour(), d.minute()),
        Err(_) => format!("{unix_s} s after 1970"),
    }
}

/// Builds the client configuration: trust only `ca_file`, present `cert_file` with `key_file`.
pub fn client_config(
    ca_file: &Path,
    cert_file: &Path,
    key_file: &Path,
) -> Result<Arc<ClientConfig>, TlsError> {
    let mut roots = RootCertStore::empty();
    for ca in certs("CA certificate", ca_file)? {
        roots.add(ca).map_err(|e| TlsError::Rejected {
            what: "CA certificate",
            detail: format!("{}: {e}", ca_file.display()),
        })?;
    }
    let chain = certs("client certificate", cert_file)?;
    let key = key(key_file)?;
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let config = ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .map_err(|e| TlsError::Rejected {
            what: "TLS versions",
            detail: e.to_string(),
        })?
        .with_root_certificates(roots)
        .with_client_auth_cert(chain, key)
        .map_err(|e| TlsError::Rejected {
            what: "client certificate and key",
            detail: format!("{} with {}: {e}", cert_file.display(), key_file.display()),
        })?;
    Ok(Arc::new(config))
}

/// Describes a connection error for a person, naming a TLS cause when there is one (rumqttc
/// can bury a `rustls::Error` several sources deep).
pub fn explain(e: &(dyn std::error::Error + 'static)) -> String {
    let mut cur: Option<&(dyn std::error::Error + 'static)> = Some(e);
    while let Some(err) = cur {
        if let Some(t) = err.downcast_ref::<rustls::Error>() {
            return format!("TLS: {}", tls_words(t));
        }
        if let Some(io) = err.downcast_ref::<std::io::Error>() {
            if let Some(t) = io.get_ref().and_then(|i| i.downcast_ref::<rustls::Error>()) {
                return format!("TLS: {}", tls_words(t));
            }
        }
        cur = err.source();
    }
    // Error types that print their source inside their own message are not repeated.
    let mut s = e.to_string();
    let mut src = e.source();
    while let Some(x) = src {
        let t = x.to_string();
        if !s.contains(&t) {
            s.push_str(": ");
            s.push_str(&t);
        }
        src = x.source();
    }
    s
}

fn tls_words(e: &rustls::Error) -> String {
    use rustls::{AlertDescription as A, CertificateError as C, Error as E};
    match e {
        // A CA of the same name but another key shows up as a bad signature.
        E::InvalidCertificate(C::UnknownIssuer) | E::InvalidCertificate(C::BadSignature) => {
            "the broker's certificate is not signed by the configured CA (ca_file)".into()
        }
        E::InvalidCertificate(C::NotValidForName)
        | E::InvalidCertificate(C::NotValidForNameContext { .. }) => {
            "the broker's certificate is not issued for the host name in upstream.brokers".into()
        }
        E::InvalidCertificate(C::Expired) | E::InvalidCertificate(C::ExpiredContext { .. }) => {
            "the broker's certificate has expired".into()
        }
        E::AlertReceived(A::UnknownCA)
        | E::AlertReceived(A::BadCertificate)
        | E::AlertReceived(A::CertificateUnknown)
        | E::AlertReceived(A::DecryptError) => {
            format!("the broker rejected our client certificate ({e})")
        }
        E::AlertReceived(A::CertificateRequired) => {
            "the broker requires a client certificate".into()
        }
        other => other.to_string(),
    }
}
