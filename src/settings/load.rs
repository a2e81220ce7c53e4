//! Merging the configuration layers (built-in defaults < file < environment < flags) and naming the
//! layer responsible for any error. Each layer is first checked alone on top of the defaults, so a
//! wrong type or unknown key is blamed on the layer that wrote it; validation errors after the merge
//! are blamed on the highest layer that sets the key.

use std::collections::HashMap;
use std::fmt;
use std::path::PathBuf;

use config::{Config, ConfigBuilder, ConfigError, Environment, File, FileFormat, Value};

use super::{RawSettings, Settings, SettingsError};

/// The built-in defaults: `config/default.toml`, compiled in.
pub const DEFAULT_TOML: &str = include_str!("../../config/default.toml");

/// Prefix of the environment variables that override keys (`IMGCRAWL_FETCHERS`).
pub const ENV_PREFIX: &str = "IMGCRAWL";

/// Keys whose environment value is a comma-separated list.
const LIST_KEYS: &[&str] = &[
    "start_urls",
    "pages",
    "scope.allowed_hosts",
    "scope.include",
    "scope.exclude",
    "scope.strip_query",
    "filter.exclude",
    "http.no_proxy",
];

/// Where a configuration value came from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Origin {
    /// The built-in defaults (`config/default.toml`).
    Default,
    /// The file given with `-c`.
    File(PathBuf),
    /// An `IMGCRAWL_*` environment variable (its name).
    Env(String),
    /// A command-line flag (its spelling, e.g. `--fetchers`).
    Flag(String),
}

impl fmt::Display for Origin {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Origin::Default => f.write_str("the built-in defaults"),
            Origin::File(p) => write!(f, "config file {}", p.display()),
            Origin::Env(v) => write!(f, "environment variable {v}"),
            Origin::Flag(flag) => write!(f, "command-line flag {flag}"),
        }
    }
}

/// One value set by a command-line flag.
#[derive(Debug, Clone)]
pub struct FlagOverride {
    /// The dotted configuration key it sets.
    pub key: String,
    /// The flag as typed, for error messages.
    pub flag: String,
    /// The value.
    pub value: Value,
}

/// The layers to merge. The environment is passed as a map so that callers (and tests) decide what
/// it holds; the binary passes the process environment.
#[derive(Debug, Clone, Default)]
pub struct ConfigSources {
    /// The TOML file given with `-c`, if any.
    pub file: Option<PathBuf>,
    /// Environment variables; only those starting with `IMGCRAWL_` are read.
    pub env: HashMap<String, String>,
    /// Values set by flags, applied last.
    pub flags: Vec<FlagOverride>,
}

/// The parsed default layer; the embedded file is valid by construction (checked by a unit test).
pub(super) fn defaults() -> RawSettings {
    Config::builder()
        .add_source(File::from_str(DEFAULT_TOML, FileFormat::Toml))
        .build()
        .and_then(Config::try_deserialize)
        .expect("config/default.toml is a complete, valid configuration")
}

impl ConfigSources {
    /// Adds a flag override: `key` is the dotted config key, `flag` the flag's spelling.
    pub fn flag(&mut self, key: &str, flag: &str, value: impl Into<Value>) {
        self.flags.push(FlagOverride {
            key: key.into(),
            flag: flag.into(),
            value: value.into(),
        });
    }

    /// Merges, deserialises and validates every layer.
    pub fn load(&self) -> Result<Settings, SettingsError> {
        let (raw, file_text) = self.merged()?;
        raw.validate_with_env(&self.env)
            .map_err(|(key, message)| SettingsError {
                origin: self.origin_of(key, file_text.as_deref()),
                key: key.to_string(),
                message,
            })
    }

    /// Every layer merged and deserialised (not yet validated), with the file's text.
    fn merged(&self) -> Result<(RawSettings, Option<String>), SettingsError> {
        let file_text = match &self.file {
            Some(path) => Some(std::fs::read_to_string(path).map_err(|e| SettingsError {
                key: String::new(),
                origin: Origin::File(path.clone()),
                message: format!("cannot read the file: {e}"),
            })?),
            None => None,
        };
        // Each layer alone over the defaults, so that a type error is blamed on its own layer.
        if let (Some(path), Some(text)) = (&self.file, &file_text) {
            let b = base().add_source(File::from_str(text, FileFormat::Toml));
            check(b, |_| Origin::File(path.clone()))?;
        }
        check(base().add_source(self.environment()), |key| {
            Origin::Env(env_var(key))
        })?;
        let mut b = base();
        for f in &self.flags {
            b = set_flag(b, f)?;
        }
        check(b, |key| self.flag_origin(key).unwrap_or(Origin::Default))?;

        // All layers together.
        let mut b = base();
        if let Some(text) = &file_text {
            b = b.add_source(File::from_str(text, FileFormat::Toml));
        }
        b = b.add_source(self.environment());
        for f in &self.flags {
            b = set_flag(b, f)?;
        }
        let raw = deserialize(b).map_err(|(key, message)| SettingsError {
            origin: self.origin_of(&key, file_text.as_deref()),
            key,
            message,
        })?;
        Ok((raw, file_text))
    }

    /// The merged configuration as TOML, each value followed by the layer it came from, and
    /// whether it would be accepted (the validation error otherwise). Secrets are shown as `***`.
    pub fn effective(&self) -> Result<(String, Option<SettingsError>), SettingsError> {
        let (raw, file_text) = self.merged()?;
        let invalid = raw
            .validate_with_env(&self.env)
            .err()
            .map(|(key, message)| SettingsError {
                origin: self.origin_of(key, file_text.as_deref()),
                key: key.to_string(),
                message,
            });
        let table = toml::Table::try_from(&raw).map_err(|e| SettingsError {
            key: String::new(),
            origin: Origin::Default,
            message: format!("cannot show the configuration as TOML: {e}"),
        })?;
        let mut out = String::from(
            "# The configuration a crawl with these layers uses, and where each value comes from\n\
             # (built-in defaults < -c file < IMGCRAWL_* environment < flags). Unset optional keys\n\
             # are not shown.\n",
        );
        let origin = |key: &str| self.origin_of(key, file_text.as_deref());
        write_table(&mut out, ("", ""), &table, &origin);
        Ok((out, invalid))
    }

    fn environment(&self) -> Environment {
        let env: config::Map<String, String> = self
            .env
            .iter()
            .filter(|(k, _)| k.starts_with(&format!("{ENV_PREFIX}_")))
            .map(|(k, v)| (k.clone(), v.clone()))
            .collect();
        let mut e = Environment::with_prefix(ENV_PREFIX)
            .prefix_separator("_")
            .separator("__")
            .try_parsing(true)
            .list_separator(",")
            .source(Some(env));
        for key in LIST_KEYS {
            e = e.with_list_parse_key(key);
        }
        e
    }

    fn flag_origin(&self, key: &str) -> Option<Origin> {
        self.flags
            .iter()
            .rev()
            .find(|f| f.key == key || key.starts_with(&format!("{}.", f.key)))
            .map(|f| Origin::Flag(f.flag.clone()))
    }

    /// The highest layer that sets `key`.
    fn origin_of(&self, key: &str, file_text: Option<&str>) -> Origin {
        if let Some(o) = self.flag_origin(key) {
            return o;
        }
        let var = env_var(key);
        if self.env.keys().any(|k| k.eq_ignore_ascii_case(&var)) {
            return Origin::Env(var);
        }
        if let (Some(path), Some(text)) = (&self.file, file_text) {
            let in_file = Config::builder()
                .add_source(File::from_str(text, FileFormat::Toml))
                .build()
                .is_ok_and(|c| c.get::<Value>(key).is_ok());
            if in_file {
                return Origin::File(path.clone());
            }
        }
        Origin::Default
    }
}

/// Writes the plain keys of `table` (under the dotted `prefix`, whose TOML spelling is
/// `section`), then its sub-tables as sections. Secret values are shown as `***`.
fn write_table(
    out: &mut String,
    (prefix, section): (&str, &str),
    table: &toml::Table,
    origin: &dyn Fn(&str) -> Origin,
) {
    let key_of = |k: &str| {
        if prefix.is_empty() {
            k.to_string()
        } else {
            format!("{prefix}.{k}")
        }
    };
    // `[http.headers]` and each `[http.host."NAME".headers]`.
    let headers = prefix == "http.headers"
        || (prefix.starts_with("http.host.") && prefix.ends_with(".headers"));
    for (k, v) in table.iter().filter(|(_, v)| !v.is_table()) {
        let key = key_of(k);
        let shown = match (key.as_str(), v) {
            ("distributed.redis_url" | "http.proxy", toml::Value::String(url)) => {
                toml::Value::String(redact_password(url))
            }
            (_, toml::Value::String(_)) if headers && crate::http::is_secret(k) => {
                toml::Value::String("***".into())
            }
            _ => v.clone(),
        };
        let line = format!("{} = {shown}", toml_key(k));
        let from = match origin(&key) {
            Origin::Default => "default".to_string(),
            Origin::File(p) => format!("file {}", p.display()),
            Origin::Env(var) => format!("env {var}"),
            Origin::Flag(flag) => format!("flag {flag}"),
        };
        out.push_str(&format!("{line:<44} # {from}\n"));
    }
    for (k, v) in table.iter() {
        if let toml::Value::Table(inner) = v {
            let key = key_of(k);
            let sub = if section.is_empty() {
                toml_key(k)
            } else {
                format!("{section}.{}", toml_key(k))
            };
            out.push_str(&format!("\n[{sub}]\n"));
            write_table(out, (&key, &sub), inner, origin);
        }
    }
}

/// A key as TOML writes it: bare when it can be.
fn toml_key(k: &str) -> String {
    if !k.is_empty()
        && k.chars()
            .all(|c| c.is_ascii_alphanumeric() || c == '_' || c == '-')
    {
        k.to_string()
    } else {
        toml::Value::String(k.to_string()).to_string()
    }
}

/// `url` with its password replaced by `***`.
fn redact_password(url: &str) -> String {
    match url::Url::parse(url) {
        Ok(mut u) if u.password().is_some() => {
            let _ = u.set_password(Some("***"));
            u.to_string()
        }
        _ => url.to_string(),
    }
}

fn base() -> ConfigBuilder<config::builder::DefaultState> {
    Config::builder().add_source(File::from_str(DEFAULT_TOML, FileFormat::Toml))
}

fn set_flag(
    b: ConfigBuilder<config::builder::DefaultState>,
    f: &FlagOverride,
) -> Result<ConfigBuilder<config::builder::DefaultState>, SettingsError> {
    b.set_override(f.key.as_str(), f.value.clone())
        .map_err(|e| SettingsError {
            key: f.key.clone(),
            origin: Origin::Flag(f.flag.clone()),
            message: e.to_string(),
        })
}

/// The environment variable for a dotted key: `http.timeout_secs` -> `IMGCRAWL_HTTP__TIMEOUT_SECS`.
pub fn env_var(key: &str) -> String {
    format!("{ENV_PREFIX}_{}", key.replace('.', "__").to_uppercase())
}

fn check(
    b: ConfigBuilder<config::builder::DefaultState>,
    origin: impl Fn(&str) -> Origin,
) -> Result<(), SettingsError> {
    deserialize(b)
        .map(drop)
        .map_err(|(key, message)| SettingsError {
            origin: origin(&key),
            key,
            message,
        })
}

fn deserialize(
    b: ConfigBuilder<config::builder::DefaultState>,
) -> Result<RawSettings, (String, String)> {
    b.build()
        .and_then(Config::try_deserialize::<RawSettings>)
        .map_err(|e| (error_key(&e).unwrap_or_default(), e.to_string()))
}

/// The dotted key a config error is about, including the field named by "unknown field `x`".
fn error_key(e: &ConfigError) -> Option<String> {
    fn unknown_field(msg: &str) -> Option<&str> {
        let rest = msg.strip_prefix("unknown field `")?;
        rest.split('`').next()
    }
    match e {
        ConfigError::Type { key, .. } => key.clone(),
        ConfigError::At { error, key, .. } => {
            let inner = error.to_string();
            match (key, unknown_field(&inner)) {
                (Some(k), Some(field)) => Some(format!("{k}.{field}")),
                (None, Some(field)) => Some(field.to_string()),
                (k, None) => k.clone().or_else(|| error_key(error)),
            }
        }
        ConfigError::Message(m) => unknown_field(m).map(str::to_string),
        _ => None,
    }
}

impl fmt::Display for SettingsErrorDisplay<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let e = self.0;
        if e.key.is_empty() {
            write!(f, "{}: {}", e.origin, e.message)
        } else {
            write!(f, "{}: key `{}`: {}", e.origin, e.key, e.message)
        }
    }
}

/// Formats a [`SettingsError`] as "origin: key `k`: message" (used by its `Display`).
pub(super) struct SettingsErrorDisplay<'a>(pub(super) &'a SettingsError);
