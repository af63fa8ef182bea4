//! Ports in a fixture's Kubernetes layer: the ports a pod declares (`containerPorts`) and the
//! ports of a policy rule (a number, a range to `end_port`, or a pod's port name), validated as
//! the API server validates them.

use serde::Deserialize;

use super::super::expect::Proto;
use super::super::k8s::{ContainerPort, PolicyPort, PortRef};
use super::super::source::Key;
use super::validator::Validator;

#[derive(Deserialize, Clone)]
#[serde(deny_unknown_fields)]
pub(super) struct RawContainerPort {
    name: Option<String>,
    port: u16,
    #[serde(default = "tcp")]
    protocol: String,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawPolicyPort {
    #[serde(default = "tcp")]
    protocol: String,
    port: Option<PortRef>,
    end_port: Option<u16>,
}

fn tcp() -> String {
    "tcp".into()
}

impl Validator<'_> {
    /// A transport a Service, a policy or a pod's port may name: TCP, UDP or SCTP, in either
    /// case (the API spells them `TCP`, `UDP`, `SCTP`).
    pub(super) fn proto_l4(&mut self, at: &[Key], s: &str) -> Option<Proto> {
        match s.to_ascii_lowercase().as_str() {
            "tcp" => Some(Proto::Tcp),
            "udp" => Some(Proto::Udp),
            "sctp" => Some(Proto::Sctp),
            _ => {
                self.err(
                    at,
                    format!("protocol \"{s}\" is not tcp, udp or sctp"),
                    Some("Services, pod ports and policy ports speak tcp, udp or sctp".into()),
                );
                None
            }
        }
    }

    /// A pod's `ports`: each number 1..65535, names IANA service names unique in the pod, and
    /// no (port, protocol) twice (`validateContainerPorts`).
    pub(super) fn container_ports(
        &mut self,
        pod: &str,
        raw: &[RawContainerPort],
    ) -> Vec<ContainerPort> {
        let mut out: Vec<ContainerPort> = Vec::new();
        for (i, r) in raw.iter().enumerate() {
            let at = |f: &'static str| {
                [
                    Key::Field("pod"),
                    Key::Field(pod),
                    Key::Field("ports"),
                    Key::Index(i),
                    Key::Field(f),
                ]
            };
            let Some(protocol) = self.proto_l4(&at("protocol"), &r.protocol) else {
                continue;
            };
            self.port_number(&at("port"), r.port);
            if let Some(n) = &r.name {
                self.port_name(&at("name"), n);
                if out.iter().any(|c| c.name.as_ref() == Some(n)) {
                    self.err(
                        &at("name"),
                        format!("pod {pod} names two ports \"{n}\""),
                        Some("a port name is unique within a pod".into()),
                    );
                }
            }
            if out
                .iter()
                .any(|c| c.port == r.port && c.protocol == protocol)
            {
                self.err(
                    &at("port"),
                    format!("pod {pod} declares {protocol} port {} twice", r.port),
                    Some("declare each port and protocol once".into()),
                );
                continue;
            }
            out.push(ContainerPort {
                name: r.name.clone(),
                port: r.port,
                protocol,
            });
        }
        out.sort_by_key(|c| (c.port, c.protocol));
        out
    }

    /// A policy rule's port (`ValidateNetworkPolicyPort`): a number 1..65535 or an IANA
    /// service name; `end_port` only after a number, and not below it.
    pub(super) fn policy_port(&mut self, at: &[Key], r: &RawPolicyPort) -> Option<PolicyPort> {
        let protocol = self.proto_l4(at, &r.protocol)?;
        match (&r.port, r.end_port) {
            (Some(PortRef::Number(n)), end) => {
                self.port_number(at, *n);
                if let Some(e) = end.filter(|e| e < n) {
                    self.err(
                        at,
                        format!("end_port {e} is below port {n}"),
                        Some("end_port is the last port of the range port..=end_port".into()),
                    );
                    return None;
                }
            }
            (Some(PortRef::Name(name)), end) => {
                self.port_name(at, name);
                if end.is_some() {
                    self.err(
                        at,
                        format!("end_port with the named port \"{name}\""),
                        Some("a range needs numbers at both ends: give port a number".into()),
                    );
                    return None;
                }
            }
            (None, Some(e)) => {
                self.err(
                    at,
                    format!("end_port {e} without a port"),
                    Some("give port the first number of the range".into()),
                );
                return None;
            }
            (None, None) => {}
        }
        Some(PolicyPort {
            protocol,
            port: r.port.clone(),
            end_port: r.end_port,
        })
    }

    fn port_number(&mut self, at: &[Key], n: u16) {
        if n == 0 {
            self.err(
                at,
                "port 0 is not a port",
                Some("a port is 1 to 65535".into()),
            );
        }
    }

    /// An IANA_SVC_NAME (`validation.IsValidPortName`): at most 15 lowercase letters, digits
    /// and '-', at least one letter, no '-' at either end or twice in a row.
    fn port_name(&mut self, at: &[Key], s: &str) {
        let ok = !s.is_empty()
            && s.len() <= 15
            && s.bytes()
                .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-')
            && s.bytes().any(|b| b.is_ascii_lowercase())
            && !s.starts_with('-')
            && !s.ends_with('-')
            && !s.contains("--");
        if !ok {
            self.err(
                at,
                format!("port name \"{s}\" is not an IANA service name"),
                Some("use at most 15 lowercase letters, digits and single '-', with at least one letter".into()),
            );
        }
    }
}

#[cfg(test)]
mod tests {
    use crate::topology::k8s::{Operator, PortRef};
    use crate::topology::{parse_fixture, ConfigError, Proto, Source, Topology};

    const BASE: &str = r#"
[node.node1]
pod_cidr = "10.244.1.0/24"
uplink = "203.0.113.1/24"

[pod.pod-a]
node = "node1"
ip = "10.244.1.2"
"#;

    fn parse(extra: &str) -> Result<Topology, Vec<ConfigError>> {
        parse_fixture(&Source::new("t.toml", format!("{BASE}{extra}"))).map_err(|e| e.0)
    }

    fn error(extra: &str) -> (String, usize) {
        let e = parse(extra).expect_err("should fail").remove(0);
        (e.message, e.line)
    }

    #[test]
    fn pod_ports_are_validated_as_container_ports() {
        let t = parse("ports = [{ name = \"http\", port = 8080 }, { port = 53, protocol = \"UDP\" }, { port = 53 }]\n").unwrap();
        let p = t.host("pod-a").unwrap().as_pod().unwrap();
        let got: Vec<(u16, Proto)> = p.ports.iter().map(|c| (c.port, c.protocol)).collect();
        assert_eq!(
            got,
            [(53, Proto::Tcp), (53, Proto::Udp), (8080, Proto::Tcp)]
        );
        assert_eq!(t.target_names(), ["pod-a:53", "pod-a:8080"]);
        let two = "ports = [{ name = \"http\", port = 80 }, { name = \"http\", port = 81 }]\n";
        assert_eq!(error(two), ("pod pod-a names two ports \"http\"".into(), 9));
        let twice = "ports = [{ port = 80 }, { port = 80, protocol = \"tcp\" }]\n";
        assert_eq!(error(twice).0, "pod pod-a declares tcp port 80 twice");
        let name = "ports = [{ name = \"Web_Port\", port = 80 }]\n";
        assert_eq!(
            error(name).0,
            "port name \"Web_Port\" is not an IANA service name"
        );
        assert_eq!(error("ports = [{ port = 0 }]\n").0, "port 0 is not a port");
        let icmp = "ports = [{ port = 1, protocol = \"icmp\" }]\n";
        assert_eq!(error(icmp).0, "protocol \"icmp\" is not tcp, udp or sctp");
    }

    #[test]
    fn policy_ports_take_names_and_ranges_as_the_api_does() {
        let pol = |ports: &str| format!("\n[policy.p]\ningress = [{{ ports = [{ports}] }}]\n");
        let t = parse(&pol(
            "{ port = \"http\" }, { port = 8000, end_port = 8100, protocol = \"SCTP\" }",
        ))
        .unwrap();
        let ports = &t.k8s.policies[0].ingress.as_ref().unwrap()[0].ports;
        assert_eq!(ports[0].port, Some(PortRef::Name("http".into())));
        assert_eq!(
            (ports[1].protocol, ports[1].end_port),
            (Proto::Sctp, Some(8100))
        );
        assert_eq!(
            error(&pol("{ port = 90, end_port = 80 }")).0,
            "end_port 80 is below port 90"
        );
        assert_eq!(
            error(&pol("{ port = \"http\", end_port = 80 }")).0,
            "end_port with the named port \"http\""
        );
        assert_eq!(
            error(&pol("{ end_port = 80 }")).0,
            "end_port 80 without a port"
        );
        assert_eq!(
            error(&pol("{ port = \"-x\" }")).0,
            "port name \"-x\" is not an IANA service name"
        );
    }

    #[test]
    fn selectors_take_labels_or_the_full_form_and_check_expressions() {
        let sel = |s: &str| format!("\n[policy.p]\npod_selector = {s}\ningress = []\n");
        let t = parse(&sel("{ match_labels = { app = \"web\" }, match_expressions = [{ key = \"tier\", operator = \"NotIn\", values = [\"db\"] }] }")).unwrap();
        let s = &t.k8s.policies[0].pod_selector;
        assert_eq!(s.match_labels.get("app").map(String::as_str), Some("web"));
        assert_eq!(s.match_expressions[0].operator, Operator::NotIn);
        let flat = parse(&sel("{ app = \"web\" }")).unwrap();
        assert_eq!(flat.k8s.policies[0].pod_selector.describe(), "app=web");
        let (m, line) = error(&sel(
            "{ match_expressions = [{ key = \"a\", operator = \"in\", values = [\"x\"] }] }",
        ));
        assert_eq!(
            (m.as_str(), line),
            ("operator \"in\" is not In, NotIn, Exists, DoesNotExist", 11)
        );
        let in_empty = sel("{ match_expressions = [{ key = \"a\", operator = \"In\" }] }");
        assert_eq!(error(&in_empty).0, "In: values must be non-empty");
        let exists = sel(
            "{ match_expressions = [{ key = \"a\", operator = \"Exists\", values = [\"x\"] }] }",
        );
        assert_eq!(error(&exists).0, "Exists: values must be empty");
        let mixed = sel("{ app = \"web\", match_expressions = [] }");
        assert_eq!(error(&mixed).0, "\"app\" in a selector that is not labels");
        let peer = "\n[policy.p]\ningress = [{ from = [{ namespace_selector = { match_expressions = [{ operator = \"Exists\" }] } }] }]\n";
        assert_eq!(
            error(peer).0,
            "a match expression needs a key and an operator"
        );
    }

    #[test]
    fn an_ipblock_with_host_bits_is_cleared_with_a_located_warning() {
        let t = parse("\n[policy.p]\negress = [{ to = [{ cidr = \"10.244.1.7/16\", except = [\"10.244.1.0/24\"] }] }]\n").unwrap();
        let rules = t.k8s.policies[0].egress.as_ref().unwrap();
        let crate::topology::k8s::Peer::Cidr { cidr, .. } = &rules[0].peers[0] else {
            panic!("a cidr peer");
        };
        assert_eq!(cidr.to_string(), "10.244.0.0/16");
        assert_eq!(
            t.warnings,
            ["t.toml:11:18: warning: cidr \"10.244.1.7/16\" has host bits set: it means \"10.244.0.0/16\"\n  help: write \"10.244.0.0/16\" to say so"]
        );
        assert!(parse("").unwrap().warnings.is_empty());
    }
}
