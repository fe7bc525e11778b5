//! The `sessiond` binary: parses the configuration, starts logging, and runs `serve` or
//! `migrate`. SIGTERM and SIGINT drain in-flight calls and exit 0.

use std::process::ExitCode;

use clap::Parser;
use sessiond::config::{Cli, Command, StoreKind};

#[tokio::main]
async fn main() -> ExitCode {
    let cli = Cli::parse();
    let (command, settings) = match cli.command {
        Command::Serve(s) => ("serve", s),
        Command::Migrate(s) => ("migrate", s),
        Command::Credential(args) => return credential(&args),
    };
    let config = match settings.resolve() {
        Ok(config) => config,
        Err(e) => {
            eprintln!("sessiond: {e}");
            return ExitCode::from(2);
        }
    };
    sessiond::telemetry::init(config.log_format);
    let outcome = match command {
        "migrate" => migrate(&config).await,
        _ => serve(config).await,
    };
    match outcome {
        Ok(()) => ExitCode::SUCCESS,
        Err(message) => {
            tracing::error!(error = %message, "sessiond failed");
            eprintln!("sessiond: {message}");
            ExitCode::FAILURE
        }
    }
}

async fn serve(config: sessiond::Config) -> Result<(), String> {
    let listener = tokio::net::TcpListener::bind(config.grpc_addr)
        .await
        .map_err(|e| format!("cannot listen on {}: {e}", config.grpc_addr))?;
    sessiond::serve(config, listener, shutdown_signal())
        .await
        .map_err(|e| e.to_string())
}

async fn migrate(config: &sessiond::Config) -> Result<(), String> {
    if config.store == StoreKind::Embedded {
        println!("the embedded store needs no migration; its tables are created on start");
        return Ok(());
    }
    sessiond::store::backend::migrate(config)
        .await
        .map_err(|e| e.to_string())?;
    println!("schema is up to date");
    Ok(())
}

/// Prints a fresh credential (to hand to the caller) and its configuration entry.
fn credential(args: &sessiond::config::CredentialArgs) -> ExitCode {
    if let Some(bad) = args.roles.iter().find(|r| sessiond::api::auth::Role::parse(r).is_none()) {
        eprintln!("sessiond: unknown role {bad:?} (issuer, validator, admin)");
        return ExitCode::from(2);
    }
    let (credential, hash) = sessiond::config::new_credential();
    let roles: Vec<String> = args.roles.iter().map(|r| format!("{r:?}")).collect();
    println!("# give this credential to {} (it is shown once):", args.name);
    println!("#   authorization: Bearer {credential}");
    println!("[[callers]]");
    println!("name = {:?}", args.name);
    println!("credential_sha256 = \"{hash}\"");
    println!("roles = [{}]", roles.join(", "));
    ExitCode::SUCCESS
}

/// Completes on SIGTERM or SIGINT.
async fn shutdown_signal() {
    let term = async {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut s) => {
                s.recv().await;
            }
            Err(e) => {
                tracing::error!(error = %e, "cannot listen for SIGTERM");
                std::future::pending::<()>().await;
            }
        }
    };
    tokio::select! {
        _ = term => {}
        _ = tokio::signal::ctrl_c() => {}
    }
}
