//! natra's entry point: a CNI plugin when CNI_COMMAND is set, a CLI otherwise.
use std::io::{Read, Write};
use std::process::ExitCode;

use natra::cni::{self, env::CniEnv};
use natra::error::{Error, ErrorKind};

fn main() -> ExitCode {
    env_logger::Builder::from_env(env_logger::Env::default().filter_or("NATRA_LOG", "info"))
        .target(env_logger::Target::Stderr)
        .init();
    natra::dataplane::route_libbpf_logs();
    if std::env::var_os("CNI_COMMAND").is_some() {
        return run_cni();
    }
    natra::cli::run()
}

/// The CNI codes of natra's errors: the spec's where one fits, 100+ otherwise.
fn cni_code(kind: ErrorKind) -> u32 {
    match kind {
        ErrorKind::IncompatibleVersion => 1,
        ErrorKind::ContainerUnknown => 3,
        ErrorKind::InvalidEnvironment => 4,
        ErrorKind::Io => 5,
        ErrorKind::Decode => 6,
        ErrorKind::NotReady => 50,
        ErrorKind::TryAgainLater => 11,
        ErrorKind::InvalidConfig => 7,
        ErrorKind::Dataplane => 100,
        ErrorKind::CheckMismatch => 101,
    }
}

fn run_cni() -> ExitCode {
    let mut stdin = Vec::new();
    let outcome = std::io::stdin()
        .read_to_end(&mut stdin)
        .map_err(|e| Error::new(ErrorKind::Io, "cannot read stdin").with_details(e))
        .and_then(|_| CniEnv::from_env())
        .and_then(|env| cni::run(&env, &stdin));
    let mut stdout = std::io::stdout().lock();
    match outcome {
        Ok(output) => {
            if let Some(value) = output {
                let _ = writeln!(stdout, "{value}");
            }
            ExitCode::SUCCESS
        }
        Err(e) => {
            log::error!(
                "{} failed: {e}",
                std::env::var("CNI_COMMAND").unwrap_or_default()
            );
            let version = cni::gojson::top_level_str(&stdin, "cniVersion")
                .unwrap_or_else(|| cni::verbs::latest_version().to_owned());
            let body = cni::result::error(&version, cni_code(e.kind), &e.msg, &e.details);
            let _ = writeln!(stdout, "{body}");
            ExitCode::FAILURE
        }
    }
}
