//! Helper programs netfault runs inside a lab namespace (nft -f, iptables-nft-save/-restore):
//! one runner, so a missing program is reported the same way everywhere.

use std::process::{Command, Stdio};

/// Runs a helper program (nft -f, iptables-nft-save/-restore) in the calling thread's namespace.
pub fn run_tool(prog: &str, args: &[&str], stdin: Option<&str>) -> std::io::Result<String> {
    use std::io::Write;
    let mut child = Command::new(prog)
        .args(args)
        .stdin(if stdin.is_some() {
            Stdio::piped()
        } else {
            Stdio::null()
        })
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .map_err(|e| {
            if e.kind() == std::io::ErrorKind::NotFound {
                let pkg = if prog == "nft" {
                    "nftables"
                } else {
                    "iptables"
                };
                std::io::Error::new(
                    e.kind(),
                    format!("{prog} is missing: install {pkg} (apt-get install {pkg})"),
                )
            } else {
                e
            }
        })?;
    if let Some(text) = stdin {
        child
            .stdin
            .take()
            .expect("piped")
            .write_all(text.as_bytes())?;
    }
    let out = child.wait_with_output()?;
    if !out.status.success() {
        return Err(std::io::Error::other(format!(
            "{prog} failed: {}",
            String::from_utf8_lossy(&out.stderr).trim()
        )));
    }
    Ok(String::from_utf8_lossy(&out.stdout).into_owned())
}
