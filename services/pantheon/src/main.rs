//! The `pantheon` binary: everything lives in the library (`src/lib.rs`), so tests and other
//! binaries can build the same thing.

// jemalloc, as in the service binaries: `pantheon up` runs the projector, whose RSS after
// large folds is about half with it (docs/benchmarks.md).
#[cfg(not(target_env = "msvc"))]
#[global_allocator]
static GLOBAL: tikv_jemallocator::Jemalloc = tikv_jemallocator::Jemalloc;

fn main() -> std::process::ExitCode {
    pantheon::main()
}
