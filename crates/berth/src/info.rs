//! info, laid out as docker's.

use berth_engine::Engine;

use crate::format::{binary_size, human_size, render, template};
use crate::CliError;

pub fn info(engine: &Engine, format: Option<&str>) -> Result<(), CliError> {
    let info = engine.info()?;
    if let Some(spec) = format {
        let value = serde_json::to_value(&info).expect("info serialises");
        let text = if spec == "json" || spec.trim() == "{{json .}}" {
            value.to_string()
        } else {
            render(&template(spec)?, &value)?
        };
        println!("{text}");
        return Ok(());
    }
    let overlay = match &info.overlay_error {
        None => "true".to_string(),
        Some(e) => format!("false ({e})"),
    };
    let cgroup = match info.cgroup_layout.as_str() {
        "hybrid" => format!(
            "{} (hybrid: v1 controllers, cgroup2 at /sys/fs/cgroup/unified)",
            info.cgroup_version
        ),
        _ => info.cgroup_version.clone(),
    };
    println!("Server:");
    println!(" Images: {}", info.images);
    println!(
        " Server Version: {} (berth, daemonless)",
        info.server_version
    );
    println!(" Storage Driver: {}", info.driver);
    println!("  Backing Filesystem: {}", info.backing_filesystem);
    println!("  Overlay Supported: {overlay}");
    println!("  Layers: {}", info.layers);
    println!("  Layers Size: {}", human_size(info.layers_size, 4));
    println!(" Cgroup Driver: {}", info.cgroup_driver);
    println!(" Cgroup Version: {cgroup}");
    println!(" Kernel Version: {}", info.kernel_version);
    println!(" Operating System: {}", info.operating_system);
    println!(" OSType: {}", info.os_type);
    println!(" Architecture: {}", info.architecture);
    println!(" CPUs: {}", info.ncpu);
    println!(" Total Memory: {}", binary_size(info.mem_total));
    println!(" Name: {}", info.name);
    println!(" Berth Root Dir: {}", info.docker_root_dir);
    println!(" Default Registry: {}", info.default_registry);
    println!(" Registry: {}", info.index_server_address);
    Ok(())
}
