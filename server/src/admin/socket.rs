//! The admin socket: a Unix domain socket on which the running server carries out
//! operators' requests ([`super::protocol`]), like Mattermost's `mmctl --local`.
//!
//! # Who may use it
//! The file's permissions are the authentication: it is made mode 0600, so only the
//! server's own OS user (and root) can connect. As a second check, a connection whose
//! peer runs as another user (`SO_PEERCRED`) is dropped unanswered, which also covers one
//! that reached the socket in the instant between `bind` and `chmod`.
//!
//! # Its file
//! A live server answers at the path: start-up then fails rather than steal the socket
//! from it. A socket file nobody answers at (left by a server that crashed) is replaced.
//! Anything else at the path (a regular file, a directory) is left alone and start-up
//! fails. On shutdown the file is removed, if it is still the one this server made.
//!
//! # It never slows chat down
//! The listener runs on the main thread's runtime, not on the actix workers that serve
//! WebSockets. At most [`MAX_CLIENTS`] admin connections are served at once; one more is
//! answered `Busy` at once. A client has [`IO_TIMEOUT`] to send its request and to take
//! the reply. The work itself is not cut short once started (an interrupted deletion
//! would have to be asked for again), and is the same work a client's request does.

use std::io;
use std::os::unix::fs::{FileTypeExt, MetadataExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use tokio::io::{AsyncWriteExt, BufReader};
use tokio::net::{UnixListener, UnixStream};
use tokio::sync::Semaphore;
use tokio_util::sync::CancellationToken;

use super::protocol::{read_line, AdminError, Request, Response, MAX_REQUEST_BYTES};
use super::service;
use crate::handlers::AppState;

/// Admin connections served at once.
pub const MAX_CLIENTS: usize = 4;

/// How long a client may take to send its request, and to take the reply.
pub const IO_TIMEOUT: Duration = Duration::from_secs(10);

/// Why the admin socket could not be made.
#[derive(Debug, thiserror::Error)]
pub enum BindError {
    /// Another server answers at the path.
    #[error(
        "another server is already serving the admin socket {0} (stop it, or set ADMIN_SOCKET)"
    )]
    InUse(PathBuf),
    /// Something that is not a socket is at the path.
    #[error("{0} exists and is not a socket; remove it or set ADMIN_SOCKET")]
    NotASocket(PathBuf),
    /// The file system refused.
    #[error("cannot create the admin socket {path}: {source}")]
    Io {
        /// The socket's path.
        path: PathBuf,
        /// Why.
        source: io::Error,
    },
}

/// The bound admin socket, not yet serving.
pub struct AdminSocket {
    listener: UnixListener,
    file: SocketFile,
}

/// The socket's file, removed when this is dropped if it is still the one bound.
pub struct SocketFile {
    path: PathBuf,
    inode: u64,
    owner: u32,
}

impl Drop for SocketFile {
    fn drop(&mut self) {
        let ours = std::fs::symlink_metadata(&self.path).is_ok_and(|m| m.ino() == self.inode);
        if ours {
            if let Err(e) = std::fs::remove_file(&self.path) {
                tracing::warn!(path = %self.path.display(), error = %e, "could not remove the admin socket");
            }
        }
    }
}

impl AdminSocket {
    /// Binds the socket at `path` (see the module docs for what is found there already),
    /// creating its directory if missing, and makes it mode 0600. Must run inside a tokio
    /// runtime.
    ///
    /// # Errors
    /// [`BindError`].
    pub fn bind(path: &Path) -> Result<Self, BindError> {
        let io = |source| BindError::Io {
            path: path.to_owned(),
            source,
        };
        if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
            std::fs::create_dir_all(dir).map_err(io)?;
        }
        match std::fs::symlink_metadata(path) {
            Ok(found) if !found.file_type().is_socket() => {
                return Err(BindError::NotASocket(path.to_owned()))
            }
            Ok(_) => {
                if std::os::unix::net::UnixStream::connect(path).is_ok() {
                    return Err(BindError::InUse(path.to_owned()));
                }
                tracing::info!(path = %path.display(), "replacing a stale admin socket");
                std::fs::remove_file(path).map_err(io)?;
            }
            Err(e) if e.kind() == io::ErrorKind::NotFound => {}
            Err(e) => return Err(io(e)),
        }
        let listener = UnixListener::bind(path).map_err(io)?;
        std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o600)).map_err(io)?;
        let made = std::fs::symlink_metadata(path).map_err(io)?;
        Ok(Self {
            listener,
            file: SocketFile {
                path: path.to_owned(),
                inode: made.ino(),
                owner: made.uid(),
            },
        })
    }

    /// Serves requests on `state` until `shutdown` is cancelled. Returns the socket's file,
    /// to be dropped (removing it) when the server has stopped.
    pub fn serve(self, state: Arc<AppState>, shutdown: CancellationToken) -> SocketFile {
        let file = self.file;
        let owner = file.owner;
        let listener = self.listener;
        let slots = Arc::new(Semaphore::new(MAX_CLIENTS));
        tracing::info!(path = %file.path.display(), "admin socket listening");
        tokio::spawn(async move {
            loop {
                let stream = tokio::select! {
                    () = shutdown.cancelled() => break,
                    accepted = listener.accept() => match accepted {
                        Ok((stream, _)) => stream,
                        Err(e) => {
                            tracing::warn!(error = %e, "admin socket accept failed");
                            tokio::time::sleep(Duration::from_millis(100)).await;
                            continue;
                        }
                    },
                };
                match stream.peer_cred() {
                    Ok(peer) if peer.uid() == owner || peer.uid() == 0 => {}
                    _ => {
                        tracing::warn!(
                            "admin socket: a connection from another OS user was dropped"
                        );
                        continue;
                    }
                }
                let slot = Arc::clone(&slots).try_acquire_owned().ok();
                let state = Arc::clone(&state);
                tokio::spawn(async move {
                    let Some(_slot) = slot else {
                        let _ = reply(stream, &Response::Err(AdminError::Busy)).await;
                        return;
                    };
                    serve_one(&state, stream).await;
                });
            }
        });
        file
    }
}

/// Reads one request, carries it out and answers.
async fn serve_one(state: &AppState, stream: UnixStream) {
    let mut reader = BufReader::new(stream);
    let line =
        match tokio::time::timeout(IO_TIMEOUT, read_line(&mut reader, MAX_REQUEST_BYTES)).await {
            Ok(Ok(line)) => line,
            Ok(Err(e)) => {
                let error = AdminError::BadRequest {
                    reason: e.to_string(),
                };
                let _ = reply(reader.into_inner(), &Response::Err(error)).await;
                return;
            }
            Err(_) => {
                tracing::debug!("admin client sent no request in time");
                return;
            }
        };
    let response = match serde_json::from_slice::<Request>(&line) {
        Ok(request) => match service::handle(state, request).await {
            Ok(answer) => Response::Ok(answer),
            Err(error) => Response::Err(error),
        },
        Err(e) => Response::Err(AdminError::BadRequest {
            reason: format!("not a request: {e}"),
        }),
    };
    if let Err(e) = reply(reader.into_inner(), &response).await {
        tracing::debug!(error = %e, "admin reply not delivered");
    }
}

/// Writes `response` as one line, within [`IO_TIMEOUT`].
async fn reply(mut stream: UnixStream, response: &Response) -> io::Result<()> {
    let mut line = serde_json::to_vec(response).map_err(io::Error::other)?;
    line.push(b'\n');
    let write = async {
        stream.write_all(&line).await?;
        stream.shutdown().await
    };
    tokio::time::timeout(IO_TIMEOUT, write)
        .await
        .map_err(|_| io::Error::new(io::ErrorKind::TimedOut, "the admin client took too long"))?
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn a_stale_socket_is_replaced_and_a_live_one_kept() {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("sub").join("admin.sock");
        std::fs::create_dir_all(path.parent().expect("parent")).expect("mkdir");
        drop(std::os::unix::net::UnixListener::bind(&path).expect("a crashed server's socket"));
        let bound = AdminSocket::bind(&path).expect("the stale socket is replaced");
        let mode = std::fs::metadata(&path)
            .expect("socket")
            .permissions()
            .mode();
        assert_eq!(mode & 0o777, 0o600);
        assert!(matches!(AdminSocket::bind(&path), Err(BindError::InUse(_))));
        drop(bound);
        assert!(!path.exists(), "removed when dropped");

        let file = dir.path().join("not-a-socket");
        std::fs::write(&file, b"keep me").expect("write");
        assert!(matches!(
            AdminSocket::bind(&file),
            Err(BindError::NotASocket(_))
        ));
        assert_eq!(std::fs::read(&file).expect("read"), b"keep me");
    }
}
