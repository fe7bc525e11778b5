//! The `sessiond` binary: parses the configuration, starts logging (and trace export), and runs
//! `serve` or `migrate`, or one of the offline helpers (`credential`, `key`). SIGTERM and SIGINT
//! drain in-flight calls, flush queued spans and exit 0.

use std::process::ExitCode;

use clap::Parser;
use sessiond::config::{Cli, Command, KeyCommand, StoreKind};
use sessiond::keystore::{self, KeyAlgorithm};

/// mimalloc instead of the system allocator: the request paths allocate and free small
/// buffers on several threads at once (the runtime's workers, the store's writer and readers),
/// where glibc's malloc spent a tenth of the server's CPU under load.
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

#[tokio::main]
async fn main() -> ExitCode {
    let cli = Cli::parse();
    let (command, settings) = match cli.command {
        Command::Serve(s) => ("serve", s),
        Command::Migrate(s) => ("migrate", s),
        Command::Credential(args) => return credential(&args),
        Command::Key(command) => return key(&command),
    };
    let config = match settings.resolve() {
        Ok(config) => config,
        Err(e) => {
            eprintln!("sessiond: {e}");
            return ExitCode::from(2);
        }
    };
    let telemetry = match sessiond::telemetry::start(&config) {
        Ok(telemetry) => telemetry,
        Err(e) => {
            eprintln!("sessiond: {e}");
            return ExitCode::from(2);
        }
    };
    let outcome = match command {
        "migrate" => migrate(&config).await,
        _ => serve(config).await,
    };
    if let Err(message) = &outcome {
        tracing::error!(error = %message, "sessiond failed");
    }
    // Last: it flushes the queued spans, then the queued log lines.
    telemetry.shutdown().await;
    match outcome {
        Ok(()) => ExitCode::SUCCESS,
        Err(message) => {
            eprintln!("sessiond: {message}");
            ExitCode::FAILURE
        }
    }
}

async fn serve(config: sessiond::Config) -> Result<(), String> {
    // Listen for signals before anything else, so a SIGTERM during start-up is a clean stop
    // (served as soon as the server is up) rather than death by the default handler.
    let shutdown = shutdown_signal().map_err(|e| format!("cannot listen for signals: {e}"))?;
    let grpc = bind(config.grpc_addr).await?;
    let http = bind(config.http_addr).await?;
    sessiond::serve_with_http(config, grpc, Some(http), shutdown)
        .await
        .map_err(|e| e.to_string())
}

async fn bind(addr: std::net::SocketAddr) -> Result<tokio::net::TcpListener, String> {
    tokio::net::TcpListener::bind(addr)
        .await
        .map_err(|e| format!("cannot listen on {addr}: {e}"))
}

async fn migrate(config: &sessiond::Config) -> Result<(), String> {
    if config.store == StoreKind::Embedded {
        println!("the embedded store needs no migration; its tables are created on start");
        return Ok(());
    }
    sessiond::store::backend::migrate(&config.store_settings())
        .await
        .map_err(|e| e.to_string())?;
    println!("schema is up to date");
    Ok(())
}

/// Prints a fresh credential (to hand to the caller) and its configuration entry.
fn credential(args: &sessiond::config::CredentialArgs) -> ExitCode {
    if let Some(bad) = args
        .roles
        .iter()
        .find(|r| sessiond::auth::Role::parse(r).is_none())
    {
        eprintln!("sessiond: unknown role {bad:?} (issuer, validator, admin)");
        return ExitCode::from(2);
    }
    let (credential, hash) = sessiond::config::new_credential();
    let roles: Vec<String> = args.roles.iter().map(|r| format!("{r:?}")).collect();
    println!(
        "# give this credential to {} (it is shown once):",
        args.name
    );
    println!("#   authorization: Bearer {credential}");
    println!("[[callers]]");
    println!("name = {:?}", args.name);
    println!("credential_sha256 = \"{hash}\"");
    println!("roles = [{}]", roles.join(", "));
    ExitCode::SUCCESS
}

/// `sessiond key generate` and `sessiond key public`: the public key goes alone to stdout, so
/// it can be redirected into a file for `--verification-key-files`; the kid goes to stderr.
fn key(command: &KeyCommand) -> ExitCode {
    let (path, made) = match command {
        KeyCommand::Generate(args) => {
            let Some(algorithm) = KeyAlgorithm::parse(&args.key_algorithm) else {
                eprintln!(
                    "sessiond: unknown key algorithm {:?} (eddsa, es256, rs256)",
                    args.key_algorithm
                );
                return ExitCode::from(2);
            };
            (
                &args.key_file,
                keystore::generate_key_file(algorithm, &args.key_file),
            )
        }
        KeyCommand::Public(args) => (&args.key_file, keystore::public_half(&args.key_file)),
    };
    let half = match made {
        Ok(half) => half,
        Err(e) => {
            eprintln!("sessiond: {e}");
            return ExitCode::FAILURE;
        }
    };
    if let Some(mode) = sessiond::permissions::loose_mode(path) {
        eprintln!(
            "sessiond: warning: {} is mode {mode:04o}, readable by other users; chmod 600 it",
            path.display()
        );
    }
    match command {
        KeyCommand::Generate(_) => println!("kid {} ({:?})", half.kid, half.algorithm),
        KeyCommand::Public(_) => {
            print!("{}", half.pem);
            eprintln!("kid {} ({:?})", half.kid, half.algorithm);
        }
    }
    ExitCode::SUCCESS
}

/// A future that completes on SIGTERM or SIGINT; the handlers are installed before it returns.
fn shutdown_signal() -> std::io::Result<impl std::future::Future<Output = ()>> {
    use tokio::signal::unix::{SignalKind, signal};
    let mut term = signal(SignalKind::terminate())?;
    let mut int = signal(SignalKind::interrupt())?;
    Ok(async move {
        tokio::select! {
            _ = term.recv() => {}
            _ = int.recv() => {}
        }
    })
}
