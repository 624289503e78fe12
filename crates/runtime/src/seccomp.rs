//! The OCI seccomp section, compiled to a BPF filter with libseccomp (in
//! the parent, step 1) and loaded by the child as late as it can be
//! (step 11). libseccomp takes tens of milliseconds to compile a long
//! allow-list for three architectures, so a caller may keep compiled
//! filters in a cache directory, each under the hash of its profile and
//! libseccomp's version, and taken only if the whole key matches.

use std::hash::{Hash, Hasher};
use std::io::{Read, Seek, Write};
use std::path::Path;
use std::str::FromStr;

use libseccomp::{
    ScmpAction, ScmpArch, ScmpArgCompare, ScmpCompareOp, ScmpFilterContext, ScmpSyscall,
};
use serde::{Deserialize, Serialize};

use crate::config::ConfigError;

/// `linux.seccomp`, field for field as the OCI spec writes it.
#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Seccomp {
    pub default_action: String,
    #[serde(default)]
    pub default_errno_ret: Option<u32>,
    #[serde(default)]
    pub architectures: Vec<String>,
    #[serde(default)]
    pub syscalls: Vec<SyscallRule>,
}

#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct SyscallRule {
    pub names: Vec<String>,
    pub action: String,
    #[serde(default)]
    pub errno_ret: Option<u32>,
    #[serde(default)]
    pub args: Vec<Arg>,
}

#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Arg {
    pub index: u32,
    pub value: u64,
    #[serde(default)]
    pub value_two: Option<u64>,
    pub op: String,
}

fn bad(what: impl std::fmt::Display) -> ConfigError {
    ConfigError::Invalid(format!("linux.seccomp: {what}"))
}

fn action(name: &str, errno: Option<u32>) -> Result<ScmpAction, ConfigError> {
    // EPERM when the spec names no errno, as runc and crun do.
    let value = match name {
        "SCMP_ACT_ERRNO" => Some(errno.unwrap_or(1) as i32),
        "SCMP_ACT_TRACE" => Some(errno.unwrap_or(0) as i32),
        _ => None,
    };
    ScmpAction::from_str(name, value).map_err(|e| bad(format!("action {name}: {e}")))
}

fn compare(a: &Arg) -> Result<ScmpArgCompare, ConfigError> {
    let op = ScmpCompareOp::from_str(&a.op).map_err(|e| bad(format!("operator {}: {e}", a.op)))?;
    Ok(match op {
        // OCI's value is the mask and valueTwo the datum.
        ScmpCompareOp::MaskedEqual(_) => ScmpArgCompare::new(
            a.index,
            ScmpCompareOp::MaskedEqual(a.value),
            a.value_two.unwrap_or(0),
        ),
        op => ScmpArgCompare::new(a.index, op, a.value),
    })
}

/// A compiled filter: its BPF program, as the kernel takes it.
pub struct Filter(Vec<u8>);

impl Filter {
    /// Installs it on the calling thread (the container's process).
    pub fn load(&self) -> std::io::Result<()> {
        berth_sys::seccomp_set_filter(&self.0)
    }
}

/// The filter for `s`: from `cache` when it holds one compiled from the
/// same profile by the same libseccomp, else compiled (and kept there).
pub fn filter(s: &Seccomp, cache: Option<&Path>) -> Result<Filter, ConfigError> {
    let Some(cache) = cache else {
        return export(&compile(s)?).map(Filter);
    };
    let version = libseccomp::ScmpVersion::current()
        .map(|v| format!("{}.{}.{}", v.major, v.minor, v.micro))
        .unwrap_or_default();
    let key = serde_json::to_vec(&(version, s)).expect("a profile serialises");
    let mut hasher = std::collections::hash_map::DefaultHasher::new();
    key.hash(&mut hasher);
    let path = cache.join(format!("{:016x}", hasher.finish()));
    // The file: the key's length (u32 LE), the key, the program.
    if let Ok(bytes) = std::fs::read(&path) {
        let stored = bytes
            .get(..4)
            .map(|n| u32::from_le_bytes([n[0], n[1], n[2], n[3]]) as usize)
            .and_then(|n| Some((bytes.get(4..4 + n)?, bytes.get(4 + n..)?)));
        if let Some((_, program)) = stored.filter(|(k, _)| *k == key.as_slice()) {
            return Ok(Filter(program.to_vec()));
        }
    }
    let program = export(&compile(s)?)?;
    // Kept only if it can be: a cache that cannot be written is no error.
    let _ = std::fs::create_dir_all(cache).and_then(|()| {
        let mut tmp = tempfile::NamedTempFile::new_in(cache)?;
        tmp.write_all(&(key.len() as u32).to_le_bytes())?;
        tmp.write_all(&key)?;
        tmp.write_all(&program)?;
        tmp.persist(&path).map_err(|e| e.error).map(drop)
    });
    Ok(Filter(program))
}

/// The BPF program libseccomp generates for `ctx`.
fn export(ctx: &ScmpFilterContext) -> Result<Vec<u8>, ConfigError> {
    let mut file = tempfile::tempfile().map_err(bad)?;
    ctx.export_bpf(&mut file).map_err(bad)?;
    let mut program = Vec::new();
    file.rewind()
        .and_then(|()| file.read_to_end(&mut program))
        .map_err(bad)?;
    Ok(program)
}

/// Builds the filter. Syscall names this libseccomp does not know are
/// skipped (profiles list syscalls of newer kernels), as in runc.
pub fn compile(s: &Seccomp) -> Result<ScmpFilterContext, ConfigError> {
    let default = action(&s.default_action, s.default_errno_ret)?;
    let mut ctx = ScmpFilterContext::new(default).map_err(bad)?;
    for arch in &s.architectures {
        let a = ScmpArch::from_str(arch).map_err(|e| bad(format!("architecture {arch}: {e}")))?;
        if !ctx.is_arch_present(a).unwrap_or(false) {
            ctx.add_arch(a)
                .map_err(|e| bad(format!("architecture {arch}: {e}")))?;
        }
    }
    // berth sets no_new_privs itself, when the process asks for it.
    ctx.set_ctl_nnp(false).map_err(bad)?;
    for rule in &s.syscalls {
        let act = action(&rule.action, rule.errno_ret)?;
        if act == default {
            continue;
        }
        let conditions = rule
            .args
            .iter()
            .map(compare)
            .collect::<Result<Vec<_>, _>>()?;
        // libseccomp takes one comparison per argument in a rule; several
        // on one argument become one rule each (an OR), as runc does.
        let mut indexes: Vec<u32> = rule.args.iter().map(|a| a.index).collect();
        indexes.sort_unstable();
        let repeated = indexes.windows(2).any(|w| w[0] == w[1]);
        for name in &rule.names {
            let Ok(syscall) = ScmpSyscall::from_name(name) else {
                continue;
            };
            let added = if conditions.is_empty() {
                ctx.add_rule(act, syscall)
            } else if repeated {
                conditions
                    .iter()
                    .try_for_each(|c| ctx.add_rule_conditional(act, syscall, &[*c]).map(|_| ()))
                    .map(|()| &mut ctx)
            } else {
                ctx.add_rule_conditional(act, syscall, &conditions)
            };
            added.map_err(|e| bad(format!("rule for {name}: {e}")))?;
        }
    }
    Ok(ctx)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(v: serde_json::Value) -> Seccomp {
        serde_json::from_value(v).unwrap()
    }

    #[test]
    fn compiles_rules_with_arguments() {
        let s = parse(serde_json::json!({
            "defaultAction": "SCMP_ACT_ERRNO",
            "architectures": ["SCMP_ARCH_X86_64", "SCMP_ARCH_X86"],
            "syscalls": [
                {"names": ["read", "write", "not_a_real_syscall"], "action": "SCMP_ACT_ALLOW"},
                {"names": ["personality"], "action": "SCMP_ACT_ALLOW", "args": [{"index": 0, "value": 0, "op": "SCMP_CMP_EQ"}, {"index": 0, "value": 8, "op": "SCMP_CMP_EQ"}]},
                {"names": ["clone"], "action": "SCMP_ACT_ALLOW", "args": [{"index": 0, "value": 2114060288, "valueTwo": 0, "op": "SCMP_CMP_MASKED_EQ"}]}
            ]
        }));
        compile(&s).unwrap();
    }

    #[test]
    fn refuses_unknown_actions() {
        let s = parse(serde_json::json!({"defaultAction": "SCMP_ACT_MAYBE"}));
        assert!(compile(&s)
            .unwrap_err()
            .to_string()
            .contains("SCMP_ACT_MAYBE"));
    }
}
