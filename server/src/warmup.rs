//! The port during start-up: bound at once, answering 503 "starting" until the store is
//! open.
//!
//! A PaaS gives a new process a deadline to bind its port (Heroku: 60 s, after which the
//! dyno is killed with R10 "Boot timeout" and restarted, to time out again). Opening the
//! MongoDB store can take longer: connecting, start-up migrations, and index builds, which
//! on a large collection run for minutes the first time a release adds an index (MongoDB
//! builds it while reads and writes go on, but `createIndexes` returns only when it is
//! done, and a unique index must be complete before the server relies on it). So the
//! server binds its port first and, while the store opens, a small HTTP server of its own
//! answers every request on it with 503 and `Retry-After`: the platform sees a bound port,
//! health checks and load balancers see "not ready" (`/health` says
//! `{"status":"starting",…}`), and clients retry as after any refused connection. Once the
//! store is open this server stops and the real one takes the same listening socket;
//! connections that arrive in between wait in the kernel's accept queue.

use std::io;
use std::net::TcpListener;

use actix_web::dev::ServerHandle;
use actix_web::{web, App, HttpRequest, HttpResponse, HttpServer};

/// What a client is told to wait before trying again, in seconds.
const RETRY_AFTER_SECS: u64 = 5;

/// The warm-up server; dropping it stops it.
pub struct Warmup {
    handle: ServerHandle,
}

impl Warmup {
    /// Serves 503 "starting" on a duplicate of `listener` (the socket stays bound by
    /// `listener` after the warm-up server closes its copy). `store` names the store being
    /// opened, as `/health` will once it is.
    ///
    /// # Errors
    /// If the socket cannot be duplicated or served.
    pub fn serve(listener: &TcpListener, store: &'static str) -> io::Result<Self> {
        let server = HttpServer::new(move || {
            App::new().default_service(web::to(move |req: HttpRequest| starting(req, store)))
        })
        .workers(1)
        .disable_signals()
        .shutdown_timeout(1)
        .listen(listener.try_clone()?)?
        .run();
        let handle = server.handle();
        tokio::spawn(server);
        Ok(Self { handle })
    }

    /// Stops the warm-up server and waits until it no longer accepts (a request it is
    /// answering gets its 503 first, within a second).
    pub async fn finish(self) {
        self.handle.stop(true).await;
    }
}

impl Drop for Warmup {
    fn drop(&mut self) {
        // Start-up failed or was abandoned: stop serving. (After `finish` this is a no-op:
        // the server has stopped and the command finds nobody listening.)
        drop(self.handle.stop(false));
    }
}

/// Every request while starting: 503, with `/health` in its usual JSON shape.
async fn starting(req: HttpRequest, store: &'static str) -> HttpResponse {
    let mut response = HttpResponse::ServiceUnavailable();
    response.insert_header(("Retry-After", RETRY_AFTER_SECS.to_string()));
    if req.path() == "/health" {
        response
            .content_type("application/json")
            .body(format!(r#"{{"status":"starting","store":"{store}"}}"#))
    } else {
        response.body("starting: the server is opening its store; try again shortly")
    }
}
