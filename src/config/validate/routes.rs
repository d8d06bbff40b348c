//! `[[resource.routes]]`: one protected document per route.

use std::collections::HashSet;
use std::path::PathBuf;

use crate::config::error::Problems;
use crate::config::file::RawRoute;
use crate::config::lenient::clean;
use crate::config::preflight::plan::{Check, Plan};
use crate::config::types::{RouteConfig, RESERVED_PREFIX};
use crate::domain::{Resource, Scope};

/// What every route must respect.
pub(super) struct RouteRules<'a> {
    /// The token endpoint's path, if this node has one (`/token` is refused anyway).
    pub token_path: Option<&'a str>,
    /// The largest document the preflight accepts.
    pub max_document_bytes: u64,
}

/// Every route; a route with a problem is reported and left out.
pub(super) fn validate_routes(
    values: Vec<toml::Value>,
    rules: &RouteRules<'_>,
    p: &mut Problems,
    plan: &mut Plan,
) -> Vec<RouteConfig> {
    let mut routes = Vec::new();
    let mut seen = HashSet::new();
    for (i, value) in values.into_iter().enumerate() {
        let at = format!("`[[resource.routes]]` #{}", i + 1);
        match value.try_into::<RawRoute>() {
            Ok(r) => routes.extend(validate_route(r, &at, rules, &mut seen, p, plan)),
            Err(e) => p.push(at, clean(&e)),
        }
    }
    routes
}

/// One route. `at` names it by position until its path is known; `seen` holds the paths of
/// the routes before it.
fn validate_route(
    r: RawRoute,
    at: &str,
    rules: &RouteRules<'_>,
    seen: &mut HashSet<String>,
    p: &mut Problems,
    plan: &mut Plan,
) -> Option<RouteConfig> {
    let Some(path) = r.path else {
        p.push(
            format!("{at} `path`"),
            "missing (e.g. path = \"/api_v0.0.1\")",
        );
        return None;
    };
    let label = format!("`[[resource.routes]]` {path}");
    // Every message about a route names its file too, so it can be found in a long list.
    let served = r.file.as_deref().unwrap_or("no file");
    let path_ok = check_path(&path, served, &label, rules.token_path, seen, p);
    let file = match r.file {
        None => {
            p.push(
                format!("{label} `file`"),
                "missing: the JSON document to serve",
            );
            None
        }
        Some(f) => {
            let f = PathBuf::from(f);
            plan.push(Check::Document {
                label: label.clone(),
                file: f.clone(),
                max_bytes: rules.max_document_bytes,
            });
            Some(f)
        }
    };
    let audience_text = r
        .audience
        .unwrap_or_else(|| path.trim_start_matches('/').to_owned());
    let audience = match Resource::parse(&audience_text) {
        Ok(a) => Some(a),
        Err(e) => {
            p.push(format!("{label} `audience`"), e.to_string());
            None
        }
    };
    let scope = match r.scope.as_deref().map(Scope::parse).transpose() {
        Ok(s) => s,
        Err(e) => {
            p.push(format!("{label} `scope`"), e.to_string());
            return None;
        }
    };
    path_ok.then_some(())?;
    Some(RouteConfig {
        path,
        file: file?,
        audience: audience?,
        scope,
    })
}

/// The path must be a path, not one the server answers itself, and not taken already.
fn check_path(
    path: &str,
    served: &str,
    label: &str,
    token_path: Option<&str>,
    seen: &mut HashSet<String>,
    p: &mut Problems,
) -> bool {
    let problem = if !path.starts_with('/') || path.len() < 2 || path.contains(['?', '#', ' ']) {
        format!("{path:?} (serving {served}) must be a path such as \"/api_v0.0.1\"")
    } else if path.starts_with(RESERVED_PREFIX) || Some(path) == token_path || path == "/token" {
        format!(
            "{path} (serving {served}) clashes with a path the server answers itself (/token, /.well-known/*)"
        )
    } else if !seen.insert(path.to_owned()) {
        format!("{path} (serving {served}) is a duplicate: another route already serves this path")
    } else {
        return true;
    };
    p.push(format!("{label} `path`"), problem);
    false
}
