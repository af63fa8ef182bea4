//! Cases in steps: what a step may change, and where its errors point.

use netfault::case::parse_case;
use netfault::topology::source::Source;

fn parse(body: &str) -> Result<netfault::case::Case, String> {
    let fixture = std::fs::read_to_string(
        std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../fixtures/k8s.toml"),
    )
    .unwrap();
    let text = format!("description = \"x\"\nfixture = \"k8s.toml\"\n{body}");
    parse_case(&Source::new("steps.toml", text), |_| {
        Ok(Source::new("k8s.toml", fixture.clone()))
    })
    .map_err(|e| e.to_string())
}

#[test]
fn each_step_is_the_cluster_the_steps_before_it_left() {
    let c = parse(
        "[[step]]\napply.pod.pod-b.ip = \"10.244.1.9\"\n\
         [[step]]\ndelete = [\"policy.api-allow-client\"]\n",
    )
    .unwrap();
    assert_eq!(c.steps.len(), 2);
    let ip = |i: usize| {
        c.steps[i]
            .topology
            .host("pod-b")
            .unwrap()
            .address()
            .to_string()
    };
    assert_eq!((ip(0), ip(1)), ("10.244.1.9".into(), "10.244.1.9".into()));
    assert_eq!(c.steps[0].topology.k8s.policies.len(), 1);
    assert!(c.steps[1].topology.k8s.policies.is_empty());
    // The second step's intent: pod-b reaches pod-c once the policy is gone.
    let healthy = |i: usize| {
        c.steps[i]
            .topology
            .healthy("pod-b", "pod-c", netfault::Proto::Tcp)
    };
    assert_eq!(healthy(0), Some(netfault::Outcome::Timeout));
    assert_eq!(healthy(1), Some(netfault::Outcome::Reachable));
}

#[test]
fn what_a_step_cannot_change_is_an_error_at_its_line() {
    let cases = [
        (
            "[[step]]\napply.node.node1.uplink = \"203.0.113.9/24\"\n",
            "steps.toml:4:",
            "step 1: a step cannot change [node]",
        ),
        (
            "[[step]]\napply.pod.pod-b.node = \"node2\"\n",
            "steps.toml:4:",
            "a step cannot change a pod's node",
        ),
        (
            "[[step]]\napply.pod.pod-b.ip = \"10.244.2.9\"\n",
            "steps.toml:4:",
            "step 1: the cluster after it is not valid",
        ),
        (
            "[[step]]\ndelete = [\"policy.nope\"]\n",
            "steps.toml:4:",
            "the cluster has no policy \"nope\" at this step",
        ),
        (
            "[[step]]\n[[step]]\ndelete = [\"service.web\", \"service.web\"]\n",
            "steps.toml:5:",
            "step 2: the cluster has no service \"web\"",
        ),
        (
            "[[step]]\nheld = { \"pod-a -> pod-z\" = \"reachable\" }\n",
            "steps.toml:4:",
            "unknown host \"pod-z\"",
        ),
        (
            "[[step]]\nconntrack = \"sometimes\"\n",
            "steps.toml:4:",
            "unknown variant `sometimes`",
        ),
        (
            "[[step]]\nculprits = [\"node1 nothing\"]\n",
            "steps.toml:4:",
            "unknown component \"nothing\"",
        ),
        (
            "[[fault]]\ntype = \"no-endpoints\"\nservice = \"web\"\n[[step]]\n",
            "steps.toml:3:",
            "cannot have fault of its own",
        ),
        (
            "[expect]\n\"pod-a -> pod-b\" = \"timeout\"\n[[step]]\n",
            "steps.toml:3:",
            "cannot have expect of its own",
        ),
    ];
    for (body, at, says) in cases {
        let e = parse(body).expect_err(body);
        assert!(e.contains(at) && e.contains(says), "{body}\n→ {e}");
    }
}
