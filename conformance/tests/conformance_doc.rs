//! `docs/conformance.md` lists every case of the suite with its section and
//! description, exactly as the code defines them, and no case the code lacks.

use cuframes_conformance::all_cases;

#[test]
fn case_tables_match_the_code() {
    let p = concat!(env!("CARGO_MANIFEST_DIR"), "/../docs/conformance.md");
    let doc = std::fs::read_to_string(p).expect("docs/conformance.md");
    let cases = all_cases();
    for c in &cases {
        let row = format!("| `{}` | {} | {} |", c.id, c.section, c.description);
        assert!(
            doc.contains(&row),
            "docs/conformance.md lacks the row\n{row}"
        );
    }
    let listed = doc
        .lines()
        .filter(|l| l.starts_with("| `PUB-") || l.starts_with("| `SUB-"))
        .count();
    assert_eq!(listed, cases.len(), "case rows in docs/conformance.md");
    let mut ids: Vec<_> = cases.iter().map(|c| c.id).collect();
    ids.sort_unstable();
    ids.dedup();
    assert_eq!(ids.len(), cases.len(), "case ids are unique");
}
