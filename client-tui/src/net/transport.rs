//! Opening the WebSocket: URL checks, TLS set-up and frame-size limits.
//!
//! `ws://` connects in the clear; `wss://` uses rustls with the ring provider and the
//! Mozilla (webpki) root certificates, unless the caller supplies its own rustls
//! configuration (e.g. to trust a test CA).

use std::sync::{Arc, Once};

use shared::protocol::MAX_FRAME_BYTES;
use tokio::net::TcpStream;
use tokio_tungstenite::tungstenite::protocol::WebSocketConfig;
use tokio_tungstenite::{Connector, MaybeTlsStream, WebSocketStream};
use url::Url;

use crate::error::ClientError;

/// The socket type the rest of the client works with.
pub(crate) type WsStream = WebSocketStream<MaybeTlsStream<TcpStream>>;

/// Installs ring as the process-wide rustls crypto provider, once.
///
/// rustls 0.23 needs a process default before `ClientConfig::builder()` can be used (which
/// tokio-tungstenite does for `wss://`). If another part of the program already installed
/// a provider, that one is kept: any provider works for us.
pub(crate) fn ensure_crypto_provider() {
    static INSTALL: Once = Once::new();
    INSTALL.call_once(|| {
        // `Err` means a provider is already installed, which is fine.
        let _ = rustls::crypto::ring::default_provider().install_default();
    });
}

/// Checks that `url` is a `ws://` or `wss://` URL.
///
/// # Errors
/// [`ClientError::InvalidUrl`].
pub(crate) fn parse_url(url: &str) -> Result<Url, ClientError> {
    let parsed = Url::parse(url).map_err(|e| ClientError::InvalidUrl(format!("{url}: {e}")))?;
    match parsed.scheme() {
        "ws" | "wss" => Ok(parsed),
        other => Err(ClientError::InvalidUrl(format!(
            "{url}: scheme must be ws or wss, not {other}"
        ))),
    }
}

/// Opens the WebSocket connection (TCP, TLS for `wss`, HTTP upgrade).
///
/// Incoming messages are limited to the protocol's frame limit, so a misbehaving server
/// cannot make the client buffer more than one maximal frame.
///
/// # Errors
/// [`ClientError::Transport`] if any step fails.
pub(crate) async fn open(
    url: &Url,
    tls: Option<Arc<rustls::ClientConfig>>,
) -> Result<WsStream, ClientError> {
    let connector = if url.scheme() == "wss" {
        ensure_crypto_provider();
        // `None` lets tokio-tungstenite build a rustls config with the webpki roots.
        tls.map(Connector::Rustls)
    } else {
        Some(Connector::Plain)
    };
    let config = WebSocketConfig::default()
        .max_message_size(Some(MAX_FRAME_BYTES))
        .max_frame_size(Some(MAX_FRAME_BYTES));
    let (stream, _response) = tokio_tungstenite::connect_async_tls_with_config(
        url.as_str(),
        Some(config),
        true,
        connector,
    )
    .await?;
    Ok(stream)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_websocket_schemes_are_accepted() {
        assert!(parse_url("ws://127.0.0.1:8080/ws").is_ok());
        assert!(parse_url("wss://chat.example.com/ws").is_ok());
        assert!(matches!(
            parse_url("http://example.com"),
            Err(ClientError::InvalidUrl(_))
        ));
        assert!(matches!(
            parse_url("not a url"),
            Err(ClientError::InvalidUrl(_))
        ));
    }

    #[test]
    fn crypto_provider_install_is_idempotent() {
        ensure_crypto_provider();
        ensure_crypto_provider();
        assert!(rustls::crypto::CryptoProvider::get_default().is_some());
    }
}
