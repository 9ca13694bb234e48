//! The `b2m` binary: everything lives in the library; this only turns its result into an exit code.

fn main() -> std::process::ExitCode {
    b2m::main()
}
