//! berth's default seccomp profile: the syscalls docker's default profile
//! keeps from a container, refused with EPERM, each group let through
//! again when the container is given the capability that docker's profile
//! ties it to (`--cap-add SYS_ADMIN` allows mount, ...). Namespaces stay
//! out of reach through clone's flags as through unshare and setns, and
//! clone3 answers ENOSYS, so that libc falls back to clone, whose flags a
//! filter can see.
//!
//! Docker's profile is an allow-list; this one lists what is refused,
//! which keeps it short and readable, at the price that a syscall newer
//! than the list is allowed. The test suite checks the refusals.

use serde_json::{json, Value};

const EPERM: u32 = 1;
const ENOSYS: u32 = 38;

/// (capability that lets them through, syscalls refused without it).
const GUARDED: &[(&str, &[&str])] = &[
    (
        "CAP_SYS_ADMIN",
        &[
            "mount",
            "umount",
            "umount2",
            "pivot_root",
            "unshare",
            "setns",
            "mount_setattr",
            "open_tree",
            "move_mount",
            "fsopen",
            "fsconfig",
            "fsmount",
            "fspick",
            "quotactl",
            "quotactl_fd",
            "lookup_dcookie",
            "fanotify_init",
            "name_to_handle_at",
            "swapon",
            "swapoff",
            "bpf",
            "perf_event_open",
            "setdomainname",
            "sethostname",
        ],
    ),
    ("CAP_DAC_READ_SEARCH", &["open_by_handle_at"]),
    ("CAP_SYSLOG", &["syslog"]),
    (
        "CAP_SYS_MODULE",
        &[
            "init_module",
            "finit_module",
            "delete_module",
            "create_module",
        ],
    ),
    ("CAP_SYS_BOOT", &["reboot", "kexec_load", "kexec_file_load"]),
    (
        "CAP_SYS_TIME",
        &["settimeofday", "clock_settime", "clock_adjtime", "adjtimex"],
    ),
    ("CAP_SYS_PACCT", &["acct"]),
    ("CAP_SYS_PTRACE", &["kcmp"]),
    ("CAP_SYS_RAWIO", &["iopl", "ioperm"]),
    (
        "CAP_SYS_NICE",
        &["mbind", "set_mempolicy", "move_pages", "migrate_pages"],
    ),
    ("CAP_SYS_TTY_CONFIG", &["vhangup"]),
];

/// Refused whatever the capabilities: obsolete, or the kernel's keyring
/// and io_uring, which docker's profile keeps from every container.
const REFUSED: &[&str] = &[
    "add_key",
    "request_key",
    "keyctl",
    "userfaultfd",
    "uselib",
    "ustat",
    "sysfs",
    "_sysctl",
    "nfsservctl",
    "get_kernel_syms",
    "query_module",
    "io_uring_setup",
    "io_uring_enter",
    "io_uring_register",
];

/// clone's namespace flags (CLONE_NEWNS, NEWCGROUP, NEWUTS, NEWIPC,
/// NEWUSER, NEWPID, NEWNET, NEWTIME).
const CLONE_NAMESPACE_FLAGS: &[u64] = &[
    0x0002_0000,
    0x0200_0000,
    0x0400_0000,
    0x0800_0000,
    0x1000_0000,
    0x2000_0000,
    0x4000_0000,
    0x0000_0080,
];

/// The profile for a container whose process has `caps`.
pub fn default_profile(caps: &[String]) -> Value {
    let has = |cap: &str| caps.iter().any(|c| c == cap);
    let mut refused: Vec<&str> = REFUSED.to_vec();
    for (cap, syscalls) in GUARDED {
        if !has(cap) {
            refused.extend_from_slice(syscalls);
        }
    }
    let mut rules = vec![json!({
        "names": refused,
        "action": "SCMP_ACT_ERRNO",
        "errnoRet": EPERM,
    })];
    if !has("CAP_SYS_ADMIN") {
        rules.push(json!({
            "names": ["clone3"],
            "action": "SCMP_ACT_ERRNO",
            "errnoRet": ENOSYS,
        }));
        // One rule a flag: libseccomp takes one comparison per argument in
        // a rule, and a flag set among others must be caught too.
        for flag in CLONE_NAMESPACE_FLAGS {
            rules.push(json!({
                "names": ["clone"],
                "action": "SCMP_ACT_ERRNO",
                "errnoRet": EPERM,
                "args": [{"index": 0, "value": flag, "valueTwo": flag, "op": "SCMP_CMP_MASKED_EQ"}],
            }));
        }
    }
    json!({
        "defaultAction": "SCMP_ACT_ALLOW",
        "architectures": ["SCMP_ARCH_X86_64", "SCMP_ARCH_X86", "SCMP_ARCH_X32"],
        "syscalls": rules,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn refused(p: &Value) -> Vec<String> {
        serde_json::from_value(p["syscalls"][0]["names"].clone()).unwrap()
    }

    #[test]
    fn capabilities_let_their_syscalls_through() {
        let plain = default_profile(&["CAP_CHOWN".into()]);
        assert!(refused(&plain).contains(&"mount".to_string()));
        assert!(refused(&plain).contains(&"keyctl".to_string()));
        assert_eq!(plain["syscalls"].as_array().unwrap().len(), 2 + 8);
        let admin = default_profile(&["CAP_SYS_ADMIN".into()]);
        assert!(!refused(&admin).contains(&"mount".to_string()));
        assert!(refused(&admin).contains(&"keyctl".to_string()));
        assert_eq!(
            admin["syscalls"].as_array().unwrap().len(),
            1,
            "clone is free"
        );
    }
}
