//! The summary table printed at the end.

enum Verdict {
    Pass,
    Fail,
    /// A figure to compare across runs, with no target.
    Info,
}

struct Row {
    phase: String,
    figure: String,
    value: String,
    target: String,
    verdict: Verdict,
}

#[derive(Default)]
pub struct Report {
    rows: Vec<Row>,
}

impl Report {
    pub fn info(&mut self, phase: &str, figure: &str, value: String) {
        self.push(phase, figure, value, "-".into(), Verdict::Info);
    }

    pub fn check(&mut self, phase: &str, figure: &str, value: String, target: String, pass: bool) {
        let verdict = if pass { Verdict::Pass } else { Verdict::Fail };
        self.push(phase, figure, value, target, verdict);
    }

    fn push(&mut self, phase: &str, figure: &str, value: String, target: String, verdict: Verdict) {
        self.rows.push(Row {
            phase: phase.into(),
            figure: figure.into(),
            value,
            target,
            verdict,
        });
    }

    pub fn failures(&self) -> usize {
        self.rows
            .iter()
            .filter(|row| matches!(row.verdict, Verdict::Fail))
            .count()
    }

    pub fn print(&self) {
        let header = ["phase", "figure", "value", "target", ""];
        let cells: Vec<[&str; 5]> = self
            .rows
            .iter()
            .map(|row| {
                let verdict = match row.verdict {
                    Verdict::Pass => "PASS",
                    Verdict::Fail => "FAIL",
                    Verdict::Info => "",
                };
                [
                    row.phase.as_str(),
                    row.figure.as_str(),
                    row.value.as_str(),
                    row.target.as_str(),
                    verdict,
                ]
            })
            .collect();
        let mut widths = header.map(str::len);
        for row in &cells {
            for (width, cell) in widths.iter_mut().zip(row) {
                *width = (*width).max(cell.chars().count());
            }
        }
        let line = |row: &[&str]| {
            let padded: Vec<String> = row
                .iter()
                .zip(widths)
                .map(|(cell, width)| format!("{cell:<width$}"))
                .collect();
            println!("{}", padded.join("  ").trim_end());
        };
        line(&header[..]);
        let rule: Vec<String> = widths.iter().map(|w| "-".repeat(*w)).collect();
        line(&rule.iter().map(String::as_str).collect::<Vec<_>>());
        for row in &cells {
            line(&row[..]);
        }
    }
}
