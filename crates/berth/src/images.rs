//! images, image inspect, history, rmi, image prune.

use serde::Serialize;

use berth_engine::{Engine, EngineError, ImageFilter, Removed};
use berth_image::reference::{familiar, split_tag};
use berth_image::Digest;

use crate::cli::{HistoryArgs, ImagesArgs, PruneArgs, RmiArgs};
use crate::format::{created_at, human_size, since, write_inspect, Format};
use crate::{confirm, each, CliError};

/// One row of `images`, with docker's field names.
#[derive(Serialize)]
struct ImageRow {
    #[serde(rename = "Containers")]
    containers: String,
    #[serde(rename = "CreatedAt")]
    created_at: String,
    #[serde(rename = "CreatedSince")]
    created_since: String,
    #[serde(rename = "Digest")]
    digest: String,
    #[serde(rename = "ID")]
    id: String,
    #[serde(rename = "Repository")]
    repository: String,
    #[serde(rename = "SharedSize")]
    shared_size: String,
    #[serde(rename = "Size")]
    size: String,
    #[serde(rename = "Tag")]
    tag: String,
    #[serde(rename = "UniqueSize")]
    unique_size: String,
    #[serde(rename = "VirtualSize")]
    virtual_size: String,
}

const IMAGE_HEADERS: &[(&str, &str)] = &[
    ("Containers", "CONTAINERS"),
    ("CreatedAt", "CREATED AT"),
    ("CreatedSince", "CREATED"),
    ("Digest", "DIGEST"),
    ("ID", "IMAGE ID"),
    ("Repository", "REPOSITORY"),
    ("SharedSize", "SHARED SIZE"),
    ("Size", "SIZE"),
    ("Tag", "TAG"),
    ("UniqueSize", "UNIQUE SIZE"),
    ("VirtualSize", "VIRTUAL SIZE"),
];

fn id_text(id: &Digest, no_trunc: bool) -> String {
    if no_trunc {
        id.to_string()
    } else {
        id.short().to_string()
    }
}

pub fn list(engine: &Engine, a: &ImagesArgs) -> Result<(), CliError> {
    let mut filters = a.filter.clone();
    if let Some(repo) = &a.repository {
        filters.push(format!("reference={repo}"));
    }
    let summaries = engine.images(&ImageFilter::parse(&filters)?)?;
    let mut rows = Vec::new();
    for s in &summaries {
        let size = human_size(s.size, 3);
        // The digest a registry knows this repository's image by.
        let digest_of = |repo: &str| {
            s.repo_digests
                .iter()
                .find_map(|d| d.strip_prefix(repo)?.strip_prefix('@'))
                .unwrap_or("<none>")
                .to_string()
        };
        let row = |repository: String, tag: String, digest: String| ImageRow {
            containers: "N/A".into(),
            created_at: created_at(s.created),
            created_since: since(s.created),
            digest,
            id: id_text(&s.id, a.no_trunc),
            repository,
            shared_size: "N/A".into(),
            size: size.clone(),
            tag,
            unique_size: "N/A".into(),
            virtual_size: size.clone(),
        };
        if s.repo_tags.is_empty() {
            // docker shows an untagged pulled image by its repository.
            match s.repo_digests.first().and_then(|d| d.split_once('@')) {
                Some((repo, digest)) => rows.push(row(
                    familiar(repo).to_string(),
                    "<none>".into(),
                    digest.to_string(),
                )),
                None => rows.push(row("<none>".into(), "<none>".into(), "<none>".into())),
            }
        }
        for t in &s.repo_tags {
            let (repo, tag) = split_tag(t);
            rows.push(row(
                familiar(repo).to_string(),
                tag.to_string(),
                digest_of(repo),
            ));
        }
    }
    if a.quiet {
        for r in &rows {
            println!("{}", r.id);
        }
        return Ok(());
    }
    let default = if a.digests {
        "table {{.Repository}}\t{{.Tag}}\t{{.Digest}}\t{{.ID}}\t{{.CreatedSince}}\t{{.Size}}"
    } else {
        "table {{.Repository}}\t{{.Tag}}\t{{.ID}}\t{{.CreatedSince}}\t{{.Size}}"
    };
    let spec = a
        .format
        .as_deref()
        .filter(|f| !f.is_empty() && *f != "table")
        .unwrap_or(default);
    let format = Format::parse(Some(spec), default.trim_start_matches("table "))?;
    format.write_rows(&rows, IMAGE_HEADERS)?;
    Ok(())
}

/// An image's inspect document, names spelt as docker spells them.
pub fn image_details(engine: &Engine, name: &str) -> Result<serde_json::Value, EngineError> {
    let mut d = engine.inspect_image(name)?;
    d.repo_tags = d
        .repo_tags
        .iter()
        .map(|t| familiar(t).to_string())
        .collect();
    d.repo_digests = d
        .repo_digests
        .iter()
        .map(|t| familiar(t).to_string())
        .collect();
    Ok(serde_json::to_value(d).expect("details serialise"))
}

/// `inspect` of each name with `find`; as docker: what was found is
/// printed, then the first error.
pub fn inspect_each(
    names: &[String],
    format: Option<&str>,
    mut find: impl FnMut(&str) -> Result<serde_json::Value, EngineError>,
) -> Result<(), CliError> {
    let mut found = Vec::new();
    let mut first_error = None;
    for name in names {
        match find(name) {
            Ok(d) => found.push(d),
            Err(e) => {
                first_error.get_or_insert(e);
            }
        }
    }
    if !found.is_empty() || format.is_none() {
        write_inspect(&found, format)?;
    }
    match first_error {
        Some(e) => Err(e.into()),
        None => Ok(()),
    }
}

#[derive(Serialize)]
struct HistoryLine {
    #[serde(rename = "Comment")]
    comment: String,
    #[serde(rename = "CreatedAt")]
    created_at: String,
    #[serde(rename = "CreatedBy")]
    created_by: String,
    #[serde(rename = "CreatedSince")]
    created_since: String,
    #[serde(rename = "ID")]
    id: String,
    #[serde(rename = "Size")]
    size: String,
}

const HISTORY_HEADERS: &[(&str, &str)] = &[
    ("Comment", "COMMENT"),
    ("CreatedAt", "CREATED AT"),
    ("CreatedBy", "CREATED BY"),
    ("CreatedSince", "CREATED"),
    ("ID", "IMAGE"),
    ("Size", "SIZE"),
];

pub fn history(engine: &Engine, a: &HistoryArgs) -> Result<(), CliError> {
    let rows = engine.history(&a.image)?;
    if a.quiet {
        for r in &rows {
            println!(
                "{}",
                r.id.as_ref()
                    .map_or("<missing>".into(), |d| id_text(d, a.no_trunc))
            );
        }
        return Ok(());
    }
    let lines: Vec<HistoryLine> = rows
        .iter()
        .map(|r| {
            let created_by = r.created_by.replace('\t', " ");
            let created_by = if a.no_trunc || created_by.chars().count() <= 45 {
                created_by
            } else {
                format!("{}…", created_by.chars().take(44).collect::<String>())
            };
            HistoryLine {
                comment: r.comment.clone(),
                created_at: r.created.map(|t| t.to_rfc3339()).unwrap_or_default(),
                created_by,
                created_since: if a.human {
                    since(r.created)
                } else {
                    r.created.map(|t| t.to_rfc3339()).unwrap_or_default()
                },
                id: r
                    .id
                    .as_ref()
                    .map_or("<missing>".into(), |d| id_text(d, a.no_trunc)),
                size: if a.human {
                    human_size(r.size, 3)
                } else {
                    r.size.to_string()
                },
            }
        })
        .collect();
    let default = "{{.ID}}\t{{.CreatedSince}}\t{{.CreatedBy}}\t{{.Size}}\t{{.Comment}}";
    Format::parse(a.format.as_deref(), default)?.write_rows(&lines, HISTORY_HEADERS)?;
    Ok(())
}

fn print_removed(removed: &[Removed], lower: bool) {
    for r in removed {
        let (untagged, deleted) = if lower {
            ("untagged", "deleted")
        } else {
            ("Untagged", "Deleted")
        };
        match r {
            Removed::Untagged(t) => println!("{untagged}: {}", familiar(t)),
            Removed::Deleted(d) => println!("{deleted}: {d}"),
        }
    }
}

pub fn remove(engine: &mut Engine, a: &RmiArgs) -> Result<(), CliError> {
    each(&a.images, |name| {
        let removed = engine.remove_images(std::slice::from_ref(&name.to_string()), a.force)?;
        print_removed(&removed, false);
        Ok(None)
    })
}

pub fn prune(engine: &mut Engine, a: &PruneArgs) -> Result<(), CliError> {
    let warning = if a.all {
        "WARNING! This will remove all images without at least one container associated to them."
    } else {
        "WARNING! This will remove all dangling images."
    };
    if !a.force && !confirm(warning) {
        return Ok(());
    }
    let report = engine.prune_images(a.all)?;
    if !report.removed.is_empty() {
        println!("Deleted Images:");
        print_removed(&report.removed, true);
        println!();
    }
    println!("Total reclaimed space: {}", human_size(report.reclaimed, 4));
    Ok(())
}
