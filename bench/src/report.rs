//! Result rows: the table printed to stdout and the `--json` file.

use std::fmt::Write as _;

use serde::Serialize;

/// What a row is expected to reach. Targets are reported, never asserted.
#[derive(Clone, Copy, Debug)]
pub(crate) enum Goal {
    /// Informational only.
    None,
    /// `value / baseline` at least this (throughput: higher is better).
    RatioAtLeast(f64),
    /// `value / baseline` at most this (latency, cost: lower is better).
    RatioAtMost(f64),
    /// `value` itself at least this.
    AtLeast(f64),
}

/// One measured number, next to the raw baseline measured in the same run.
#[derive(Clone, Debug, Serialize)]
pub(crate) struct Row {
    pub(crate) name: String,
    pub(crate) value: f64,
    pub(crate) unit: &'static str,
    pub(crate) baseline: Option<f64>,
    pub(crate) ratio: Option<f64>,
    pub(crate) target: Option<String>,
    pub(crate) met: Option<bool>,
}

impl Row {
    /// A row without a baseline.
    pub(crate) fn single(name: impl Into<String>, value: f64, unit: &'static str) -> Self {
        Self::new(name, value, unit, None, Goal::None)
    }

    /// A row compared with the raw client's number for the same work.
    pub(crate) fn compared(
        name: impl Into<String>,
        value: f64,
        baseline: f64,
        unit: &'static str,
        goal: Goal,
    ) -> Self {
        Self::new(name, value, unit, Some(baseline), goal)
    }

    /// Sets what the row is expected to reach.
    pub(crate) fn goal(self, goal: Goal) -> Self {
        Self::new(self.name, self.value, self.unit, self.baseline, goal)
    }

    fn new(
        name: impl Into<String>,
        value: f64,
        unit: &'static str,
        baseline: Option<f64>,
        goal: Goal,
    ) -> Self {
        let ratio = baseline.filter(|b| *b > 0.0).map(|b| value / b);
        let (target, met) = match goal {
            Goal::None => (None, None),
            Goal::RatioAtLeast(x) => (Some(format!(">= {x}x")), ratio.map(|r| r >= x)),
            Goal::RatioAtMost(x) => (Some(format!("<= {x}x")), ratio.map(|r| r <= x)),
            Goal::AtLeast(x) => (Some(format!(">= {}", number(x))), Some(value >= x)),
        };
        Self {
            name: name.into(),
            value,
            unit,
            baseline,
            ratio,
            target,
            met,
        }
    }
}

/// Renders rows as an aligned text table.
pub(crate) fn table(rows: &[Row]) -> String {
    const HEADER: [&str; 7] = [
        "benchmark",
        "value",
        "unit",
        "baseline",
        "ratio",
        "target",
        "met",
    ];
    let cells: Vec<[String; 7]> = rows
        .iter()
        .map(|row| {
            [
                row.name.clone(),
                number(row.value),
                row.unit.to_owned(),
                row.baseline.map(number).unwrap_or_else(|| "-".into()),
                row.ratio
                    .map(|r| format!("{r:.2}x"))
                    .unwrap_or_else(|| "-".into()),
                row.target.clone().unwrap_or_else(|| "-".into()),
                match row.met {
                    Some(true) => "yes".into(),
                    Some(false) => "NO".into(),
                    None => "-".into(),
                },
            ]
        })
        .collect();

    // Column widths; text columns are left-aligned, numbers right-aligned.
    let mut widths = HEADER.map(str::len);
    for row in &cells {
        for (width, cell) in widths.iter_mut().zip(row) {
            *width = (*width).max(cell.chars().count());
        }
    }
    let numeric = [false, true, false, true, true, false, false];

    let mut out = String::new();
    let mut line = |cells: &[String]| {
        let mut text = String::new();
        for (i, cell) in cells.iter().enumerate() {
            let width = widths[i];
            if numeric[i] {
                let _ = write!(text, "{cell:>width$}  ");
            } else {
                let _ = write!(text, "{cell:<width$}  ");
            }
        }
        out.push_str(text.trim_end());
        out.push('\n');
    };
    line(&HEADER.map(String::from));
    line(&widths.map(|w| "-".repeat(w)));
    for row in &cells {
        line(row);
    }
    out
}

/// Formats a number for people: thousands separated, a few significant
/// digits for small values.
pub(crate) fn number(value: f64) -> String {
    if value.abs().round() >= 1000.0 {
        let digits = format!("{:.0}", value.abs());
        let mut grouped = String::new();
        for (i, digit) in digits.chars().enumerate() {
            if i > 0 && (digits.len() - i) % 3 == 0 {
                grouped.push(',');
            }
            grouped.push(digit);
        }
        if value < 0.0 {
            grouped.insert(0, '-');
        }
        grouped
    } else if value.abs() >= 100.0 {
        format!("{value:.0}")
    } else if value.abs() >= 10.0 {
        format!("{value:.1}")
    } else {
        format!("{value:.2}")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn numbers_read_well() {
        assert_eq!(number(1_234_567.4), "1,234,567");
        assert_eq!(number(999.6), "1,000");
        assert_eq!(number(123.4), "123");
        assert_eq!(number(12.34), "12.3");
        assert_eq!(number(1.234), "1.23");
    }

    #[test]
    fn goals_compare_the_right_way() {
        let fast = Row::compared("t", 600.0, 100.0, "msg/s", Goal::RatioAtLeast(5.0));
        assert_eq!(fast.met, Some(true));
        let slow = Row::compared("l", 2.0, 1.0, "us", Goal::RatioAtMost(1.5));
        assert_eq!(slow.met, Some(false));
        let plain = Row::single("m", 2e6, "msg/s").goal(Goal::AtLeast(1e6));
        assert_eq!(plain.met, Some(true));
        assert_eq!(plain.target.as_deref(), Some(">= 1,000,000"));
    }

    #[test]
    fn table_has_a_line_per_row() {
        let rows = [Row::single("a", 1.0, "x"), Row::single("b", 2.0, "x")];
        assert_eq!(table(&rows).lines().count(), 4);
    }
}
