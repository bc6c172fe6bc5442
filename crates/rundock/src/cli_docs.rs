//! The shell completions and man pages of the command line, generated from its one clap
//! definition and kept in the host role's files, which installs them. They are made
//! here, in a test, rather than by a subcommand: the generators would grow the binary
//! Ansible copies on every task, and the files are the same on every host.
//!
//! `RUNDOCK_BLESS=1 cargo test -p rundock --bin rundock cli_docs` writes them after a
//! change of the command line; without it the test fails when they are not current.

use crate::Cli;
use clap::CommandFactory;
use clap_complete::Shell;
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::Command;

/// Where the host role takes them from.
fn files_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../../ansible_collections/rundock/rundock/roles/host/files")
}

/// The command line without the plumbing: clap_complete offers hidden subcommands
/// too, and what `--help` does not list is not completed either.
fn for_people() -> clap::Command {
    let full = Cli::command();
    let visible: Vec<clap::Command> = full
        .get_subcommands()
        .filter(|s| !s.is_hide_set())
        .cloned()
        .collect();
    clap::Command::new("rundock")
        .about(full.get_about().cloned().unwrap_or_default())
        .version(env!("CARGO_PKG_VERSION"))
        .subcommand_required(true)
        .subcommands(visible)
}

/// Every generated file by its path under [`files_dir`].
fn generate() -> BTreeMap<String, Vec<u8>> {
    let mut files = BTreeMap::new();
    for (shell, file) in [
        (Shell::Bash, "completions/rundock.bash"),
        (Shell::Zsh, "completions/_rundock"),
        (Shell::Fish, "completions/rundock.fish"),
    ] {
        let mut text = Vec::new();
        clap_complete::generate(shell, &mut for_people(), "rundock", &mut text);
        files.insert(file.to_string(), text);
    }
    let pages = tempfile::tempdir().unwrap();
    clap_mangen::generate_to(Cli::command(), pages.path()).unwrap();
    for entry in std::fs::read_dir(pages.path()).unwrap() {
        let path = entry.unwrap().path();
        let name = path.file_name().unwrap().to_string_lossy().into_owned();
        files.insert(format!("man/{name}"), std::fs::read(&path).unwrap());
    }
    files
}

/// The files now under `dir` (relative paths) of the kinds generated.
fn committed(dir: &Path) -> BTreeMap<String, Vec<u8>> {
    let mut files = BTreeMap::new();
    for sub in ["completions", "man"] {
        let Ok(entries) = std::fs::read_dir(dir.join(sub)) else {
            continue;
        };
        for entry in entries {
            let path = entry.unwrap().path();
            let name = path.file_name().unwrap().to_string_lossy().into_owned();
            files.insert(format!("{sub}/{name}"), std::fs::read(&path).unwrap());
        }
    }
    files
}

#[test]
fn the_completions_and_man_pages_are_generated_from_the_cli() {
    let dir = files_dir();
    let wanted = generate();
    assert!(wanted.contains_key("man/rundock.1"), "{:?}", wanted.keys());
    assert!(
        wanted.contains_key("man/rundock-logs.1"),
        "{:?}",
        wanted.keys()
    );
    // Plumbing stays out of them, as out of --help.
    assert!(!wanted.contains_key("man/rundock-supervise.1"));
    if std::env::var_os("RUNDOCK_BLESS").is_some() {
        for (name, _) in committed(&dir) {
            if !wanted.contains_key(&name) {
                std::fs::remove_file(dir.join(&name)).unwrap();
            }
        }
        for (name, text) in &wanted {
            let path = dir.join(name);
            std::fs::create_dir_all(path.parent().unwrap()).unwrap();
            std::fs::write(&path, text).unwrap();
        }
    }
    let have = committed(&dir);
    let stale: Vec<&String> = wanted
        .keys()
        .chain(have.keys())
        .filter(|name| wanted.get(*name) != have.get(*name))
        .collect();
    assert!(
        stale.is_empty(),
        "not current in {}: {stale:?}; regenerate with \
         RUNDOCK_BLESS=1 cargo test -p rundock --bin rundock cli_docs",
        dir.display()
    );
}

/// The generated files in a temp dir (the test above holds the committed ones equal).
fn generated_dir() -> tempfile::TempDir {
    let dir = tempfile::tempdir().unwrap();
    for (name, text) in generate() {
        let path = dir.path().join(name);
        std::fs::create_dir_all(path.parent().unwrap()).unwrap();
        std::fs::write(path, text).unwrap();
    }
    dir
}

#[test]
fn bash_loads_the_completions_and_completes_subcommands_and_options() {
    let dir = generated_dir();
    let file = dir.path().join("completions/rundock.bash");
    // What bash-completion does for `rundock st<TAB>` and `rundock logs --st<TAB>`.
    let script = format!(
        "source '{}' && complete -p rundock && \
         COMP_WORDS=(rundock st) COMP_CWORD=1 COMP_LINE='rundock st' COMP_POINT=10 && \
         _rundock rundock st rundock && echo \"subcommands: ${{COMPREPLY[*]}}\" && \
         COMP_WORDS=(rundock logs --st) COMP_CWORD=2 && \
         _rundock rundock --st logs && echo \"options: ${{COMPREPLY[*]}}\"",
        file.display()
    );
    let out = Command::new("bash")
        .args(["--noprofile", "--norc", "-c", &script])
        .output()
        .unwrap();
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "{text}{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(text.contains("-F _rundock rundock"), "{text}");
    let line = |prefix: &str| {
        text.lines()
            .find_map(|l| l.strip_prefix(prefix))
            .unwrap_or_else(|| panic!("no {prefix} in {text}"))
            .split_whitespace()
            .collect::<Vec<_>>()
    };
    // Plumbing (`stop-tree`) is not offered.
    assert_eq!(line("subcommands: "), ["status"]);
    assert_eq!(line("options: "), ["--stream"]);
}

#[test]
fn man_renders_the_pages() {
    let dir = generated_dir();
    for page in ["rundock.1", "rundock-logs.1", "rundock-status.1"] {
        let path = dir.path().join("man").join(page);
        let out = Command::new("man")
            .arg("-l")
            .arg(&path)
            .env("MANWIDTH", "100")
            .env("MANPAGER", "cat")
            .output()
            .unwrap();
        let text = String::from_utf8_lossy(&out.stdout);
        assert!(out.status.success(), "{page}: {text}");
        assert!(text.contains("NAME"), "{page}: {text}");
    }
}
