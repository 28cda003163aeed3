//! `origin-tracer`: a thin entry point over the library; clear one-line errors
//! and exit codes (0 ok, 1 runtime failure, 2 usage).

use std::process::ExitCode;

use clap::Parser;
use tracer_user::{
    analyze,
    cli::{Args, Command},
    output::schema,
    run,
};

fn main() -> ExitCode {
    tracing_subscriber::fmt()
        .with_writer(std::io::stderr)
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_env("ORIGIN_TRACER_LOG")
                .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("warn")),
        )
        .init();
    let args = Args::parse();
    if matches!(args.command, Some(Command::Schema)) {
        print!("{}", schema::to_file_text());
        return ExitCode::SUCCESS;
    }
    let settings = match args.resolve() {
        Ok(s) => s,
        Err(e) => {
            eprintln!("origin-tracer: {e}");
            return ExitCode::from(2);
        }
    };
    let result = match settings.capture.clone() {
        Some(file) => analyze::run(&settings, &file),
        None => run::run(settings),
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("origin-tracer: {e:#}");
            ExitCode::FAILURE
        }
    }
}
