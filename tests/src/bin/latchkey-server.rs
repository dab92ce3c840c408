//! The `latchkey` binary, built in this package too so its suites can start server processes
//! (Cargo hands a package's tests only its own binaries).
#[tokio::main(flavor = "current_thread")]
async fn main() -> std::process::ExitCode {
    latchkey_bootstrap::cli::run().await
}
