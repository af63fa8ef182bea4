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
    let svg = diagram::svg(&topo, lab.plan(), &findings);
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
    // The passing case has its section and no captures.
    let r = by_id(&doc, "case-right").unwrap();
    assert!(r.descendants().any(|n| classes(&n) == ["status", "pass"]));
    assert!(!r.descendants().any(|n| n.tag_name().name() == "a"));
}
