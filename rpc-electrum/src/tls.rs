//! rustls client configurations for the three ways of trusting a server.

use std::sync::Arc;

use rustls::client::danger::{HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier};
use rustls::crypto::{verify_tls12_signature, verify_tls13_signature, CryptoProvider};
use rustls::pki_types::{CertificateDer, ServerName, UnixTime};
use rustls::{ClientConfig, DigitallySignedStruct, RootCertStore, SignatureScheme};

use crate::config::{parse_fingerprint, BuildError, TlsVerify};

pub(crate) fn client_config(verify: &TlsVerify) -> Result<Arc<ClientConfig>, BuildError> {
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let builder = ClientConfig::builder_with_provider(provider.clone())
        .with_safe_default_protocol_versions()
        .map_err(|e| BuildError::BadRoot(e.to_string()))?;
    let config = match verify {
        TlsVerify::WebPki => {
            let roots = RootCertStore {
                roots: webpki_roots::TLS_SERVER_ROOTS.to_vec(),
            };
            builder.with_root_certificates(roots).with_no_client_auth()
        }
        TlsVerify::Roots(ders) => {
            let mut roots = RootCertStore::empty();
            for der in ders {
                roots
                    .add(CertificateDer::from(der.clone()))
                    .map_err(|e| BuildError::BadRoot(e.to_string()))?;
            }
            builder.with_root_certificates(roots).with_no_client_auth()
        }
        TlsVerify::Pinned(hex) => builder
            .dangerous()
            .with_custom_certificate_verifier(Arc::new(Pinned {
                digest: Some(parse_fingerprint(hex)?),
                provider,
            }))
            .with_no_client_auth(),
        TlsVerify::InsecureAcceptAny => builder
            .dangerous()
            .with_custom_certificate_verifier(Arc::new(Pinned {
                digest: None,
                provider,
            }))
            .with_no_client_auth(),
    };
    Ok(Arc::new(config))
}

/// Accepts the certificate with this SHA-256 digest (`None`: any), and
/// still checks that the handshake is signed by that certificate's key.
#[derive(Debug)]
struct Pinned {
    digest: Option<[u8; 32]>,
    provider: Arc<CryptoProvider>,
}

impl ServerCertVerifier for Pinned {
    fn verify_server_cert(
        &self,
        end_entity: &CertificateDer<'_>,
        _intermediates: &[CertificateDer<'_>],
        _server_name: &ServerName<'_>,
        _ocsp: &[u8],
        _now: UnixTime,
    ) -> Result<ServerCertVerified, rustls::Error> {
        match self.digest {
            None => Ok(ServerCertVerified::assertion()),
            Some(want) => {
                let got = ring::digest::digest(&ring::digest::SHA256, end_entity.as_ref());
                if got.as_ref() == want {
                    Ok(ServerCertVerified::assertion())
                } else {
                    Err(rustls::Error::General(
                        "certificate does not match the pinned SHA-256 fingerprint".into(),
                    ))
                }
            }
        }
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        verify_tls12_signature(
            message,
            cert,
            dss,
            &self.provider.signature_verification_algorithms,
        )
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        verify_tls13_signature(
            message,
            cert,
            dss,
            &self.provider.signature_verification_algorithms,
        )
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.provider
            .signature_verification_algorithms
            .supported_schemes()
    }
}
