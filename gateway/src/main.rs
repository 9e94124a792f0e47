//! The `imx` binary.

fn main() -> anyhow::Result<()> {
    Ok(())
}
