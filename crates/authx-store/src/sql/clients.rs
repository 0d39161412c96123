//! OAuth clients and API resources over SQL. Lists are stored as JSON arrays of strings
//! (order kept).

use authx_core::oauth::client::{Client, GrantType, Resource, TokenEndpointAuthMethod};
use authx_core::oauth::keys::SigningAlg;
use authx_core::oauth::store::ClientStore;
use authx_core::store::{StoreError, StoreResult};

use super::{
    Dialect, Pool, SqlRow, SqlStore, col, count, parse_hash, stmt, store_error, timestamp,
};

/// Columns of `oauth_clients` that make up a [`Client`].
macro_rules! client_columns {
    () => {
        "id, name, secret_hash, redirect_uris, post_logout_redirect_uris, \
         backchannel_logout_uri, grant_types, scopes, first_party, id_token_alg, \
         access_token_ttl_secs, refresh_token_ttl_secs, refresh_idle_secs, created_at, \
         resources, require_pushed_requests, require_acr, token_endpoint_auth_method, jwks, \
         jwks_uri, dpop_bound_access_tokens"
    };
}

const INSERT_CLIENT: &str = concat!(
    "INSERT INTO oauth_clients (",
    client_columns!(),
    ") VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13, $14, $15, $16, $17, $18, $19, $20, $21)"
);
const CLIENT_BY_ID: &str = concat!(
    "SELECT ",
    client_columns!(),
    " FROM oauth_clients WHERE id = $1"
);
const LIST_CLIENTS: &str = concat!(
    "SELECT ",
    client_columns!(),
    " FROM oauth_clients ORDER BY id"
);
const PAGE_CLIENTS: &str = concat!(
    "SELECT ",
    client_columns!(),
    " FROM oauth_clients ORDER BY id LIMIT $1 OFFSET $2"
);
const COUNT_CLIENTS: &str = "SELECT COUNT(*) AS n FROM oauth_clients";
// Every column from the same bindings as the insert (a row-value assignment, which SQLite
// and PostgreSQL both read); `id = $1` stays as it is, and the client's grants stay with it.
const UPDATE_CLIENT: &str = concat!(
    "UPDATE oauth_clients SET (",
    client_columns!(),
    ") = ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13, $14, $15, $16, $17, $18, $19, $20, $21) \
     WHERE id = $1"
);
// Codes, families (with their tokens) and consents go with the client (ON DELETE CASCADE).
const DELETE_CLIENT: &str = "DELETE FROM oauth_clients WHERE id = $1";

const INSERT_RESOURCE: &str =
    "INSERT INTO oauth_resources (id, scopes, created_at) VALUES ($1, $2, $3)";
const RESOURCE_BY_ID: &str = "SELECT id, scopes, created_at FROM oauth_resources WHERE id = $1";
const LIST_RESOURCES: &str = "SELECT id, scopes, created_at FROM oauth_resources ORDER BY id";
const DELETE_RESOURCE: &str = "DELETE FROM oauth_resources WHERE id = $1";
// The clients whose list may name a resource (a substring match on the JSON text; the exact
// test is made on the decoded list).
const CLIENTS_NAMING_RESOURCE: &str =
    "SELECT id, resources FROM oauth_clients WHERE resources LIKE $1";
const SET_CLIENT_RESOURCES: &str = "UPDATE oauth_clients SET resources = $1 WHERE id = $2";

/// A list as stored: a JSON array of strings.
pub(crate) fn json_list<I, S>(items: I) -> String
where
    I: IntoIterator<Item = S>,
    S: AsRef<str>,
{
    serde_json::Value::Array(
        items
            .into_iter()
            .map(|s| serde_json::Value::String(s.as_ref().to_owned()))
            .collect(),
    )
    .to_string()
}

/// Reads a list stored by [`json_list`].
pub(crate) fn list(row: &impl SqlRow, name: &str) -> StoreResult<Vec<String>> {
    let text: String = col(row, name)?;
    serde_json::from_str(&text)
        .map_err(|_| StoreError::Corrupt(format!("{name} is not a JSON list of strings")))
}

/// Decodes a row of `oauth_clients` selected with `client_columns!()`.
fn client_from_row<R: SqlRow>(row: &R) -> StoreResult<Client> {
    let secret_hash = col::<Option<String>>(row, "secret_hash")?
        .map(|hex| parse_hash("secret_hash", &hex))
        .transpose()?;
    let grant_types = list(row, "grant_types")?
        .iter()
        .map(|g| {
            GrantType::parse(g)
                .ok_or_else(|| StoreError::Corrupt(format!("unknown grant type {g:?}")))
        })
        .collect::<StoreResult<Vec<_>>>()?;
    let alg: String = col(row, "id_token_alg")?;
    let id_token_alg = SigningAlg::parse(&alg)
        .ok_or_else(|| StoreError::Corrupt(format!("unknown signing algorithm {alg:?}")))?;
    let token_endpoint_auth_method = match col::<Option<String>>(row, "token_endpoint_auth_method")?
    {
        // Registered before the column: a secret or none.
        None if secret_hash.is_some() => TokenEndpointAuthMethod::ClientSecretBasic,
        None => TokenEndpointAuthMethod::None,
        Some(m) => TokenEndpointAuthMethod::parse(&m).ok_or_else(|| {
            StoreError::Corrupt(format!("unknown token endpoint auth method {m:?}"))
        })?,
    };
    Ok(Client {
        id: col(row, "id")?,
        name: col(row, "name")?,
        secret_hash,
        token_endpoint_auth_method,
        jwks: col(row, "jwks")?,
        jwks_uri: col(row, "jwks_uri")?,
        dpop_bound_access_tokens: col(row, "dpop_bound_access_tokens")?,
        redirect_uris: list(row, "redirect_uris")?,
        post_logout_redirect_uris: list(row, "post_logout_redirect_uris")?,
        backchannel_logout_uri: col(row, "backchannel_logout_uri")?,
        grant_types,
        scopes: list(row, "scopes")?,
        resources: list(row, "resources")?,
        first_party: col(row, "first_party")?,
        require_pushed_authorization_requests: col(row, "require_pushed_requests")?,
        require_acr: col(row, "require_acr")?,
        id_token_alg,
        access_token_ttl_secs: col(row, "access_token_ttl_secs")?,
        refresh_token_ttl_secs: col(row, "refresh_token_ttl_secs")?,
        refresh_idle_secs: col(row, "refresh_idle_secs")?,
        created_at: timestamp(row, "created_at")?,
    })
}

/// Runs `sql` (the insert or the update) with the client's columns bound in the order of
/// `client_columns!()`; returns the rows it affected.
async fn write_client<DB: Dialect>(
    pool: &Pool<DB>,
    sql: &str,
    client: &Client,
) -> StoreResult<u64> {
    let secret_hash = client.secret_hash.as_ref().map(|h| h.to_hex());
    let redirect_uris = json_list(&client.redirect_uris);
    let post_logout_redirect_uris = json_list(&client.post_logout_redirect_uris);
    let grant_types = json_list(client.grant_types.iter().map(|g| g.as_str()));
    let scopes = json_list(&client.scopes);
    let resources = json_list(&client.resources);
    stmt(sql)
        .bind(&client.id)
        .bind(&client.name)
        .bind(secret_hash.as_deref())
        .bind(&redirect_uris)
        .bind(&post_logout_redirect_uris)
        .bind(client.backchannel_logout_uri.as_deref())
        .bind(&grant_types)
        .bind(&scopes)
        .bind(client.first_party)
        .bind(client.id_token_alg.as_str())
        .bind(client.access_token_ttl_secs)
        .bind(client.refresh_token_ttl_secs)
        .bind(client.refresh_idle_secs)
        .bind(client.created_at)
        .bind(&resources)
        .bind(client.require_pushed_authorization_requests)
        .bind(client.require_acr.as_deref())
        .bind(client.token_endpoint_auth_method.as_str())
        .bind(client.jwks.as_deref())
        .bind(client.jwks_uri.as_deref())
        .bind(client.dpop_bound_access_tokens)
        .execute(pool)
        .await
}

/// Decodes a row of `oauth_resources`.
fn resource_from_row<R: SqlRow>(row: &R) -> StoreResult<Resource> {
    Ok(Resource {
        id: col(row, "id")?,
        scopes: list(row, "scopes")?,
        created_at: timestamp(row, "created_at")?,
    })
}

#[async_trait::async_trait]
impl<DB: Dialect> ClientStore for SqlStore<DB> {
    async fn put_client(&self, client: &Client) -> StoreResult<()> {
        write_client(&self.pool, INSERT_CLIENT, client).await?;
        Ok(())
    }

    async fn update_client(&self, client: &Client) -> StoreResult<bool> {
        Ok(write_client(&self.pool, UPDATE_CLIENT, client).await? > 0)
    }

    async fn client(&self, id: &str) -> StoreResult<Option<Client>> {
        let row = stmt(CLIENT_BY_ID)
            .bind(id)
            .fetch_optional(&self.pool)
            .await?;
        row.as_ref().map(client_from_row).transpose()
    }

    async fn list_clients(&self) -> StoreResult<Vec<Client>> {
        let rows = stmt(LIST_CLIENTS).fetch_all(&self.pool).await?;
        rows.iter().map(client_from_row).collect()
    }

    async fn page_clients(&self, offset: u64, limit: u32) -> StoreResult<(Vec<Client>, u64)> {
        let rows = stmt(PAGE_CLIENTS)
            .bind(i64::from(limit))
            .bind(i64::try_from(offset).unwrap_or(i64::MAX))
            .fetch_all(&self.pool)
            .await?;
        let page = rows
            .iter()
            .map(client_from_row)
            .collect::<StoreResult<Vec<_>>>()?;
        let total = stmt(COUNT_CLIENTS).fetch_one(&self.pool).await?;
        Ok((page, count(col(&total, "n")?)?))
    }

    async fn delete_client(&self, id: &str) -> StoreResult<bool> {
        Ok(stmt(DELETE_CLIENT).bind(id).execute(&self.pool).await? > 0)
    }

    async fn put_resource(&self, resource: &Resource) -> StoreResult<()> {
        let scopes = json_list(&resource.scopes);
        stmt(INSERT_RESOURCE)
            .bind(&resource.id)
            .bind(&scopes)
            .bind(resource.created_at)
            .execute(&self.pool)
            .await?;
        Ok(())
    }

    async fn resource(&self, id: &str) -> StoreResult<Option<Resource>> {
        let row = stmt(RESOURCE_BY_ID)
            .bind(id)
            .fetch_optional(&self.pool)
            .await?;
        row.as_ref().map(resource_from_row).transpose()
    }

    async fn list_resources(&self) -> StoreResult<Vec<Resource>> {
        let rows = stmt(LIST_RESOURCES).fetch_all(&self.pool).await?;
        rows.iter().map(resource_from_row).collect()
    }

    async fn delete_resource(&self, id: &str) -> StoreResult<bool> {
        // The resource leaves every client's list in the same transaction, so an API
        // registered again under the same id is granted to nobody until an administrator says
        // so.
        let mut tx = self.pool.begin().await?;
        let deleted = stmt(DELETE_RESOURCE).bind(id).execute_in(&mut tx).await?;
        // The id as the JSON text holds it. `%`, `_` and `\` (PostgreSQL's escape character)
        // become `_`, which matches them among others.
        let quoted = serde_json::Value::String(id.to_owned()).to_string();
        let pattern = format!("%{}%", quoted.replace(['%', '_', '\\'], "_"));
        let rows = stmt(CLIENTS_NAMING_RESOURCE)
            .bind(&pattern)
            .fetch_all_in(&mut tx)
            .await?;
        for row in rows {
            let client: String = row.text("id").map_err(store_error)?;
            let text: String = row.text("resources").map_err(store_error)?;
            let list: Vec<String> = serde_json::from_str(&text).map_err(|_| {
                StoreError::Corrupt("resources is not a JSON list of strings".into())
            })?;
            if list.iter().any(|r| r == id) {
                let kept = json_list(list.iter().filter(|r| r.as_str() != id));
                stmt(SET_CLIENT_RESOURCES)
                    .bind(&kept)
                    .bind(&client)
                    .execute_in(&mut tx)
                    .await?;
            }
        }
        tx.commit().await?;
        Ok(deleted > 0)
    }
}

#[cfg(test)]
mod tests {
    use authx_core::oauth::store::KeyStore as _;
    use authx_core::secret::TokenHash;

    use super::*;
    use crate::options::ConnectOptions;
    use crate::sqlite::{MIGRATOR, SqliteStore, open};

    #[test]
    fn lists_are_json_arrays_in_order() {
        let items = ["b", "a", "quote\"", "back\\slash", "ünï"];
        let text = json_list(items);
        assert_eq!(text, r#"["b","a","quote\"","back\\slash","ünï"]"#);
        assert_eq!(
            serde_json::from_str::<Vec<String>>(&text).unwrap(),
            items.map(str::to_owned)
        );
        assert_eq!(json_list(Vec::<String>::new()), "[]");
    }

    #[tokio::test]
    async fn undecodable_rows_are_corrupt() {
        let pool = open("sqlite::memory:", &ConnectOptions::default())
            .await
            .unwrap();
        crate::migrations::apply(&pool, &MIGRATOR).await.unwrap();
        let store = SqliteStore::new(pool.clone());
        let hex = TokenHash::of(b"s").to_hex();
        for (id, secret, grants, uris, alg, why) in [
            (
                "c1",
                "not-hex",
                r#"["refresh_token"]"#,
                "[]",
                "RS256",
                "secret_hash",
            ),
            ("c2", &hex, r#"["implicit"]"#, "[]", "RS256", "implicit"),
            (
                "c3",
                &hex,
                "[]",
                "https://a.example.com/cb",
                "RS256",
                "redirect_uris",
            ),
            ("c4", &hex, "[]", "[1]", "RS256", "redirect_uris"),
            ("c5", &hex, "[]", "[]", "HS256", "HS256"),
        ] {
            sqlx::query(
                "INSERT INTO oauth_clients (id, name, secret_hash, redirect_uris, \
                 post_logout_redirect_uris, grant_types, scopes, first_party, id_token_alg, \
                 access_token_ttl_secs, refresh_token_ttl_secs, refresh_idle_secs, created_at) \
                 VALUES ($1, 'x', $2, $3, '[]', $4, '[]', 0, $5, 1, 1, 1, 1)",
            )
            .bind(id)
            .bind(secret)
            .bind(uris)
            .bind(grants)
            .bind(alg)
            .execute(&pool)
            .await
            .unwrap();
            let err = store.client(id).await.unwrap_err();
            assert!(
                matches!(&err, StoreError::Corrupt(m) if m.contains(why)),
                "{id}: {err:?}"
            );
        }
        assert!(matches!(
            store.list_clients().await,
            Err(StoreError::Corrupt(_))
        ));

        sqlx::query(
            "INSERT INTO signing_keys (kid, alg, state, private_key_encrypted, public_jwk, \
             created_at) VALUES ('k1', 'EdDSA', 'revoked', x'00', '{}', 1)",
        )
        .execute(&pool)
        .await
        .unwrap();
        let err = store.list_keys().await.unwrap_err();
        assert!(
            matches!(&err, StoreError::Corrupt(m) if m.contains("revoked")),
            "{err:?}"
        );
    }
}
