//! The DNS daemon of a pinned Kubernetes lab: spawned detached, serving until its lab goes.

use crate::error::Error;
use crate::lab::Lab;
use crate::registry;

/// Starts `netfault dns-serve NAME` in a session of its own and records its PID in the lab's
/// record (so `down` and `gc` end it); waits until it answers on its socket.
pub(crate) fn spawn_dns_server(name: &str) -> Result<u32, Error> {
    let child = super::daemon::spawn_detached(&["dns-serve", name], false)
        .map_err(|e| Error::io("starting the DNS server", e))?;
    let pid = child.id();
    crate::testhook::pause("up:dns-spawned");
    let mut rec = registry::load(name)?;
    rec.dns_pid = Some((pid, registry::process_start(pid).unwrap_or(0)));
    registry::update(&rec)?;
    crate::testhook::pause("up:dns-recorded");
    // Ready when its socket is bound in the DNS pod (or it died saying why to nobody).
    let t = rec.topology.clone();
    let (pod, addr) = crate::lab::k8s::dns_endpoint(&t).expect("dns");
    let pin = registry::pin_path(name, &pod);
    let ns = crate::netns::Netns::open(&pin).map_err(|e| Error::io("opening the DNS pod", e))?;
    for _ in 0..200 {
        if ns.udp_bound(addr.port()).unwrap_or(false) {
            return Ok(pid);
        }
        if registry::process_start(pid).is_none() {
            break;
        }
        std::thread::sleep(std::time::Duration::from_millis(10));
    }
    Err(Error::other(format!(
        "the DNS server (pid {pid}) did not come up; run `netfault dns-serve {name}` to see why"
    )))
}

/// The body of `netfault dns-serve`: the lab's DNS server in its DNS pod, until killed, or
/// until its lab no longer names it (removed by hand, or its builder died before recording
/// this daemon: nothing else would end it).
pub(super) async fn dns_serve(name: &str) -> Result<(), Error> {
    let lab = Lab::attach_building(name).await?;
    lab.start_dns()?;
    super::daemon::stay_while_named(name, |rec| rec.dns_pid).await;
    Ok(())
}
