//! The `journeymap` binary; the command line itself is [`journeymap::cli`].

fn main() -> std::process::ExitCode {
    journeymap::cli::main()
}
