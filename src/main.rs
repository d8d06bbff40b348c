//! `steelcutd`: parses the command line, runs one subcommand, turns the result into an exit
//! code. Everything else lives in the `steelcut` library.

use std::process::ExitCode;

use clap::Parser;
use steelcut::cmd::cli::{Cli, Command};

fn main() -> ExitCode {
    let cli = Cli::parse();
    let result = match cli.command {
        Command::Serve(arg) => steelcut::cmd::serve::serve(&arg),
        Command::CheckConfig(arg) => steelcut::cmd::serve::check_config(&arg),
        Command::Migrate(db) => steelcut::cmd::admin::migrate(&db),
        Command::Client(cmd) => steelcut::cmd::clients::run(cmd),
        Command::Keys(cmd) => steelcut::cmd::keys::run(cmd),
        Command::Token(args) => steelcut::cmd::client::token_command(&args),
        Command::Get(args) => steelcut::cmd::client::get_command(&args),
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
