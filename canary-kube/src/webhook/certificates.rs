//! The webhook's serving certificate and key, read from PEM files and read again when they
//! change: cert-manager renews the Secret before it expires and the kubelet swaps the files
//! of the mounted volume in place, so a long-running webhook must not keep the first ones.

use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, PoisonError};

use tokio_rustls::rustls::ServerConfig;
use tokio_rustls::rustls::crypto::aws_lc_rs;
use tokio_rustls::rustls::pki_types::pem::PemObject;
use tokio_rustls::rustls::pki_types::{CertificateDer, PrivateKeyDer};

use crate::error::{Error, Result};

/// The certificate chain and key files, and the TLS configuration made of their current
/// contents.
#[derive(Debug)]
pub(super) struct Certificates {
    cert: PathBuf,
    key: PathBuf,
    current: Mutex<Loaded>,
}

/// Files' contents and the configuration made of them.
#[derive(Debug)]
struct Loaded {
    cert: Vec<u8>,
    key: Vec<u8>,
    config: Arc<ServerConfig>,
}

impl Certificates {
    /// Reads `cert` (a PEM chain, leaf first) and `key` (a PEM private key: PKCS#8, PKCS#1 or
    /// SEC1, as cert-manager writes them).
    ///
    /// # Errors
    ///
    /// [`Error::Webhook`] when a file cannot be read or is not a usable certificate or key.
    pub(super) async fn load(cert: &Path, key: &Path) -> Result<Self> {
        let (cert_pem, key_pem) = read(cert, key).await?;
        let config = server_config(&cert_pem, &key_pem)?;
        Ok(Certificates {
            cert: cert.to_owned(),
            key: key.to_owned(),
            current: Mutex::new(Loaded {
                cert: cert_pem,
                key: key_pem,
                config,
            }),
        })
    }

    /// The TLS configuration for a new connection: made again when the files' contents have
    /// changed since the last one. When the new files cannot be read or used (e.g. read
    /// between the writes of the certificate and of its key), the last good configuration
    /// stays, and the next connection tries again.
    pub(super) async fn config(&self) -> Arc<ServerConfig> {
        let read = read(&self.cert, &self.key).await;
        let mut current = self.current.lock().unwrap_or_else(PoisonError::into_inner);
        let (cert, key) = match read {
            Ok(files) => files,
            Err(error) => {
                tracing::warn!(%error, "keeping the webhook's last certificate");
                return Arc::clone(&current.config);
            }
        };
        if cert == current.cert && key == current.key {
            return Arc::clone(&current.config);
        }
        match server_config(&cert, &key) {
            Ok(config) => {
                tracing::info!("the webhook serves its renewed certificate");
                *current = Loaded {
                    cert,
                    key,
                    config: Arc::clone(&config),
                };
                config
            }
            Err(error) => {
                tracing::warn!(%error, "keeping the webhook's last certificate");
                Arc::clone(&current.config)
            }
        }
    }
}

async fn read(cert: &Path, key: &Path) -> Result<(Vec<u8>, Vec<u8>)> {
    let read = |path: &Path| {
        let path = path.to_owned();
        async move {
            tokio::fs::read(&path)
                .await
                .map_err(|e| Error::webhook(format!("cannot read {}", path.display()), e))
        }
    };
    Ok((read(cert).await?, read(key).await?))
}

/// A TLS 1.2/1.3 server configuration with the aws-lc-rs provider (the one kube's client
/// uses in this workspace), HTTP/1.1 announced through ALPN, no client certificates (the API
/// server authenticates the webhook, not the other way round).
fn server_config(cert: &[u8], key: &[u8]) -> Result<Arc<ServerConfig>> {
    let chain = CertificateDer::pem_slice_iter(cert)
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| Error::webhook("the certificate file is not PEM", e))?;
    if chain.is_empty() {
        return Err(Error::webhook(
            "the certificate file",
            "holds no PEM certificate",
        ));
    }
    let key = PrivateKeyDer::from_pem_slice(key)
        .map_err(|e| Error::webhook("the key file holds no PEM private key", e))?;
    let mut config = ServerConfig::builder_with_provider(Arc::new(aws_lc_rs::default_provider()))
        .with_safe_default_protocol_versions()
        .map_err(|e| Error::webhook("TLS versions", e))?
        .with_no_client_auth()
        .with_single_cert(chain, key)
        .map_err(|e| Error::webhook("the certificate and key do not make a TLS identity", e))?;
    config.alpn_protocols = vec![b"http/1.1".to_vec()];
    Ok(Arc::new(config))
}
