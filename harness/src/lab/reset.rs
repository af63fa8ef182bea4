//! Putting a pinned lab back to its fixture's state, whatever was done to it by hand: every
//! host's links, routes, firewall and sysctls are cleared and the plan is wired again, inside
//! the same namespaces (shells and servers running in them stay).

use std::collections::BTreeMap;

use futures::future::try_join_all;

use super::live::Lab;
use super::plan::HostPlan;
use crate::error::{nl_error, Error, Result};
use crate::netns::{self, Netns};
use crate::nl as netlink;

/// What a reset did beyond rebuilding links: the sysctls it wrote back (`host: key = was → now`)
/// and what it could not put back.
#[derive(Debug, Default)]
pub struct Reset {
    /// (host, key, was, now) of each sysctl written back.
    pub sysctls: Vec<(String, String, String, String)>,
    pub notes: Vec<String>,
}

/// The per-namespace sysctl trees a reset compares (device entries other than `all` and
/// `default` go with their devices).
const TREES: [&str; 5] = [
    "net/ipv4",
    "net/ipv6",
    "net/core",
    "net/netfilter",
    "net/bridge",
];

impl Lab {
    /// Clears every host and wires the plan again; the Kubernetes tables and resolv.conf files
    /// are rendered afresh. A lab of CNI plugins cannot be: the plugins own its pods' links.
    pub async fn reset(&self) -> Result<Reset> {
        if self.cni.is_some() {
            return Err(Error::Unsupported(
                "a lab wired by CNI plugins cannot be reset in place (the plugins own its pods' \
                 links): netfault down it and up it again"
                    .into(),
            ));
        }
        let fresh = fresh_sysctls(&self.plan.hosts).await?;
        let cleared = try_join_all(
            self.plan
                .hosts
                .iter()
                .map(|hp| self.clear_host(hp, &fresh[&hp.name])),
        )
        .await?;
        let mut out = Reset::default();
        for (sysctls, notes) in cleared {
            out.sysctls.extend(sysctls);
            out.notes.extend(notes);
        }
        self.wire().await?;
        self.render_k8s().await?;
        Ok(out)
    }

    /// Sysctls back to a fresh host's, then no link but lo, no route, no rule set left.
    async fn clear_host(
        &self,
        hp: &HostPlan,
        fresh: &BTreeMap<String, String>,
    ) -> Result<(Written, Vec<String>)> {
        let host = self.host(&hp.name)?;
        let name = hp.name.clone();
        let want = fresh.clone();
        let (changed, notes) = host
            .ns
            .run_async(move || restore_sysctls(&name, &want))
            .await
            .and_then(|r| r)
            .map_err(|e| Error::io(format!("{}: sysctls", hp.name), e))?;
        let h = host.handle();
        let err = |what: String| move |e| nl_error(&hp.name, what, e);
        for l in netlink::links(h)
            .await
            .map_err(err("listing links".into()))?
        {
            if l.name == "lo" {
                continue;
            }
            // A veth's peer goes with it: gone already is fine.
            match netlink::del_link(h, l.index).await {
                Err(e) if crate::error::netlink_errno(&e) == Some(libc::ENODEV) => {}
                r => r.map_err(err(format!("deleting {}", l.name)))?,
            }
        }
        // Policy routing rules of anyone's (`ip rule add`), then what needs no link: blackhole,
        // unreachable and prohibit routes, lo's extra addresses.
        netlink::del_extra_rules(h)
            .await
            .map_err(err("deleting policy routing rules".into()))?;
        for r in netlink::routes_raw(h)
            .await
            .map_err(err("listing routes".into()))?
        {
            if r.header.table != 255 {
                let _ = netlink::del_route_msg(h, r).await;
            }
        }
        let lo = host.index("lo").await?;
        for a in netlink::addresses(h)
            .await
            .map_err(err("listing addresses".into()))?
        {
            if a.index == lo && a.net.addr() != std::net::Ipv4Addr::LOCALHOST {
                let _ = netlink::del_address(h, lo, a.net).await;
            }
        }
        let _ = netlink::del_root_qdisc(h, lo).await;
        netlink::set_up(h, lo, true)
            .await
            .map_err(err("setting lo up".into()))?;
        // iptables-nft's tables are nft tables too: one flush clears both.
        self.nft_script(&hp.name, "flush ruleset\n".into()).await?;
        // Flows remember NAT decisions made while the lab was broken (a DNS query that was not
        // DNATed stays so for its 30 s): a rebuilt lab starts with none.
        host.ns
            .run_async(crate::conntrack::flush)
            .await
            .and_then(|r| r)
            .map_err(|e| Error::io(format!("{}: flushing conntrack", hp.name), e))?;
        Ok((changed, notes))
    }
}

/// What each host's sysctls are in a namespace just created with its plan's settings (hosts
/// with the same settings share one scratch namespace).
async fn fresh_sysctls(hosts: &[HostPlan]) -> Result<BTreeMap<String, BTreeMap<String, String>>> {
    let mut by_spec: BTreeMap<Vec<(String, String)>, BTreeMap<String, String>> = BTreeMap::new();
    let mut out = BTreeMap::new();
    for hp in hosts {
        if !by_spec.contains_key(&hp.sysctls) {
            let spec = hp.sysctls.clone();
            let read = tokio::task::spawn_blocking(move || {
                // A thread of its own: it stays in the scratch namespace until it ends.
                std::thread::spawn(move || {
                    let (_ns, values) = Netns::create_here_with(|| {
                        for (k, v) in &spec {
                            netns::write_sysctl(k, v)?;
                        }
                        Ok(read_trees())
                    })?;
                    Ok::<_, std::io::Error>(values)
                })
                .join()
                .map_err(|_| std::io::Error::other("the scratch namespace thread panicked"))?
            })
            .await
            .map_err(|e| Error::other(format!("reading fresh sysctls: {e}")))?
            .map_err(|e| Error::io("reading a fresh namespace's sysctls", e))?;
            by_spec.insert(hp.sysctls.clone(), read);
        }
        out.insert(hp.name.clone(), by_spec[&hp.sysctls].clone());
    }
    Ok(out)
}

/// Every readable and writable sysctl of [`TREES`] in the calling thread's namespace.
fn read_trees() -> BTreeMap<String, String> {
    let mut out = BTreeMap::new();
    for t in TREES {
        walk(
            std::path::Path::new("/proc/sys").join(t).as_path(),
            &mut out,
        );
    }
    out
}

fn walk(dir: &std::path::Path, out: &mut BTreeMap<String, String>) {
    use std::os::unix::fs::PermissionsExt;
    let Ok(entries) = std::fs::read_dir(dir) else {
        return;
    };
    for e in entries.flatten() {
        let p = e.path();
        let Ok(m) = e.metadata() else { continue };
        let name = e.file_name().to_string_lossy().to_string();
        let parent = dir.file_name().map(|n| n.to_string_lossy().to_string());
        if m.is_dir() {
            // Per-device entries: only all and default (devices are re-created from default).
            let per_device = matches!(parent.as_deref(), Some("conf" | "neigh"));
            if !per_device || name == "all" || name == "default" {
                walk(&p, out);
            }
        } else if m.permissions().mode() & 0o600 == 0o600 {
            if let Ok(v) = std::fs::read_to_string(&p) {
                let key = p
                    .strip_prefix("/proc/sys")
                    .unwrap_or(&p)
                    .display()
                    .to_string();
                out.insert(key, v.trim_end().to_string());
            }
        }
    }
}

/// Writes back each sysctl that differs from `want`; returns what changed and what could not.
type Written = Vec<(String, String, String, String)>;

fn restore_sysctls(
    host: &str,
    want: &BTreeMap<String, String>,
) -> std::io::Result<(Written, Vec<String>)> {
    let now = read_trees();
    let mut changed = Vec::new();
    let mut notes = Vec::new();
    let host = host.to_string();
    for (key, fresh) in want {
        let Some(cur) = now.get(key) else { continue };
        if cur == fresh {
            continue;
        }
        let shown = key.replace('/', ".");
        match netns::write_sysctl(key, fresh) {
            Ok(()) => changed.push((host.clone(), shown, cur.clone(), fresh.clone())),
            Err(e) => notes.push(format!("{host}: {shown} stays {cur}: {e}")),
        }
    }
    Ok((changed, notes))
}
