fn main() {
    // A closed pipe must not kill netfault: writing to a helper whose stdin closed (an `nft` or
    // CNI plugin that exited early) is an error to report, so SIGPIPE stays ignored (Rust's
    // default). Printing to a closed stdout (`netfault faults | head`) panics in `println!`;
    // that one ends the process quietly, with the status a shell gives a SIGPIPE death.
    let default = std::panic::take_hook();
    std::panic::set_hook(Box::new(move |info| {
        if stdout_closed(info) {
            std::process::exit(128 + libc::SIGPIPE);
        }
        default(info);
    }));
    std::process::exit(netfault::cli::main());
}

/// Whether a panic is `println!` finding stdout's reader gone.
fn stdout_closed(info: &std::panic::PanicHookInfo<'_>) -> bool {
    let payload = info.payload();
    let msg = payload
        .downcast_ref::<String>()
        .map(String::as_str)
        .or_else(|| payload.downcast_ref::<&str>().copied())
        .unwrap_or("");
    msg.starts_with("failed printing to stdout") && msg.contains("Broken pipe")
}
