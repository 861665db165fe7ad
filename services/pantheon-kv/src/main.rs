//! The `pantheon-kv` binary: everything lives in the library (`src/lib.rs`), so the
//! integration tests build the same thing.

fn main() -> std::process::ExitCode {
    pantheon_kv::main()
}
