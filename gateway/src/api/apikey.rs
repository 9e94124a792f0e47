//! `imx apikey create|list|revoke`: API keys are made here, printed once,
//! and only their SHA-256 is stored.

use clap::{Args, Subcommand};
use engine::store::ApiKeys;
use uuid::Uuid;

use super::auth::{Role, new_api_key};

#[derive(Debug, Args)]
pub struct ApiKeyArgs {
    #[command(subcommand)]
    pub command: ApiKeyCommand,
}

#[derive(Debug, Subcommand)]
pub enum ApiKeyCommand {
    /// Creates a key and prints it once; keep it, it cannot be shown again.
    Create {
        /// viewer, operator, approver or admin; repeat to add approval roles (e.g. finance).
        #[arg(long = "role", required = true)]
        roles: Vec<String>,
        /// A label to recognise the key by.
        #[arg(long, default_value = "")]
        name: String,
    },
    /// Lists keys (id, name, roles, created, revoked); never the keys.
    List,
    /// Revokes a key by id.
    Revoke { key_id: Uuid },
}

/// Why an apikey command failed.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    #[error(transparent)]
    Store(#[from] engine::store::Error),
    #[error(
        "a key needs at least one built-in role (viewer, operator, approver, admin); got [{0}]"
    )]
    NoBuiltInRole(String),
    #[error("no active key has the id {0}")]
    UnknownKey(Uuid),
}

/// Carries out one `imx apikey` command on the store at `database_url`.
pub async fn run(database_url: &str, args: ApiKeyArgs) -> Result<(), Error> {
    let store = engine::store::open(database_url).await?;
    match args.command {
        ApiKeyCommand::Create { roles, name } => {
            if !roles.iter().any(|role| Role::parse(role).is_some()) {
                return Err(Error::NoBuiltInRole(roles.join(", ")));
            }
            let (key, record) = new_api_key(&name, roles);
            store.create_api_key(&record).await?;
            eprintln!(
                "created API key {} with roles [{}]; it is shown only now:",
                record.key_id,
                record.roles.join(", ")
            );
            println!("{key}");
        }
        ApiKeyCommand::List => {
            for key in store.list_api_keys().await? {
                let revoked = key
                    .revoked_at
                    .map_or_else(String::new, |at| format!("\trevoked {}", at.to_rfc3339()));
                println!(
                    "{}\t{}\t{}\t{}{revoked}",
                    key.key_id,
                    key.name,
                    key.roles.join(","),
                    key.created_at.to_rfc3339()
                );
            }
        }
        ApiKeyCommand::Revoke { key_id } => {
            if !store.revoke_api_key(key_id, chrono::Utc::now()).await? {
                return Err(Error::UnknownKey(key_id));
            }
            eprintln!("revoked {key_id}");
        }
    }
    Ok(())
}
