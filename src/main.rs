/// See `mimalloc` in Cargo.toml for why.
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

fn main() -> std::process::ExitCode {
    keep_freed_memory();
    callrecords_etl::cli::main()
}

/// Memory the process frees is kept for its next allocations instead of being handed back
/// to the kernel after 10 ms (mimalloc's default): memory is bounded by design, and memory
/// handed back must be zeroed again by the kernel when it is touched next (BENCHMARKS.md).
fn keep_freed_memory() {
    // mimalloc's `mi_option_purge_delay`: -1 never purges. Read when memory is freed, so
    // setting it before any work starts covers the whole run.
    const PURGE_DELAY: libmimalloc_sys::mi_option_t = 15;
    // SAFETY: sets a process-wide integer option; no memory is touched.
    unsafe { libmimalloc_sys::mi_option_set(PURGE_DELAY, -1) };
}
