//! One agent run inside a lab test, from start to the checked transcript:
//! the helpers every privileged test module shares instead of re-declaring.

use std::net::IpAddr;
use std::thread::sleep;
use std::time::Duration;

use serde_json::Value;

use crate::agent::Agent;
use crate::lab::{CurlResult, Lab};
use crate::verdict::{assert_one_finding_per_request, assert_schema, findings, is_finding_for};

/// How long the agent may take to attach and write its start line.
pub const START_WAIT: Duration = Duration::from_secs(20);
/// How long a finding may take to appear after its traffic.
pub const FINDING_WAIT: Duration = Duration::from_secs(15);

/// Starts the agent in `lab` with `args` and waits for its start line.
pub fn start_agent(lab: &Lab, args: &[&str]) -> Agent {
    let mut agent = Agent::start(lab, args);
    agent.wait_start(START_WAIT);
    agent
}

/// Stops the agent with SIGINT after a moment for late duplicates; checks
/// the schema and one finding per connection; returns every line.
pub fn finish(mut agent: Agent) -> Vec<Value> {
    sleep(Duration::from_millis(500));
    let lines = agent.stop(libc::SIGINT);
    assert_schema(&lines);
    assert_one_finding_per_request(&lines);
    lines
}

/// The findings of `lines` for connections from `src` to `dport`.
pub fn findings_for(lines: &[Value], src: IpAddr, dport: u16) -> Vec<&Value> {
    findings(lines)
        .into_iter()
        .filter(|f| is_finding_for(f, src, dport))
        .collect()
}

/// Panics unless curl failed with exit `code` and `says` on stderr.
pub fn curl_failed(r: &CurlResult, code: i32, says: &str, what: &str) {
    assert!(
        r.code == Some(code) && r.stderr.contains(says),
        "{what}: want curl exit {code} saying {says:?}, got {r:?}"
    );
}
