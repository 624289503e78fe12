//! Dockerfile instructions given to `import --change` (docker's subset:
//! CMD, ENTRYPOINT, ENV, EXPOSE, LABEL, ONBUILD, STOPSIGNAL, USER, VOLUME,
//! WORKDIR), applied to an image's run config.

use std::collections::BTreeMap;

use berth_image::config::RunConfig;

use crate::EngineError;

pub fn apply_change(config: &mut RunConfig, change: &str) -> Result<(), EngineError> {
    let bad = |reason: &str| EngineError::Change {
        change: change.to_string(),
        reason: reason.to_string(),
    };
    let trimmed = change.trim();
    let (instruction, args) = trimmed
        .split_once(char::is_whitespace)
        .unwrap_or((trimmed, ""));
    let args = args.trim();
    match instruction.to_ascii_uppercase().as_str() {
        "CMD" => config.cmd = Some(command(args).map_err(|r| bad(&r))?),
        "ENTRYPOINT" => config.entrypoint = Some(command(args).map_err(|r| bad(&r))?),
        "ENV" => {
            let env = config.env.get_or_insert_with(Vec::new);
            for (k, v) in pairs(args).map_err(|r| bad(&r))? {
                env.retain(|e| e.split_once('=').map_or(e.as_str(), |(n, _)| n) != k);
                env.push(format!("{k}={v}"));
            }
        }
        "LABEL" => {
            let labels = config.labels.get_or_insert_with(BTreeMap::new);
            labels.extend(pairs(args).map_err(|r| bad(&r))?);
        }
        "EXPOSE" => {
            let ports = config.exposed_ports.get_or_insert_with(BTreeMap::new);
            for p in args.split_whitespace() {
                let port = if p.contains('/') {
                    p.to_string()
                } else {
                    format!("{p}/tcp")
                };
                ports.insert(port, serde_json::json!({}));
            }
        }
        "VOLUME" => {
            let vols = config.volumes.get_or_insert_with(BTreeMap::new);
            let list = match serde_json::from_str::<Vec<String>>(args) {
                Ok(list) => list,
                Err(_) => args.split_whitespace().map(String::from).collect(),
            };
            for v in list {
                vols.insert(v, serde_json::json!({}));
            }
        }
        "WORKDIR" => config.working_dir = args.to_string(),
        "USER" => config.user = args.to_string(),
        "STOPSIGNAL" => config.stop_signal = Some(args.to_string()),
        "ONBUILD" => config
            .on_build
            .get_or_insert_with(Vec::new)
            .push(args.to_string()),
        "" => return Err(bad("empty instruction")),
        other => {
            return Err(bad(&format!(
                "{other} is not an instruction --change accepts"
            )))
        }
    }
    Ok(())
}

/// `["a", "b"]` (exec form) or `a b` (shell form, run by /bin/sh -c).
fn command(args: &str) -> Result<Vec<String>, String> {
    if args.starts_with('[') {
        serde_json::from_str(args).map_err(|e| format!("not a JSON array of strings: {e}"))
    } else if args.is_empty() {
        Err("missing command".into())
    } else {
        Ok(vec!["/bin/sh".into(), "-c".into(), args.into()])
    }
}

/// `k=v k2="v 2"`, or the legacy `k v` form with a single pair.
fn pairs(args: &str) -> Result<Vec<(String, String)>, String> {
    let words = shlex::split(args).ok_or("unbalanced quotes")?;
    if words.is_empty() {
        return Err("missing arguments".into());
    }
    if !words[0].contains('=') {
        let (k, v) = args
            .split_once(char::is_whitespace)
            .ok_or("expected KEY=VALUE or KEY VALUE")?;
        return Ok(vec![(k.to_string(), v.trim().to_string())]);
    }
    words
        .into_iter()
        .map(|w| {
            w.split_once('=')
                .map(|(k, v)| (k.to_string(), v.to_string()))
                .ok_or_else(|| format!("{w:?} is not KEY=VALUE"))
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn applied(changes: &[&str]) -> RunConfig {
        let mut c = RunConfig::default();
        for ch in changes {
            apply_change(&mut c, ch).unwrap();
        }
        c
    }

    #[test]
    fn cmd_and_entrypoint_in_both_forms() {
        let c = applied(&[
            r#"CMD ["sh", "-c", "echo hi"]"#,
            "ENTRYPOINT /bin/init --flag",
        ]);
        assert_eq!(c.cmd.unwrap(), ["sh", "-c", "echo hi"]);
        assert_eq!(c.entrypoint.unwrap(), ["/bin/sh", "-c", "/bin/init --flag"]);
    }

    #[test]
    fn env_label_workdir_expose() {
        let c = applied(&[
            "ENV A=1 B=\"two words\"",
            "ENV A 3",
            "LABEL org.x=y",
            "WORKDIR /srv",
            "EXPOSE 80 53/udp",
            "USER 1000:1000",
        ]);
        assert_eq!(c.env.unwrap(), ["B=two words", "A=3"]);
        assert_eq!(c.labels.unwrap()["org.x"], "y");
        assert_eq!(c.working_dir, "/srv");
        assert!(c.exposed_ports.as_ref().unwrap().contains_key("80/tcp"));
        assert!(c.exposed_ports.unwrap().contains_key("53/udp"));
        assert_eq!(c.user, "1000:1000");
    }

    #[test]
    fn refuses_unknown_and_malformed() {
        let mut c = RunConfig::default();
        assert!(apply_change(&mut c, "RUN rm -rf /").is_err());
        assert!(apply_change(&mut c, "CMD [not json").is_err());
        assert!(apply_change(&mut c, "ENV").is_err());
    }
}
