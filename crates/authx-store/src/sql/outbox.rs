//! The mail outbox over SQL, for SQLite and PostgreSQL alike.
//!
//! A claim is one `UPDATE ... RETURNING` whose `WHERE` repeats the conditions of the rows it
//! picks: on PostgreSQL a concurrent claim that waited for a row's lock re-checks them on the
//! updated row (and skips it, its lease now running); SQLite runs one write at a time. Every
//! outcome is recorded only by the holder of the current claim.

use authx_core::Timestamp;
use authx_core::mail::{ClaimedMail, MailState, OutboxStore, OutgoingMail};
use authx_core::secret::random_id;
use authx_core::store::{StoreError, StoreResult};

use super::{Dialect, SqlRow, SqlStore, col, stmt};

const ENQUEUE: &str = "INSERT INTO mail_outbox \
     (id, message_id, kind, recipient, subject, text_body, html_body, state, attempts, \
      created_at, next_attempt_at) \
     VALUES ($1, $2, $3, $4, $5, $6, $7, 'pending', 0, $8, $8)";
const CLAIM: &str = "UPDATE mail_outbox SET attempts = attempts + 1, lease_until = $1, claim_id = $2 \
     WHERE id IN (SELECT id FROM mail_outbox WHERE state = 'pending' AND next_attempt_at <= $3 \
                  AND (lease_until IS NULL OR lease_until <= $3) \
                  ORDER BY next_attempt_at, id LIMIT $4) \
       AND state = 'pending' AND (lease_until IS NULL OR lease_until <= $3) \
     RETURNING id, message_id, kind, recipient, subject, text_body, html_body, attempts";
// Sent or failed for good: the bodies (which may hold single-use links) are wiped.
const FINISH: &str = "UPDATE mail_outbox SET state = $3, finished_at = $4, last_error = $5, \
       text_body = NULL, html_body = NULL, lease_until = NULL, claim_id = NULL \
     WHERE id = $1 AND claim_id = $2 AND state = 'pending'";
const RETRY: &str = "UPDATE mail_outbox SET next_attempt_at = $3, last_error = $4, \
       lease_until = NULL, claim_id = NULL \
     WHERE id = $1 AND claim_id = $2 AND state = 'pending'";
const STATE: &str = "SELECT state, attempts FROM mail_outbox WHERE id = $1";
const PURGE: &str = "DELETE FROM mail_outbox WHERE state <> 'pending' AND finished_at < $1";

/// The longest error reason kept.
const MAX_ERROR_CHARS: usize = 500;

fn attempts(row: &impl SqlRow) -> StoreResult<u32> {
    let n: i64 = col(row, "attempts")?;
    u32::try_from(n).map_err(|_| StoreError::Corrupt(format!("attempt count out of range: {n}")))
}

fn claimed_from_row(row: &impl SqlRow, claim: &str) -> StoreResult<ClaimedMail> {
    Ok(ClaimedMail {
        mail: OutgoingMail {
            id: col(row, "id")?,
            message_id: col(row, "message_id")?,
            kind: col(row, "kind")?,
            to: col(row, "recipient")?,
            subject: col(row, "subject")?,
            text_body: col::<Option<String>>(row, "text_body")?.unwrap_or_default(),
            html_body: col::<Option<String>>(row, "html_body")?.unwrap_or_default(),
        },
        claim: claim.to_owned(),
        attempts: attempts(row)?,
    })
}

fn clip(error: &str) -> String {
    error.chars().take(MAX_ERROR_CHARS).collect()
}

impl<DB: Dialect> SqlStore<DB> {
    async fn finish_mail(
        &self,
        id: &str,
        claim: &str,
        state: MailState,
        now: Timestamp,
        error: Option<&str>,
    ) -> StoreResult<bool> {
        let error = error.map(clip);
        let n = stmt(FINISH)
            .bind(id)
            .bind(claim)
            .bind(state.as_str())
            .bind(now)
            .bind(error.as_deref())
            .execute(&self.pool)
            .await?;
        Ok(n == 1)
    }
}

#[async_trait::async_trait]
impl<DB: Dialect> OutboxStore for SqlStore<DB> {
    async fn enqueue_mail(&self, mail: &OutgoingMail, now: Timestamp) -> StoreResult<()> {
        stmt(ENQUEUE)
            .bind(&mail.id)
            .bind(&mail.message_id)
            .bind(&mail.kind)
            .bind(&mail.to)
            .bind(&mail.subject)
            .bind(&mail.text_body)
            .bind(&mail.html_body)
            .bind(now)
            .execute(&self.pool)
            .await?;
        Ok(())
    }

    async fn claim_mail(
        &self,
        now: Timestamp,
        lease_until: Timestamp,
        limit: u32,
    ) -> StoreResult<Vec<ClaimedMail>> {
        let claim = random_id();
        let rows = stmt(CLAIM)
            .bind(lease_until)
            .bind(&claim)
            .bind(now)
            .bind(i64::from(limit))
            .fetch_all(&self.pool)
            .await?;
        let mut claimed = rows
            .iter()
            .map(|r| claimed_from_row(r, &claim))
            .collect::<StoreResult<Vec<_>>>()?;
        // RETURNING gives no order: oldest first by id is as good as any, and stable.
        claimed.sort_by(|a, b| a.mail.id.cmp(&b.mail.id));
        Ok(claimed)
    }

    async fn mark_mail_sent(&self, id: &str, claim: &str, now: Timestamp) -> StoreResult<bool> {
        self.finish_mail(id, claim, MailState::Sent, now, None)
            .await
    }

    async fn retry_mail(
        &self,
        id: &str,
        claim: &str,
        next_attempt_at: Timestamp,
        error: &str,
    ) -> StoreResult<bool> {
        let n = stmt(RETRY)
            .bind(id)
            .bind(claim)
            .bind(next_attempt_at)
            .bind(&clip(error))
            .execute(&self.pool)
            .await?;
        Ok(n == 1)
    }

    async fn fail_mail(
        &self,
        id: &str,
        claim: &str,
        now: Timestamp,
        error: &str,
    ) -> StoreResult<bool> {
        self.finish_mail(id, claim, MailState::Failed, now, Some(error))
            .await
    }

    async fn mail_state(&self, id: &str) -> StoreResult<Option<(MailState, u32)>> {
        let Some(row) = stmt(STATE).bind(id).fetch_optional(&self.pool).await? else {
            return Ok(None);
        };
        let state = match col::<String>(&row, "state")?.as_str() {
            "pending" => MailState::Pending,
            "sent" => MailState::Sent,
            "failed" => MailState::Failed,
            other => return Err(StoreError::Corrupt(format!("unknown mail state {other:?}"))),
        };
        Ok(Some((state, attempts(&row)?)))
    }

    async fn purge_mail(&self, before: Timestamp) -> StoreResult<u64> {
        stmt(PURGE).bind(before).execute(&self.pool).await
    }
}
