//! A stand-alone `supervise TREE_DIR` for benchmarks and manual runs of the library
//! alone: reads `TREE_DIR/spec.json` and supervises it, as `rundock supervise` does.

use rundock_spec::{Spec, SPEC_FILE};
use std::path::PathBuf;

fn main() {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let tree = match args.as_slice() {
        [sub, tree] if sub == "supervise" => PathBuf::from(tree),
        [tree] => PathBuf::from(tree),
        _ => {
            eprintln!("usage: supervise [supervise] TREE_DIR");
            std::process::exit(2);
        }
    };
    let spec = match Spec::load(&tree.join(SPEC_FILE)) {
        Ok(spec) => spec,
        Err(e) => {
            eprintln!("rundock supervise: {e}");
            std::process::exit(rundock_supervisor::EXIT_FAILURE);
        }
    };
    match rundock_supervisor::run(spec) {
        Ok(code) => std::process::exit(code),
        Err(e) => {
            eprintln!("rundock supervise: {e:#}");
            std::process::exit(rundock_supervisor::EXIT_FAILURE);
        }
    }
}
