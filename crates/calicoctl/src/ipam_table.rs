//! Bordered tables as upstream's `ipam show` prints them (go-pretty's default style): `+---+`
//! rules, headers centred, numeric columns right-aligned, one space of padding; plus Go's `%.5g`
//! for the address counts.

/// How one column aligns its cells.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Align {
    Left,
    Right,
}

pub fn render(header: &[&str], align: &[Align], rows: &[Vec<String>]) -> String {
    let n = header.len();
    let mut widths: Vec<usize> = header.iter().map(|h| h.chars().count()).collect();
    for row in rows {
        for (i, cell) in row.iter().enumerate().take(n) {
            widths[i] = widths[i].max(cell.chars().count());
        }
    }
    let rule: String = {
        let mut s = String::from("+");
        for w in &widths {
            s.push_str(&"-".repeat(w + 2));
            s.push('+');
        }
        s.push('\n');
        s
    };
    let mut out = rule.clone();
    out.push('|');
    for (h, w) in header.iter().zip(&widths) {
        let pad = w - h.chars().count();
        let left = pad / 2;
        out.push_str(&format!(
            " {}{}{} |",
            " ".repeat(left),
            h,
            " ".repeat(pad - left)
        ));
    }
    out.push('\n');
    out.push_str(&rule);
    for row in rows {
        out.push('|');
        for (i, w) in widths.iter().enumerate() {
            let cell = row.get(i).map(String::as_str).unwrap_or("");
            let pad = " ".repeat(w - cell.chars().count());
            match align.get(i).copied().unwrap_or(Align::Left) {
                Align::Left => out.push_str(&format!(" {cell}{pad} |")),
                Align::Right => out.push_str(&format!(" {pad}{cell} |")),
            }
        }
        out.push('\n');
    }
    if !rows.is_empty() {
        out.push_str(&rule);
    }
    out
}

/// Go's `fmt.Sprintf("%.5g", float64(n))` for a count: plain below 100000, else `d.dddde+XX`
/// with trailing zeros dropped (`1e+05`, `1.6777e+07`).
pub fn g5(n: u128) -> String {
    if n < 100_000 {
        return n.to_string();
    }
    let s = format!("{:.4e}", n as f64);
    let (mantissa, exp) = s.split_once('e').unwrap_or((s.as_str(), "0"));
    let mantissa = if mantissa.contains('.') {
        mantissa.trim_end_matches('0').trim_end_matches('.')
    } else {
        mantissa
    };
    let exp: i32 = exp.parse().unwrap_or(0);
    format!(
        "{mantissa}e{}{:02}",
        if exp < 0 { '-' } else { '+' },
        exp.abs()
    )
}

/// `15381 (94%)`: Go's `%.5g (%.f%%)`.
pub fn with_percentage(n: u128, of: u128) -> String {
    let pct = if of == 0 {
        0.0
    } else {
        100.0 * n as f64 / of as f64
    };
    // Go's `%.f` and Rust's `{:.0}` both round half to even.
    format!("{} ({pct:.0}%)", g5(n))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn go_g5() {
        assert_eq!(g5(65536), "65536");
        assert_eq!(g5(100_000), "1e+05");
        assert_eq!(g5(16_777_216), "1.6777e+07");
        assert_eq!(with_percentage(15381, 16384), "15381 (94%)");
        assert_eq!(with_percentage(1003, 16384), "1003 (6%)");
    }

    #[test]
    fn table_shape() {
        let t = render(
            &["GROUPING", "CIDR", "IPS TOTAL", "IPS IN USE", "IPS FREE"],
            &[
                Align::Left,
                Align::Left,
                Align::Right,
                Align::Left,
                Align::Left,
            ],
            &[vec![
                "IP Pool".into(),
                "10.244.0.0/16".into(),
                "65536".into(),
                "6 (0%)".into(),
                "65530 (100%)".into(),
            ]],
        );
        assert_eq!(
            t,
            "+----------+---------------+-----------+------------+--------------+\n\
             | GROUPING |     CIDR      | IPS TOTAL | IPS IN USE |   IPS FREE   |\n\
             +----------+---------------+-----------+------------+--------------+\n\
             | IP Pool  | 10.244.0.0/16 |     65536 | 6 (0%)     | 65530 (100%) |\n\
             +----------+---------------+-----------+------------+--------------+\n"
        );
    }
}
