//! The `journeymap` command line, built inside the tests package so that
//! end-to-end tests can run the server as a separate process (and kill it).

fn main() -> std::process::ExitCode {
    journeymap::cli::main()
}
