//! Named labs: pinned under /run/netns with a record, outliving the process until `down`;
//! attaching to one a netfault process left up.

use super::k8s;
use super::live::{CniState, Lab, LabHost};
use super::plan::Plan;
use crate::cni;
use crate::error::{Error, Result};
use crate::netns::Netns;
use crate::nl as netlink;
use crate::registry::{self, LabRecord, RecordState};
use crate::topology::Topology;
use std::collections::BTreeMap;
use std::path::PathBuf;

impl Lab {
    /// Builds a lab and pins every host at /run/netns/<name>-<host>; it outlives this process
    /// until `netfault down <name>`.
    pub async fn up_named(topo: &Topology, name: &str, fixture: Option<PathBuf>) -> Result<Lab> {
        Lab::up_named_as(topo, name, fixture, RecordState::Up).await
    }

    /// Like `up_named`, but the record stays "building" (what `gc` reaps if this process dies)
    /// until the caller, done with its own steps (a DNS daemon), calls `registry::mark_up`.
    pub async fn up_named_building(
        topo: &Topology,
        name: &str,
        fixture: Option<PathBuf>,
    ) -> Result<Lab> {
        Lab::up_named_as(topo, name, fixture, RecordState::Building).await
    }

    /// Builds and pins a named lab; its record ends in `state`.
    pub(super) async fn up_named_as(
        topo: &Topology,
        name: &str,
        fixture: Option<PathBuf>,
        state: RecordState,
    ) -> Result<Lab> {
        let mut rec = LabRecord::new(name, fixture, topo);
        registry::reserve(&rec)?;
        crate::testhook::pause("up:reserved");
        let built = async {
            let mut lab = Lab::up(topo).await?;
            for (host, pin) in &rec.pins {
                lab.host(host)?
                    .ns
                    .pin(pin)
                    .map_err(|e| Error::io(format!("pinning {host}"), e))?;
                crate::testhook::pause("up:pinned");
            }
            lab.name = Some(name.to_string());
            // Pods' resolv.conf files, for `netfault exec` to mount over /etc/resolv.conf.
            k8s::write_resolv_confs(&lab.topo, name)?;
            lab.k8s.pinned = Some(name.to_string());
            crate::testhook::pause("up:resolv");
            Ok::<Lab, Error>(lab)
        }
        .await;
        match built {
            Ok(mut lab) => {
                rec.state = state;
                // What CNI plugins assigned, and their state, belong to the pinned lab now.
                rec.topology = lab.topo.clone();
                if let Some(c) = lab.cni.as_mut() {
                    c.owns_dir = false;
                    rec.cni_dir = Some(c.runtime.data_dir.clone());
                    rec.cni_lists = c.lists.clone();
                    rec.cni_attachments = c.attachments.clone();
                }
                if let Err(e) = registry::update(&rec) {
                    let _ = registry::remove(&rec);
                    return Err(e);
                }
                crate::testhook::pause("up:recorded");
                Ok(lab)
            }
            Err(e) => {
                let _ = registry::remove(&rec);
                Err(e)
            }
        }
    }

    /// Opens a named lab another process (or an earlier run) brought up.
    pub async fn attach(name: &str) -> Result<Lab> {
        Lab::attach_inner(name, false).await
    }

    /// Opens a named lab whose builder is still at work (the DNS daemon it starts).
    pub async fn attach_building(name: &str) -> Result<Lab> {
        Lab::attach_inner(name, true).await
    }

    pub(super) async fn attach_inner(name: &str, building: bool) -> Result<Lab> {
        let rec = registry::load(name)?;
        if rec.state != RecordState::Up && !(building && rec.owner_alive()) {
            return Err(Error::NotFound(format!(
                "lab {name} is still being built{}",
                if rec.owner_alive() {
                    ""
                } else {
                    " by a process that died: netfault gc removes it"
                }
            )));
        }
        let plan = Plan::from_topology(&rec.topology);
        let mut hosts = BTreeMap::new();
        for (host, pin) in &rec.pins {
            let ns = Netns::open(pin).map_err(|e| {
                Error::NotFound(format!(
                    "lab {name}: cannot open {} ({}); the lab is damaged: netfault down {name}",
                    pin.display(),
                    crate::topology::source::plain_io_error(&e)
                ))
            })?;
            let conn = netlink::connect(&ns)
                .await
                .map_err(|e| Error::io(format!("{host}: opening netlink"), e))?;
            hosts.insert(
                host.clone(),
                LabHost {
                    name: host.clone(),
                    ns,
                    nl: conn,
                },
            );
        }
        let cni = match (&rec.topology.cni, &rec.cni_dir) {
            (Some(spec), Some(dir)) => Some(CniState {
                runtime: cni::Runtime {
                    path: cni::PluginPath::resolve(&spec.path),
                    data_dir: dir.clone(),
                    exec_path: None,
                },
                lists: rec.cni_lists.clone(),
                attachments: rec.cni_attachments.clone(),
                owns_dir: false,
            }),
            _ => None,
        };
        Ok(Lab {
            topo: rec.topology,
            plan,
            hosts,
            name: Some(name.to_string()),
            cni,
            k8s: k8s::K8sRuntime {
                pinned: Some(name.to_string()),
                ..Default::default()
            },
        })
    }

    /// Removes a named lab's pins and record. The namespaces go once nothing else holds them.
    pub fn down_named(name: &str) -> Result<Vec<PathBuf>> {
        let rec = registry::load(name)?;
        registry::remove(&rec)
    }
}
