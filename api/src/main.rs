//! The `journeymap` binary; the command line itself is [`journeymap::cli`].

#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

fn main() -> std::process::ExitCode {
    journeymap::cli::main()
}
