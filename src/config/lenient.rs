//! From the TOML document to the raw structs of [`super::file`], one key at a time.
//!
//! Deserializing the whole file at once would stop at its first mistake, name only the
//! section, and throw away the section's good keys, whose own problems would then go
//! unreported. Here every section is deserialized on its own, and a key that its section
//! rejects (an unknown key, a wrong type) is left out and reported under its own name, so the
//! rest of the section is still validated.

use serde::de::DeserializeOwned;

use super::error::{key_name, Problems};
use super::file::{RawAuth, RawDatabase, RawFile, RawKeys, RawLog, RawResource, RawServer};

/// Deserializes each section on its own so that a mistake in one does not hide the others.
pub(crate) fn split_sections(mut doc: toml::Table, problems: &mut Problems) -> RawFile {
    let roles = doc
        .remove("roles")
        .and_then(|v| match v.try_into::<Vec<String>>() {
            Ok(r) => Some(r),
            Err(_) => {
                problems.push(
                    "`roles`",
                    "must be a list of strings, e.g. roles = [\"auth\", \"resource\"]",
                );
                None
            }
        });
    let raw = RawFile {
        roles,
        server: section::<RawServer>(&mut doc, "server", problems),
        log: section::<RawLog>(&mut doc, "log", problems),
        database: section::<RawDatabase>(&mut doc, "database", problems),
        keys: section::<RawKeys>(&mut doc, "keys", problems),
        auth: section::<RawAuth>(&mut doc, "auth", problems),
        resource: section::<RawResource>(&mut doc, "resource", problems),
    };
    for unknown in doc.keys() {
        problems.push(
            format!("`{unknown}`"),
            "unknown key or section (expected roles, [server], [log], [database], [keys], [auth], [resource])",
        );
    }
    raw
}

/// Takes the section `name` out of the document, keeping its valid keys.
fn section<T: DeserializeOwned + Default>(
    doc: &mut toml::Table,
    name: &str,
    problems: &mut Problems,
) -> Option<T> {
    match doc.remove(name)? {
        toml::Value::Table(table) => Some(lenient(name, table, problems)),
        // Reported here; validation then takes the section for absent, without a second
        // problem (see `Problems::missing`).
        _ => {
            problems.push(format!("`[{name}]`"), "must be a table (a [section])");
            None
        }
    }
}

/// A serde error as one line.
pub(crate) fn clean(e: &toml::de::Error) -> String {
    e.message().trim().replace('\n', " ")
}

/// Deserializes a section as `T`, leaving out (and reporting under its own name) every key that
/// `T` rejects.
fn lenient<T: DeserializeOwned + Default>(
    section: &str,
    table: toml::Table,
    p: &mut Problems,
) -> T {
    let mut good = toml::Table::new();
    for (key, value) in table {
        if let Some(v) = keep_valid::<T>(section, &[key.as_str()], value, p) {
            good.insert(key, v);
        }
    }
    toml::Value::Table(good).try_into().unwrap_or_default()
}

/// Whether `value`, alone at `path` inside the section, deserializes as `T`. A rejected table
/// (such as `[auth.argon2]`) is checked key by key so that the problem names the inner key and
/// the valid ones are kept.
fn keep_valid<T: DeserializeOwned>(
    section: &str,
    path: &[&str],
    value: toml::Value,
    p: &mut Problems,
) -> Option<toml::Value> {
    let error = match wrap(path, value.clone()).try_into::<T>() {
        Ok(_) => return Some(value),
        Err(e) => e,
    };
    if let toml::Value::Table(inner) = value {
        // An unknown table is reported as a whole; a known one key by key.
        if wrap(path, toml::Value::Table(toml::Table::new()))
            .try_into::<T>()
            .is_ok()
        {
            let mut good = toml::Table::new();
            for (key, v) in inner {
                let mut deeper = path.to_vec();
                deeper.push(key.as_str());
                if let Some(v) = keep_valid::<T>(section, &deeper, v, p) {
                    good.insert(key, v);
                }
            }
            return Some(toml::Value::Table(good));
        }
    }
    let (key, parents) = path.split_last().map_or(("", &[][..]), |(k, ps)| (*k, ps));
    let mut name = section.to_owned();
    for parent in parents {
        name.push('.');
        name.push_str(parent);
    }
    p.push(key_name(&name, key), clean(&error));
    None
}

/// `value` nested in tables along `path`, as it sits in its section.
fn wrap(path: &[&str], value: toml::Value) -> toml::Value {
    path.iter().rev().fold(value, |inner, key| {
        let mut t = toml::Table::new();
        t.insert((*key).to_owned(), inner);
        toml::Value::Table(t)
    })
}
