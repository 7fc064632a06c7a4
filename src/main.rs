//! The `jitr-infra` binary: parses arguments, runs, maps the outcome to an exit code.

use clap::Parser;
use jitr_infra::cli::{run, Cli};
use jitr_infra::error::exit;
use std::io::Write;

fn main() {
    let cli = match Cli::try_parse() {
        Ok(cli) => cli,
        Err(e) => {
            // --help and --version are "errors" to clap; they print and succeed.
            let _ = e.print();
            std::process::exit(if e.use_stderr() {
                exit::USAGE
            } else {
                exit::OK
            });
        }
    };
    let stdout = std::io::stdout();
    let stderr = std::io::stderr();
    let code = match run(cli, &mut stdout.lock(), &mut stderr.lock()) {
        Ok(code) => code,
        Err(e) => {
            let text = e.to_string();
            let mut err = stderr.lock();
            let _ = write!(err, "error: {text}");
            if !text.ends_with('\n') {
                let _ = writeln!(err);
            }
            e.exit_code()
        }
    };
    std::process::exit(code);
}
