//! `steelcutd`: parses the command line, runs one subcommand, turns the result into an exit
//! code. Everything else lives in the `steelcut` library.

use std::process::ExitCode;

use clap::Parser;
use steelcut::cli::{Cli, Command};

fn main() -> ExitCode {
    let cli = Cli::parse();
    let result = match cli.command {
        Command::Serve(arg) => steelcut::daemon::serve(&arg),
        Command::CheckConfig(arg) => steelcut::daemon::check_config(&arg),
        Command::Migrate(db) => steelcut::admin::migrate(&db),
        Command::Client(cmd) => steelcut::admin::client(cmd),
        Command::Keys(cmd) => steelcut::admin::keys(cmd),
        Command::Token(args) => steelcut::client::token_command(&args),
        Command::Get(args) => steelcut::client::get_command(&args),
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("steelcutd: {e:#}");
            // EX_CONFIG (sysexits.h): the unit lists it in RestartPreventExitStatus=, so a
            // broken file ends in `failed` at once instead of a restart loop.
            if e.downcast_ref::<steelcut::config::ConfigError>().is_some() {
                ExitCode::from(78)
            } else {
                ExitCode::FAILURE
            }
        }
    }
}
