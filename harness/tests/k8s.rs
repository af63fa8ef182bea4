//! The Kubernetes layer on a real lab: Services through kube-proxy's rules, NodePorts, the
//! NetworkPolicy's verdicts and cluster DNS, all probed, against the fixture's truth table.

mod common;
use common::fixture;

use netfault::fault::kinds;
use netfault::{Outcome, Proto};

#[tokio::test]
async fn k8s_fixture_is_healthy() {
    let t = fixture("k8s.toml");
    let lab = common::up(&t).await;
    let m = netfault::probe::matrix(&lab).await.unwrap();
    println!("{}", m.render());
    assert!(m.mismatches().is_empty(), "{:#?}", m.render_mismatches());
    // The truth table is not trivially "all reachable": the policy and NodePorts decide.
    assert_eq!(
        m.observed("pod-a", "svc/api", Proto::Tcp),
        Some(Outcome::Reachable)
    );
    assert_eq!(
        m.observed("pod-b", "svc/api", Proto::Tcp),
        Some(Outcome::Timeout)
    );
    assert_eq!(
        m.observed("pod-b", "pod-c", Proto::Icmp),
        Some(Outcome::Timeout)
    );
    assert_eq!(
        m.observed("ext", "nodeport/web@node2", Proto::Tcp),
        Some(Outcome::Reachable)
    );
    assert_eq!(
        m.observed("pod-a", "dns/web", Proto::Dns),
        Some(Outcome::Reachable)
    );
    assert_eq!(
        m.observed("pod-b", "svc/web", Proto::Tcp),
        Some(Outcome::Reachable),
        "hairpin"
    );
    // The echo names the endpoint that served each Service cell (TCP and UDP).
    let served = |to: &str, p| m.cell("pod-a", to, p).and_then(|c| c.served_by.clone());
    assert_eq!(served("svc/api", Proto::Tcp).as_deref(), Some("pod-c"));
    assert_eq!(served("svc/echo", Proto::Udp).as_deref(), Some("pod-b"));
    assert_eq!(served("pod-c", Proto::Tcp).as_deref(), Some("pod-c"));
}

/// The truth table (decided from the fixture alone) is what the live lab shows, cell by cell.
#[tokio::test]
async fn the_truth_table_is_what_the_lab_shows() {
    let t = fixture("k8s.toml");
    let (_, why) = netfault::matrix::truth_table(&t);
    assert!(
        why.iter()
            .any(|l| l.starts_with("pod-b → svc/api tcp: timeout")),
        "{why:?}"
    );
    // Every Kubernetes fixture, cell by cell (a new one is covered by being added).
    let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../fixtures");
    let mut names: Vec<String> = std::fs::read_dir(dir)
        .unwrap()
        .filter_map(|e| e.ok()?.file_name().into_string().ok())
        .filter(|n| n.starts_with("k8s") && n.ends_with(".toml"))
        .collect();
    names.sort();
    assert!(names.len() >= 6, "{names:?}");
    for n in names {
        truth_table_matches_lab(&fixture(&n)).await;
    }
}

/// Default deny, namespace and pod selectors, ports, CIDRs with exceptions, and the implicit
/// ingress isolation of a policy without policy_types: the compiled nft rules do what the model
/// says.
#[tokio::test]
async fn every_kind_of_policy_rule_does_what_the_truth_table_says() {
    let t = fixture("k8s-policy.toml");
    let (table, _) = netfault::matrix::truth_table(&t);
    let o = |f: &str, to: &str, p| table.observed(f, to, p);
    assert_eq!(
        o("web-dev", "db", Proto::Tcp),
        Some(Outcome::Reachable),
        "namespace selector + port"
    );
    assert_eq!(
        o("web-dev", "db", Proto::Udp),
        Some(Outcome::Timeout),
        "other ports stay shut"
    );
    assert_eq!(
        o("web", "db", Proto::Tcp),
        Some(Outcome::Timeout),
        "prod is not dev"
    );
    assert_eq!(
        o("web-dev", "web", Proto::Icmp),
        Some(Outcome::Reachable),
        "pod selector across namespaces"
    );
    assert_eq!(
        o("tool", "db", Proto::Tcp),
        Some(Outcome::Timeout),
        "cidr except"
    );
    assert_eq!(
        o("tool", "web-dev", Proto::Tcp),
        Some(Outcome::Reachable),
        "cidr"
    );
    assert_eq!(
        o("tool", "ext", Proto::Udp),
        Some(Outcome::Reachable),
        "cidr + port"
    );
    assert_eq!(o("tool", "ext", Proto::Tcp), Some(Outcome::Timeout));
    assert_eq!(
        o("web-dev", "tool", Proto::Tcp),
        Some(Outcome::Timeout),
        "egress rules imply ingress isolation"
    );
    assert_eq!(
        o("node1", "db", Proto::Tcp),
        Some(Outcome::Reachable),
        "a pod's own node"
    );
    truth_table_matches_lab(&t).await;
}

/// Ports as Kubernetes names them: a named port resolves on each receiving pod (client's
/// egress "http" is web:8080 and api:8081), a range covers its ends, match expressions select
/// (NotIn also holds without the key), every declared port is its own column, and an SCTP port
/// is probed and reads `unsupported` on this kernel — the rest decided cell by cell.
#[tokio::test]
async fn named_ports_ranges_and_match_expressions_do_what_the_truth_table_says() {
    let t = fixture("k8s-ports.toml");
    let (table, _) = netfault::matrix::truth_table(&t);
    let o = |f: &str, to: &str, p| table.observed(f, to, p);
    let cases = [
        (
            "client",
            "web:8080",
            Proto::Tcp,
            Outcome::Reachable,
            "egress http is web's 8080",
        ),
        (
            "client",
            "api:8081",
            Proto::Tcp,
            Outcome::Reachable,
            "and api's 8081",
        ),
        (
            "client",
            "api:8090",
            Proto::Tcp,
            Outcome::Timeout,
            "grpc is not http",
        ),
        (
            "client",
            "web:9090",
            Proto::Tcp,
            Outcome::Timeout,
            "metrics is not http",
        ),
        (
            "monitor",
            "web:9090",
            Proto::Tcp,
            Outcome::Reachable,
            "role Exists",
        ),
        (
            "monitor",
            "web:8080",
            Proto::Tcp,
            Outcome::Reachable,
            "team NotIn prod",
        ),
        (
            "api",
            "web:8080",
            Proto::Tcp,
            Outcome::Timeout,
            "prod is excluded",
        ),
        (
            "monitor",
            "api:8081",
            Proto::Tcp,
            Outcome::Timeout,
            "app NotIn monitor",
        ),
        (
            "web",
            "api:8090",
            Proto::Tcp,
            Outcome::Reachable,
            "8090 is inside 8000-8100",
        ),
        (
            "web",
            "api",
            Proto::Tcp,
            Outcome::Timeout,
            "80 is outside it",
        ),
        (
            "web",
            "api:514",
            Proto::Udp,
            Outcome::Timeout,
            "the range is TCP",
        ),
        (
            "node1",
            "api:514",
            Proto::Udp,
            Outcome::Reachable,
            "a pod's own node",
        ),
    ];
    for (from, to, p, want, why) in cases {
        assert_eq!(o(from, to, p), Some(want), "{from} → {to} {p}: {why}");
    }
    assert_eq!(
        o("monitor", "web:3868", Proto::Sctp),
        Some(Outcome::Reachable)
    );
    let undecidable = truth_table_matches_lab(&t).await;
    let sctp_cells = table
        .cells
        .iter()
        .filter(|c| c.proto == Proto::Sctp)
        .count();
    assert_eq!(undecidable, sctp_cells, "every SCTP probe, and only those");
    assert!(sctp_cells >= 3, "{sctp_cells}");
}

/// `internalTrafficPolicy: Local`: a ClusterIP reached from node1 or its pods goes to node1's
/// endpoint; from node2, which has none, kube-proxy drops it (a timeout, not a reject).
#[tokio::test]
async fn internal_traffic_policy_local_keeps_a_nodes_traffic_on_its_own_endpoints() {
    let t = k8s_plus("\n[service.local]\ncluster_ip = \"10.96.0.50\"\nport = 80\nendpoints = [\"pod-b:8080\"]\ninternal_traffic_policy = \"Local\"\n");
    let (table, _) = netfault::matrix::truth_table(&t);
    let o = |f: &str| table.observed(f, "svc/local", Proto::Tcp);
    assert_eq!(
        (o("pod-a"), o("node1")),
        (Some(Outcome::Reachable), Some(Outcome::Reachable))
    );
    assert_eq!(
        (o("pod-c"), o("node2")),
        (Some(Outcome::Timeout), Some(Outcome::Timeout))
    );
    let script = netfault::lab::kube_proxy::kube_proxy_script(&t, &t.k8s, "node2");
    assert!(script.contains("has no local endpoints"), "{script}");
    truth_table_matches_lab(&t).await;
}

/// `externalTrafficPolicy: Local`: node1 holds the endpoint, so an external client reaches
/// node1's NodePort with its own address kept (no masquerade) and times out at node2's; node2
/// itself and its pods still get every endpoint, and node1 (its packets arrive from outside
/// node2) does not.
#[tokio::test]
async fn external_traffic_policy_local_keeps_the_client_address_and_the_nodes_endpoints() {
    let t = k8s_plus("\n[service.local]\ncluster_ip = \"10.96.0.50\"\nport = 80\nnode_port = 30090\nendpoints = [\"pod-b:8080\"]\nexternal_traffic_policy = \"Local\"\n");
    let (table, _) = netfault::matrix::truth_table(&t);
    let o = |f: &str, n: &str| table.observed(f, &format!("nodeport/local@{n}"), Proto::Tcp);
    assert_eq!(o("ext", "node1"), Some(Outcome::Reachable));
    assert_eq!(o("ext", "node2"), Some(Outcome::Timeout));
    assert_eq!(
        (o("node2", "node2"), o("pod-c", "node2")),
        (Some(Outcome::Reachable), Some(Outcome::Reachable))
    );
    assert_eq!(
        (o("node1", "node2"), o("pod-a", "node2")),
        (Some(Outcome::Timeout), Some(Outcome::Timeout))
    );
    let lab = common::up(&t).await;
    let m = netfault::probe::matrix(&lab).await.unwrap();
    let seen = m
        .cell("ext", "nodeport/local@node1", Proto::Tcp)
        .and_then(|c| c.seen_as);
    assert_eq!(
        seen,
        Some("203.0.113.10".parse().unwrap()),
        "the client's address is kept"
    );
    let masq = m
        .cell("ext", "nodeport/web@node1", Proto::Tcp)
        .and_then(|c| c.seen_as);
    assert_ne!(masq, seen, "a Cluster policy masquerades it");
    drop(lab);
    truth_table_matches_lab(&t).await;
}

/// `sessionAffinity: ClientIP`: every connection of one client goes to the endpoint it got
/// first (the echo names it); without affinity the same client is spread over both.
#[tokio::test]
async fn client_ip_affinity_keeps_a_client_on_one_endpoint() {
    let extra = "\n[service.sticky]\ncluster_ip = \"10.96.0.50\"\nport = 80\nendpoints = [\"pod-b:8080\", \"pod-c:8080\"]\nsession_affinity = \"ClientIP\"\n\n[service.spread]\ncluster_ip = \"10.96.0.51\"\nport = 80\nendpoints = [\"pod-b:8080\", \"pod-c:8080\"]\n";
    let t = k8s_plus(extra);
    assert_eq!(
        t.k8s.service("sticky").unwrap().affinity_timeout,
        Some(10800)
    );
    let lab = common::up(&t).await;
    let spec = |to: &str| {
        netfault::probe::target_probes(&t)
            .into_iter()
            .find(|s| s.from == "pod-a" && s.to == to)
            .expect("a probe")
    };
    let mut served = std::collections::BTreeMap::<&str, std::collections::BTreeSet<String>>::new();
    for to in ["svc/sticky", "svc/spread"] {
        for _ in 0..16 {
            let o = netfault::probe::run(&lab, &[spec(to)], std::time::Duration::from_secs(2))
                .await
                .unwrap();
            assert_eq!(o[0].outcome, Outcome::Reachable, "{o:?}");
            served
                .entry(to)
                .or_default()
                .insert(o[0].served_by.clone().expect("by="));
        }
    }
    assert_eq!(served["svc/sticky"].len(), 1, "{served:?}");
    assert_eq!(served["svc/spread"].len(), 2, "{served:?}");
}

/// `externalIPs`: kube-proxy translates each on every node; external hosts reach it through
/// the node their route names, nodes and pods on their own node (masqueraded, as a NodePort).
#[tokio::test]
async fn external_ips_are_translated_on_every_node() {
    let t = k8s_plus("\n[service.ext-web]\ncluster_ip = \"10.96.0.50\"\nport = 80\nendpoints = [\"pod-b:8080\"]\nexternal_ips = [\"203.0.113.101\"]\n");
    let (table, _) = netfault::matrix::truth_table(&t);
    let to = "externalip/ext-web@203.0.113.101";
    for from in ["ext", "node1", "node2", "pod-a", "pod-c"] {
        assert_eq!(
            table.observed(from, to, Proto::Tcp),
            Some(Outcome::Reachable),
            "{from}"
        );
    }
    truth_table_matches_lab(&t).await;
}

/// A dual-stack pod is isolated in both families: selectors pick it whatever the family, and an
/// ipBlock matches its own family only (a v4 block lets none of a pod's IPv6 traffic through).
#[tokio::test]
async fn policies_hold_in_both_families() {
    let t = fixture("k8s-dual-stack.toml");
    let (table, _) = netfault::matrix::truth_table(&t);
    let o = |f: &str, to: &str, p| table.observed(f, to, p);
    let both = |f: &str, to: &str, p: Proto, want: Outcome, why: &str| {
        assert_eq!(o(f, to, p), Some(want), "{why} ({p})");
        let p6 = p.v6().expect("an IPv6 twin");
        assert_eq!(o(f, to, p6), Some(want), "{why} ({p6})");
    };
    both(
        "web-dev",
        "db",
        Proto::Tcp,
        Outcome::Reachable,
        "namespace selector + port",
    );
    both(
        "web-dev",
        "db",
        Proto::Udp,
        Outcome::Timeout,
        "other ports stay shut",
    );
    both(
        "tool",
        "web-dev",
        Proto::Tcp,
        Outcome::Reachable,
        "a block per family",
    );
    assert_eq!(
        o("tool", "db", Proto::Tcp),
        Some(Outcome::Timeout),
        "v4 except"
    );
    assert_eq!(
        o("tool", "ext", Proto::Udp),
        Some(Outcome::Timeout),
        "v6 block only"
    );
    assert_eq!(
        o("tool", "ext", Proto::Udp6),
        Some(Outcome::Reachable),
        "v6 block + port"
    );
    assert_eq!(
        o("tool", "web", Proto::Icmp6),
        Some(Outcome::Timeout),
        "a v4 block does not cover IPv6"
    );
    truth_table_matches_lab(&t).await;
}

/// Services with a ClusterIP per family are probed in both (kube-proxy's ip6 table DNATs the
/// IPv6 one, NodePorts answer at the nodes' IPv6 addresses); cluster DNS answers AAAA for them
/// and an empty answer for an IPv4-only Service, as CoreDNS does.
#[tokio::test]
async fn dual_stack_services_answer_in_both_families() {
    let t = fixture("k8s-dual-stack.toml");
    let (table, _) = netfault::matrix::truth_table(&t);
    let o = |f: &str, to: &str, p| table.observed(f, to, p);
    assert_eq!(
        o("web-dev", "svc/db", Proto::Tcp6),
        Some(Outcome::Reachable)
    );
    assert_eq!(o("tool", "svc/db", Proto::Tcp6), Some(Outcome::Timeout));
    assert_eq!(
        o("ext", "nodeport/web@node1", Proto::Tcp6),
        Some(Outcome::Reachable)
    );
    assert_eq!(
        o("tool", "svc/legacy", Proto::Tcp6),
        None,
        "an IPv4-only Service"
    );
    let lab = common::up(&t).await;
    let m = netfault::probe::matrix(&lab).await.unwrap();
    for (from, to) in [("web-dev", "svc/db"), ("ext", "nodeport/web@node1")] {
        let c = m.cell(from, to, Proto::Tcp6).expect("probed over IPv6");
        assert_eq!(c.observed, Outcome::Reachable, "{from} → {to} tcp6");
    }
    let ns = lab.host("web-dev").unwrap().ns.clone();
    let ask = |name: &'static str| {
        let ns = ns.clone();
        async move { ns.run_async(move || aaaa(name)).await.unwrap().unwrap() }
    };
    assert_eq!(
        ask("db.prod.svc.cluster.local.").await,
        ["fd00:10:96::14".parse::<std::net::Ipv6Addr>().unwrap()]
    );
    assert_eq!(
        ask("legacy.dev.svc.cluster.local.").await,
        Vec::<std::net::Ipv6Addr>::new()
    );
}

/// The AAAA records cluster DNS gives `name`, asked as a pod's resolver asks (its resolv.conf
/// names the IPv4 DNS Service).
fn aaaa(name: &str) -> std::io::Result<Vec<std::net::Ipv6Addr>> {
    use hickory_proto::op::{Message, Query};
    use hickory_proto::rr::{Name, RData, RecordType};
    let mut q = Message::new();
    q.set_id(7).set_recursion_desired(true);
    q.add_query(Query::query(
        Name::from_ascii(name).unwrap(),
        RecordType::AAAA,
    ));
    let s = std::net::UdpSocket::bind("0.0.0.0:0")?;
    s.set_read_timeout(Some(std::time::Duration::from_secs(2)))?;
    s.send_to(&q.to_vec().unwrap(), "10.96.0.10:53")?;
    let mut buf = [0u8; 512];
    let n = s.recv(&mut buf)?;
    let r = Message::from_vec(&buf[..n]).unwrap();
    assert_eq!(r.response_code(), hickory_proto::op::ResponseCode::NoError);
    Ok(r.answers()
        .iter()
        .filter_map(|a| match a.data() {
            Some(RData::AAAA(x)) => Some(x.0),
            _ => None,
        })
        .collect())
}

/// A Service declared with `endpoints = []` is probed like any other target (it used to break
/// every probe: its target was taken for a host to start an echo server in): kube-proxy rejects
/// it, and the lab shows what the truth table says, cell by cell.
#[tokio::test]
async fn a_service_declared_without_endpoints_is_refused_and_the_rest_probed() {
    let path = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../fixtures/k8s.toml");
    let text = std::fs::read_to_string(&path)
        .unwrap()
        .replace("endpoints = [\"pod-c:8080\"]", "endpoints = []");
    let t =
        netfault::topology::parse_fixture(&netfault::topology::Source::new(&path, text)).unwrap();
    let (table, _) = netfault::matrix::truth_table(&t);
    assert_eq!(
        table.observed("pod-a", "svc/api", Proto::Tcp),
        Some(Outcome::Refused)
    );
    truth_table_matches_lab(&t).await;
}

/// kube-proxy's cluster-ips-check, as a real client sees it from a pod: a ClusterIP on a port
/// its Service does not serve is rejected (connection refused at once, not a hang), and an
/// address of the service CIDR that no Service has is dropped. And NodePorts on node addresses.
#[tokio::test]
async fn clusterip_and_nodeport_addresses_as_kube_proxy_serves_them() {
    let t = fixture("k8s.toml");
    let lab = common::up(&t).await;
    // Service web's endpoint listens (pod-b:8080); the socket stays in pod-b's namespace.
    let _listener = lab
        .host("pod-b")
        .unwrap()
        .ns
        .run_async(|| std::net::TcpListener::bind("0.0.0.0:8080"))
        .await
        .unwrap()
        .unwrap();
    let ns = lab.host("pod-a").unwrap().ns.clone();
    let connect = |addr: &'static str| {
        let ns = ns.clone();
        async move {
            ns.run_async(move || {
                let a: std::net::SocketAddr = addr.parse().unwrap();
                std::net::TcpStream::connect_timeout(&a, std::time::Duration::from_millis(500))
                    .map(|_| ())
                    .map_err(|e| e.kind())
            })
            .await
            .unwrap()
        }
    };
    use std::io::ErrorKind;
    assert_eq!(connect("10.96.0.20:80").await, Ok(()), "the served port");
    assert_eq!(
        connect("10.96.0.20:81").await,
        Err(ErrorKind::ConnectionRefused),
        "an unserved port of a ClusterIP"
    );
    assert_eq!(
        connect("10.96.0.99:80").await,
        Err(ErrorKind::TimedOut),
        "an unallocated ClusterIP"
    );
    // NodePorts answer at the node's own (primary) address only, as kube-proxy's
    // --nodeport-addresses default: not at the node's bridge address.
    assert_eq!(
        connect("203.0.113.1:30080").await,
        Ok(()),
        "node1's NodePort"
    );
    assert_eq!(
        connect("10.244.1.1:30080").await,
        Err(ErrorKind::ConnectionRefused),
        "node1's bridge address is no NodePort address"
    );
}

/// `fixtures/k8s.toml` with more TOML after it (a Service the test needs).
fn k8s_plus(extra: &str) -> netfault::Topology {
    let text = std::fs::read_to_string(common::fixture_path("k8s.toml")).unwrap() + extra;
    netfault::topology::parse_fixture(&netfault::topology::Source::new("k8s-plus.toml", text))
        .unwrap_or_else(|e| panic!("{e}"))
}

/// Cell by cell; a probe this kernel cannot make (SCTP) is counted, and must be one.
async fn truth_table_matches_lab(t: &netfault::Topology) -> usize {
    let (table, _) = netfault::matrix::truth_table(t);
    let lab = common::up(t).await;
    let m = netfault::probe::matrix(&lab).await.unwrap();
    let (mut cells, mut undecidable) = (0, 0);
    for c in &table.cells {
        let live = m.cell(&c.from, &c.to, c.proto).expect("probed");
        cells += 1;
        if live
            .detail
            .as_deref()
            .is_some_and(|d| d.starts_with(netfault::probe::KERNEL_LACKS))
        {
            assert_eq!(c.proto, Proto::Sctp, "only SCTP is missing here: {live:?}");
            assert_eq!(live.observed, Outcome::Unsupported);
            assert!(
                live.matches(),
                "a probe that cannot be made expects nothing"
            );
            undecidable += 1;
            continue;
        }
        assert_eq!(
            live.observed, c.observed,
            "{} → {} {}",
            c.from, c.to, c.proto
        );
    }
    let undecided: Vec<String> = m
        .cells
        .iter()
        .filter(|c| table.cell(&c.from, &c.to, c.proto).is_none())
        .map(|c| format!("{} → {} {}", c.from, c.to, c.proto))
        .collect();
    assert!(
        undecided.is_empty(),
        "the table decides every probe of this fixture: {undecided:?}"
    );
    assert_eq!(cells, m.cells.len());
    undecidable
}

/// Default-deny egress that allows UDP 53 breaks DNS (policies see the DNATed port 5353);
/// allowing 5353 instead lets lookups through while everything else stays denied. Heal
/// restores the healthy matrix.
#[tokio::test]
async fn dns_needs_the_endpoint_port_allowed_not_the_service_port() {
    use netfault::fault::Fault;
    let t = fixture("k8s.toml");
    let lab = common::up(&t).await;
    let healthy = netfault::probe::matrix(&lab).await.unwrap();
    for (port, dns) in [(53, Outcome::Timeout), (5353, Outcome::Reachable)] {
        let g = Fault::DefaultDenyEgress(kinds::DefaultDenyEgress {
            namespace: "default".into(),
            allow_port: Some(port),
        })
        .inject(&lab)
        .await
        .unwrap();
        let m = netfault::probe::matrix(&lab).await.unwrap();
        g.heal(&lab).await.unwrap();
        assert_eq!(
            m.observed("pod-a", "dns/web", Proto::Dns),
            Some(dns),
            "allow udp {port}"
        );
        assert_eq!(
            m.observed("pod-a", "ext", Proto::Tcp),
            Some(Outcome::Timeout)
        );
        assert_eq!(
            m.observed("pod-a", "node1", Proto::Tcp),
            Some(Outcome::Reachable),
            "own node"
        );
        assert_eq!(
            m.observed("dns", "dns/web", Proto::Dns),
            Some(Outcome::Reachable),
            "kube-system is not selected"
        );
    }
    let again = netfault::probe::matrix(&lab).await.unwrap();
    assert_eq!(again.outcomes(), healthy.outcomes());
}

/// Each fault of the layer names what it needs, against the fixture.
#[test]
fn kubernetes_faults_check_their_parameters() {
    use netfault::fault::Fault;
    let t = fixture("k8s.toml");
    let e = Fault::RemoveEndpoint(kinds::RemoveEndpoint {
        service: "nope".into(),
        pod: "pod-b".into(),
    })
    .check(&t)
    .unwrap_err();
    assert_eq!(e.field, "service");
    assert_eq!(e.help, "Services in k8s: web, api, echo");
    let e = Fault::StaleEndpointIp(kinds::StaleEndpointIp {
        service: "web".into(),
        pod: "pod-c".into(),
    })
    .check(&t)
    .unwrap_err();
    assert_eq!(e.message, "pod-c is no endpoint of Service web");
    let e = Fault::WrongEndpointPort(kinds::WrongEndpointPort {
        service: "web".into(),
        port: 8080,
    })
    .check(&t)
    .unwrap_err();
    assert_eq!(e.field, "port");
    let single = fixture("single-node.toml");
    let e = Fault::DnsServerDown(kinds::DnsServerDown {})
        .check(&single)
        .unwrap_err();
    assert_eq!(e.message, "the fixture has no cluster DNS");
    let e = Fault::FlushKubeProxy(kinds::FlushKubeProxy {
        node: "node1".into(),
    })
    .check(&single)
    .unwrap_err();
    assert!(
        e.message.contains("needs a fixture with Services"),
        "{}",
        e.message
    );
}

/// A stale UDP conntrack entry: after the endpoint pod moves to a new address (kube-proxy
/// following it, but not flushing conntrack), a client's running flow (same source port)
/// still goes to the old address, while a new flow from the same client reaches the new one.
#[tokio::test]
async fn a_running_udp_flow_keeps_its_stale_dnat_and_a_new_one_does_not() {
    use netfault::fault::Fault;
    use netfault::probe::{run, ProbeSpec};
    let t = fixture("k8s.toml");
    let lab = common::up(&t).await;
    let g = Fault::StaleConntrack(kinds::StaleConntrack {
        service: "echo".into(),
        pod: "pod-b".into(),
    })
    .inject(&lab)
    .await
    .unwrap();
    let m = netfault::probe::matrix(&lab).await.unwrap();
    // A fresh flow: the same probe from another source port.
    let fresh: Vec<ProbeSpec> = netfault::probe::target_probes(&t)
        .into_iter()
        .filter(|s| s.from == "pod-a" && s.to == "svc/echo")
        .map(|s| ProbeSpec {
            sport: Some(41999),
            ..s
        })
        .collect();
    let obs = run(&lab, &fresh, std::time::Duration::from_secs(1))
        .await
        .unwrap();
    g.heal(&lab).await.unwrap();
    assert_eq!(
        m.observed("pod-a", "svc/echo", Proto::Udp),
        Some(Outcome::Timeout)
    );
    assert_eq!(obs[0].outcome, Outcome::Reachable, "{:?}", obs[0]);
    let healed = netfault::probe::matrix(&lab).await.unwrap();
    assert!(
        healed.mismatches().is_empty(),
        "{:?}",
        healed.render_mismatches()
    );
}

/// A pod reaching a Service whose endpoint shares its bridge (itself, or the DNS pod next to
/// it) is routed by its node: DNATed at the bridge's address, sent back out of the bridge. With
/// forwarding off by hand, that is the culprit, not `unexplained`.
#[tokio::test]
async fn a_same_bridge_service_needs_the_node_to_forward() {
    let lab = common::up(&fixture("k8s.toml")).await;
    let base = netfault::probe::matrix(&lab).await.unwrap();
    common::sh(&lab, "node2", "sysctl -qw net.ipv4.ip_forward=0");
    let ds = common::diagnoses(&lab, &base).await;
    let forwarding = (
        "node2".to_string(),
        netfault::diagnose::Component::Forwarding,
    );
    for (from, to) in [
        ("pod-c", "svc/api"),
        ("pod-c", "dns/web"),
        ("dns", "dns/web"),
    ] {
        assert_eq!(
            common::blamed(&ds, from, to),
            std::slice::from_ref(&forwarding),
            "{from} → {to}"
        );
    }
    let d = ds
        .iter()
        .find(|d| d.from == "pod-c" && d.to == "svc/api")
        .unwrap();
    assert!(
        d.culprit
            .summary
            .contains("DNATed to pod-c on the same bridge"),
        "{}",
        d.culprit.summary
    );
}

/// An IPv6 ClusterIP broken by hand is explained from kube-proxy's live ip6 table and the
/// IPv6 walk to the endpoint: its rule gone (node1 service), the translated packet dropped at
/// the endpoint's port (node1 filter), the policy that isolates the endpoint (node1 policy).
#[tokio::test]
async fn ipv6_clusterips_are_walked_through_kube_proxys_ip6_table() {
    use netfault::diagnose::Component;
    let t = fixture("k8s-dual-stack.toml");
    let lab = common::up(&t).await;
    let by_hand =
        |tool: &'static str, args: &'static [&'static str], input: Option<&'static str>| {
            by_hand(&lab, "node1", tool, args, input)
        };
    let tcp6 = |from| probe_target(&lab, from, "svc/db", Proto::Tcp6);
    let why = |from, o| culprit_of(&lab, from, "svc/db", Proto::Tcp6, o);
    assert_eq!(tcp6("web-dev").await, Outcome::Reachable);
    // The isolated endpoint: what the fixture intends, explained all the same.
    blamed(
        &why("tool", Outcome::Timeout).await,
        "node1",
        Component::Policy,
        "",
    );

    by_hand("nft", &["-f", "-"], Some("table ip6 byhand {\n chain guard {\n  type filter hook forward priority 0; policy accept;\n  ip6 daddr fd00:10:244:1::4 tcp dport 80 drop\n }\n}\n"));
    let o = tcp6("web-dev").await;
    assert_eq!(o, Outcome::Timeout);
    blamed(&why("web-dev", o).await, "node1", Component::Filter, "");
    by_hand("nft", &["delete", "table", "ip6", "byhand"], None);

    by_hand(
        "nft",
        &["flush", "chain", "ip6", "kube-proxy", "services"],
        None,
    );
    let o = tcp6("web-dev").await;
    assert_ne!(o, Outcome::Reachable);
    blamed(
        &why("web-dev", o).await,
        "node1",
        Component::Service,
        "no IPv6 rule",
    );
}

/// Runs a tool inside a host of the lab, as someone breaking it by hand would.
fn by_hand(
    lab: &netfault::Lab,
    host: &str,
    tool: &'static str,
    args: &'static [&'static str],
    input: Option<&'static str>,
) {
    let st = lab
        .host(host)
        .unwrap()
        .ns
        .run(move || netfault::tools::run_tool(tool, args, input))
        .unwrap();
    assert!(st.is_ok(), "{tool} {args:?}: {st:?}");
}

/// One probe of a Kubernetes target, as the matrix makes it.
async fn probe_target(lab: &netfault::Lab, from: &str, to: &str, proto: Proto) -> Outcome {
    let spec = netfault::probe::target_probes(lab.topology())
        .into_iter()
        .find(|s| s.from == from && s.to == to && s.proto == proto)
        .expect("a probe of the target");
    netfault::probe::run(lab, &[spec], std::time::Duration::from_secs(2))
        .await
        .unwrap()[0]
        .outcome
}

/// The culprit the diagnosis names for one broken probe.
async fn culprit_of(
    lab: &netfault::Lab,
    from: &str,
    to: &str,
    proto: Proto,
    outcome: Outcome,
) -> netfault::diagnose::Culprit {
    let broken = [(from.to_string(), to.to_string(), proto, outcome)];
    netfault::diagnose::explain_pairs(lab, &broken, None)
        .await
        .unwrap()[0]
        .culprit
        .clone()
}

/// The culprit is `host`'s `component`, and its summary says `says`.
fn blamed(
    c: &netfault::diagnose::Culprit,
    host: &str,
    component: netfault::diagnose::Component,
    says: &str,
) {
    assert_eq!((c.host.as_str(), c.component), (host, component), "{c:?}");
    assert!(c.summary.contains(says), "{c:?}");
}

/// `proxy_mode = "iptables"`: kube-proxy's chains laid out as the iptables proxier does and
/// loaded with iptables-nft-restore (KUBE-SERVICES, KUBE-SVC-*, KUBE-SEP-* with statistic
/// matches, KUBE-MARK-MASQ, KUBE-POSTROUTING, KUBE-NODEPORTS): the lab is what the truth table
/// says, cell by cell, Services without endpoints included; netfault's own masquerade in the
/// shared `table ip nat` stays.
#[tokio::test]
async fn iptables_mode_serves_what_the_truth_table_says() {
    let text = std::fs::read_to_string(common::fixture_path("k8s.toml"))
        .unwrap()
        .replace("service_cidr = \"10.96.0.0/12\"", "service_cidr = \"10.96.0.0/12\"\nproxy_mode = \"iptables\"")
        + "\n[service.pair]\ncluster_ip = \"10.96.0.50\"\nport = 80\nendpoints = [\"pod-a:8080\", \"pod-b:8080\"]\n\n[service.none]\ncluster_ip = \"10.96.0.51\"\nport = 80\n";
    let t = iptables_fixture("k8s-ipt.toml", text);
    truth_table_matches_lab(&t).await;
    let lab = common::up(&t).await;
    let read = |tool: &'static str, args: &'static [&'static str]| {
        lab.host("node1")
            .unwrap()
            .ns
            .run(move || netfault::tools::run_tool(tool, args, None))
            .unwrap()
            .unwrap()
    };
    let nat = read("iptables-nft-save", &["-t", "nat"]);
    for want in [
        "-A KUBE-SERVICES -d 10.96.0.50/32",
        "-m statistic --mode random --probability 0.5",
        "-j KUBE-MARK-MASQ",
        "-A KUBE-NODEPORTS",
        "-j MASQUERADE",
    ] {
        assert!(nat.contains(want), "{want} in\n{nat}");
    }
    let ruleset = read("nft", &["list", "table", "ip", "nat"]);
    assert!(
        ruleset.contains("chain postrouting"),
        "netfault's masquerade stays:\n{ruleset}"
    );
    // Rendered again (as a fault or a step does), nothing is doubled and nothing stale stays.
    let mut spec = t.k8s.clone();
    spec.services.retain(|s| s.name != "pair");
    lab.apply_k8s_tables("node1", &spec).await.unwrap();
    lab.apply_k8s_tables("node1", &spec).await.unwrap();
    let again = read("iptables-nft-save", &["-t", "nat"]);
    assert_eq!(again.matches("-A PREROUTING").count(), 1, "{again}");
    assert!(!again.contains("10.96.0.50"), "{again}");
}

/// Local traffic policies and ClientIP affinity in iptables mode (KUBE-SVL-*, KUBE-EXT-* with
/// `addrtype --src-type LOCAL`, `recent` matches): fixtures/k8s-traffic-policy.toml without its
/// load balancer (not rendered in this mode) serves what the truth table says; a sticky
/// Service keeps a client on one endpoint.
#[tokio::test]
async fn iptables_mode_keeps_traffic_policies_and_affinity() {
    let text = std::fs::read_to_string(common::fixture_path("k8s-traffic-policy.toml")).unwrap();
    let cut = text.find("[service.front]").unwrap();
    let rest = &text[cut..];
    let text = text[..cut].replace("cidr = \"10.244.0.0/16\"\n", "cidr = \"10.244.0.0/16\"\nproxy_mode = \"iptables\"\n")
        + "[service.sticky]\ncluster_ip = \"10.96.0.40\"\nport = 80\nendpoints = [\"web-1:8080\", \"web-2:8080\"]\nsession_affinity = \"ClientIP\"\n\n"
        + &rest[rest.find("[expect]").unwrap()..];
    let t = iptables_fixture("tp-ipt.toml", text);
    truth_table_matches_lab(&t).await;
    let lab = common::up(&t).await;
    let spec = netfault::probe::target_probes(&t)
        .into_iter()
        .find(|s| s.from == "client" && s.to == "svc/sticky")
        .expect("a probe");
    let mut served = std::collections::BTreeSet::new();
    for _ in 0..12 {
        let o = netfault::probe::run(
            &lab,
            std::slice::from_ref(&spec),
            std::time::Duration::from_secs(2),
        )
        .await
        .unwrap();
        assert_eq!(o[0].outcome, Outcome::Reachable, "{o:?}");
        served.insert(o[0].served_by.clone().expect("by="));
    }
    assert_eq!(served.len(), 1, "{served:?}");
    // svc/cache from node1 and its pods (no local endpoint there): dropped, and the diagnosis
    // reads why from the filter table's drop (iptables-nft lists no comments).
    let (table, _) = netfault::matrix::truth_table(&t);
    let dropped: Vec<_> = table
        .cells
        .iter()
        .filter(|c| {
            c.to == "svc/cache"
                && c.observed != Outcome::Reachable
                && c.from != "ext"
                && c.from != "ext2"
        })
        .map(|c| (c.from.clone(), c.to.clone(), c.proto, c.observed))
        .collect();
    assert!(dropped.len() >= 2, "{dropped:?}");
    for d in netfault::diagnose::explain_pairs(&lab, &dropped, None)
        .await
        .unwrap()
    {
        let c = &d.culprit;
        assert_eq!(
            (c.host.as_str(), c.component),
            ("node1", netfault::diagnose::Component::Service),
            "{c:?}"
        );
        assert!(c.summary.contains("internalTrafficPolicy Local"), "{c:?}");
    }
}

/// External IPs in iptables mode: KUBE-SERVICES sends each to the Service's KUBE-EXT-* chain,
/// on every node; the lab is what the truth table says (with endpoints and without), and a
/// stale endpoint behind it is read from the chains.
#[tokio::test]
async fn iptables_mode_translates_external_ips() {
    use netfault::diagnose::Component;
    let text = std::fs::read_to_string(common::fixture_path("k8s.toml"))
        .unwrap()
        .replace("service_cidr = \"10.96.0.0/12\"", "service_cidr = \"10.96.0.0/12\"\nproxy_mode = \"iptables\"")
        + "\n[service.ext-web]\ncluster_ip = \"10.96.0.50\"\nport = 80\nendpoints = [\"pod-b:8080\"]\nexternal_ips = [\"203.0.113.101\"]\n\n[service.ext-none]\ncluster_ip = \"10.96.0.51\"\nport = 80\nexternal_ips = [\"203.0.113.102\"]\n";
    let t = iptables_fixture("ext-ipt.toml", text);
    truth_table_matches_lab(&t).await;
    let lab = common::up(&t).await;
    let to = "externalip/ext-web@203.0.113.101";
    assert_eq!(
        probe_target(&lab, "ext", to, Proto::Tcp).await,
        Outcome::Reachable
    );
    let g = netfault::fault::Fault::StaleEndpointIp(kinds::StaleEndpointIp {
        service: "ext-web".into(),
        pod: "pod-b".into(),
    })
    .inject(&lab)
    .await
    .unwrap();
    let o = probe_target(&lab, "ext", to, Proto::Tcp).await;
    assert_eq!(o, Outcome::Timeout);
    let c = culprit_of(&lab, "ext", to, Proto::Tcp, o).await;
    blamed(&c, &c.host.clone(), Component::Service, "stale endpoint");
    g.heal(&lab).await.unwrap();
}

/// A fixture text that asks for kube-proxy's iptables mode, parsed.
fn iptables_fixture(name: &str, text: String) -> netfault::Topology {
    let t = netfault::topology::parse_fixture(&netfault::topology::Source::new(name, text))
        .unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(
        t.k8s.proxy_mode,
        netfault::topology::k8s::ProxyMode::Iptables
    );
    t
}

/// The diagnosis reads the iptables proxier's chains as iptables-nft leaves them in `table ip
/// nat`: a stale endpoint (a Kubernetes fault, re-rendered through iptables-nft-restore), and
/// KUBE-SERVICES flushed by hand.
#[tokio::test]
async fn iptables_mode_is_diagnosed_from_its_chains() {
    use netfault::diagnose::Component;
    use netfault::fault::Fault;
    let t = fixture("k8s-iptables.toml");
    let lab = common::up(&t).await;
    let tcp = || probe_target(&lab, "pod-a", "svc/web", Proto::Tcp);
    let why = |o| culprit_of(&lab, "pod-a", "svc/web", Proto::Tcp, o);
    assert_eq!(tcp().await, Outcome::Reachable);
    let g = Fault::StaleEndpointIp(kinds::StaleEndpointIp {
        service: "web".into(),
        pod: "pod-b".into(),
    })
    .inject(&lab)
    .await
    .unwrap();
    let o = tcp().await;
    assert_eq!(o, Outcome::Timeout);
    blamed(&why(o).await, "node1", Component::Service, "stale endpoint");
    g.heal(&lab).await.unwrap();
    assert_eq!(tcp().await, Outcome::Reachable);
    by_hand(
        &lab,
        "node1",
        "iptables-nft",
        &["-t", "nat", "-F", "KUBE-SERVICES"],
        None,
    );
    let o = tcp().await;
    assert_ne!(o, Outcome::Reachable);
    blamed(
        &why(o).await,
        "node1",
        Component::Service,
        "no rule for Service default/web",
    );
}

/// kube-proxy's iptables mode: an unknown mode and a Service feature it does not render are
/// errors at their lines.
#[test]
fn proxy_mode_errors_are_located() {
    let fixture = |extra_cluster: &str, extra: &str| {
        let text = std::fs::read_to_string(
            std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../fixtures/k8s.toml"),
        )
        .unwrap()
        .replace(
            "service_cidr = \"10.96.0.0/12\"\n",
            &format!("service_cidr = \"10.96.0.0/12\"\n{extra_cluster}\n"),
        ) + extra;
        netfault::topology::parse_fixture(&netfault::topology::Source::new("f.toml", text))
            .map_err(|e| e.to_string())
    };
    let e = fixture("proxy_mode = \"ipvs\"", "").unwrap_err();
    assert!(
        e.contains("f.toml:16:14:") && e.contains("unknown proxy_mode \"ipvs\""),
        "{e}"
    );
    let e = fixture(
        "proxy_mode = \"iptables\"",
        "\n[service.lb]\ncluster_ip = \"10.96.0.50\"\nport = 80\nendpoints = [\"pod-b:8080\"]\nload_balancer_ip = \"203.0.113.100\"\n",
    )
    .unwrap_err();
    assert!(
        e.contains("does not render load_balancer_ip yet") && e.contains("nftables"),
        "{e}"
    );
    let t = fixture("proxy_mode = \"IPTables\"", "").unwrap();
    assert_eq!(
        t.k8s.proxy_mode,
        netfault::topology::k8s::ProxyMode::Iptables
    );
}

/// UDP flows sent while a Service's endpoints pointed at a wrong port keep that translation in
/// conntrack (a probe reuses its source port, so the next run would go to the wrong port
/// again): the heal deletes the UDP entries to a Service whose translation leads to no endpoint
/// it has, as kube-proxy does when a Service's endpoints change.
#[tokio::test]
async fn healing_an_endpoint_change_forgets_udp_flows_to_the_old_endpoints() {
    use netfault::fault::Fault;
    let t = fixture("k8s.toml");
    let lab = common::up(&t).await;
    let g = Fault::parse_spec("wrong-endpoint-port:service=echo,port=7")
        .unwrap()
        .inject(&lab)
        .await
        .unwrap();
    netfault::probe::matrix(&lab).await.unwrap();
    // An entry to the Service translated to port 7: "dst=CLUSTER-IP ... sport=7" (its reply).
    let svc = format!("dst={} ", t.k8s.service("echo").unwrap().cluster_ip);
    let to_port_7 = |lab: &netfault::Lab| {
        let read = || std::fs::read_to_string("/proc/thread-self/net/nf_conntrack");
        let text = lab.host("node1").unwrap().ns.run(read).unwrap().unwrap();
        text.lines()
            .filter(|l| l.contains(" udp ") && l.contains(&svc) && l.contains("sport=7 "))
            .count()
    };
    assert!(
        to_port_7(&lab) > 0,
        "the faulted run made no entry to port 7"
    );
    g.heal(&lab).await.unwrap();
    assert_eq!(to_port_7(&lab), 0);
    let healed = netfault::probe::matrix(&lab).await.unwrap();
    assert!(
        healed.mismatches().is_empty(),
        "{:?}",
        healed.render_mismatches()
    );
}
