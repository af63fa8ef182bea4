//! A shrunk failing round as a case file, ready for review: the faults, and what the lab showed
//! with them (culprits and outcomes marked for review, as `netfault case new` writes them).

use std::path::{Path, PathBuf};

use super::record::Failure;
use super::round::RoundRun;
use super::target::Target;
use crate::error::{Error, Result};
use crate::fault::Fault;

/// Writes `DIR/explore-FIXTURE-ROUND.toml` (a number added if it exists) and returns its path.
pub fn case(
    target: &Target,
    dir: &Path,
    round: u64,
    faults: &[Fault],
    failure: &Failure,
    run: &RoundRun,
) -> Result<PathBuf> {
    std::fs::create_dir_all(dir)
        .map_err(|e| Error::io(format!("creating {}", dir.display()), e))?;
    let fixture = target.fixture_for(dir)?;
    let stem = format!("explore-{}-{round}", target.topology.name);
    let path = (0..)
        .map(|n| match n {
            0 => dir.join(format!("{stem}.toml")),
            n => dir.join(format!("{stem}-{n}.toml")),
        })
        .find(|p| !p.exists())
        .expect("a free name");
    let origin = format!(
        "Written by `netfault explore` (round {round}), shrunk to the faults that still fail \
         the check \"{}\"",
        failure.describe()
    );
    let text = crate::newcase::observed_case(&origin, &fixture, faults, &run.report);
    std::fs::write(&path, text).map_err(|e| Error::io(format!("writing {}", path.display()), e))?;
    Ok(path)
}
