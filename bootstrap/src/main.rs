// One async thread: the CPU-heavy work (argon2) runs on the hashing pool's own threads, and one
// thread serves ~50,000 authenticated requests/s here. Every extra async thread would get its
// own malloc arena, and their fragmentation cost ~4 MiB of RSS under load (scripts/bench.sh).
#[tokio::main(flavor = "current_thread")]
async fn main() -> std::process::ExitCode {
    latchkey_bootstrap::cli::run().await
}
