//! `orderwatch store copy --to URL|PATH`: copies the store of the current
//! config into another one (see `store/copy.rs` for what and how), so an
//! install moves between SQLite and PostgreSQL without losing its cursor or
//! redelivering anything.

use std::path::{Path, PathBuf};

use super::{Failure, load_config};
use crate::cli::{CopyArgs, StoreCommand};
use crate::config::field::shown_url;
use crate::config::{PgTarget, PostgresConfig, SecretSource, StoreConfig};
use crate::store::copy;

pub async fn run(config_flag: Option<&Path>, command: &StoreCommand) -> Result<(), Failure> {
    match command {
        StoreCommand::Copy(args) => copy_store(config_flag, args).await,
    }
}

async fn copy_store(config_flag: Option<&Path>, args: &CopyArgs) -> Result<(), Failure> {
    let config = load_config(config_flag)?;
    let target = target(args)?;
    if target.location() == config.store.location() {
        return Err(Failure::usage(anyhow::anyhow!(
            "--to {} is the configured store itself; name another one",
            target.location()
        )));
    }
    let copied = copy::copy(&config.store, &target, args.force)
        .await
        .map_err(|e| {
            let code = if matches!(e, crate::store::StoreError::NotEmpty { .. }) {
                2
            } else {
                1
            };
            Failure {
                code,
                error: anyhow::anyhow!(
                    "cannot copy {} to {}: {e}",
                    config.store.location(),
                    target.location()
                ),
            }
        })?;
    println!(
        "copied {} to {}: {copied}",
        config.store.location(),
        target.location()
    );
    Ok(())
}

/// The store `--to` names: a PostgreSQL URL or a SQLite path.
fn target(args: &CopyArgs) -> Result<StoreConfig, Failure> {
    let to = args.to.trim();
    let is_url = to.starts_with("postgresql://") || to.starts_with("postgres://");
    if !is_url {
        if args.password_env.is_some() || args.password_file.is_some() {
            return Err(Failure::usage(anyhow::anyhow!(
                "--password-env and --password-file apply to a PostgreSQL target only"
            )));
        }
        if to.is_empty() {
            return Err(Failure::usage(anyhow::anyhow!("--to must not be empty")));
        }
        return Ok(StoreConfig::Sqlite {
            path: PathBuf::from(to),
        });
    }
    let target = PgTarget::parse(to).map_err(|e| {
        let e = if e == crate::store::postgres::target::password_refused() {
            "must not carry a password (it would show in `ps` and the shell's history); give it with --password-env VAR or --password-file PATH".to_string()
        } else {
            e
        };
        Failure::usage(anyhow::anyhow!("--to {}: {e}", shown_url(to)))
    })?;
    let password = match (&args.password_env, &args.password_file) {
        (Some(var), _) => Some(
            crate::config::secret::env_source(var)
                .map_err(|e| Failure::usage(anyhow::anyhow!("--password-env: {e}")))?,
        ),
        (_, Some(file)) => Some(SecretSource::File(file.clone())),
        (None, None) => None,
    };
    // A password that cannot be read is a mistake on the command line, not
    // a database that is down: said before anything is opened, exit 2.
    if let Some(source) = &password
        && let Err(e) = source.load()
    {
        let flag = match source {
            SecretSource::Env(_) => "--password-env",
            _ => "--password-file",
        };
        return Err(Failure::usage(anyhow::anyhow!("{flag}: {e}")));
    }
    Ok(StoreConfig::Postgres(Box::new(PostgresConfig::new(
        target, password,
    ))))
}
