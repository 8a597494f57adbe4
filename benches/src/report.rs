//! Figures, the table a person reads, and the JSON a machine reads.
//!
//! A figure is one number of our engine, optionally next to the same
//! workload's number on a peer, with `ratio = value / peer_value` (so for
//! rates above 1 is better, for latencies below 1 is better). A figure
//! compared with two peers appears twice in the JSON (once per peer) and
//! once in the table.

use std::fmt::Write as _;
use std::path::Path;

use anyhow::{Context, Result};
use serde::Serialize;

#[derive(Debug, Clone, Serialize)]
pub struct Figure {
    pub scenario: String,
    pub name: String,
    pub value: f64,
    pub unit: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub peer: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub peer_value: Option<f64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub ratio: Option<f64>,
}

struct Section {
    title: String,
    /// Indexes into `Report::figures`.
    figures: Vec<usize>,
    notes: Vec<String>,
}

/// The figures of one scenario run, grouped in titled sections.
pub struct Report {
    scenario: String,
    figures: Vec<Figure>,
    sections: Vec<Section>,
    /// Scenario-wide lines printed after the tables (settings, targets).
    notes: Vec<String>,
}

impl Report {
    pub fn new(scenario: &str) -> Report {
        Report {
            scenario: scenario.to_string(),
            figures: Vec::new(),
            sections: Vec::new(),
            notes: Vec::new(),
        }
    }

    /// Starts a new table; following figures and `section_note`s go in it.
    pub fn section(&mut self, title: impl Into<String>) {
        self.sections.push(Section {
            title: title.into(),
            figures: Vec::new(),
            notes: Vec::new(),
        });
    }

    /// A line printed under the current table.
    pub fn section_note(&mut self, line: impl Into<String>) {
        self.current().notes.push(line.into());
    }

    /// A line printed after all tables.
    pub fn note(&mut self, line: impl Into<String>) {
        self.notes.push(line.into());
    }

    /// A figure of ours with no peer.
    pub fn figure(&mut self, name: &str, value: f64, unit: &str) {
        self.push(name, value, unit, None);
    }

    /// A figure of ours next to the same workload on `peer`.
    pub fn compare(&mut self, name: &str, value: f64, unit: &str, peer: &str, peer_value: f64) {
        self.push(name, value, unit, Some((peer, peer_value)));
    }

    fn current(&mut self) -> &mut Section {
        if self.sections.is_empty() {
            self.section(self.scenario.clone());
        }
        self.sections.last_mut().expect("just ensured")
    }

    fn push(&mut self, name: &str, value: f64, unit: &str, peer: Option<(&str, f64)>) {
        let figure = Figure {
            scenario: self.scenario.clone(),
            name: name.to_string(),
            value,
            unit: unit.to_string(),
            peer: peer.map(|(p, _)| p.to_string()),
            peer_value: peer.map(|(_, v)| v),
            ratio: peer.map(|(_, v)| value / v),
        };
        let i = self.figures.len();
        self.figures.push(figure);
        self.current().figures.push(i);
    }

    /// Writes the figures as a JSON list.
    pub fn write_json(&self, path: &Path) -> Result<()> {
        let text = serde_json::to_string_pretty(&self.figures)?;
        std::fs::write(path, text + "\n").with_context(|| format!("write {}", path.display()))
    }

    /// The tables: one row per figure name, with a value and a ratio
    /// column per peer that appears in the section.
    pub fn table(&self) -> String {
        let mut out = String::new();
        for s in &self.sections {
            let _ = writeln!(out, "\n== {} ==", s.title);
            let mut peers: Vec<&str> = Vec::new();
            let mut rows: Vec<Row> = Vec::new();
            for &i in &s.figures {
                let f = &self.figures[i];
                let idx = match rows
                    .iter()
                    .position(|r| r.name == f.name && r.unit == f.unit && r.value == f.value)
                {
                    Some(idx) => idx,
                    None => {
                        rows.push(Row {
                            name: &f.name,
                            value: f.value,
                            unit: &f.unit,
                            peers: Vec::new(),
                        });
                        rows.len() - 1
                    }
                };
                if let (Some(p), Some(v), Some(r)) = (&f.peer, f.peer_value, f.ratio) {
                    if !peers.contains(&p.as_str()) {
                        peers.push(p);
                    }
                    rows[idx].peers.push((p, v, r));
                }
            }
            let mut header = vec![
                "figure".to_string(),
                "redoubt".to_string(),
                "unit".to_string(),
            ];
            for p in &peers {
                header.push(p.to_string());
                header.push(format!("ours/{p}"));
            }
            let mut cells: Vec<Vec<String>> = vec![header];
            for row in &rows {
                let mut line = vec![
                    row.name.to_string(),
                    fmt_num(row.value),
                    row.unit.to_string(),
                ];
                for p in &peers {
                    match row.peers.iter().find(|(q, _, _)| q == p) {
                        Some((_, v, r)) => {
                            line.push(fmt_num(*v));
                            line.push(format!("{}x", fmt_ratio(*r)));
                        }
                        None => {
                            line.push(String::new());
                            line.push(String::new());
                        }
                    }
                }
                cells.push(line);
            }
            render(&mut out, &cells);
            for n in &s.notes {
                let _ = writeln!(out, "  * {n}");
            }
        }
        if !self.notes.is_empty() {
            out.push('\n');
            for n in &self.notes {
                let _ = writeln!(out, "{n}");
            }
        }
        out
    }
}

/// One line of a table: a figure of ours and its peers' values.
struct Row<'a> {
    name: &'a str,
    value: f64,
    unit: &'a str,
    /// (peer, peer value, ratio)
    peers: Vec<(&'a str, f64, f64)>,
}

/// Left-aligned first and unit columns, right-aligned numbers.
fn render(out: &mut String, cells: &[Vec<String>]) {
    let cols = cells.iter().map(Vec::len).max().unwrap_or(0);
    let width: Vec<usize> = (0..cols)
        .map(|c| {
            cells
                .iter()
                .filter_map(|r| r.get(c))
                .map(|s| s.chars().count())
                .max()
                .unwrap_or(0)
        })
        .collect();
    for row in cells {
        let mut line = String::new();
        for (c, cell) in row.iter().enumerate() {
            let pad = width[c] - cell.chars().count();
            if c == 0 || c == 2 {
                let _ = write!(line, "{cell}{}  ", " ".repeat(pad));
            } else {
                let _ = write!(line, "{}{cell}  ", " ".repeat(pad));
            }
        }
        let _ = writeln!(out, "  {}", line.trim_end());
    }
}

/// Two decimals, or two significant digits for small ratios.
pub fn fmt_ratio(r: f64) -> String {
    if r.abs() >= 0.1 || r == 0.0 || !r.is_finite() {
        format!("{r:.2}")
    } else {
        let decimals = (1 - r.abs().log10().floor() as i32).clamp(2, 6) as usize;
        format!("{r:.decimals$}")
    }
}

/// Big numbers with thousands separators, small ones with 3 significant
/// digits.
pub fn fmt_num(x: f64) -> String {
    if !x.is_finite() {
        return format!("{x}");
    }
    if x.abs() >= 1000.0 {
        let digits = format!("{:.0}", x.abs());
        let mut grouped = String::new();
        for (i, ch) in digits.chars().enumerate() {
            if i > 0 && (digits.len() - i) % 3 == 0 {
                grouped.push(',');
            }
            grouped.push(ch);
        }
        if x < 0.0 {
            grouped.insert(0, '-');
        }
        grouped
    } else if x == 0.0 {
        "0".to_string()
    } else {
        let decimals = (2 - x.abs().log10().floor() as i32).clamp(0, 6) as usize;
        format!("{x:.decimals$}")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn numbers_read_well() {
        assert_eq!(fmt_num(1_234_567.4), "1,234,567");
        assert_eq!(fmt_num(123.4), "123");
        assert_eq!(fmt_num(2.345), "2.35");
        assert_eq!(fmt_num(0.01234), "0.0123");
        assert_eq!(fmt_num(0.0), "0");
        assert_eq!(fmt_ratio(2.345), "2.35");
        assert_eq!(fmt_ratio(0.00123), "0.0012");
    }

    #[test]
    fn two_peers_make_one_row_and_two_json_entries() {
        let mut r = Report::new("t");
        r.section("s");
        r.compare("commits/s", 100.0, "1/s", "a", 50.0);
        r.compare("commits/s", 100.0, "1/s", "b", 25.0);
        r.figure("syncs/commit", 0.5, "");
        assert_eq!(r.figures.len(), 3);
        assert_eq!(r.figures[1].ratio, Some(4.0));
        let t = r.table();
        assert_eq!(t.matches("commits/s").count(), 1, "{t}");
        assert!(t.contains("2.00x") && t.contains("4.00x"), "{t}");
    }
}
