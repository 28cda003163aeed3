//! Placeholder until the demo lands.

pub fn run(_agent_bin: &std::path::Path) -> anyhow::Result<()> {
    anyhow::bail!("demo: not written yet")
}
