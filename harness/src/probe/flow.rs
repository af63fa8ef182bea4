//! Long-lived flows: TCP connections opened before a change to the cluster and tried again
//! after it, as Cilium's "conn-disrupt" checks try real clusters' connections across an
//! upgrade. Does an established connection survive a policy change, an endpoint's removal, a
//! pod's restart? Each flow exchanges one line when opened (the echo names who served it) and
//! one after the change; what the second exchange meets is the flow's outcome.

use std::net::SocketAddr;
use std::time::Duration;

use tokio::io::{AsyncBufReadExt, AsyncWriteExt, BufReader};
use tokio::net::TcpStream;
use tokio::time::Instant;

use super::classify::classify_errno;
use super::run::{connect, listener_targets, open_client, start_servers};
use super::sock::{echo_server, parse_echo};
use super::spec::{Observation, ProbeSpec, PROBE_LINE};
use crate::error::{Error, Result};
use crate::lab::Lab;
use crate::topology::{Outcome, Proto};

/// Flows held open across a change. Their servers' listeners close once every flow is
/// connected; the connections' own server tasks stay.
pub struct HeldFlows {
    flows: Vec<(ProbeSpec, std::result::Result<Held, Observation>)>,
}

/// One open flow, and the endpoint that served it when it was opened.
struct Held {
    stream: BufReader<TcpStream>,
    served_by: Option<String>,
}

/// Opens a TCP flow for each probe (its protocol must be TCP), all at once, and exchanges
/// the first line on each. A flow that cannot open is kept as what it met then.
pub async fn hold(lab: &Lab, specs: Vec<ProbeSpec>, timeout: Duration) -> Result<HeldFlows> {
    if let Some(s) = specs.iter().find(|s| s.proto.base() != Proto::Tcp) {
        return Err(Error::other(format!(
            "{} -> {}: only TCP flows are held",
            s.from, s.to
        )));
    }
    let (servers, _) = start_servers(lab, &listener_targets(&specs), &None).await?;
    let deadline = Instant::now() + timeout;
    let opened = futures::future::try_join_all(specs.into_iter().map(|spec| async move {
        let proto = spec.proto;
        let sock = lab
            .host(&spec.from)?
            .ns
            .run_async(move || open_client(proto, None))
            .await
            .and_then(|r| r)
            .map_err(|e| Error::io(format!("{}: opening a flow's socket", spec.from), e))?;
        let dst = SocketAddr::new(spec.dst, spec.port.unwrap_or(80));
        let held = match connect(sock, dst, deadline, None).await {
            Ok(s) => first_exchange(s, deadline).await,
            Err(o) => Err(o),
        };
        Ok::<_, Error>((spec, held))
    }))
    .await;
    servers.stop().await;
    Ok(HeldFlows { flows: opened? })
}

async fn first_exchange(s: TcpStream, deadline: Instant) -> std::result::Result<Held, Observation> {
    let mut stream = BufReader::new(s);
    let line = exchange(&mut stream, PROBE_LINE, deadline).await?;
    if parse_echo(line.as_bytes()).is_none() {
        return Err(Observation::new(
            Outcome::Refused,
            "connected, but something other than netfault's echo server answered".to_string(),
        ));
    }
    Ok(Held {
        served_by: echo_server(line.as_bytes()),
        stream,
    })
}

/// Sends a line and reads one back before the deadline.
async fn exchange(
    s: &mut BufReader<TcpStream>,
    text: &str,
    deadline: Instant,
) -> std::result::Result<String, Observation> {
    let io = async {
        s.get_mut()
            .write_all(format!("{text}\n").as_bytes())
            .await?;
        let mut line = String::new();
        let n = s.read_line(&mut line).await?;
        if n == 0 {
            return Err(std::io::Error::new(
                std::io::ErrorKind::UnexpectedEof,
                "the server closed the flow",
            ));
        }
        Ok(line)
    };
    match tokio::time::timeout_at(deadline, io).await {
        Err(_) => Err(Observation::new(
            Outcome::Timeout,
            "the flow's echo never came back".to_string(),
        )),
        Ok(Err(e)) if e.kind() == std::io::ErrorKind::UnexpectedEof => {
            Err(Observation::new(Outcome::Refused, e.to_string()))
        }
        Ok(Err(e)) => Err(classify_errno(&e, "echo")),
        Ok(Ok(line)) => Ok(line),
    }
}

/// What a held flow met after the change.
#[derive(Debug, Clone)]
pub struct FlowResult {
    pub from: String,
    pub to: String,
    pub observation: Observation,
    /// Whether the flow was open before the change (else `observation` is why not).
    pub opened: bool,
}

impl HeldFlows {
    /// Tries every flow again, all at once: reachable when its echo comes back, else what
    /// the exchange met (a reset, a timeout). The flows close after.
    pub async fn check(self, timeout: Duration) -> Vec<FlowResult> {
        let deadline = Instant::now() + timeout;
        futures::future::join_all(self.flows.into_iter().map(|(spec, held)| async move {
            let (observation, opened) = match held {
                Err(o) => (o, false),
                Ok(mut h) => {
                    let o = match exchange(&mut h.stream, "netfault-flow again", deadline).await {
                        Ok(_) => Observation {
                            served_by: h.served_by,
                            ..Observation::new(Outcome::Reachable, None)
                        },
                        Err(o) => o,
                    };
                    (o, true)
                }
            };
            FlowResult {
                from: spec.from,
                to: spec.to,
                observation,
                opened,
            }
        }))
        .await
    }
}
