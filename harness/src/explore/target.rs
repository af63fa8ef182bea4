//! What an exploration runs on: a fixture file, or a CNI conflist given on the command line (in
//! the lab `netfault cni audit` builds for it), with the fixture text to write beside the cases
//! it shrinks.

use std::path::{Path, PathBuf};

use crate::error::{Error, Result};
use crate::topology::Topology;

pub struct Target {
    pub topology: Topology,
    /// The fixture file the written cases name; for a conflist, a file to write first.
    pub fixture: PathBuf,
    /// The fixture's text, when it is not a file yet (a conflist's lab).
    pub fixture_text: Option<String>,
}

impl Target {
    /// A fixture (`.toml`) or a conflist (anything else, as `netfault cni audit` takes it).
    pub fn open(path: &Path) -> Result<Target> {
        if path.extension().is_some_and(|e| e == "toml") {
            return Ok(Target {
                topology: crate::topology::load_fixture(path)?,
                fixture: path.to_path_buf(),
                fixture_text: None,
            });
        }
        let text = crate::audit::audit_fixture_text(path);
        let mut topology = crate::audit::audit_topology(path)?;
        let stem = path.file_stem().unwrap_or_default().to_string_lossy();
        topology.name = format!("{stem}-conflist");
        Ok(Target {
            topology,
            fixture: PathBuf::from(format!("fixture-{stem}.toml")),
            fixture_text: Some(text),
        })
    }

    /// The fixture's path for a case written in `dir`, relative to it (a conflist's fixture
    /// is written there first).
    pub fn fixture_for(&self, dir: &Path) -> Result<PathBuf> {
        let fixture = match &self.fixture_text {
            Some(text) => {
                let p = dir.join(&self.fixture);
                std::fs::write(&p, text)
                    .map_err(|e| Error::io(format!("writing {}", p.display()), e))?;
                p
            }
            None => self.fixture.clone(),
        };
        let abs =
            |p: &Path| std::fs::canonicalize(p).map_err(|e| Error::io(p.display().to_string(), e));
        Ok(crate::newcase::relative(&abs(dir)?, &abs(&fixture)?))
    }
}
