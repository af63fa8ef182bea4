//! Diagrams and HTML reports, checked by parsing them: the SVG names every host, interface
//! and link of the lab and draws a diagnosis' culprits in red; the report holds a matrix grid,
//! the diagram, the diagnosis, the state diff and working pcap links for a failing case.

mod common;
use common::repo;

use std::path::{Path, PathBuf};
use std::process::Command;

use netfault::diagnose::explain_pairs;
use netfault::diagram;
use netfault::fault::kinds;
use netfault::fault::Fault;
use netfault::lab::plan::{IfaceKind, Plan};
use netfault::{load_fixture, Outcome, Proto};

const BIN: &str = env!("CARGO_BIN_EXE_netfault");

fn classes<'a>(n: &roxmltree::Node<'a, 'a>) -> Vec<&'a str> {
    n.attribute("class")
        .map(|c| c.split_whitespace().collect())
        .unwrap_or_default()
}

fn by_id<'a>(doc: &'a roxmltree::Document<'a>, id: &str) -> Option<roxmltree::Node<'a, 'a>> {
    doc.descendants().find(|n| n.attribute("id") == Some(id))
}

#[test]
fn a_fixture_is_drawn_with_every_host_interface_and_link() {
    let f = repo().join("fixtures/two-node-vxlan.toml");
    let out = Command::new(BIN)
        .args(["diagram", f.to_str().unwrap()])
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let text = String::from_utf8(out.stdout).unwrap();
    let doc = roxmltree::Document::parse(&text).expect("well-formed SVG");
    assert_eq!(doc.root_element().tag_name().name(), "svg");
    let topo = load_fixture(&f).unwrap();
    let plan = Plan::from_topology(&topo);
    for hp in &plan.hosts {
        let host =
            by_id(&doc, &format!("host-{}", hp.name)).unwrap_or_else(|| panic!("host {}", hp.name));
        assert!(!classes(&host).contains(&"broken"));
        for i in &hp.ifaces {
            match &i.kind {
                IfaceKind::Bridge => assert!(
                    by_id(
                        &doc,
                        &format!("bridge-{}-{}", hp.name, i.name.replace('.', "-"))
                    )
                    .is_some(),
                    "bridge {}:{}",
                    hp.name,
                    i.name
                ),
                _ => assert!(
                    by_id(
                        &doc,
                        &format!("port-{}-{}", hp.name, i.name.replace('.', "-"))
                    )
                    .is_some(),
                    "port {}:{}",
                    hp.name,
                    i.name
                ),
            }
        }
    }
    // One line per veth pair, one overlay path between the two nodes.
    let pairs = plan
        .hosts
        .iter()
        .flat_map(|h| &h.ifaces)
        .filter(|i| matches!(i.kind, IfaceKind::Veth { create: true, .. }))
        .count();
    let links = doc
        .descendants()
        .filter(|n| n.tag_name().name() == "line" && classes(n).contains(&"link"))
        .count();
    assert_eq!(links, pairs);
    assert!(by_id(&doc, "overlay-node1-node2").is_some());
    assert!(text.contains("10.244.1.2/24") && text.contains("vxlan VNI 1, UDP 8472"));
    assert!(!text.contains("class=\"finding\""));

    let dot = Command::new(BIN)
        .args(["diagram", f.to_str().unwrap(), "--format", "dot"])
        .output()
        .unwrap();
    let dot = String::from_utf8(dot.stdout).unwrap();
    assert!(
        dot.starts_with("graph \"netfault lab two-node-vxlan\" {"),
        "{dot}"
    );
    assert!(
        dot.contains("\"pod-a:eth0\" [label=\"eth0\\n10.244.1.2/24\""),
        "{dot}"
    );
    assert!(dot.trim_end().ends_with('}'));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_broken_lab_is_drawn_with_its_culprit_and_broken_link_in_red() {
    let topo = load_fixture(&repo().join("fixtures/single-node.toml")).unwrap();
    let lab = common::up(&topo).await;
    let g = Fault::VethDown(kinds::VethDown {
        pod: "pod-a".into(),
    })
    .inject(&lab)
    .await
    .unwrap();
    let broken = vec![(
        "pod-a".to_string(),
        "ext".to_string(),
        Proto::Tcp,
        Outcome::Timeout,
    )];
    let ds = explain_pairs(&lab, &broken, None).await.unwrap();
    g.heal(&lab).await.unwrap();
    let findings = diagram::findings(&ds);
    assert_eq!(findings.len(), 1);
    let svg = diagram::svg(&topo, lab.plan(), &findings, None);
    let doc = roxmltree::Document::parse(&svg).expect("well-formed SVG");
    let culprit = by_id(&doc, &format!("host-{}", findings[0].host)).unwrap();
    assert!(classes(&culprit).contains(&"broken"), "{svg}");
    assert!(culprit
        .descendants()
        .any(|n| n.attribute("id") == Some("badge-1")));
    let link = by_id(&doc, "link-node1-veth-pod-a--pod-a-eth0").unwrap();
    assert!(classes(&link).contains(&"broken"), "{svg}");
    let other = by_id(&doc, "link-node1-veth-pod-b--pod-b-eth0").unwrap();
    assert!(!classes(&other).contains(&"broken"));
    let finding = by_id(&doc, "finding-1").unwrap();
    let label = finding.text().unwrap();
    assert!(label.starts_with("1. node1 link — "), "{label}");
    assert!(svg.contains("pod-a → ext tcp"));

    // A culprit with many pairs lists four and says how many more, never cuts silently.
    let mut many = findings[0].clone();
    many.pairs = (0..7).map(|i| format!("pod-{i} → ext tcp")).collect();
    let svg = diagram::svg(&topo, lab.plan(), &[many], None);
    assert!(svg.contains(">+3 more<"), "{svg}");
    assert!(svg.contains("pod-3 → ext tcp") && !svg.contains("pod-4 → ext tcp"));
}

fn text_of(doc: &roxmltree::Document, id: &str) -> String {
    by_id(doc, id)
        .map(|n| {
            n.descendants()
                .filter_map(|d| d.text())
                .collect::<Vec<_>>()
                .join(" ")
        })
        .unwrap_or_default()
}

/// `netfault diagram LAB` draws the live lab: what was changed by hand shows (forwarding off,
/// an interface down); a diagnosis is drawn with when it was taken, and dropped once the lab
/// has changed since.
#[test]
fn a_pinned_lab_is_drawn_as_it_is_with_a_dated_diagnosis_that_goes_stale() {
    if netfault::privilege::skip_without_pins("a_pinned_lab_is_drawn_as_it_is") {
        return;
    }
    // Records and pins of its own (no other test or run sees this lab).
    let run = tempfile::tempdir().unwrap();
    let netns = tempfile::tempdir().unwrap();
    let lab = format!("dg{}", std::process::id());
    let nf = |args: &[&str]| {
        Command::new(BIN)
            .args(args)
            .env("NETFAULT_RUN_DIR", run.path())
            .env("NETFAULT_NETNS_DIR", netns.path())
            .output()
            .unwrap()
    };
    let f = repo().join("fixtures/single-node.toml");
    let up = nf(&["up", f.to_str().unwrap(), "--name", &lab, "--no-serve"]);
    assert!(
        up.status.success(),
        "{}",
        String::from_utf8_lossy(&up.stderr)
    );
    let sh = |host: &str, cmd: &str| {
        let o = nf(&["exec", &lab, host, "--", "sh", "-c", cmd]);
        assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    };
    sh(
        "node1",
        "sysctl -qw net.ipv4.ip_forward=0; ip link set veth-pod-b down",
    );
    let draw = || String::from_utf8_lossy(&nf(&["diagram", &lab]).stdout).into_owned();
    let svg = draw();
    let doc = roxmltree::Document::parse(&svg).expect("well-formed SVG");
    assert!(
        text_of(&doc, "host-node1").contains("ip_forward off"),
        "{svg}"
    );
    let port = by_id(&doc, "port-node1-veth-pod-b").unwrap();
    assert!(classes(&port).contains(&"down"), "{svg}");
    assert!(text_of(&doc, "port-node1-veth-pod-b").contains("(down)"));
    assert!(by_id(&doc, "finding-1").is_none(), "no diagnosis yet");

    let _ = nf(&["diagnose", &lab]);
    let svg = draw();
    let doc = roxmltree::Document::parse(&svg).unwrap();
    assert!(
        text_of(&doc, "diagnosis-note").starts_with("Diagnosis taken 20"),
        "{svg}"
    );
    assert!(by_id(&doc, "finding-1").is_some(), "{svg}");

    sh("node1", "ip link set veth-pod-b up");
    let svg = draw();
    let doc = roxmltree::Document::parse(&svg).unwrap();
    let down = nf(&["down", &lab]);
    assert_eq!(
        down.status.code(),
        Some(0),
        "{}{}",
        String::from_utf8_lossy(&down.stdout),
        String::from_utf8_lossy(&down.stderr)
    );
    assert!(
        text_of(&doc, "diagnosis-note").contains("is not drawn: the lab has changed since"),
        "{svg}"
    );
    assert!(
        by_id(&doc, "finding-1").is_none(),
        "a stale diagnosis is dropped"
    );
}

/// A Kubernetes fixture's drawing has its Services, NodePorts, DNS and policies; a healthy
/// overlay is a solid line, unlike a broken link's dashes.
#[test]
fn the_kubernetes_layer_is_drawn_and_a_healthy_overlay_is_not_dashed() {
    let f = repo().join("fixtures/k8s-policy.toml");
    let out = Command::new(BIN)
        .args(["diagram", f.to_str().unwrap()])
        .output()
        .unwrap();
    let svg = String::from_utf8_lossy(&out.stdout).into_owned();
    let doc = roxmltree::Document::parse(&svg).expect("well-formed SVG");
    let k8s = text_of(&doc, "kubernetes");
    assert!(
        k8s.contains("NetworkPolicy prod/deny-all: selects every pod · ingress isolated"),
        "{k8s}"
    );
    let f = repo().join("fixtures/k8s.toml");
    let out = Command::new(BIN)
        .args(["diagram", f.to_str().unwrap()])
        .output()
        .unwrap();
    let svg = String::from_utf8_lossy(&out.stdout).into_owned();
    assert!(
        svg.contains(
            "Service default/web 10.96.0.20:80/tcp → pod-b:8080 · NodePort 30080 on every node"
        ),
        "{svg}"
    );
    assert!(
        svg.contains("cluster DNS kube-system/kube-dns 10.96.0.10:53/udp → dns:5353"),
        "{svg}"
    );
    let style = svg
        .split("<style>")
        .nth(1)
        .unwrap()
        .split("</style>")
        .next()
        .unwrap();
    let overlay = style
        .split(".overlay{")
        .nth(1)
        .unwrap()
        .split('}')
        .next()
        .unwrap();
    assert!(!overlay.contains("dasharray"), "{overlay}");
    let broken = style
        .split(".link.broken{")
        .nth(1)
        .unwrap()
        .split('}')
        .next()
        .unwrap();
    assert!(broken.contains("dasharray"), "{broken}");
}

fn write_case(dir: &Path, name: &str, body: &str) -> PathBuf {
    let p = dir.join(name);
    std::fs::write(
        &p,
        format!(
            "description = \"{name}\"\nfixture = \"{}\"\n{body}",
            repo().join("fixtures/single-node.toml").display()
        ),
    )
    .unwrap();
    p
}

#[test]
fn a_run_report_is_one_html_page_with_grid_diagram_diagnosis_and_pcaps() {
    let dir = tempfile::tempdir().unwrap();
    let wrong = write_case(
        dir.path(),
        "wrong.toml",
        "[[fault]]\ntype = \"delete-masquerade\"\nnode = \"node1\"\n[expect]\n\"pod-* -> ext\" = \"reachable\"\n",
    );
    let right = write_case(
        dir.path(),
        "right.toml",
        "[[fault]]\ntype = \"delete-masquerade\"\nnode = \"node1\"\n[expect]\n\"pod-* -> ext\" = \"timeout\"\n",
    );
    let report = dir.path().join("report");
    let out = Command::new(BIN)
        .args(["run", "--report", report.to_str().unwrap()])
        .arg(&wrong)
        .arg(&right)
        .env("NO_COLOR", "1")
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert_eq!(out.status.code(), Some(1), "{stdout}");
    assert!(
        !stdout.contains('\u{1b}'),
        "NO_COLOR and a pipe: no escape codes\n{stdout}"
    );
    assert!(
        stdout.contains("the last packets of pod-a → ext"),
        "{stdout}"
    );

    let html = std::fs::read_to_string(report.join("index.html")).unwrap();
    let doc = roxmltree::Document::parse_with_options(
        &html,
        roxmltree::ParsingOptions {
            allow_dtd: true,
            ..Default::default()
        },
    )
    .expect("well-formed page");
    // Self-contained: no script, nothing fetched (the only URL is the SVG namespace).
    assert!(!html.contains("<script") && !html.contains("https://"));
    assert_eq!(
        html.matches("http://").count(),
        html.matches("http://www.w3.org/2000/svg").count()
    );
    let w = by_id(&doc, "case-wrong").expect("the failing case's section");
    assert!(w
        .descendants()
        .any(|n| n.tag_name().name() == "span" && classes(&n) == ["status", "fail"]));
    let wrong_cells = w
        .descendants()
        .filter(|n| n.tag_name().name() == "span" && classes(n).contains(&"wrong"))
        .count();
    assert_eq!(
        wrong_cells, 6,
        "pod-a and pod-b → ext, three protocols each"
    );
    let svg = w
        .descendants()
        .find(|n| n.tag_name().name() == "svg")
        .expect("the diagram, inline");
    assert!(svg
        .descendants()
        .any(|n| n.attribute("id") == Some("host-node1") && classes(&n).contains(&"broken")));
    assert!(w.descendants().any(|n| n.tag_name().name() == "pre"
        && n.text().unwrap_or("").contains("culprit: node1 masquerade")));
    // Every pcap link points at a pcap file readers accept, with packets in it.
    let links: Vec<&str> = w
        .descendants()
        .filter(|n| n.tag_name().name() == "a")
        .filter_map(|n| n.attribute("href"))
        .collect();
    assert!(
        links.iter().any(|l| l.ends_with("ext-eth0.pcap")),
        "{links:?}"
    );
    for l in &links {
        let f = std::fs::File::open(report.join(l)).unwrap();
        let mut r = pcap_file::pcap::PcapReader::new(f).expect("a pcap file");
        assert_eq!(r.header().datalink, pcap_file::DataLink::ETHERNET);
        let mut n = 0;
        while let Some(p) = r.next_packet() {
            p.unwrap();
            n += 1;
        }
        assert!(n > 0, "{l} is empty");
    }
    // Colours tell a negative the healthy lab has too from a pair the faults broke.
    let r = by_id(&doc, "case-right").unwrap();
    let class_of = |title: &str| {
        r.descendants()
            .find(|n| n.attribute("title").is_some_and(|t| t.starts_with(title)))
            .map(|n| {
                classes(&n)
                    .into_iter()
                    .map(String::from)
                    .collect::<Vec<_>>()
            })
            .unwrap_or_default()
    };
    assert!(class_of("pod-a → ext tcp").contains(&"broken".to_string()));
    assert!(class_of("ext → pod-a tcp").contains(&"negative".to_string()));
    assert!(class_of("pod-a → pod-b tcp").contains(&"ok".to_string()));
    let run = doc
        .descendants()
        .find(|n| classes(n) == ["run"])
        .and_then(|n| n.text())
        .unwrap_or_default();
    assert!(
        run.starts_with("run 20") && run.contains(" UTC on "),
        "{run}"
    );
    assert!(
        run.contains(&format!("with netfault {}", env!("CARGO_PKG_VERSION"))),
        "{run}"
    );
    // The passing case has its section and no captures.
    let r = by_id(&doc, "case-right").unwrap();
    assert!(r.descendants().any(|n| classes(&n) == ["status", "pass"]));
    assert!(!r.descendants().any(|n| n.tag_name().name() == "a"));
}

/// A dual-stack lab is drawn with both families: each interface's IPv6 address beside its IPv4
/// one, and a node's IPv6 forwarding and ip6 masquerade as planned — or, drawn live, as they are.
#[test]
fn a_dual_stack_lab_is_drawn_with_both_families() {
    let svg = Command::new(BIN)
        .arg("diagram")
        .arg(repo().join("fixtures/dual-stack.toml"))
        .output()
        .unwrap();
    let svg = String::from_utf8(svg.stdout).unwrap();
    let doc = roxmltree::Document::parse(&svg).unwrap();
    let all: String = doc
        .descendants()
        .filter_map(|n| n.text())
        .collect::<Vec<_>>()
        .join("\n");
    for want in [
        "10.244.1.2/24",
        "fd00:10:244:1::2/64",
        "2001:db8::10/64",
        "IPv6 forwarding on",
        "ip6 masquerade fd00:10:244:1::/64",
    ] {
        assert!(all.contains(want), "{want} in:\n{all}");
    }
    if netfault::privilege::skip_without_pins("a_dual_stack_lab_is_drawn_live") {
        return;
    }
    let lab = format!("dd{}", std::process::id());
    let nf = |args: &[&str]| Command::new(BIN).args(args).output().unwrap();
    let f = repo().join("fixtures/dual-stack.toml");
    assert!(nf(&["up", f.to_str().unwrap(), "--name", &lab])
        .status
        .success());
    let fault = nf(&["fault", &lab, "disable-ipv6-forward:node=node1"]);
    let live = nf(&["diagram", &lab]);
    let down = nf(&["down", &lab]);
    assert!(fault.status.success() && down.status.success());
    let live = String::from_utf8_lossy(&live.stdout);
    assert!(live.contains("IPv6 forwarding off"), "{live}");
    assert!(live.contains("ip_forward on"), "{live}");
}
