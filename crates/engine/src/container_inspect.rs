//! `inspect` of a container, in the shape of docker 20.10's (see
//! shared/reference/docker-20.10-container-inspect.json): the same keys in
//! the same order; what berth has no notion of yet (networks, ports) is
//! spelt as docker spells "none".

use serde_json::{json, Value};

use crate::containers::Container;
use crate::restart::Policy;
use crate::state::Status;
use crate::{Engine, EngineError};

/// The mounts every container gets; the others are the user's.
const DEFAULT_MOUNTS: &[&str] = &[
    "/proc",
    "/dev",
    "/dev/pts",
    "/sys",
    "/sys/fs/cgroup",
    "/dev/mqueue",
    crate::spec::INIT_PATH,
    "/dev/shm",
    "/etc/hostname",
    "/etc/hosts",
    "/etc/resolv.conf",
];

/// docker's `Mounts`: the user's binds and tmpfs mounts.
fn user_mounts(spec: &Value) -> Vec<Value> {
    let none = Vec::new();
    spec["mounts"]
        .as_array()
        .unwrap_or(&none)
        .iter()
        .filter(|m| {
            m["destination"]
                .as_str()
                .is_some_and(|d| !DEFAULT_MOUNTS.contains(&d))
        })
        .map(|m| {
            let options: Vec<&str> = m["options"]
                .as_array()
                .map(|o| o.iter().filter_map(Value::as_str).collect())
                .unwrap_or_default();
            let propagation = options
                .iter()
                .find(|o| o.contains("private") || o.contains("shared") || o.contains("slave"))
                .copied()
                .unwrap_or("");
            let kind = m["type"].as_str().unwrap_or("bind");
            json!({
                "Type": kind,
                "Source": if kind == "bind" { m["source"].clone() } else { json!("") },
                "Destination": m["destination"],
                "Mode": if options.contains(&"ro") { "ro" } else { "" },
                "RW": !options.contains(&"ro"),
                "Propagation": propagation,
            })
        })
        .collect()
}

fn null_if_empty(v: &[String]) -> Value {
    if v.is_empty() {
        Value::Null
    } else {
        json!(v)
    }
}

impl Engine {
    pub fn inspect_container(&mut self, name: &str) -> Result<Value, EngineError> {
        let c = self.container(name)?;
        let spec = c.spec()?;
        let chains = self.chains_of(&c.image_id)?;
        Ok(details(&c, &spec, &self.layers.image_dirs(&chains)))
    }
}

fn details(c: &Container, spec: &Value, image_dirs: &Option<berth_storage::ImageDirs>) -> Value {
    let o = &c.options;
    let s = &c.state;
    let process = &spec["process"];
    let args = c.command().unwrap_or_default();
    let dir = c.dir.display().to_string();
    let (restart_name, restart_max) = match Policy::parse(o.restart.as_deref()) {
        Ok(Policy::OnFailure(n)) => ("on-failure", n.unwrap_or(0)),
        Ok(Policy::Always) => ("always", 0),
        Ok(Policy::UnlessStopped) => ("unless-stopped", 0),
        _ => ("no", 0),
    };
    let labels: serde_json::Map<String, Value> = o
        .labels
        .iter()
        .map(|l| match l.split_once('=') {
            Some((k, v)) => (k.to_string(), json!(v)),
            None => (l.to_string(), json!("")),
        })
        .collect();
    let log_config: serde_json::Map<String, Value> = o
        .log_opts
        .iter()
        .filter_map(|l| l.split_once('='))
        .map(|(k, v)| (k.to_string(), json!(v)))
        .collect();
    let mut lower: Vec<String> = image_dirs
        .as_ref()
        .map(|d| {
            let mut v: Vec<String> = d.lower.iter().map(|p| p.display().to_string()).collect();
            v.insert(0, d.upper.display().to_string());
            v
        })
        .unwrap_or_default();
    if lower.is_empty() {
        lower.push(format!("{dir}/lower"));
    }
    let nano_cpus = o.cpus.map_or(0, |c| (c * 1e9) as i64);
    let mut details = json!({
        "Id": c.id,
        "Created": c.created,
        "Path": args.first().cloned().unwrap_or_default(),
        "Args": args.get(1..).unwrap_or_default(),
        "State": {
            "Status": s.status.as_str(),
            "Running": matches!(s.status, Status::Running | Status::Paused),
            "Paused": s.status == Status::Paused,
            "Restarting": s.status == Status::Restarting,
            "OOMKilled": s.oom_killed,
            "Dead": s.status == Status::Dead,
            "Pid": s.pid,
            "ExitCode": s.exit_code,
            "Error": s.error,
            "StartedAt": s.started_at,
            "FinishedAt": s.finished_at,
        },
        "Image": c.image_id.to_string(),
        "ResolvConfPath": format!("{dir}/resolv.conf"),
        "HostnamePath": format!("{dir}/hostname"),
        "HostsPath": format!("{dir}/hosts"),
        "LogPath": c.log_path().display().to_string(),
        "Name": format!("/{}", c.name),
        "RestartCount": s.restart_count,
        "Driver": "overlay2",
        "Platform": "linux",
        "MountLabel": "",
        "ProcessLabel": "",
        "AppArmorProfile": "",
        "ExecIDs": null,
        "HostConfig": {
            "Binds": null_if_empty(&o.volumes),
            "ContainerIDFile": "",
            "LogConfig": {"Type": "json-file", "Config": log_config},
            "NetworkMode": o.network.clone().unwrap_or_else(|| "none".into()),
            "PortBindings": {},
            "RestartPolicy": {"Name": restart_name, "MaximumRetryCount": restart_max},
            "AutoRemove": o.auto_remove,
            "VolumeDriver": "",
            "VolumesFrom": null,
            "CapAdd": null_if_empty(&o.cap_add),
            "CapDrop": null_if_empty(&o.cap_drop),
            "CgroupnsMode": "private",
            "Dns": [],
            "DnsOptions": [],
            "DnsSearch": [],
            "ExtraHosts": null,
            "GroupAdd": null,
            "IpcMode": "private",
            "Cgroup": "",
            "Links": null,
            "OomScoreAdj": 0,
            "PidMode": "",
            "Privileged": o.privileged,
            "PublishAllPorts": false,
            "ReadonlyRootfs": o.read_only,
            "SecurityOpt": null_if_empty(&o.security_opt),
            "UTSMode": "",
            "UsernsMode": "",
            "ShmSize": o.shm_size.unwrap_or(64 << 20),
            "Runtime": "berth-runtime",
            "ConsoleSize": o.console_size.unwrap_or_default(),
            "Isolation": "",
            "CpuShares": o.cpu_shares.unwrap_or(0),
            "Memory": o.memory.unwrap_or(0),
            "NanoCpus": nano_cpus,
            "CgroupParent": "",
            "BlkioWeight": 0,
            "BlkioWeightDevice": [],
            "BlkioDeviceReadBps": null,
            "BlkioDeviceWriteBps": null,
            "BlkioDeviceReadIOps": null,
            "BlkioDeviceWriteIOps": null,
            "CpuPeriod": o.cpu_period.unwrap_or(0),
            "CpuQuota": o.cpu_quota.unwrap_or(0),
            "CpuRealtimePeriod": 0,
            "CpuRealtimeRuntime": 0,
            "CpusetCpus": o.cpuset_cpus.clone().unwrap_or_default(),
            "CpusetMems": "",
            "Devices": [],
            "DeviceCgroupRules": null,
            "DeviceRequests": null,
            "KernelMemory": 0,
            "KernelMemoryTCP": 0,
            "MemoryReservation": o.memory_reservation.unwrap_or(0),
            "MemorySwap": o.memory_swap.unwrap_or(0),
            "MemorySwappiness": null,
            "OomKillDisable": false,
            "PidsLimit": o.pids_limit,
            "Ulimits": null_if_empty(&o.ulimits),
            "CpuCount": 0,
            "CpuPercent": 0,
            "IOMaximumIOps": 0,
            "IOMaximumBandwidth": 0,
            // What the container really runs with (none with --privileged).
            "MaskedPaths": spec["linux"]["maskedPaths"],
            "ReadonlyPaths": spec["linux"]["readonlyPaths"],
        },
        "GraphDriver": {
            "Data": {
                "LowerDir": lower.join(":"),
                "MergedDir": format!("{dir}/merged"),
                "UpperDir": format!("{dir}/upper"),
                "WorkDir": format!("{dir}/work"),
            },
            "Name": "overlay2",
        },
        "Mounts": user_mounts(spec),
        "Config": {
            "Hostname": spec["hostname"],
            "Domainname": "",
            "User": o.user.clone().unwrap_or_default(),
            "AttachStdin": o.interactive && !o.detach,
            "AttachStdout": !o.detach,
            "AttachStderr": !o.detach,
            "Tty": o.tty,
            "OpenStdin": o.interactive,
            "StdinOnce": o.interactive && !o.detach,
            "Env": process["env"],
            "Cmd": if o.command.is_empty() { Value::Null } else { json!(o.command) },
            "Image": o.image,
            "Volumes": null,
            "WorkingDir": o.workdir.clone().unwrap_or_default(),
            "Entrypoint": o.entrypoint.as_ref().map_or(Value::Null, |e| json!([e])),
            "OnBuild": null,
            "Labels": labels,
        },
        "NetworkSettings": {
            "Bridge": "",
            "SandboxID": "",
            "HairpinMode": false,
            "LinkLocalIPv6Address": "",
            "LinkLocalIPv6PrefixLen": 0,
            "Ports": {},
            "SandboxKey": "",
            "SecondaryIPAddresses": null,
            "SecondaryIPv6Addresses": null,
            "EndpointID": "",
            "Gateway": "",
            "GlobalIPv6Address": "",
            "GlobalIPv6PrefixLen": 0,
            "IPAddress": "",
            "IPPrefixLen": 0,
            "IPv6Gateway": "",
            "MacAddress": "",
            "Networks": {},
        },
    });
    // Left out unless set, as docker's.
    if o.init {
        details["HostConfig"]["Init"] = json!(true);
    }
    details
}
