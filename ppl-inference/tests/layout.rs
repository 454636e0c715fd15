//! The house rules of `ppl-inference`'s layout: each engine is one folder under
//! `src/engines/`, and no engine imports another (shared pieces live in `importance/`,
//! `guides/` and `train/`).

use std::path::{Path, PathBuf};

fn rust_files(dir: &Path, out: &mut Vec<PathBuf>) {
    for e in std::fs::read_dir(dir).unwrap() {
        let p = e.unwrap().path();
        if p.is_dir() {
            rust_files(&p, out);
        } else if p.extension().is_some_and(|x| x == "rs") {
            out.push(p);
        }
    }
}

#[test]
fn no_engine_imports_another_engine() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("src/engines");
    let engines: Vec<String> = std::fs::read_dir(&root)
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.is_dir())
        .map(|p| p.file_name().unwrap().to_string_lossy().into_owned())
        .collect();
    assert!(engines.contains(&"svi".to_string()), "{engines:?}");
    let mut violations = Vec::new();
    for e in &engines {
        let mut files = Vec::new();
        rust_files(&root.join(e), &mut files);
        for f in files {
            let text = std::fs::read_to_string(&f).unwrap();
            for other in engines.iter().filter(|o| *o != e) {
                for pat in [
                    format!("engines::{other}"),
                    format!("super::super::{other}"),
                ] {
                    if text.contains(&pat) {
                        violations.push(format!("{} uses `{pat}`", f.display()));
                    }
                }
            }
            // Re-exports of other engines' types through the namespace count too.
            for (i, line) in text.lines().enumerate() {
                if line.contains("crate::engines::") && !line.trim_start().starts_with("//") {
                    violations.push(format!("{}:{} `{}`", f.display(), i + 1, line.trim()));
                }
            }
        }
    }
    assert!(
        violations.is_empty(),
        "engines import each other:\n{}",
        violations.join("\n")
    );
}
