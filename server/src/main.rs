//! The server binary: parse the configuration, start logging, serve until Ctrl-C or
//! SIGTERM, then drain.

use anyhow::Context;
use clap::Parser;
use server::config::Config;
use server::startup::{shutdown_signal, Application};
use server::telemetry;

#[actix_web::main]
async fn main() -> anyhow::Result<()> {
    let config = Config::parse();
    telemetry::init(&config.log_filter);
    let app = Application::build(config)
        .await
        .context("server start-up failed")?;
    tracing::info!(port = app.port(), store = app.backend(), "serving");
    let stopper = app.stopper();
    actix_web::rt::spawn(async move {
        shutdown_signal().await;
        tracing::info!("shutdown signal received; draining");
        stopper.stop().await;
    });
    app.run_until_stopped().await?;
    tracing::info!("stopped");
    Ok(())
}
