//! `visitlog-consumer`: see the library and `--help`.

/// mimalloc rather than the system's allocator: a batch makes and drops
/// many small strings and documents across threads, where glibc's malloc
/// spent a third of the daemon's CPU (see the README's consumer profile).
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

fn main() -> std::process::ExitCode {
    visitlog_consumer::cli::main()
}
