//! ps, start, stop, restart, kill, rm, logs, wait, rename, container
//! prune and container inspect, printed as docker prints them.

use std::io::IsTerminal;
use std::time::Duration;

use chrono::{DateTime, Utc};
use serde::Serialize;

use berth_engine::{Container, Engine, EngineError, Status};
use berth_image::reference::familiar;

use crate::cli::{
    AttachArgs, ContainerPruneArgs, ContainersArgs, ExecArgs, KillArgs, LogsArgs, PsArgs,
    RenameArgs, RmArgs, StartArgs, StopArgs, TopArgs,
};
use crate::format::{created_at, human_duration, human_size, since, Format};
use crate::run::write_entries;
use crate::{confirm, each, CliError};

pub fn start(engine: &mut Engine, a: &StartArgs) -> Result<(), CliError> {
    if a.attach || a.interactive {
        let [name] = a.containers.as_slice() else {
            return Err(CliError::Usage(
                "you cannot start and attach multiple containers at once".to_string(),
            ));
        };
        if engine.container(name)?.options.tty {
            return crate::run::start_attached(engine, name, a.interactive);
        }
        // Its output from this start on, even if it has already ended.
        let (_, _, output) = engine.container_logs(name)?;
        let c = engine.start_container(name)?;
        let code = crate::run::follow_to_end(engine, &c.id, output, a.interactive)?;
        return Err(crate::run::exit_with(code));
    }
    let names = match a.all {
        true => engine.containers_to_start(&a.filter)?,
        false => a.containers.clone(),
    };
    each(&names, |n| {
        engine.start_container(n).map(|_| Some(n.to_string()))
    })
}

pub fn attach(engine: &mut Engine, a: &AttachArgs) -> Result<(), CliError> {
    crate::run::attach_to(engine, &a.container, !a.no_stdin)
}

pub fn stop(engine: &mut Engine, a: &StopArgs) -> Result<(), CliError> {
    each(&a.containers, |n| {
        engine
            .stop_container(n, a.time, a.signal.as_deref())
            .map(|_| Some(n.to_string()))
    })
}

pub fn restart(engine: &mut Engine, a: &StopArgs) -> Result<(), CliError> {
    each(&a.containers, |n| {
        engine.stop_container(n, a.time, a.signal.as_deref())?;
        engine.start_container(n).map(|_| Some(n.to_string()))
    })
}

pub fn kill(engine: &mut Engine, a: &KillArgs) -> Result<(), CliError> {
    each(&a.containers, |n| {
        engine
            .kill_container(n, &a.signal)
            .map(|_| Some(n.to_string()))
    })
}

pub fn rm(engine: &mut Engine, a: &RmArgs) -> Result<(), CliError> {
    each(&a.containers, |n| {
        engine
            .remove_container(n, a.force)
            .map(|_| Some(n.to_string()))
    })
}

pub fn wait(engine: &mut Engine, a: &ContainersArgs) -> Result<(), CliError> {
    each(&a.containers, |n| {
        engine.wait_container(n).map(|code| Some(code.to_string()))
    })
}

pub fn exec(engine: &mut Engine, a: &ExecArgs) -> Result<(), CliError> {
    if a.tty && a.interactive && !a.detach && !std::io::stdin().is_terminal() {
        return Err(CliError::Usage("the input device is not a TTY".to_string()));
    }
    let opts = berth_engine::ExecOptions {
        command: a.command.clone(),
        env: a.env.clone(),
        workdir: a.workdir.clone(),
        user: a.user.clone(),
        detach: a.detach,
        interactive: a.interactive,
        tty: a.tty,
        console_size: a.tty.then(crate::terminal::size).flatten(),
    };
    let mut relay = |master| crate::terminal::relay(master, a.interactive);
    let terminal: Option<&mut dyn FnMut(std::fs::File)> =
        if a.tty { Some(&mut relay) } else { None };
    match engine.exec_in_container(&a.container, &opts, terminal) {
        Ok(code) => Err(crate::run::exit_with(code)),
        Err(e) => {
            // docker's codes: 126 cannot run, 127 not found, else 125... as
            // for run; berth's own failures are 1 for exec, as docker's.
            let code = match &e {
                EngineError::Runtime(r) => r.exec_status(),
                _ => None,
            };
            eprintln!("Error: {e}");
            Err(CliError::Exit(
                code.map_or(1, |c| u8::try_from(c).unwrap_or(1)),
            ))
        }
    }
}

/// `top`: the container's processes, as the host's `ps` prints them (as
/// docker does), narrowed to the container's cgroup.
pub fn top(engine: &mut Engine, a: &TopArgs) -> Result<(), CliError> {
    let pids = engine.container_pids(&a.container)?;
    let args: Vec<String> = if a.ps_options.is_empty() {
        vec!["-ef".into()]
    } else {
        a.ps_options.clone()
    };
    let out = std::process::Command::new("ps")
        .args(&args)
        .output()
        .map_err(|source| CliError::Io {
            path: "ps".into(),
            source,
        })?;
    if !out.status.success() {
        return Err(CliError::Usage(format!(
            "ps {}: {}",
            args.join(" "),
            String::from_utf8_lossy(&out.stderr).trim()
        )));
    }
    let text = String::from_utf8_lossy(&out.stdout);
    let mut lines = text.lines();
    let header = lines.next().unwrap_or_default();
    let pid_col = header
        .split_whitespace()
        .position(|h| h == "PID")
        .ok_or_else(|| CliError::Usage("ps's output has no PID column".to_string()))?;
    println!("{header}");
    for line in lines {
        let pid: Option<i32> = line
            .split_whitespace()
            .nth(pid_col)
            .and_then(|p| p.parse().ok());
        if pid.is_some_and(|p| pids.contains(&p)) {
            println!("{line}");
        }
    }
    Ok(())
}

pub fn pause(engine: &mut Engine, a: &ContainersArgs) -> Result<(), CliError> {
    each(&a.containers, |n| {
        engine.pause_container(n, true).map(|_| Some(n.to_string()))
    })
}

pub fn unpause(engine: &mut Engine, a: &ContainersArgs) -> Result<(), CliError> {
    each(&a.containers, |n| {
        engine
            .pause_container(n, false)
            .map(|_| Some(n.to_string()))
    })
}

pub fn rename(engine: &mut Engine, a: &RenameArgs) -> Result<(), CliError> {
    Ok(engine.rename_container(&a.container, &a.new_name)?)
}

pub fn prune(engine: &mut Engine, a: &ContainerPruneArgs) -> Result<(), CliError> {
    if !a.force && !confirm("WARNING! This will remove all stopped containers.") {
        return Ok(());
    }
    let removed = engine.prune_containers()?;
    if !removed.is_empty() {
        println!("Deleted Containers:");
        for id in &removed {
            println!("{id}");
        }
        println!();
    }
    println!("Total reclaimed space: 0B");
    Ok(())
}

pub fn logs(engine: &mut Engine, a: &LogsArgs) -> Result<(), CliError> {
    let since = a.since.as_deref().map(parse_time).transpose()?;
    let until = a.until.as_deref().map(parse_time).transpose()?;
    let keep = |e: &berth_engine::LogEntry| {
        let t = DateTime::parse_from_rfc3339(&e.time).map(|t| t.with_timezone(&Utc));
        match t {
            Ok(t) => since.is_none_or(|s| t >= s) && until.is_none_or(|u| t <= u),
            Err(_) => true,
        }
    };
    let (c, mut entries, mut reader) = engine.container_logs(&a.container)?;
    entries.retain(keep);
    if a.tail != "all" {
        let n: usize = a
            .tail
            .parse()
            .map_err(|_| CliError::Usage(format!("--tail {}: expected a number or all", a.tail)))?;
        let skip = entries.len().saturating_sub(n);
        entries.drain(..skip);
    }
    write_entries(&entries, a.timestamps);
    if a.follow {
        loop {
            let active = engine.container_active(&c.id)?;
            let mut new = reader.read_new()?;
            new.retain(keep);
            write_entries(&new, a.timestamps);
            if !active {
                break;
            }
            std::thread::sleep(Duration::from_millis(50));
        }
    }
    Ok(())
}

/// `--since`/`--until`: RFC 3339, a Unix time, or a duration before now
/// (`42m`, `2h`, `10s`).
fn parse_time(s: &str) -> Result<DateTime<Utc>, CliError> {
    if let Ok(t) = DateTime::parse_from_rfc3339(s) {
        return Ok(t.with_timezone(&Utc));
    }
    if let Ok(secs) = s.parse::<f64>() {
        return DateTime::from_timestamp(secs as i64, 0)
            .ok_or_else(|| CliError::Usage(format!("invalid time {s:?}")));
    }
    let (num, unit) = s.split_at(s.len().saturating_sub(1));
    let n: i64 = num.parse().map_err(|_| {
        CliError::Usage(format!(
            "invalid time {s:?}: use RFC 3339, a Unix time or 42m"
        ))
    })?;
    let d = match unit {
        "s" => chrono::Duration::seconds(n),
        "m" => chrono::Duration::minutes(n),
        "h" => chrono::Duration::hours(n),
        _ => return Err(CliError::Usage(format!("invalid time {s:?}"))),
    };
    Ok(Utc::now() - d)
}

/// One row of `ps`, with docker's field names.
#[derive(Serialize)]
struct PsRow {
    #[serde(rename = "Command")]
    command: String,
    #[serde(rename = "CreatedAt")]
    created_at: String,
    #[serde(rename = "ID")]
    id: String,
    #[serde(rename = "Image")]
    image: String,
    #[serde(rename = "Labels")]
    labels: String,
    #[serde(rename = "LocalVolumes")]
    local_volumes: String,
    #[serde(rename = "Mounts")]
    mounts: String,
    #[serde(rename = "Names")]
    names: String,
    #[serde(rename = "Networks")]
    networks: String,
    #[serde(rename = "Ports")]
    ports: String,
    #[serde(rename = "RunningFor")]
    running_for: String,
    #[serde(rename = "Size")]
    size: String,
    #[serde(rename = "State")]
    state: String,
    #[serde(rename = "Status")]
    status: String,
}

const PS_HEADERS: &[(&str, &str)] = &[
    ("Command", "COMMAND"),
    ("CreatedAt", "CREATED AT"),
    ("ID", "CONTAINER ID"),
    ("Image", "IMAGE"),
    ("Labels", "LABELS"),
    ("LocalVolumes", "LOCAL VOLUMES"),
    ("Mounts", "MOUNTS"),
    ("Names", "NAMES"),
    ("Networks", "NETWORKS"),
    ("Ports", "PORTS"),
    ("RunningFor", "CREATED"),
    ("Size", "SIZE"),
    ("State", "STATE"),
    ("Status", "STATUS"),
];

fn time(s: &str) -> Option<DateTime<Utc>> {
    DateTime::parse_from_rfc3339(s)
        .ok()
        .map(|t| t.with_timezone(&Utc))
        .filter(|t| t.timestamp() > 0)
}

/// docker's STATUS column: `Up 5 minutes`, `Exited (0) 2 seconds ago`, `Created`.
fn status_text(c: &Container) -> String {
    let s = &c.state;
    let ago = |t: &str| time(t).map_or_else(String::new, |t| human_duration(Utc::now() - t));
    match s.status {
        Status::Created => "Created".into(),
        Status::Running => format!("Up {}", ago(&s.started_at)),
        Status::Paused => format!("Up {} (Paused)", ago(&s.started_at)),
        Status::Restarting => format!("Restarting ({}) {} ago", s.exit_code, ago(&s.finished_at)),
        Status::Removing => "Removal In Progress".into(),
        Status::Exited => format!("Exited ({}) {} ago", s.exit_code, ago(&s.finished_at)),
        Status::Dead => "Dead".into(),
    }
}

/// A `--filter` of `ps`: (key, value).
fn matches(c: &Container, key: &str, value: &str) -> Result<bool, CliError> {
    Ok(match key {
        "status" => c.state.status.as_str() == value,
        "name" => c.name.contains(value.trim_start_matches('/')),
        "id" => c.id.starts_with(value),
        "ancestor" => {
            c.image == value
                || familiar(&c.image) == value
                || c.image_id.to_string().starts_with(value)
                || c.image_id.hex().starts_with(value)
        }
        "exited" => c.state.status == Status::Exited && c.state.exit_code.to_string() == value,
        "label" => c
            .options
            .labels
            .iter()
            .any(|l| match value.split_once('=') {
                Some(_) => l == value,
                None => l.split_once('=').map_or(l.as_str(), |(k, _)| k) == value,
            }),
        other => {
            return Err(CliError::Usage(format!(
                "invalid filter {other:?}: ps takes status, name, id, ancestor, exited, label"
            )))
        }
    })
}

pub fn ps(engine: &mut Engine, a: &PsArgs) -> Result<(), CliError> {
    let mut list = engine.containers()?;
    let filters: Vec<(String, String)> = a
        .filter
        .iter()
        .map(|f| {
            f.split_once('=')
                .map(|(k, v)| (k.to_string(), v.to_string()))
                .ok_or_else(|| {
                    CliError::Usage(format!("bad format of filter (expected name=value): {f}"))
                })
        })
        .collect::<Result<_, _>>()?;
    let limit = if a.latest { Some(1) } else { a.last };
    let all =
        a.all || limit.is_some() || filters.iter().any(|(k, _)| k == "status" || k == "exited");
    let mut kept = Vec::new();
    for c in list.drain(..) {
        if !all && !c.state.status.is_active() {
            continue;
        }
        // Filters of one key are or-ed, different keys and-ed, as docker does.
        let mut ok = true;
        for key in filters.iter().map(|(k, _)| k.as_str()) {
            let mut any = false;
            for (_, v) in filters.iter().filter(|(k, _)| k == key) {
                any |= matches(&c, key, v)?;
            }
            ok &= any;
        }
        if ok {
            kept.push(c);
        }
    }
    if let Some(n) = limit {
        kept.truncate(n);
    }
    if a.quiet {
        for c in &kept {
            println!("{}", if a.no_trunc { &c.id[..] } else { &c.id[..12] });
        }
        return Ok(());
    }
    let rows: Vec<PsRow> = kept
        .iter()
        .map(|c| {
            let command = c.command().unwrap_or_default().join(" ");
            let command = if a.no_trunc || command.chars().count() <= 20 {
                format!("\"{command}\"")
            } else {
                format!("\"{}…\"", command.chars().take(19).collect::<String>())
            };
            PsRow {
                command,
                created_at: created_at(time(&c.created)),
                id: if a.no_trunc {
                    c.id.clone()
                } else {
                    c.id[..12].to_string()
                },
                image: familiar(&c.image).to_string(),
                labels: c.options.labels.join(","),
                local_volumes: "0".into(),
                mounts: String::new(),
                names: c.name.clone(),
                networks: c.options.network.clone().unwrap_or_else(|| "none".into()),
                ports: String::new(),
                running_for: since(time(&c.created)),
                size: match a.size.then(|| engine.container_size(c)) {
                    Some(Ok((written, virt))) => format!(
                        "{} (virtual {})",
                        human_size(written, 3),
                        human_size(virt, 3)
                    ),
                    _ => String::new(),
                },
                state: c.state.status.as_str().into(),
                status: status_text(c),
            }
        })
        .collect();
    let default = if a.size {
        "table {{.ID}}\t{{.Image}}\t{{.Command}}\t{{.RunningFor}}\t{{.Status}}\t{{.Ports}}\t{{.Names}}\t{{.Size}}"
    } else {
        "table {{.ID}}\t{{.Image}}\t{{.Command}}\t{{.RunningFor}}\t{{.Status}}\t{{.Ports}}\t{{.Names}}"
    };
    let spec = a
        .format
        .as_deref()
        .filter(|f| !f.is_empty() && *f != "table")
        .unwrap_or(default);
    let format = Format::parse(Some(spec), default.trim_start_matches("table "))?;
    format.write_rows(&rows, PS_HEADERS)?;
    Ok(())
}
