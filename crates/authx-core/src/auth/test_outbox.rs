//! A mailer for the account tests: it keeps what it was asked to send.

use crate::mail::{MailError, Mailer, Message};

/// A mailer that keeps what it was asked to send.
#[derive(Default)]
pub(super) struct Outbox(pub(super) std::sync::Mutex<Vec<(String, Message)>>);

#[async_trait::async_trait]
impl Mailer for Outbox {
    async fn send(&self, to: &str, message: Message) -> Result<String, MailError> {
        self.0.lock().unwrap().push((to.to_owned(), message));
        Ok(crate::secret::random_id())
    }
}

impl Outbox {
    pub(super) fn take(&self) -> Vec<(String, Message)> {
        std::mem::take(&mut *self.0.lock().unwrap())
    }

    /// The token of the first mail of `kind` to `to`.
    pub(super) fn token(&self, to: &str, kind: &str) -> String {
        let mails = self.0.lock().unwrap();
        let (_, m) = mails
            .iter()
            .find(|(t, m)| t == to && m.kind() == kind)
            .unwrap_or_else(|| panic!("no {kind} mail to {to}"));
        match m {
            Message::EmailChangeConfirm { token, .. }
            | Message::EmailChangeNotice { token, .. }
            | Message::MagicLink { token, .. } => token.clone(),
            other => panic!("{other:?}"),
        }
    }
}
