//! The `kubectl-render` binary: one line on stderr and a non-zero exit for any error.

#[tokio::main]
async fn main() {
    if let Err(e) = kubectl_render::run().await {
        eprintln!("error: {e}");
        std::process::exit(e.exit_code());
    }
}
