#!/usr/bin/env bash
# What generating shell completions and man pages in the binary would cost: builds a small
# clap program with the workspace's release profile and clap features, once as it is and
# once with a `completions` and a `man` subcommand (clap_complete, clap_mangen), and prints
# both sizes. rundock generates them in a test instead (crates/rundock/src/cli_docs.rs),
# since Ansible copies the binary on every task.
set -euo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
mkdir -p "$work/src"
clap=$(grep -m1 '^clap = ' "$root/Cargo.toml")
complete=$(grep -m1 '^clap_complete = ' "$root/Cargo.toml")
mangen=$(grep -m1 '^clap_mangen = ' "$root/Cargo.toml")
{
  printf '[package]\nname = "cli-docs-size"\nversion = "0.1.0"\nedition = "2021"\n\n'
  printf '[features]\ngen = ["dep:clap_complete", "dep:clap_mangen"]\n\n[dependencies]\n%s\n' "$clap"
  printf '%s\n%s\n' "${complete/\"4\"/{ version = \"4\", optional = true \}}" \
    "${mangen/\"0.3\"/{ version = \"0.3\", optional = true \}}"
  printf '\n'
  sed -n '/^\[profile.release\]/,/^$/p' "$root/Cargo.toml"
} >"$work/Cargo.toml"
cat >"$work/src/main.rs" <<'RS'
use clap::{Parser, Subcommand};
#[derive(Parser)]
#[command(name = "cli-docs-size", version, about = "a small command line")]
struct Cli {
    #[command(subcommand)]
    command: Command,
}
#[derive(Subcommand)]
enum Command {
    /// Show things.
    Status {
        /// Names.
        names: Vec<String>,
        /// As JSON.
        #[arg(long)]
        json: bool,
    },
    /// Completions for a shell.
    #[cfg(feature = "gen")]
    Completions { shell: clap_complete::Shell },
    /// The man page.
    #[cfg(feature = "gen")]
    Man,
}
fn main() {
    match Cli::parse().command {
        Command::Status { names, json } => println!("{names:?} {json}"),
        #[cfg(feature = "gen")]
        Command::Completions { shell } => {
            use clap::CommandFactory;
            clap_complete::generate(shell, &mut Cli::command(), "cli-docs-size", &mut std::io::stdout())
        }
        #[cfg(feature = "gen")]
        Command::Man => {
            use clap::CommandFactory;
            clap_mangen::Man::new(Cli::command()).render(&mut std::io::stdout()).unwrap()
        }
    }
}
RS
cd "$work"
CARGO_TARGET_DIR="$work/plain" cargo build -q --release
CARGO_TARGET_DIR="$work/gen" cargo build -q --release --features gen
plain=$(stat -c %s "$work/plain/release/cli-docs-size")
gen=$(stat -c %s "$work/gen/release/cli-docs-size")
printf 'without generators: %s bytes\nwith clap_complete + clap_mangen: %s bytes (+%s bytes)\n' \
  "$plain" "$gen" "$((gen - plain))"
