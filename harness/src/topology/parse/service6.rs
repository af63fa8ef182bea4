//! The IPv6 side of Services in a dual-stack fixture: `[cluster] service_cidr`'s IPv6 entry, a
//! Service's IPv6 ClusterIP (`cluster_ip`'s second entry, Kubernetes' `clusterIPs`) and its
//! `ip_families` (Kubernetes' `ipFamilies`), each located when wrong.

use std::net::Ipv6Addr;

use ipnet::Ipv6Net;

use super::super::k8s::{Endpoint, K8s};
use super::super::model::Topology;
use super::super::source::Key;
use super::dual::{at_index, OneOrTwo};
use super::k8s::{K8sCtx, RawService};
use super::validator::Validator;

/// The IPv6 service CIDR when a fixture gives IPv6 ClusterIPs but no IPv6 `service_cidr`
/// (kubeadm has no IPv6 default; this is the one its dual-stack guide uses).
pub(super) const DEFAULT_SERVICE_CIDR6: &str = "fd00:10:96::/112";

impl Validator<'_> {
    /// `[cluster] service_cidr`: one network, or one per family.
    pub(super) fn service_cidrs(&mut self, raw: Option<&OneOrTwo>, topo: &Topology, k: &mut K8s) {
        let at = [Key::Field("cluster"), Key::Field("service_cidr")];
        let Some(raw) = raw else { return };
        let Some(split) = self.split_families(&at, raw, "service_cidr") else {
            return;
        };
        if let Some(net) = self.net(&at, split.v4, "service_cidr") {
            k.service_cidr = net;
        }
        let Some((s, i)) = split.v6 else { return };
        if !topo.dual_stack() {
            self.err(
                &at_index(&at, Some(i)),
                "service_cidr has an IPv6 entry, but no host of this fixture has an IPv6 address",
                Some("give hosts a second, IPv6 entry (pod_cidr, ip, uplink), or remove it".into()),
            );
            return;
        }
        // Kubernetes caps an IPv6 service CIDR at /108 (its allocator's bitmap); longer is fine.
        k.service_cidr6 = self.net6(&at_index(&at, Some(i)), s, "service_cidr", 128);
    }

    /// A Service's IPv6 ClusterIP: a dual-stack lab, inside the IPv6 service CIDR, nobody
    /// else's, every endpoint pod with an IPv6 address; `ip_families` agreeing with it.
    pub(super) fn service_ip6(
        &mut self,
        name: &str,
        s: &RawService,
        v6: Option<(&str, usize)>,
        endpoints: &[Endpoint],
        ctx: &mut K8sCtx,
        k: &mut K8s,
    ) -> Option<Ipv6Addr> {
        let at = |f: &'static str| [Key::Field("service"), Key::Field(name), Key::Field(f)];
        self.ip_families(&at("ip_families"), s, v6.is_some());
        let (text, i) = v6?;
        let at_ip = at_index(&at("cluster_ip"), Some(i));
        if !ctx.topo.dual_stack() {
            self.err(
                &at_ip,
                format!("Service {name} has an IPv6 ClusterIP, but no host of this fixture has an IPv6 address"),
                Some("give hosts a second, IPv6 entry (pod_cidr, ip, uplink), or list the IPv4 ClusterIP only".into()),
            );
            return None;
        }
        let ip = self.addr6(&at_ip, text, "cluster_ip")?;
        let cidr = *k
            .service_cidr6
            .get_or_insert_with(|| DEFAULT_SERVICE_CIDR6.parse::<Ipv6Net>().expect("a network"));
        if !cidr.contains(&ip) || ctx.topo.owner_of6(ip).is_some() {
            self.err(
                &at_ip,
                format!("cluster_ip {ip} is not a free address of the IPv6 service CIDR {cidr}"),
                Some(format!("pick one inside [cluster] service_cidr's IPv6 entry (default {DEFAULT_SERVICE_CIDR6}), away from pods and nodes")),
            );
        }
        if let Some(prev) = ctx.ips6.insert(ip, name.to_string()) {
            self.err(
                &at_ip,
                format!("cluster_ip {ip} is already Service {prev}'s"),
                Some("every Service needs its own ClusterIP".into()),
            );
        }
        for e in endpoints {
            let pod = ctx.topo.host(&e.pod).and_then(|h| h.as_pod());
            if pod.is_some_and(|p| p.ip6.is_none()) {
                self.err(
                    &at("endpoints"),
                    format!(
                        "endpoint {} of dual-stack Service {name} has no IPv6 address",
                        e.pod
                    ),
                    Some(format!(
                        "give pod {} a second, IPv6 entry in ip, or list the IPv4 ClusterIP only",
                        e.pod
                    )),
                );
            }
        }
        Some(ip)
    }

    /// `ip_families`: "IPv4", "IPv6", as Kubernetes spells them, in `cluster_ip`'s order.
    fn ip_families(&mut self, at: &[Key], s: &RawService, has_v6: bool) {
        let Some(fams) = &s.ip_families else { return };
        let want: &[&str] = if has_v6 { &["IPv4", "IPv6"] } else { &["IPv4"] };
        if fams.iter().map(String::as_str).eq(want.iter().copied()) {
            return;
        }
        let help = if fams.iter().any(|f| f == "IPv6") && !has_v6 {
            "an IPv6 family needs an IPv6 ClusterIP: cluster_ip = [\"10.96.0.20\", \"fd00:10:96::14\"]"
                .to_string()
        } else {
            format!("ip_families lists cluster_ip's families in its order: {want:?}")
        };
        self.err(
            at,
            format!("ip_families {fams:?} does not match cluster_ip"),
            Some(help),
        );
    }
}

#[cfg(test)]
mod tests {
    use crate::topology::{parse_fixture, Source};

    const DUAL: &str = include_str!("../../../../fixtures/k8s-dual-stack.toml");
    const V4: &str = include_str!("../../../../fixtures/k8s.toml");

    /// The first error of `text` with `from` replaced by `to`: (message, help).
    fn error(text: &str, from: &str, to: &str) -> (String, String) {
        assert!(text.contains(from), "{from}");
        let e = parse_fixture(&Source::new("f.toml", text.replacen(from, to, 1)))
            .expect_err("should fail")
            .0
            .remove(0);
        (e.message, e.help.unwrap_or_default())
    }

    #[test]
    fn the_dual_stack_fixture_gives_services_both_families() {
        let t = parse_fixture(&Source::new("f.toml", DUAL)).unwrap();
        let db = t.k8s.service("db").unwrap();
        assert_eq!(db.cluster_ip6, Some("fd00:10:96::14".parse().unwrap()));
        assert_eq!(t.k8s.service("legacy").unwrap().cluster_ip6, None);
        assert_eq!(
            t.k8s.service_cidr6,
            Some("fd00:10:96::/112".parse().unwrap())
        );
    }

    #[test]
    fn ipv6_service_errors_say_what_and_how() {
        let (m, h) = error(
            V4,
            "cluster_ip = \"10.96.0.20\"",
            "cluster_ip = [\"10.96.0.20\", \"fd00:10:96::14\"]",
        );
        assert!(
            m.contains("no host of this fixture has an IPv6 address"),
            "{m}"
        );
        assert!(h.contains("second, IPv6 entry"), "{h}");
        let (m, _) = error(DUAL, "\"fd00:10:96::14\"", "\"fd00:10:97::14\"");
        assert!(
            m.contains("not a free address of the IPv6 service CIDR fd00:10:96::/112"),
            "{m}"
        );
        let (m, _) = error(DUAL, "\"fd00:10:96::1e\"", "\"fd00:10:96::14\"");
        assert_eq!(m, "cluster_ip fd00:10:96::14 is already Service db's");
        let (m, h) = error(
            DUAL,
            "ip_families = [\"IPv4\", \"IPv6\"]",
            "ip_families = [\"IPv4\"]",
        );
        assert_eq!(m, "ip_families [\"IPv4\"] does not match cluster_ip");
        assert!(h.contains("[\"IPv4\", \"IPv6\"]"), "{h}");
        let (m, _) = error(
            DUAL,
            "ip = [\"10.244.1.4\", \"fd00:10:244:1::4\"]",
            "ip = \"10.244.1.4\"",
        );
        assert_eq!(
            m,
            "endpoint db of dual-stack Service db has no IPv6 address"
        );
    }
}
