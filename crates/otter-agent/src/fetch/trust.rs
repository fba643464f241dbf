//! Which servers an `https://` fetch trusts, and the rustls client for it.

use std::fmt;
use std::io;
use std::path::Path;
use std::sync::Arc;

use rustls::client::danger::{HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier};
use rustls::client::WebPkiServerVerifier;
use rustls::crypto::WebPkiSupportedAlgorithms;
use rustls::{CertificateError, ClientConfig, DigitallySignedStruct, RootCertStore};
use rustls_pki_types::pem::PemObject;
use rustls_pki_types::{CertificateDer, ServerName, UnixTime};
use tokio_rustls::TlsConnector;

use super::{FetchError, TlsFailure};

/// Which servers an `https://` fetch trusts.
#[derive(Debug, Clone)]
pub enum Trust {
    /// Servers whose chain leads to one of these CA certificates, and no
    /// other root. Host name and validity period are checked (webpki). A
    /// self-signed server certificate can be its own CA here, even when it
    /// says `CA:TRUE` (as `openssl req -x509` makes them): a server
    /// certificate byte-identical to one of these is accepted as pinned,
    /// once webpki has checked its validity period and its name matches.
    Ca(Vec<CertificateDer<'static>>),
    /// Exactly this end-entity certificate, byte for byte. The handshake
    /// signature is still checked against its key, so a server must hold the
    /// private key. Host name and validity period are *not* checked: the pin
    /// already names the one certificate trusted, and a device without a
    /// trusted clock must not lock itself out when it expires. Rotate by
    /// shipping a new pin before the server changes its certificate.
    Pinned(CertificateDer<'static>),
}

impl Trust {
    /// Every certificate in a PEM file as the CA set (the seeds' `cert_pem`).
    pub fn ca_from_pem_file(path: &Path) -> Result<Trust, FetchError> {
        let pem = read_trust_file(path)?;
        let certs = certificates_from_pem(path, &pem)?;
        Ok(Trust::Ca(certs))
    }

    /// The first certificate in a PEM file (the server's own; any chain after
    /// it is ignored) as the pin.
    pub fn pinned_from_pem_file(path: &Path) -> Result<Trust, FetchError> {
        let pem = read_trust_file(path)?;
        let mut certs = certificates_from_pem(path, &pem)?;
        // `certificates_from_pem` refuses an empty list.
        Ok(Trust::Pinned(certs.swap_remove(0)))
    }
}

fn read_trust_file(path: &Path) -> Result<Vec<u8>, FetchError> {
    std::fs::read(path).map_err(|source| FetchError::TrustFile {
        path: path.to_owned(),
        source,
    })
}

fn certificates_from_pem(
    path: &Path,
    pem: &[u8],
) -> Result<Vec<CertificateDer<'static>>, FetchError> {
    let certs = CertificateDer::pem_slice_iter(pem)
        .collect::<Result<Vec<_>, _>>()
        .map_err(|source| FetchError::TrustPem {
            path: path.to_owned(),
            source,
        })?;
    if certs.is_empty() {
        return Err(FetchError::NoCertificate {
            path: path.to_owned(),
        });
    }
    Ok(certs)
}

pub(super) fn tls_failure(error: io::Error) -> TlsFailure {
    let Some(rustls_error) = error
        .get_ref()
        .and_then(|inner| inner.downcast_ref::<rustls::Error>())
    else {
        return TlsFailure::Io(error);
    };
    match rustls_error {
        rustls::Error::InvalidCertificate(cert) => match cert {
            CertificateError::UnknownIssuer => TlsFailure::UnknownCa,
            CertificateError::NotValidForName | CertificateError::NotValidForNameContext { .. } => {
                TlsFailure::NameMismatch
            }
            CertificateError::Expired | CertificateError::ExpiredContext { .. } => {
                TlsFailure::Expired
            }
            CertificateError::NotValidYet | CertificateError::NotValidYetContext { .. } => {
                TlsFailure::NotYetValid
            }
            CertificateError::Other(other) if other.0.downcast_ref::<PinMismatch>().is_some() => {
                TlsFailure::PinMismatch
            }
            other => TlsFailure::Certificate(Box::new(other.clone())),
        },
        other => TlsFailure::Protocol(Box::new(other.clone())),
    }
}

pub(crate) fn tls_connector(trust: Trust) -> Result<TlsConnector, FetchError> {
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let algorithms = provider.signature_verification_algorithms;
    let builder = ClientConfig::builder_with_provider(provider.clone())
        .with_safe_default_protocol_versions()
        .map_err(|source| FetchError::TlsSetup { source })?;
    let mut config = match trust {
        Trust::Ca(certs) => {
            if certs.is_empty() {
                return Err(FetchError::NoCaCertificates);
            }
            let mut roots = RootCertStore::empty();
            let certs_kept = certs.clone();
            for (index, cert) in certs.into_iter().enumerate() {
                roots
                    .add(cert)
                    .map_err(|source| FetchError::BadCaCertificate { index, source })?;
            }
            let verifier = WebPkiServerVerifier::builder_with_provider(Arc::new(roots), provider)
                .build()
                // Only possible causes: no roots (checked above) or CRLs (none given).
                .map_err(|_| FetchError::NoCaCertificates)?;
            builder
                .dangerous()
                .with_custom_certificate_verifier(Arc::new(CaVerifier {
                    webpki: verifier,
                    anchors: certs_kept,
                }))
                .with_no_client_auth()
        }
        Trust::Pinned(cert) => builder
            .dangerous()
            .with_custom_certificate_verifier(Arc::new(PinnedVerifier { cert, algorithms }))
            .with_no_client_auth(),
    };
    config.alpn_protocols = vec![b"http/1.1".to_vec()];
    Ok(TlsConnector::from(Arc::new(config)))
}

/// webpki's verification, plus one case it refuses: a server certificate
/// that is itself one of the trusted CA certificates (a self-signed
/// certificate with `CA:TRUE`). webpki checks an end-entity's validity
/// period before its basic constraints, so `CaUsedAsEndEntity` means the
/// period was fine; the name is checked here. Everything else is webpki's.
#[derive(Debug)]
struct CaVerifier {
    webpki: Arc<WebPkiServerVerifier>,
    anchors: Vec<CertificateDer<'static>>,
}

impl ServerCertVerifier for CaVerifier {
    fn verify_server_cert(
        &self,
        end_entity: &CertificateDer<'_>,
        intermediates: &[CertificateDer<'_>],
        server_name: &ServerName<'_>,
        ocsp_response: &[u8],
        now: UnixTime,
    ) -> Result<ServerCertVerified, rustls::Error> {
        match self.webpki.verify_server_cert(
            end_entity,
            intermediates,
            server_name,
            ocsp_response,
            now,
        ) {
            Err(rustls::Error::InvalidCertificate(CertificateError::Other(other)))
                if matches!(
                    other.0.downcast_ref::<webpki::Error>(),
                    Some(webpki::Error::CaUsedAsEndEntity)
                ) && self
                    .anchors
                    .iter()
                    .any(|a| a.as_ref() == end_entity.as_ref()) =>
            {
                let parsed = rustls::server::ParsedCertificate::try_from(end_entity)?;
                rustls::client::verify_server_name(&parsed, server_name)?;
                Ok(ServerCertVerified::assertion())
            }
            other => other,
        }
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        self.webpki.verify_tls12_signature(message, cert, dss)
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        self.webpki.verify_tls13_signature(message, cert, dss)
    }

    fn supported_verify_schemes(&self) -> Vec<rustls::SignatureScheme> {
        self.webpki.supported_verify_schemes()
    }
}

/// The marker a [`PinnedVerifier`] rejects with, so the failure can be told
/// apart from other certificate errors.
#[derive(Debug)]
struct PinMismatch;

impl fmt::Display for PinMismatch {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("the server's certificate is not the pinned certificate")
    }
}

impl std::error::Error for PinMismatch {}

/// Accepts exactly one end-entity certificate; see [`Trust::Pinned`].
#[derive(Debug)]
struct PinnedVerifier {
    cert: CertificateDer<'static>,
    algorithms: WebPkiSupportedAlgorithms,
}

impl ServerCertVerifier for PinnedVerifier {
    fn verify_server_cert(
        &self,
        end_entity: &CertificateDer<'_>,
        _intermediates: &[CertificateDer<'_>],
        _server_name: &ServerName<'_>,
        _ocsp_response: &[u8],
        _now: UnixTime,
    ) -> Result<ServerCertVerified, rustls::Error> {
        if end_entity.as_ref() == self.cert.as_ref() {
            Ok(ServerCertVerified::assertion())
        } else {
            Err(rustls::Error::InvalidCertificate(CertificateError::Other(
                rustls::OtherError(Arc::new(PinMismatch)),
            )))
        }
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls12_signature(message, cert, dss, &self.algorithms)
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls13_signature(message, cert, dss, &self.algorithms)
    }

    fn supported_verify_schemes(&self) -> Vec<rustls::SignatureScheme> {
        self.algorithms.supported_schemes()
    }
}
