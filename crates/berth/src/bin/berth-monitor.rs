//! `berth-monitor`: the per-container monitor berth starts (see
//! `berth_engine::monitor`). Its own small binary, so that what stays
//! resident per running container is small.

fn main() {
    let args: Vec<String> = std::env::args().skip(1).collect();
    std::process::exit(berth_engine::monitor::main(&args));
}
