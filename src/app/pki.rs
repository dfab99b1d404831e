//! Throwaway certificate authorities for the demo and the tests (rcgen).
//!
//! Owns making a CA and issuing server and client certificates into PEM files. Must never be
//! used for a real installation: real certificates come from the platform operator's PKI.

use std::path::{Path, PathBuf};

use rcgen::{
    BasicConstraints, CertificateParams, DnType, ExtendedKeyUsagePurpose, IsCa, Issuer, KeyPair,
    KeyUsagePurpose,
};

/// A certificate and key written to disk.
#[derive(Debug, Clone)]
pub struct Issued {
    pub cert_file: PathBuf,
    pub key_file: PathBuf,
}

/// A CA whose certificate is written to `cert_file`.
pub struct Ca {
    issuer: Issuer<'static, KeyPair>,
    pub cert_file: PathBuf,
}

/// Valid from a day ago (clock skew) for `days` days, like a real certificate.
fn valid_for(params: &mut CertificateParams, days: i64) {
    let now = time::OffsetDateTime::now_utc();
    params.not_before = now - time::Duration::days(1);
    params.not_after = now + time::Duration::days(days);
}

fn write(path: &Path, pem: &str) -> std::io::Result<()> {
    std::fs::write(path, pem)
}

impl Ca {
    /// Creates a CA named `name`; its certificate goes to `{dir}/{name}.crt`.
    pub fn new(dir: &Path, name: &str) -> anyhow::Result<Ca> {
        let key = KeyPair::generate()?;
        let mut params = CertificateParams::new(Vec::<String>::new())?;
        params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
        params.distinguished_name.push(DnType::CommonName, name);
        params.key_usages = vec![
            KeyUsagePurpose::KeyCertSign,
            KeyUsagePurpose::CrlSign,
            KeyUsagePurpose::DigitalSignature,
        ];
        valid_for(&mut params, 10 * 365);
        let cert = params.self_signed(&key)?;
        let cert_file = dir.join(format!("{name}.crt"));
        write(&cert_file, &cert.pem())?;
        Ok(Ca {
            issuer: Issuer::new(params, key),
            cert_file,
        })
    }

    /// Issues a certificate for `names` (DNS names or IP addresses): a server certificate when
    /// `server`, else a client certificate. Files: `{dir}/{stem}.crt` and `{dir}/{stem}.key`.
    pub fn issue(
        &self,
        dir: &Path,
        stem: &str,
        names: &[&str],
        server: bool,
    ) -> anyhow::Result<Issued> {
        let now = time::OffsetDateTime::now_utc();
        let valid = (
            now - time::Duration::days(1),
            now + time::Duration::days(365),
        );
        self.issue_valid(dir, stem, names, server, valid)
    }

    /// Like [`Ca::issue`], valid from `valid.0` to `valid.1` (for expired or future
    /// certificates in tests).
    pub fn issue_valid(
        &self,
        dir: &Path,
        stem: &str,
        names: &[&str],
        server: bool,
        valid: (time::OffsetDateTime, time::OffsetDateTime),
    ) -> anyhow::Result<Issued> {
        let key = KeyPair::generate()?;
        let mut params =
            CertificateParams::new(names.iter().map(|s| s.to_string()).collect::<Vec<_>>())?;
        params
            .distinguished_name
            .push(DnType::CommonName, names.first().copied().unwrap_or(stem));
        params.extended_key_usages = vec![if server {
            ExtendedKeyUsagePurpose::ServerAuth
        } else {
            ExtendedKeyUsagePurpose::ClientAuth
        }];
        params.key_usages = vec![KeyUsagePurpose::DigitalSignature];
        (params.not_before, params.not_after) = valid;
        let cert = params.signed_by(&key, &self.issuer)?;
        let issued = Issued {
            cert_file: dir.join(format!("{stem}.crt")),
            key_file: dir.join(format!("{stem}.key")),
        };
        write(&issued.cert_file, &cert.pem())?;
        write(&issued.key_file, &key.serialize_pem())?;
        Ok(issued)
    }
}
