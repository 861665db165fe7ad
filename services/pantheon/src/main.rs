//! The `pantheon` binary: everything lives in the library (`src/lib.rs`), so tests and other
//! binaries can build the same thing.

fn main() -> std::process::ExitCode {
    pantheon::main()
}
