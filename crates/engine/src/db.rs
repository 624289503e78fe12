//! The metadata database: images, their tags and layers, in SQLite (WAL).
//!
//! Layer reference counts are not stored but counted (`image_layers`
//! rows per layer), so they can never drift from the truth.

use std::path::Path;
use std::time::Duration;

use rusqlite::{params, Connection, OptionalExtension, TransactionBehavior};

use berth_image::Digest;

use crate::EngineError;

const SCHEMA_VERSION: i64 = 3;

const SCHEMA: &str = "
CREATE TABLE images (
    id          TEXT PRIMARY KEY,       -- sha256 of the config: the image ID
    manifest    TEXT NOT NULL,          -- digest of its manifest blob
    created     TEXT,                   -- from the config, RFC 3339
    size        INTEGER NOT NULL,       -- bytes of its unpacked layers
    added       TEXT NOT NULL           -- when this store got it
);
CREATE TABLE layers (
    chain_id    TEXT PRIMARY KEY,
    diff_id     TEXT NOT NULL,
    size        INTEGER NOT NULL
);
CREATE TABLE image_layers (
    image_id    TEXT NOT NULL REFERENCES images(id) ON DELETE CASCADE,
    position    INTEGER NOT NULL,       -- 0 is the bottom layer
    chain_id    TEXT NOT NULL REFERENCES layers(chain_id),
    PRIMARY KEY (image_id, position)
);
CREATE INDEX image_layers_chain ON image_layers(chain_id);
CREATE TABLE image_blobs (              -- manifest, config and layer blobs
    image_id    TEXT NOT NULL REFERENCES images(id) ON DELETE CASCADE,
    digest      TEXT NOT NULL,
    PRIMARY KEY (image_id, digest)
);
CREATE INDEX image_blobs_digest ON image_blobs(digest);
CREATE TABLE tags (
    name        TEXT PRIMARY KEY,       -- normalised name:tag
    image_id    TEXT NOT NULL REFERENCES images(id) ON DELETE CASCADE,
    tagged_at   TEXT NOT NULL
);
CREATE INDEX tags_image ON tags(image_id);
";

/// Version 2: the digests registries know an image by (`name@digest`,
/// docker's RepoDigests; an index's digest when pulled through one).
const SCHEMA_V2: &str = "
CREATE TABLE repo_digests (
    name        TEXT NOT NULL,          -- normalised name@sha256:...
    image_id    TEXT NOT NULL REFERENCES images(id) ON DELETE CASCADE,
    PRIMARY KEY (name)
);
CREATE INDEX repo_digests_image ON repo_digests(image_id);
";

/// Version 3: containers. What a container was made from lives here; its
/// run state (pid, exit code, times) is the monitor's, in
/// `containers/<id>/state.json`.
const SCHEMA_V3: &str = "
CREATE TABLE containers (
    id          TEXT PRIMARY KEY,
    name        TEXT NOT NULL UNIQUE,
    image_id    TEXT NOT NULL,
    image       TEXT NOT NULL,          -- the name it was created from
    created     TEXT NOT NULL,
    options     TEXT NOT NULL           -- JSON: the options it was made with
);
CREATE INDEX containers_image ON containers(image_id);
";

pub struct Db {
    conn: Connection,
}

/// An image row.
#[derive(Debug, Clone)]
pub struct ImageRow {
    pub id: Digest,
    pub manifest: Digest,
    pub created: Option<String>,
    pub size: u64,
}

/// What deleting an image left without users, to remove from disk.
pub struct Freed {
    /// (chain ID, size) of each layer.
    pub layers: Vec<(Digest, u64)>,
    pub blobs: Vec<Digest>,
}

/// What registering an image writes.
pub struct NewImage<'a> {
    pub id: &'a Digest,
    pub manifest: &'a Digest,
    pub created: Option<&'a str>,
    /// (chain ID, diff ID, size), bottom first.
    pub layers: &'a [(Digest, Digest, u64)],
    pub blobs: &'a [Digest],
    pub names: &'a [String],
    /// `name@digest` references a registry knows it by.
    pub repo_digests: &'a [String],
    pub now: &'a str,
}

fn digest(s: String) -> rusqlite::Result<Digest> {
    Digest::parse(&s).map_err(|e| {
        rusqlite::Error::FromSqlConversionFailure(0, rusqlite::types::Type::Text, Box::new(e))
    })
}

impl Db {
    pub fn open(path: &Path) -> Result<Self, EngineError> {
        let mut conn = Connection::open(path)?;
        // Concurrent commands wait for each other rather than fail.
        conn.busy_timeout(Duration::from_secs(60))?;
        conn.pragma_update(None, "synchronous", "NORMAL")?;
        conn.pragma_update(None, "foreign_keys", "ON")?;
        // The last connection to close would copy the WAL into the
        // database and delete it: two fsyncs and an unlink (2.5 ms on a
        // filesystem mounted with discard) at the end of every command
        // that wrote. SQLite checkpoints on its own once the WAL holds
        // 1000 pages; the WAL file stays beside the database.
        conn.set_db_config(
            rusqlite::config::DbConfig::SQLITE_DBCONFIG_NO_CKPT_ON_CLOSE,
            true,
        )?;
        // Most opens only read: no write unless the schema needs one (a
        // full disk must not stop `ps` or `rm`).
        let current: i64 = conn.query_row("PRAGMA user_version", [], |r| r.get(0))?;
        if current == SCHEMA_VERSION {
            return Ok(Db { conn });
        }
        // Two commands making a new store at once: switching to WAL and
        // creating the schema can answer "busy" at once rather than wait
        // (SQLite does not wait where waiting could deadlock): try again.
        let mut attempt = 0;
        loop {
            match migrate(&mut conn) {
                Err(rusqlite::Error::SqliteFailure(e, _))
                    if attempt < 200
                        && matches!(
                            e.code,
                            rusqlite::ErrorCode::DatabaseBusy | rusqlite::ErrorCode::DatabaseLocked
                        ) =>
                {
                    attempt += 1;
                    std::thread::sleep(Duration::from_millis(25));
                }
                other => {
                    other?;
                    return Ok(Db { conn });
                }
            }
        }
    }

    pub fn layer_size(&self, chain: &Digest) -> Result<Option<u64>, EngineError> {
        Ok(self
            .conn
            .query_row(
                "SELECT size FROM layers WHERE chain_id = ?1",
                [chain.to_string()],
                |r| r.get(0),
            )
            .optional()?)
    }

    /// Records an image, its layers, blobs and names in one transaction:
    /// the image is visible all at once or not at all. Names move from
    /// whatever image had them, as `docker tag` does.
    pub fn insert_image(&mut self, img: &NewImage<'_>) -> Result<(), EngineError> {
        let tx = self
            .conn
            .transaction_with_behavior(TransactionBehavior::Immediate)?;
        let size: u64 = img.layers.iter().map(|l| l.2).sum();
        tx.execute(
            "INSERT OR IGNORE INTO images (id, manifest, created, size, added) VALUES (?1, ?2, ?3, ?4, ?5)",
            params![img.id.to_string(), img.manifest.to_string(), img.created, size, img.now],
        )?;
        for (pos, (chain, diff, size)) in img.layers.iter().enumerate() {
            tx.execute(
                "INSERT OR IGNORE INTO layers (chain_id, diff_id, size) VALUES (?1, ?2, ?3)",
                params![chain.to_string(), diff.to_string(), size],
            )?;
            tx.execute(
                "INSERT OR IGNORE INTO image_layers (image_id, position, chain_id) VALUES (?1, ?2, ?3)",
                params![img.id.to_string(), pos, chain.to_string()],
            )?;
        }
        for blob in img.blobs {
            tx.execute(
                "INSERT OR IGNORE INTO image_blobs (image_id, digest) VALUES (?1, ?2)",
                params![img.id.to_string(), blob.to_string()],
            )?;
        }
        for name in img.names {
            set_tag(&tx, name, img.id, img.now)?;
        }
        for name in img.repo_digests {
            add_repo_digest(&tx, name, img.id)?;
        }
        tx.commit()?;
        Ok(())
    }

    pub fn tag(&mut self, name: &str, id: &Digest, now: &str) -> Result<(), EngineError> {
        set_tag(&self.conn, name, id, now)
    }

    /// Removes a tag; true if it existed.
    pub fn untag(&mut self, name: &str) -> Result<bool, EngineError> {
        Ok(self
            .conn
            .execute("DELETE FROM tags WHERE name = ?1", [name])?
            > 0)
    }

    pub fn image(&self, id: &Digest) -> Result<Option<ImageRow>, EngineError> {
        Ok(self
            .conn
            .query_row(
                "SELECT id, manifest, created, size FROM images WHERE id = ?1",
                [id.to_string()],
                image_row,
            )
            .optional()?)
    }

    pub fn images(&self) -> Result<Vec<ImageRow>, EngineError> {
        let mut stmt = self.conn.prepare(
            "SELECT id, manifest, created, size FROM images ORDER BY created DESC, added DESC",
        )?;
        let rows = stmt.query_map([], image_row)?.collect::<Result<_, _>>()?;
        Ok(rows)
    }

    pub fn image_by_tag(&self, name: &str) -> Result<Option<Digest>, EngineError> {
        Ok(self
            .conn
            .query_row("SELECT image_id FROM tags WHERE name = ?1", [name], |r| {
                digest(r.get(0)?)
            })
            .optional()?)
    }

    pub fn add_repo_digest(&mut self, name: &str, id: &Digest) -> Result<(), EngineError> {
        add_repo_digest(&self.conn, name, id)
    }

    pub fn image_by_repo_digest(&self, name: &str) -> Result<Option<Digest>, EngineError> {
        Ok(self
            .conn
            .query_row(
                "SELECT image_id FROM repo_digests WHERE name = ?1",
                [name],
                |r| digest(r.get(0)?),
            )
            .optional()?)
    }

    /// An image's `name@digest` references, by name.
    pub fn repo_digests_of(&self, id: &Digest) -> Result<Vec<String>, EngineError> {
        let mut stmt = self
            .conn
            .prepare("SELECT name FROM repo_digests WHERE image_id = ?1 ORDER BY name")?;
        let rows = stmt
            .query_map([id.to_string()], |r| r.get(0))?
            .collect::<Result<_, _>>()?;
        Ok(rows)
    }

    pub fn image_by_manifest(&self, manifest: &Digest) -> Result<Option<Digest>, EngineError> {
        Ok(self
            .conn
            .query_row(
                "SELECT id FROM images WHERE manifest = ?1",
                [manifest.to_string()],
                |r| digest(r.get(0)?),
            )
            .optional()?)
    }

    /// Images whose ID starts with `hex`.
    pub fn images_by_prefix(&self, hex: &str) -> Result<Vec<Digest>, EngineError> {
        let mut stmt = self
            .conn
            .prepare("SELECT id FROM images WHERE id LIKE ?1")?;
        let rows = stmt
            .query_map([format!("sha256:{hex}%")], |r| digest(r.get(0)?))?
            .collect::<Result<_, _>>()?;
        Ok(rows)
    }

    /// (name, tagged_at) of an image's tags, by name.
    pub fn tags_of(&self, id: &Digest) -> Result<Vec<(String, String)>, EngineError> {
        let mut stmt = self
            .conn
            .prepare("SELECT name, tagged_at FROM tags WHERE image_id = ?1 ORDER BY name")?;
        let rows = stmt
            .query_map([id.to_string()], |r| Ok((r.get(0)?, r.get(1)?)))?
            .collect::<Result<_, _>>()?;
        Ok(rows)
    }

    /// (chain ID, diff ID, size) of an image's layers, bottom first.
    pub fn layers_of(&self, id: &Digest) -> Result<Vec<(Digest, Digest, u64)>, EngineError> {
        let mut stmt = self.conn.prepare(
            "SELECT l.chain_id, l.diff_id, l.size FROM image_layers il JOIN layers l ON l.chain_id = il.chain_id
             WHERE il.image_id = ?1 ORDER BY il.position",
        )?;
        let rows = stmt
            .query_map([id.to_string()], |r| {
                Ok((digest(r.get(0)?)?, digest(r.get(1)?)?, r.get(2)?))
            })?
            .collect::<Result<_, _>>()?;
        Ok(rows)
    }

    /// Deletes an image and everything only it used, in one transaction.
    /// Returns the layers (chain ID, size) and blobs no image uses any more,
    /// for the caller to remove from disk after the commit.
    pub fn delete_image(&mut self, id: &Digest) -> Result<Freed, EngineError> {
        let tx = self
            .conn
            .transaction_with_behavior(TransactionBehavior::Immediate)?;
        let layers: Vec<String> = {
            let mut stmt = tx.prepare("SELECT chain_id FROM image_layers WHERE image_id = ?1")?;
            let rows = stmt
                .query_map([id.to_string()], |r| r.get(0))?
                .collect::<Result<_, _>>()?;
            rows
        };
        let blobs: Vec<String> = {
            let mut stmt = tx.prepare("SELECT digest FROM image_blobs WHERE image_id = ?1")?;
            let rows = stmt
                .query_map([id.to_string()], |r| r.get(0))?
                .collect::<Result<_, _>>()?;
            rows
        };
        tx.execute("DELETE FROM images WHERE id = ?1", [id.to_string()])?;
        let mut freed_layers = Vec::new();
        for chain in layers {
            let refs: i64 = tx.query_row(
                "SELECT count(*) FROM image_layers WHERE chain_id = ?1",
                [&chain],
                |r| r.get(0),
            )?;
            if refs == 0 {
                let size: u64 = tx.query_row(
                    "SELECT size FROM layers WHERE chain_id = ?1",
                    [&chain],
                    |r| r.get(0),
                )?;
                tx.execute("DELETE FROM layers WHERE chain_id = ?1", [&chain])?;
                freed_layers.push((digest(chain)?, size));
            }
        }
        let mut freed_blobs = Vec::new();
        for blob in blobs {
            let refs: i64 = tx.query_row(
                "SELECT count(*) FROM image_blobs WHERE digest = ?1",
                [&blob],
                |r| r.get(0),
            )?;
            if refs == 0 {
                freed_blobs.push(digest(blob)?);
            }
        }
        tx.commit()?;
        Ok(Freed {
            layers: freed_layers,
            blobs: freed_blobs,
        })
    }

    pub fn blob_in_use(&self, d: &Digest) -> Result<bool, EngineError> {
        let n: i64 = self.conn.query_row(
            "SELECT count(*) FROM image_blobs WHERE digest = ?1",
            [d.to_string()],
            |r| r.get(0),
        )?;
        Ok(n > 0)
    }

    pub fn layer_in_use(&self, chain_hex: &str) -> Result<bool, EngineError> {
        let n: i64 = self.conn.query_row(
            "SELECT count(*) FROM layers WHERE chain_id = ?1",
            [format!("sha256:{chain_hex}")],
            |r| r.get(0),
        )?;
        Ok(n > 0)
    }

    /// (image count, layer count, layer bytes).
    pub fn totals(&self) -> Result<(u64, u64, u64), EngineError> {
        let images: u64 = self
            .conn
            .query_row("SELECT count(*) FROM images", [], |r| r.get(0))?;
        let (layers, bytes): (u64, u64) = self.conn.query_row(
            "SELECT count(*), coalesce(sum(size), 0) FROM layers",
            [],
            |r| Ok((r.get(0)?, r.get(1)?)),
        )?;
        Ok((images, layers, bytes))
    }
}

fn set_tag(conn: &Connection, name: &str, id: &Digest, now: &str) -> Result<(), EngineError> {
    conn.execute(
        "INSERT INTO tags (name, image_id, tagged_at) VALUES (?1, ?2, ?3)
         ON CONFLICT(name) DO UPDATE SET image_id = excluded.image_id, tagged_at = excluded.tagged_at",
        params![name, id.to_string(), now],
    )?;
    Ok(())
}

/// Makes the store's database WAL and brings its schema to this version,
/// in one transaction.
fn migrate(conn: &mut Connection) -> rusqlite::Result<()> {
    conn.pragma_update(None, "journal_mode", "WAL")?;
    let tx = conn.transaction_with_behavior(TransactionBehavior::Immediate)?;
    let version: i64 = tx.query_row("PRAGMA user_version", [], |r| r.get(0))?;
    if version == 0 {
        tx.execute_batch(SCHEMA)?;
    }
    if version < 2 {
        tx.execute_batch(SCHEMA_V2)?;
    }
    if version < 3 {
        tx.execute_batch(SCHEMA_V3)?;
    }
    if version < SCHEMA_VERSION {
        tx.pragma_update(None, "user_version", SCHEMA_VERSION)?;
    }
    tx.commit()
}

/// A container row.
#[derive(Debug, Clone)]
pub struct ContainerRow {
    pub id: String,
    pub name: String,
    pub image_id: Digest,
    pub image: String,
    pub created: String,
    pub options: String,
}

const CONTAINER_COLUMNS: &str = "id, name, image_id, image, created, options";

fn container_row(r: &rusqlite::Row<'_>) -> rusqlite::Result<ContainerRow> {
    Ok(ContainerRow {
        id: r.get(0)?,
        name: r.get(1)?,
        image_id: digest(r.get(2)?)?,
        image: r.get(3)?,
        created: r.get(4)?,
        options: r.get(5)?,
    })
}

impl Db {
    /// Records a container; false when its name is taken.
    pub fn insert_container(&mut self, c: &ContainerRow) -> Result<bool, EngineError> {
        let inserted = self.conn.execute(
            "INSERT OR IGNORE INTO containers (id, name, image_id, image, created, options)
             VALUES (?1, ?2, ?3, ?4, ?5, ?6)",
            params![
                c.id,
                c.name,
                c.image_id.to_string(),
                c.image,
                c.created,
                c.options
            ],
        )?;
        Ok(inserted == 1)
    }

    /// Every container, newest first.
    pub fn containers(&self) -> Result<Vec<ContainerRow>, EngineError> {
        let mut stmt = self.conn.prepare(&format!(
            "SELECT {CONTAINER_COLUMNS} FROM containers ORDER BY created DESC"
        ))?;
        let rows = stmt
            .query_map([], container_row)?
            .collect::<Result<_, _>>()?;
        Ok(rows)
    }

    /// Containers whose ID starts with `prefix`, or named `name`.
    pub fn find_containers(&self, name: &str) -> Result<Vec<ContainerRow>, EngineError> {
        let mut stmt = self.conn.prepare(&format!(
            "SELECT {CONTAINER_COLUMNS} FROM containers WHERE name = ?1 OR id LIKE ?2 ORDER BY name = ?1 DESC, id = ?1 DESC"
        ))?;
        let rows = stmt
            .query_map(params![name, format!("{name}%")], container_row)?
            .collect::<Result<_, _>>()?;
        Ok(rows)
    }

    pub fn delete_container(&mut self, id: &str) -> Result<(), EngineError> {
        self.conn
            .execute("DELETE FROM containers WHERE id = ?1", [id])?;
        Ok(())
    }

    /// Renames a container; false when the new name is taken.
    pub fn rename_container(&mut self, id: &str, name: &str) -> Result<bool, EngineError> {
        match self
            .conn
            .execute("UPDATE containers SET name = ?2 WHERE id = ?1", [id, name])
        {
            Ok(_) => Ok(true),
            Err(rusqlite::Error::SqliteFailure(e, _))
                if e.code == rusqlite::ErrorCode::ConstraintViolation =>
            {
                Ok(false)
            }
            Err(e) => Err(e.into()),
        }
    }

    /// The containers made from an image.
    pub fn containers_of_image(&self, image: &Digest) -> Result<Vec<String>, EngineError> {
        let mut stmt = self
            .conn
            .prepare("SELECT id FROM containers WHERE image_id = ?1")?;
        let rows = stmt
            .query_map([image.to_string()], |r| r.get(0))?
            .collect::<Result<_, _>>()?;
        Ok(rows)
    }
}

fn add_repo_digest(conn: &Connection, name: &str, id: &Digest) -> Result<(), EngineError> {
    conn.execute(
        "INSERT INTO repo_digests (name, image_id) VALUES (?1, ?2)
         ON CONFLICT(name) DO UPDATE SET image_id = excluded.image_id",
        params![name, id.to_string()],
    )?;
    Ok(())
}

fn image_row(r: &rusqlite::Row<'_>) -> rusqlite::Result<ImageRow> {
    Ok(ImageRow {
        id: digest(r.get(0)?)?,
        manifest: digest(r.get(1)?)?,
        created: r.get(2)?,
        size: r.get(3)?,
    })
}
