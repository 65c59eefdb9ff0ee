//! The `healthgate` command line: run the proxy, check a configuration, or run the demo.

use clap::{Parser, Subcommand};
use healthgate::config::{Config, LogLevel};
use std::path::PathBuf;
use std::process::ExitCode;

// mimalloc's per-thread free lists suit a proxy's many short-lived buffers better than
// glibc malloc: it cut CPU per request measurably (see the README's performance section).
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

/// A health-aware reverse proxy for WSO2 Micro Integrator clusters.
#[derive(Debug, Parser)]
#[command(version, about)]
struct Cli {
    /// The YAML configuration file.
    #[arg(short, long, value_name = "FILE")]
    config: Option<PathBuf>,
    /// Validate the configuration and exit: 0 and a summary, or 1 and the error.
    #[arg(long, requires = "config")]
    check: bool,
    /// Take the listening sockets over from the running healthgate (zero-downtime binary
    /// upgrade): start this, then send SIGQUIT to the old process. See the README.
    #[arg(short, long, requires = "config", conflicts_with = "check")]
    upgrade: bool,
    #[command(subcommand)]
    command: Option<Command>,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Start three simulated MI nodes and the proxy in front of them, and print the URLs.
    #[cfg(feature = "demo")]
    Demo(healthgate::demo::DemoArgs),
    /// Not in this build (built without the `demo` feature): says so and exits 2.
    #[cfg(not(feature = "demo"))]
    #[command(hide = true)]
    Demo(NoDemo),
}

/// Whatever follows `demo` in a build without it; only the error is printed.
#[cfg(not(feature = "demo"))]
#[derive(Debug, clap::Args)]
struct NoDemo {
    #[arg(trailing_var_arg = true, allow_hyphen_values = true, hide = true)]
    _args: Vec<String>,
}

fn main() -> ExitCode {
    // Destructured so that a new flag is a compile error until it is handled here.
    let Cli {
        config,
        check,
        upgrade,
        command,
    } = Cli::parse();
    match (command, config) {
        #[cfg(feature = "demo")]
        (Some(Command::Demo(args)), _) => {
            init_logging(LogLevel::Info);
            exit(healthgate::demo::run(args))
        }
        #[cfg(not(feature = "demo"))]
        (Some(Command::Demo(_)), _) => {
            eprintln!(
                "error: this healthgate is a production build, without `healthgate demo` \
                 (built with --no-default-features); a default build has it: \
                 cargo run --release --bin healthgate -- demo"
            );
            ExitCode::from(2)
        }
        (None, Some(path)) => {
            let config = match Config::load(&path) {
                Ok(c) => c,
                Err(e) => return fail(&e),
            };
            if check {
                // The TLS files too: readable, PEM, key matching, within their dates.
                let warnings = match healthgate::server::check_tls(&config) {
                    Ok(warnings) => warnings,
                    Err(e) => {
                        eprintln!("error: {}: {e}", path.display());
                        return ExitCode::FAILURE;
                    }
                };
                for warning in warnings {
                    eprintln!("warning: {}: {warning}", path.display());
                }
                println!("{}: ok: {}", path.display(), config.summary());
                return ExitCode::SUCCESS;
            }
            init_logging(config.log.level);
            match healthgate::os::raise_open_files() {
                Ok(limit) => log::debug!("open-file limit: {limit}"),
                Err(e) => log::warn!(
                    "cannot raise the open-file limit ({e}); {} in force",
                    healthgate::os::open_files()
                ),
            }
            log::info!("{}: loaded: {}", path.display(), config.summary());
            if upgrade {
                log::info!(
                    "upgrade: waiting on {} for the listeners; send SIGQUIT to the running healthgate",
                    config.upgrade_socket
                );
            }
            let launch = healthgate::server::Launch {
                config_path: Some(path),
                upgrade,
            };
            match healthgate::server::build(&config, &launch) {
                Ok(built) => built.server.run_forever(),
                Err(e) => fail(&e),
            }
        }
        (None, None) => {
            if cfg!(feature = "demo") {
                eprintln!("error: give --config FILE (or run `healthgate demo`); see --help");
            } else {
                eprintln!("error: give --config FILE; see --help");
            }
            ExitCode::from(2)
        }
    }
}

#[cfg(feature = "demo")]
fn exit(result: Result<(), Box<dyn std::error::Error>>) -> ExitCode {
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => fail(e.as_ref()),
    }
}

fn fail(error: &dyn std::error::Error) -> ExitCode {
    eprintln!("error: {error}");
    ExitCode::FAILURE
}

/// `RUST_LOG` if set, else `level` for healthgate and `warn` for its libraries (`error` and
/// `trace` apply to them too).
fn init_logging(level: LogLevel) {
    let level = level.as_str();
    let libraries = match level {
        "error" | "trace" => level,
        _ => "warn",
    };
    let default = format!("{libraries},healthgate={level},mi_sim={level}");
    env_logger::Builder::from_env(env_logger::Env::default().default_filter_or(default))
        .format_timestamp_millis()
        .init();
}
