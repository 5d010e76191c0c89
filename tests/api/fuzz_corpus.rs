//! The fuzz targets' committed inputs, in the ordinary suite: every seed (`fuzz/seeds/<target>`)
//! and every input a fuzz run ever failed on (`fuzz/regressions/<target>`, a regression test
//! each) goes through the same harness as `scripts/fuzz` (`tessera::fuzzing`). The seeds must
//! reach both sides of each parser: at least one accepted input and one refused.

use std::path::Path;

type Harness = fn(&[u8]) -> bool;

const TARGETS: [(&str, Harness); 5] = [
    ("credentials", tessera::fuzzing::credentials),
    ("cookie_header", tessera::fuzzing::cookie_header),
    ("jwt", tessera::fuzzing::jwt),
    ("users_file", tessera::fuzzing::users_file),
    ("forwarded_for", tessera::fuzzing::forwarded_for),
];

fn inputs(dir: &Path) -> Vec<(String, Vec<u8>)> {
    let Ok(entries) = std::fs::read_dir(dir) else {
        return Vec::new();
    };
    let mut files: Vec<_> = entries
        .map(|e| e.unwrap().path())
        .filter(|p| p.is_file())
        .map(|p| (p.display().to_string(), std::fs::read(&p).unwrap()))
        .collect();
    files.sort();
    files
}

#[test]
fn every_seed_and_regression_input_passes_its_harness() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("fuzz");
    for (target, harness) in TARGETS {
        let seeds = inputs(&root.join("seeds").join(target));
        assert!(seeds.len() >= 2, "{target} has too few seeds");
        let accepted = seeds.iter().filter(|(_, data)| harness(data)).count();
        assert!(accepted >= 1, "no seed of {target} is accepted");
        assert!(accepted < seeds.len(), "no seed of {target} is refused");
        for (name, data) in inputs(&root.join("regressions").join(target)) {
            let outcome = std::panic::catch_unwind(|| harness(&data));
            assert!(outcome.is_ok(), "the regression input {name} fails again");
        }
    }
    // Each target the fuzz crate builds is covered here.
    let manifest = std::fs::read_to_string(root.join("Cargo.toml")).unwrap();
    let built = manifest.matches("[[bin]]").count();
    assert_eq!(
        built,
        TARGETS.len(),
        "fuzz/Cargo.toml and this list disagree"
    );
}
