//! `-f FILE|DIR|-`: reads every resource the user named, before anything else happens.
//!
//! A directory contributes each `.yaml`, `.yml` and `.json` file directly inside it (every
//! level with `-R`), in lexical order, as upstream's file iterator does. Any file that cannot be
//! read or parsed fails the whole command, so a bad document never leaves half a file applied.

use calico_api::Resource;
use calico_api::codec;
use std::io::Read;
use std::path::{Path, PathBuf};

#[derive(Debug, thiserror::Error)]
pub enum InputError {
    /// The file could not be read or parsed (upstream: "failed to execute command: …").
    #[error("{0}")]
    Invalid(String),
    /// A file or directory held no resources and `--skip-empty` was not given.
    #[error("{0}")]
    Empty(String),
}

/// Loads the resources named by `-f`.
pub fn load(
    filename: &str,
    recursive: bool,
    skip_empty: bool,
) -> Result<Vec<Resource>, InputError> {
    if filename == "-" {
        let mut text = String::new();
        std::io::stdin()
            .read_to_string(&mut text)
            .map_err(|e| InputError::Invalid(format!("reading standard input: {e}")))?;
        return from_text(&text, "stdin", skip_empty);
    }
    let path = Path::new(filename);
    if !path.is_dir() {
        let text = read(path)?;
        return from_text(&text, filename, skip_empty);
    }
    let mut files = Vec::new();
    walk(path, recursive, &mut files)?;
    let mut out = Vec::new();
    for f in files {
        let text = read(&f)?;
        out.extend(from_text(&text, &f.display().to_string(), skip_empty)?);
    }
    if out.is_empty() && !skip_empty {
        return Err(InputError::Empty(format!(
            "no resources specified in directory {filename}"
        )));
    }
    Ok(out)
}

fn read(path: &Path) -> Result<String, InputError> {
    std::fs::read_to_string(path).map_err(|e| {
        let why = match e.kind() {
            std::io::ErrorKind::NotFound => "no such file or directory".to_string(),
            std::io::ErrorKind::PermissionDenied => "permission denied".to_string(),
            _ => e.to_string(),
        };
        InputError::Invalid(format!("open {}: {why}", path.display()))
    })
}

fn from_text(text: &str, origin: &str, skip_empty: bool) -> Result<Vec<Resource>, InputError> {
    // The codec's error carries line and column; the origin names the file they are in.
    let resources =
        codec::parse_documents(text).map_err(|e| InputError::Invalid(format!("{origin}: {e}")))?;
    if resources.is_empty() && !skip_empty {
        return Err(InputError::Empty(format!(
            "no resources specified in file {origin}"
        )));
    }
    Ok(resources)
}

fn walk(dir: &Path, recursive: bool, files: &mut Vec<PathBuf>) -> Result<(), InputError> {
    let entries = std::fs::read_dir(dir)
        .map_err(|e| InputError::Invalid(format!("reading directory {}: {e}", dir.display())))?;
    let mut paths: Vec<PathBuf> = entries.filter_map(|e| e.ok().map(|e| e.path())).collect();
    paths.sort();
    for p in paths {
        if p.is_dir() {
            if recursive {
                walk(&p, recursive, files)?;
            }
            continue;
        }
        let ext = p
            .extension()
            .and_then(|e| e.to_str())
            .map(str::to_ascii_lowercase);
        if matches!(ext.as_deref(), Some("yaml" | "yml" | "json")) {
            files.push(p);
        }
    }
    Ok(())
}
