//! import, load, save: images in and out of the store as files.

use std::fs::File;
use std::io::{self, IsTerminal, Read};

use berth_engine::{ArchiveFormat, Engine, ImportOptions};
use berth_image::manifest::host_platform;
use berth_image::reference::familiar;

use crate::cli::{ImportArgs, LoadArgs, SaveArgs, SaveFormat};
use crate::CliError;

fn open_input(path: &str) -> Result<Box<dyn Read>, CliError> {
    if path == "-" {
        return Ok(Box::new(io::stdin().lock()));
    }
    if path.contains("://") {
        return Err(CliError::Usage(format!(
            "importing from a URL is not supported: {path} (download it, then import the file)"
        )));
    }
    let file = File::open(path).map_err(|source| CliError::Io {
        path: path.to_string(),
        source,
    })?;
    Ok(Box::new(io::BufReader::with_capacity(256 * 1024, file)))
}

pub fn import(engine: &mut Engine, a: &ImportArgs) -> Result<(), CliError> {
    if let Some(p) = &a.platform {
        let host = host_platform();
        if p != &format!("{}/{}", host.os, host.architecture) {
            return Err(CliError::Usage(format!(
                "--platform {p}: berth imports for this machine's platform only ({}/{})",
                host.os, host.architecture
            )));
        }
    }
    let opts = ImportOptions {
        changes: a.change.clone(),
        message: a.message.clone(),
        reference: a.reference.clone(),
        source: a.file.clone(),
    };
    let id = engine.import(open_input(&a.file)?, &opts)?;
    println!("{id}");
    Ok(())
}

pub fn load(engine: &mut Engine, a: &LoadArgs) -> Result<(), CliError> {
    let input: Box<dyn Read> = match &a.input {
        Some(p) => open_input(&p.display().to_string())?,
        None if io::stdin().is_terminal() => {
            return Err(CliError::Usage(
                "requested load from stdin, but stdin is a terminal: use -i FILE or redirect"
                    .into(),
            ))
        }
        None => open_input("-")?,
    };
    for image in engine.load(input)? {
        if image.names.is_empty() {
            println!("Loaded image ID: {}", image.id);
        }
        for name in &image.names {
            println!("Loaded image: {}", familiar(name));
        }
    }
    Ok(())
}

pub fn save(engine: &Engine, a: &SaveArgs) -> Result<(), CliError> {
    let format = match a.format {
        SaveFormat::Docker => ArchiveFormat::Docker,
        SaveFormat::Oci => ArchiveFormat::Oci,
    };
    match &a.output {
        Some(path) => engine.save_to_path(&a.images, format, path)?,
        None if io::stdout().is_terminal() => {
            return Err(CliError::Usage(
                "cowardly refusing to save to a terminal. Use the -o flag or redirect".into(),
            ))
        }
        None => engine.save(&a.images, format, io::BufWriter::new(io::stdout().lock()))?,
    }
    Ok(())
}
