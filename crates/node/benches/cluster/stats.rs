//! Percentiles and the Markdown tables the bench prints.

use std::time::Duration;

#[derive(Default)]
pub struct Dist(Vec<Duration>);

impl Dist {
    pub fn push(&mut self, d: Duration) {
        self.0.push(d);
    }

    pub fn len(&self) -> usize {
        self.0.len()
    }

    /// Nearest-rank percentile (0 when empty).
    pub fn p(&self, q: f64) -> Duration {
        let mut v = self.0.clone();
        v.sort();
        if v.is_empty() {
            return Duration::ZERO;
        }
        let i = ((v.len() as f64) * q).ceil() as usize;
        v[i.clamp(1, v.len()) - 1]
    }

    pub fn ms(&self, q: f64) -> String {
        format!("{:.1}", self.p(q).as_secs_f64() * 1e3)
    }
}

pub struct Table {
    header: Vec<String>,
    rows: Vec<Vec<String>>,
    notes: Vec<String>,
}

impl Table {
    pub fn new(header: &[&str]) -> Table {
        Table {
            header: header.iter().map(|s| s.to_string()).collect(),
            rows: Vec::new(),
            notes: Vec::new(),
        }
    }

    pub fn row(&mut self, cells: Vec<String>) {
        self.rows.push(cells);
    }

    pub fn note(&mut self, s: String) {
        self.notes.push(s);
    }

    pub fn markdown(&self) -> String {
        let mut out = format!("| {} |\n", self.header.join(" | "));
        out.push_str(&format!("|{}\n", "---|".repeat(self.header.len())));
        for r in &self.rows {
            out.push_str(&format!("| {} |\n", r.join(" | ")));
        }
        for n in &self.notes {
            out.push('\n');
            out.push_str(n);
            out.push('\n');
        }
        out
    }
}
