//! Results of a run: a readable table, JSON and JUnit XML.

use crate::{Case, Outcome};
use std::fmt::Write;
use std::time::Duration;

/// One case's result.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CaseResult {
    /// The case.
    pub case: Case,
    /// What happened.
    pub outcome: Outcome,
    /// Wall time the case took. Subscriber cases decided by one shared
    /// scenario each report the whole scenario's time.
    pub elapsed: Duration,
}

/// The results of one run (`check-publisher` or `check-subscriber`).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Report {
    /// `"check-publisher"` or `"check-subscriber"`.
    pub suite: String,
    /// What was tested (key or command line).
    pub subject: String,
    /// One entry per case, in case order.
    pub results: Vec<CaseResult>,
}

impl Report {
    /// An empty report.
    pub fn new(suite: &str, subject: &str) -> Self {
        Report {
            suite: suite.to_owned(),
            subject: subject.to_owned(),
            results: Vec::new(),
        }
    }

    /// Records a result.
    pub fn push(&mut self, case: Case, outcome: Outcome, elapsed: Duration) {
        self.results.push(CaseResult {
            case,
            outcome,
            elapsed,
        });
    }

    /// The outcome of case `id`, if it ran.
    pub fn outcome(&self, id: &str) -> Option<&Outcome> {
        self.results
            .iter()
            .find(|r| r.case.id == id)
            .map(|r| &r.outcome)
    }

    /// Ids of the failed cases.
    pub fn failed(&self) -> Vec<&'static str> {
        self.results
            .iter()
            .filter(|r| r.outcome.is_fail())
            .map(|r| r.case.id)
            .collect()
    }

    /// (passed, failed, skipped).
    pub fn counts(&self) -> (usize, usize, usize) {
        let mut c = (0, 0, 0);
        for r in &self.results {
            match r.outcome {
                Outcome::Pass => c.0 += 1,
                Outcome::Fail(_) => c.1 += 1,
                Outcome::Skip(_) => c.2 += 1,
            }
        }
        c
    }

    /// The table printed to stdout.
    pub fn table(&self) -> String {
        let mut s = String::new();
        let _ = writeln!(s, "{} — {}", self.suite, self.subject);
        let idw = self
            .results
            .iter()
            .map(|r| r.case.id.len())
            .max()
            .unwrap_or(2);
        let _ = writeln!(
            s,
            "{:<idw$}  {:<6}  {:<6}  DESCRIPTION / DETAIL",
            "ID", "RESULT", "§"
        );
        for r in &self.results {
            let (word, detail) = match &r.outcome {
                Outcome::Pass => ("pass", None),
                Outcome::Fail(t) => ("FAIL", Some(t)),
                Outcome::Skip(t) => ("skip", Some(t)),
            };
            let _ = writeln!(
                s,
                "{:<idw$}  {:<6}  {:<6}  {}",
                r.case.id, word, r.case.section, r.case.description
            );
            if let Some(d) = detail {
                let _ = writeln!(s, "{:<idw$}  {:<6}  {:<6}    -> {d}", "", "", "");
            }
        }
        let (p, f, k) = self.counts();
        let _ = writeln!(s, "{p} passed, {f} failed, {k} skipped");
        s
    }

    /// The report as JSON.
    pub fn json(&self) -> String {
        let mut s = String::new();
        let (p, f, k) = self.counts();
        let _ = write!(
            s,
            "{{\"suite\":{},\"subject\":{},\"passed\":{p},\"failed\":{f},\"skipped\":{k},\"cases\":[",
            json_str(&self.suite),
            json_str(&self.subject)
        );
        for (i, r) in self.results.iter().enumerate() {
            let (word, detail) = match &r.outcome {
                Outcome::Pass => ("pass", ""),
                Outcome::Fail(t) => ("fail", t.as_str()),
                Outcome::Skip(t) => ("skip", t.as_str()),
            };
            let _ = write!(
                s,
                "{}\n{{\"id\":{},\"section\":{},\"description\":{},\"result\":\"{word}\",\"detail\":{},\"seconds\":{:.3}}}",
                if i == 0 { "" } else { "," },
                json_str(r.case.id),
                json_str(r.case.section),
                json_str(r.case.description),
                json_str(detail),
                r.elapsed.as_secs_f64()
            );
        }
        s.push_str("\n]}\n");
        s
    }

    /// The report as JUnit XML (one testsuite, one testcase per case).
    pub fn junit(&self) -> String {
        let mut s = String::from("<?xml version=\"1.0\" encoding=\"UTF-8\"?>\n");
        let (_, f, k) = self.counts();
        let total: f64 = self.results.iter().map(|r| r.elapsed.as_secs_f64()).sum();
        let _ = writeln!(
            s,
            "<testsuite name=\"{}\" tests=\"{}\" failures=\"{f}\" skipped=\"{k}\" time=\"{total:.3}\">",
            xml(&format!("cuframes-conformance {}", self.suite)),
            self.results.len()
        );
        for r in &self.results {
            let _ = write!(
                s,
                "  <testcase classname=\"{}\" name=\"{} {} ({})\" time=\"{:.3}\"",
                xml(&self.suite),
                xml(r.case.id),
                xml(r.case.description),
                xml(r.case.section),
                r.elapsed.as_secs_f64()
            );
            match &r.outcome {
                Outcome::Pass => s.push_str("/>\n"),
                Outcome::Fail(t) => {
                    let _ = writeln!(s, ">\n    <failure message=\"{}\"/>\n  </testcase>", xml(t));
                }
                Outcome::Skip(t) => {
                    let _ = writeln!(s, ">\n    <skipped message=\"{}\"/>\n  </testcase>", xml(t));
                }
            }
        }
        s.push_str("</testsuite>\n");
        s
    }
}

fn json_str(t: &str) -> String {
    let mut s = String::with_capacity(t.len() + 2);
    s.push('"');
    for c in t.chars() {
        match c {
            '"' => s.push_str("\\\""),
            '\\' => s.push_str("\\\\"),
            '\n' => s.push_str("\\n"),
            '\r' => s.push_str("\\r"),
            '\t' => s.push_str("\\t"),
            c if (c as u32) < 0x20 => {
                let _ = write!(s, "\\u{:04x}", c as u32);
            }
            c => s.push(c),
        }
    }
    s.push('"');
    s
}

fn xml(t: &str) -> String {
    let mut s = String::with_capacity(t.len());
    for c in t.chars() {
        match c {
            '&' => s.push_str("&amp;"),
            '<' => s.push_str("&lt;"),
            '>' => s.push_str("&gt;"),
            '"' => s.push_str("&quot;"),
            '\'' => s.push_str("&apos;"),
            c if (c as u32) < 0x20 && c != '\n' && c != '\t' => s.push(' '),
            c => s.push(c),
        }
    }
    s
}

#[cfg(test)]
mod tests {
    use super::*;

    const C: Case = Case {
        id: "X-1",
        description: "a <case> & \"quotes\"",
        section: "§1",
    };

    #[test]
    fn renders_every_format() {
        let mut r = Report::new("check-publisher", "key k");
        r.push(C, Outcome::Pass, Duration::from_millis(5));
        r.push(C, Outcome::Fail("bad\n\"x\"".into()), Duration::ZERO);
        assert_eq!(r.counts(), (1, 1, 0));
        assert_eq!(r.failed(), vec!["X-1"]);
        assert!(r.table().contains("FAIL"));
        let j = r.json();
        assert!(j.contains("\"detail\":\"bad\\n\\\"x\\\"\""), "{j}");
        let x = r.junit();
        assert!(x.contains("failures=\"1\""), "{x}");
        assert!(x.contains("a &lt;case&gt; &amp; &quot;quotes&quot;"), "{x}");
    }
}
