//! Checkers written independently of Cercle, installed from the npm registry into
//! `tests/js` (`tests/run-all.sh` runs `npm ci` there): HL7's FHIR R4 JSON Schema for
//! exports, and axe-core for the web pages' accessibility (run in the browser by
//! [`crate::browser`]).

use std::path::{Path, PathBuf};
use std::process::Command;

/// Where the checkers are installed.
fn tools() -> PathBuf {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("js");
    assert!(
        dir.join("node_modules").is_dir(),
        "the test tools are not installed: run `npm ci --prefix tests/js` (tests/run-all.sh does)"
    );
    dir
}

/// Fails the test unless `file` is a FHIR R4 resource valid against HL7's JSON Schema,
/// with the checker's own words.
pub fn validate_fhir(file: &Path) {
    let out = Command::new("node")
        .arg(tools().join("fhir-validate.js"))
        .arg(file)
        .output()
        .unwrap_or_else(|e| panic!("cannot run node (Node.js 18 or later is needed): {e}"));
    let report = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "{} is not valid FHIR R4: {report}{}",
        file.display(),
        String::from_utf8_lossy(&out.stderr)
    );
}

/// The source of axe-core, to be run inside a page.
pub fn axe_source() -> String {
    let file = tools().join("node_modules/axe-core/axe.min.js");
    std::fs::read_to_string(&file).unwrap_or_else(|e| panic!("cannot read {}: {e}", file.display()))
}
