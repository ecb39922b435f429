//! Implicit tag resolution for plain scalars (go-yaml v3's YAML 1.2 core
//! schema with its 1.1 leftovers: 0777 octals, `0b`/`0o` prefixes,
//! underscores in numbers, and timestamps).

/// The short tag a plain scalar with this text resolves to.
pub fn resolve(value: &str) -> &'static str {
    let b = value.as_bytes();
    let Some(&first) = b.first() else {
        return "!!null";
    };
    match value {
        "~" | "null" | "Null" | "NULL" => return "!!null",
        "true" | "True" | "TRUE" | "false" | "False" | "FALSE" => return "!!bool",
        ".nan" | ".NaN" | ".NAN" | ".inf" | ".Inf" | ".INF" | "+.inf" | "+.Inf" | "+.INF"
        | "-.inf" | "-.Inf" | "-.INF" => return "!!float",
        "<<" => return "!!merge",
        _ => {}
    }
    match first {
        b'.' if parse_go_float(value) => return "!!float",
        b'+' | b'-' | b'0'..=b'9' => {
            if is_timestamp(value) {
                return "!!timestamp";
            }
            let plain: String = value.chars().filter(|&c| c != '_').collect();
            if parse_go_int(&plain) {
                return "!!int";
            }
            if is_yaml_style_float(&plain) && parse_go_float(&plain) {
                return "!!float";
            }
            let (neg, rest) = match plain.strip_prefix('-') {
                Some(r) => (true, r),
                None => (false, plain.strip_prefix('+').unwrap_or(&plain)),
            };
            let _ = neg;
            if let Some(bits) = rest.strip_prefix("0b") {
                if plain.starts_with('+') {
                    // "+0b.." is not handled by go-yaml's binary branch.
                } else if !bits.is_empty()
                    && bits.bytes().all(|c| c == b'0' || c == b'1')
                    && bits.len() <= 64
                {
                    return "!!int";
                }
            }
            if let Some(oct) = rest.strip_prefix("0o") {
                if !plain.starts_with('+')
                    && !oct.is_empty()
                    && oct.bytes().all(|c| (b'0'..=b'7').contains(&c))
                    && oct.len() <= 22
                {
                    return "!!int";
                }
            }
        }
        _ => {}
    }
    "!!str"
}

/// Go's `strconv.ParseInt(s, 0, 64)` or `ParseUint(s, 0, 64)` succeeding.
fn parse_go_int(s: &str) -> bool {
    let (neg, body) = match s.as_bytes().first() {
        Some(b'+') => (false, &s[1..]),
        Some(b'-') => (true, &s[1..]),
        _ => (false, s),
    };
    if body.is_empty() {
        return false;
    }
    let (radix, digits) =
        if let Some(r) = body.strip_prefix("0x").or_else(|| body.strip_prefix("0X")) {
            (16, r)
        } else if let Some(r) = body.strip_prefix("0o").or_else(|| body.strip_prefix("0O")) {
            (8, r)
        } else if let Some(r) = body.strip_prefix("0b").or_else(|| body.strip_prefix("0B")) {
            (2, r)
        } else if body.len() > 1 && body.starts_with('0') {
            (8, &body[1..])
        } else {
            (10, body)
        };
    if digits.is_empty() || !digits.chars().all(|c| c.is_digit(radix)) {
        return false;
    }
    match u128::from_str_radix(digits, radix) {
        Ok(v) => {
            if neg {
                v <= (i64::MAX as u128) + 1
            } else {
                v <= u64::MAX as u128
            }
        }
        Err(_) => false,
    }
}

/// `^[-+]?(\.[0-9]+|[0-9]+(\.[0-9]*)?)([eE][-+]?[0-9]+)?$`
fn is_yaml_style_float(s: &str) -> bool {
    let b = s.as_bytes();
    let mut i = 0;
    if i < b.len() && (b[i] == b'-' || b[i] == b'+') {
        i += 1;
    }
    let digits = |i: &mut usize| {
        let st = *i;
        while *i < b.len() && b[*i].is_ascii_digit() {
            *i += 1;
        }
        *i - st
    };
    if i < b.len() && b[i] == b'.' {
        i += 1;
        if digits(&mut i) == 0 {
            return false;
        }
    } else {
        if digits(&mut i) == 0 {
            return false;
        }
        if i < b.len() && b[i] == b'.' {
            i += 1;
            digits(&mut i);
        }
    }
    if i < b.len() && (b[i] == b'e' || b[i] == b'E') {
        i += 1;
        if i < b.len() && (b[i] == b'-' || b[i] == b'+') {
            i += 1;
        }
        if digits(&mut i) == 0 {
            return false;
        }
    }
    i == b.len()
}

/// Go's `strconv.ParseFloat(s, 64)` succeeding (decimal forms, inf/nan
/// spellings, hex floats, underscores only between digits).
fn parse_go_float(s: &str) -> bool {
    let lower = s.to_ascii_lowercase();
    let body = lower.strip_prefix(['+', '-']).unwrap_or(&lower);
    if matches!(body, "inf" | "infinity" | "nan") {
        return !(lower.starts_with(['+', '-']) && body == "nan");
    }
    if body.starts_with("0x") {
        return false;
    }
    if s.contains('_') {
        return false;
    }
    // Rust's float grammar is close to Go's for decimal input, but accepts
    // "inf"/"nan" (handled above) and rejects nothing Go accepts here.
    body.parse::<f64>().is_ok()
        && !body.is_empty()
        && body
            .bytes()
            .all(|c| c.is_ascii_digit() || matches!(c, b'.' | b'e' | b'+' | b'-'))
}

/// go-yaml's timestamp check: `YYYY-` then one of its accepted layouts.
fn is_timestamp(s: &str) -> bool {
    let b = s.as_bytes();
    let mut i = 0;
    while i < b.len() && b[i].is_ascii_digit() {
        i += 1;
    }
    if i != 4 || i == b.len() || b[i] != b'-' {
        return false;
    }
    parse_timestamp_layouts(s)
}

fn parse_timestamp_layouts(s: &str) -> bool {
    // Layouts: 2006-1-2T15:4:5.999999999Z07:00, same with 't' or ' ', and
    // 2006-1-2 (date only). Month and day take one or two digits.
    let b = s.as_bytes();
    let mut i = 5;
    let num = |i: &mut usize, min: usize, max: usize| -> Option<u32> {
        let st = *i;
        while *i < b.len() && b[*i].is_ascii_digit() && *i - st < max {
            *i += 1;
        }
        if *i - st < min {
            return None;
        }
        s[st..*i].parse().ok()
    };
    let Some(month) = num(&mut i, 1, 2) else {
        return false;
    };
    if !(1..=12).contains(&month) || i >= b.len() || b[i] != b'-' {
        return false;
    }
    i += 1;
    let Some(day) = num(&mut i, 1, 2) else {
        return false;
    };
    if !(1..=31).contains(&day) {
        return false;
    }
    if i == b.len() {
        return true;
    }
    let sep = b[i];
    if sep != b'T' && sep != b't' && sep != b' ' {
        return false;
    }
    i += 1;
    let Some(h) = num(&mut i, 1, 2) else {
        return false;
    };
    if h > 23 || i >= b.len() || b[i] != b':' {
        return false;
    }
    i += 1;
    let Some(m) = num(&mut i, 1, 2) else {
        return false;
    };
    if m > 59 || i >= b.len() || b[i] != b':' {
        return false;
    }
    i += 1;
    let Some(sec) = num(&mut i, 1, 2) else {
        return false;
    };
    if sec > 59 {
        return false;
    }
    if i < b.len() && b[i] == b'.' {
        i += 1;
        let st = i;
        while i < b.len() && b[i].is_ascii_digit() {
            i += 1;
        }
        if i == st {
            return false;
        }
    }
    if i == b.len() {
        // The space-separated layout has no zone; the T layouts need one.
        return sep == b' ';
    }
    if sep == b' ' {
        return false;
    }
    if b[i] == b'Z' {
        return i + 1 == b.len();
    }
    if b[i] == b'+' || b[i] == b'-' {
        let rest = &s[i + 1..];
        let rb = rest.as_bytes();
        return rb.len() == 5
            && rb[0].is_ascii_digit()
            && rb[1].is_ascii_digit()
            && rb[2] == b':'
            && rb[3].is_ascii_digit()
            && rb[4].is_ascii_digit();
    }
    false
}

#[cfg(test)]
mod tests {
    use super::resolve;

    #[test]
    fn resolves_core_schema() {
        for (v, t) in [
            ("", "!!null"),
            ("~", "!!null"),
            ("null", "!!null"),
            ("true", "!!bool"),
            ("yes", "!!str"),
            ("5", "!!int"),
            ("-5", "!!int"),
            ("0x1F", "!!int"),
            ("0777", "!!int"),
            ("0o17", "!!int"),
            ("0b101", "!!int"),
            ("1_000", "!!int"),
            ("1.5", "!!float"),
            ("1e3", "!!float"),
            (".5", "!!float"),
            ("-.inf", "!!float"),
            ("100m", "!!str"),
            ("20Gi", "!!str"),
            ("v1.2.3", "!!str"),
            ("2001-12-14", "!!timestamp"),
            ("2001-12-14t21:59:43.10-05:00", "!!timestamp"),
            ("<<", "!!merge"),
            ("1.2.3", "!!str"),
            ("09", "!!float"),
        ] {
            assert_eq!(resolve(v), t, "{v}");
        }
    }
}
