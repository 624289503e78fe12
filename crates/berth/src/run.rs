//! run: a container in the foreground, with docker's exit codes (125 when
//! berth failed, 126 when the command cannot run, 127 when it is not
//! found, else the container's own).

use berth_engine::{Engine, EngineError, RunOptions};

use crate::cli::RunArgs;
use crate::CliError;

const EXIT_BERTH_FAILED: u8 = 125;

pub fn run(engine: &mut Engine, a: &RunArgs) -> Result<(), CliError> {
    if !a.rm {
        // Containers that outlive `run` need records and a monitor, which
        // are not built yet: say so rather than pretend.
        eprintln!("berth: run keeps no container yet: pass --rm (berth removes the container when it exits)");
        return Err(CliError::Exit(EXIT_BERTH_FAILED));
    }
    // As docker: --env-file first, then -e, the later winning.
    let mut env = Vec::new();
    for path in &a.env_file {
        let text = std::fs::read_to_string(path).map_err(|source| CliError::Io {
            path: path.display().to_string(),
            source,
        })?;
        env.extend(
            text.lines()
                .map(str::trim)
                .filter(|l| !l.is_empty() && !l.starts_with('#'))
                .map(String::from),
        );
    }
    env.extend(a.env.iter().cloned());
    let opts = RunOptions {
        image: a.image.clone(),
        command: a.command.clone(),
        entrypoint: a.entrypoint.clone(),
        env,
        workdir: a.workdir.clone(),
        user: a.user.clone(),
        hostname: a.hostname.clone(),
        memory: a.memory,
        cpus: a.cpus,
        memory_reservation: a.memory_reservation,
        memory_swap: a.memory_swap,
        cpu_shares: a.cpu_shares,
        cpuset_cpus: a.cpuset_cpus.clone(),
        pids_limit: a.pids_limit,
        volumes: a.volume.clone(),
        tmpfs: a.tmpfs.clone(),
        read_only: a.read_only,
        cap_add: a.cap_add.clone(),
        cap_drop: a.cap_drop.clone(),
        security_opt: a.security_opt.clone(),
        ulimits: a.ulimit.clone(),
        network: a.network.clone(),
        cpu_quota: a.cpu_quota,
        cpu_period: a.cpu_period,
        shm_size: a.shm_size,
    };
    match engine.run_removed(&opts) {
        Ok(code) => Err(CliError::Exit(u8::try_from(code).unwrap_or(255))),
        Err(e) => {
            eprintln!("berth: {e}");
            let code = match &e {
                EngineError::Runtime(berth_runtime_error) => berth_runtime_error
                    .exec_status()
                    .unwrap_or(EXIT_BERTH_FAILED as i32),
                _ => EXIT_BERTH_FAILED as i32,
            };
            Err(CliError::Exit(
                u8::try_from(code).unwrap_or(EXIT_BERTH_FAILED),
            ))
        }
    }
}
