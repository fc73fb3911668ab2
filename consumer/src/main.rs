//! `visitlog-consumer`: see the library and `--help`.

/// mimalloc rather than the system's allocator: a batch makes and drops
/// many small strings and documents across threads, where glibc's malloc
/// spent a third of the daemon's CPU (see the README's consumer profile).
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

fn main() -> std::process::ExitCode {
    no_huge_pages();
    visitlog_consumer::cli::main()
}

/// Transparent huge pages off for this process, as Redis does for itself.
/// mimalloc asks for huge pages on its arenas and hands freed memory back
/// to the kernel after a second; with huge pages each fault on that memory
/// again zeroes 2 MiB, and `perf` showed the kernel's `clear_page` taking
/// 33–74 % of the daemon's CPU samples while it drained (README, "The consumer").
/// The flag holds for memory already mapped, from the next fault on. A
/// kernel that refuses it leaves the system's setting, which only costs
/// speed, so a refusal is not an error.
fn no_huge_pages() {
    #[cfg(target_os = "linux")]
    if rustix::thread::disable_transparent_huge_pages(true).is_err() {
        // Nothing to do: see above.
    }
}
