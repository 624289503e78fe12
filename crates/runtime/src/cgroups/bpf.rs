//! Device rules on cgroup v2: an eBPF program of type
//! `BPF_PROG_TYPE_CGROUP_DEVICE`, built here from the rules (the v1
//! devices controller's semantics: the last rule that matches decides,
//! nothing matched is denied) and attached to the container's cgroup.
//!
//! The program sees `struct bpf_cgroup_dev_ctx { u32 access_type; u32
//! major; u32 minor; }`: the device type in the low 16 bits of
//! access_type, the access (mknod 1, read 2, write 4) in the high 16.

use std::os::fd::AsFd;
use std::path::Path;

use super::{CgroupError, DeviceRule};

// Opcodes (linux/bpf_common.h, linux/bpf.h).
const LDX_MEM_W: u8 = 0x61; // r_dst = *(u32 *)(r_src + off)
const ALU32_AND_K: u8 = 0x54;
const ALU32_RSH_K: u8 = 0x74;
const ALU64_MOV_K: u8 = 0xb7;
const ALU64_MOV_X: u8 = 0xbf;
const JNE_K: u8 = 0x55;
const JNE_X: u8 = 0x5d;
const EXIT: u8 = 0x95;

const DEV_BLOCK: i32 = 1;
const DEV_CHAR: i32 = 2;

fn insn(code: u8, dst: u8, src: u8, off: i16, imm: i32) -> u64 {
    u64::from(code)
        | (u64::from(dst | (src << 4)) << 8)
        | (u64::from(off as u16) << 16)
        | (u64::from(imm as u32) << 32)
}

fn access_bits(access: &str) -> i32 {
    access
        .chars()
        .map(|c| match c {
            'm' => 1,
            'r' => 2,
            'w' => 4,
            _ => 0,
        })
        .fold(0, |a, b| a | b)
}

/// The program for `rules`, as encoded instructions.
pub fn program(rules: &[DeviceRule]) -> Vec<u64> {
    let mut p = vec![
        insn(LDX_MEM_W, 2, 1, 0, 0),        // r2 = access_type
        insn(ALU32_AND_K, 2, 0, 0, 0xffff), // r2 = type
        insn(LDX_MEM_W, 3, 1, 0, 0),
        insn(ALU32_RSH_K, 3, 0, 0, 16), // r3 = access
        insn(LDX_MEM_W, 4, 1, 4, 0),    // r4 = major
        insn(LDX_MEM_W, 5, 1, 8, 0),    // r5 = minor
    ];
    // Last rule first: the first block that matches returns. A rule that
    // matches everything ends the program (the verifier refuses code that
    // cannot be reached).
    let mut falls_through = true;
    for rule in rules.iter().rev() {
        // (instruction, jumps to the end of the block)
        let mut block: Vec<(u64, bool)> = Vec::new();
        match rule.kind {
            'c' => block.push((insn(JNE_K, 2, 0, 0, DEV_CHAR), true)),
            'b' => block.push((insn(JNE_K, 2, 0, 0, DEV_BLOCK), true)),
            _ => {}
        }
        let bits = access_bits(&rule.access);
        if bits != 7 {
            // Matches only if every requested access is in the rule's.
            block.push((insn(ALU64_MOV_X, 1, 3, 0, 0), false));
            block.push((insn(ALU32_AND_K, 1, 0, 0, bits), false));
            block.push((insn(JNE_X, 1, 3, 0, 0), true));
        }
        if rule.kind != 'a' {
            if let Some(major) = rule.major.filter(|m| *m >= 0) {
                block.push((insn(JNE_K, 4, 0, 0, major as i32), true));
            }
            if let Some(minor) = rule.minor.filter(|m| *m >= 0) {
                block.push((insn(JNE_K, 5, 0, 0, minor as i32), true));
            }
        }
        block.push((insn(ALU64_MOV_K, 0, 0, 0, i32::from(rule.allow)), false));
        block.push((insn(EXIT, 0, 0, 0, 0), false));
        let len = block.len();
        let conditional = block.iter().any(|(_, jumps)| *jumps);
        for (i, (code, jumps)) in block.into_iter().enumerate() {
            p.push(if jumps {
                // Offset to the first instruction after the block.
                let off = (len - i - 1) as u64 as u16 as u64;
                (code & !(0xffff << 16)) | (off << 16)
            } else {
                code
            });
        }
        if !conditional {
            falls_through = false;
            break;
        }
    }
    if falls_through {
        p.push(insn(ALU64_MOV_K, 0, 0, 0, 0));
        p.push(insn(EXIT, 0, 0, 0, 0));
    }
    p
}

/// Loads the program for `rules` and attaches it to the cgroup2 directory
/// `dir`.
pub fn attach(dir: &Path, rules: &[DeviceRule]) -> Result<(), CgroupError> {
    let io = |source: std::io::Error| CgroupError::Io {
        path: dir.to_path_buf(),
        source,
    };
    let prog = berth_sys::bpf_load_device_program(&program(rules)).map_err(io)?;
    let cgroup = std::fs::File::open(dir).map_err(io)?;
    berth_sys::bpf_attach_device_program(cgroup.as_fd(), prog.as_fd()).map_err(io)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn encodes_instructions_little_endian() {
        // exit: code 0x95, nothing else.
        assert_eq!(insn(EXIT, 0, 0, 0, 0), 0x95);
        // r2 = *(u32 *)(r1 + 4): dst 2, src 1, off 4.
        assert_eq!(insn(LDX_MEM_W, 2, 1, 4, 0), 0x0004_1261);
        assert_eq!(insn(ALU64_MOV_K, 0, 0, 0, -1), 0xffff_ffff_0000_00b7);
    }

    #[test]
    fn jumps_land_after_their_block() {
        let rules = [DeviceRule {
            allow: true,
            kind: 'c',
            major: Some(1),
            minor: Some(3),
            access: "rwm".into(),
        }];
        let p = program(&rules);
        // prologue 6, block: jne type, jne major, jne minor, mov, exit; then default 2.
        assert_eq!(p.len(), 6 + 5 + 2);
        let off = |i: usize| ((p[i] >> 16) & 0xffff) as u16;
        assert_eq!((off(6), off(7), off(8)), (4, 3, 2));
    }

    #[test]
    fn a_rule_matching_everything_ends_the_program() {
        let all = DeviceRule {
            allow: false,
            kind: 'a',
            major: None,
            minor: None,
            access: "rwm".into(),
        };
        // Only the prologue and the one unconditional block: no dead code.
        assert_eq!(program(std::slice::from_ref(&all)).len(), 6 + 2);
        let null = DeviceRule {
            allow: true,
            kind: 'c',
            major: Some(1),
            minor: Some(3),
            access: "rwm".into(),
        };
        assert_eq!(
            program(&[null, all]).len(),
            6 + 2,
            "rules before a match-all rule never apply"
        );
    }
}
