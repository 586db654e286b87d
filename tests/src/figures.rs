//! The figures a reliability test produces (inputs tried, requests sent and
//! failed, memory before and after): printed with the test's own output and,
//! when `cargo xtask test` runs the suite, also appended to the file it names
//! in `LB_TEST_FIGURES`, which it prints after the last test. A run without
//! `--nocapture` (CI's) thereby still shows the figures the README's
//! Reliability table carries.

use std::fs::OpenOptions;
use std::io::Write;

/// The variable `cargo xtask test` sets (xtask's `run.rs` spells it too).
pub const FIGURES_FILE_VAR: &str = "LB_TEST_FIGURES";

/// Prints `figures` under the name of the test that measured them and
/// records them for the suite's closing summary.
pub fn report(test: &str, figures: &str) {
    println!("{test}: {figures}");
    let Some(path) = std::env::var_os(FIGURES_FILE_VAR) else {
        return;
    };
    // One write of one whole line to a file opened for appending: lines of
    // tests running side by side never interleave.
    let line = format!("{test}: {}\n", figures.replace('\n', " "));
    let recorded = OpenOptions::new().create(true).append(true).open(&path).and_then(|mut file| file.write_all(line.as_bytes()));
    if let Err(error) = recorded {
        eprintln!("recording the figures of {test} in {}: {error}", path.to_string_lossy());
    }
}
