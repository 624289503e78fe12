//! Sizes as docker's flags spell them.

/// docker's memory sizes: a number with an optional b, k, m or g (powers of 1024).
pub fn parse_bytes(s: &str) -> Result<i64, String> {
    let lower = s.trim().to_ascii_lowercase();
    let (num, unit) = match lower.find(|c: char| c.is_ascii_alphabetic()) {
        Some(i) => lower.split_at(i),
        None => (lower.as_str(), ""),
    };
    let shift = match unit.trim_end_matches('b') {
        "" => 0,
        "k" => 10,
        "m" => 20,
        "g" => 30,
        _ => {
            return Err(format!(
                "invalid size {s:?}: use a number with b, k, m or g"
            ))
        }
    };
    let value: f64 = num.parse().map_err(|_| format!("invalid size {s:?}"))?;
    Ok((value * (1u64 << shift) as f64) as i64)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sizes() {
        assert_eq!(parse_bytes("256m"), Ok(256 << 20));
        assert_eq!(parse_bytes("1.5k"), Ok(1536));
        assert_eq!(parse_bytes("10"), Ok(10));
        assert!(parse_bytes("10x").is_err());
    }
}
