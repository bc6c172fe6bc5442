//! Installs the running binary as the runner the run scripts exec, so a host that has
//! only runit and Docker gets a working tree from a plain `ansible -m rundock`.
//!
//! The runner lives at `<install_dir>/<version>/rundock`; a run that finds the same bytes
//! there does nothing.

use crate::fsutil;
use anyhow::{Context, Result};
use std::path::{Path, PathBuf};

/// The binary to install: the module itself (Ansible's copy in its temp dir).
pub fn own_binary() -> Result<PathBuf> {
    std::env::current_exe().context("cannot find the running rundock binary")
}

/// Whether `runner` differs from `source` (absent, other bytes, or not executable).
pub fn runner_differs(source: &Path, runner: &Path) -> Result<bool> {
    if fsutil::mode_of(runner) != Some(0o755) {
        return Ok(true);
    }
    let source_len = std::fs::metadata(source)
        .with_context(|| format!("cannot read {}", source.display()))?
        .len();
    let runner_len = std::fs::metadata(runner).map(|m| m.len()).unwrap_or(0);
    if source_len != runner_len {
        return Ok(true);
    }
    same_bytes(source, runner).map(|same| !same)
}

/// Compares two files of equal length chunk by chunk: the module pays this on every
/// task, and whole-file reads would fault in two binaries' worth of fresh memory.
fn same_bytes(a: &Path, b: &Path) -> Result<bool> {
    use std::io::Read;
    let open =
        |p: &Path| std::fs::File::open(p).with_context(|| format!("cannot read {}", p.display()));
    let (mut fa, mut fb) = (open(a)?, open(b)?);
    let mut ba = vec![0u8; 64 * 1024];
    let mut bb = vec![0u8; 64 * 1024];
    loop {
        let n = fa
            .read(&mut ba)
            .with_context(|| format!("cannot read {}", a.display()))?;
        if n == 0 {
            return Ok(true);
        }
        if fb.read_exact(&mut bb[..n]).is_err() || ba[..n] != bb[..n] {
            return Ok(false);
        }
    }
}

/// Copies `source` to `runner` atomically (temp file and rename) with mode 0755; `runner` is either
/// the old file or the whole new one, never half written.
pub fn install_runner(source: &Path, runner: &Path) -> Result<()> {
    let bytes =
        std::fs::read(source).with_context(|| format!("cannot read {}", source.display()))?;
    fsutil::write_atomic(runner, &bytes, 0o755)
}
