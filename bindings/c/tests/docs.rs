//! docs/c-api.md's result-code table is the code's: every code with its
//! value, nothing else; and each code has its own `cuframes_strerror` text.

use cuframes::error::cuframes_error;
use std::collections::BTreeMap;

#[test]
fn the_result_code_table_lists_every_code_with_its_value() {
    let doc = std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/../../docs/c-api.md"))
        .expect("docs/c-api.md");
    let table: BTreeMap<String, i32> = doc
        .lines()
        .filter_map(|l| {
            let cols: Vec<&str> = l.split('|').map(str::trim).collect();
            let name = cols.get(1)?.strip_prefix("`CUFRAMES_")?.strip_suffix('`')?;
            Some((format!("CUFRAMES_{name}"), cols.get(2)?.parse().ok()?))
        })
        .collect();
    let code: BTreeMap<String, i32> = cuframes_error::ALL
        .iter()
        .map(|c| (format!("{c:?}"), *c as i32))
        .collect();
    assert_eq!(
        table, code,
        "docs/c-api.md's result codes differ from the enum"
    );
}

#[test]
fn every_code_has_its_own_text_and_round_trips() {
    let mut texts = std::collections::BTreeSet::new();
    for c in cuframes_error::ALL {
        assert_eq!(cuframes_error::from_code(c as i32), Some(c));
        assert!(texts.insert(c.text()), "{c:?} shares its text");
    }
    assert_eq!(cuframes_error::from_code(-23), None);
}
